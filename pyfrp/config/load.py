"""Reading a configuration file into the typed model (pkg/config/load.go)."""

from __future__ import annotations

import re

from pyfrp.config.ini import load_client_ini, load_server_ini
from pyfrp.config.model import ClientConfig, ServerConfig
from pyfrp.errors import ConfigError

_COMMON = re.compile(r"^\s*\[\s*common\s*\]\s*$", re.MULTILINE)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None


def _require_ini(text: str, path: str) -> None:
    if not _COMMON.search(text):
        raise ConfigError(
            f"{path}: only the legacy INI format (with a [common] section) is supported so far"
        )


def load_server_config(path: str) -> tuple[ServerConfig, list[str]]:
    text = _read(path)
    _require_ini(text, path)
    return load_server_ini(text, path)


def load_client_config(path: str) -> tuple[ClientConfig, list[str]]:
    text = _read(path)
    _require_ini(text, path)
    return load_client_ini(text, path)
