"""frpc's store (``store.path``, pkg/config/source/store.go): proxies and visitors created
through the admin API, kept in a JSON file (``{"proxies": [...], "visitors": [...]}``, each a
v1 table) so they come back after a restart."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from pyfrp.config.export import proxy_to_v1, visitor_to_v1
from pyfrp.config.load import proxy_from_v1, visitor_from_v1
from pyfrp.config.model import ProxyConfig, VisitorConfig
from pyfrp.errors import ConfigError


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self.proxies: dict[str, ProxyConfig] = {}
        self.visitors: dict[str, VisitorConfig] = {}
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot read the store: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path}: the store is not a JSON object")
        for i, item in enumerate(data.get("proxies") or []):
            p = proxy_from_v1(item, f"{self.path}: proxies[{i}]")
            self.proxies[p.name] = p
        for i, item in enumerate(data.get("visitors") or []):
            v = visitor_from_v1(item, f"{self.path}: visitors[{i}]")
            self.visitors[v.name] = v

    def save(self) -> None:
        """Write the whole store (a temporary file renamed over it: never half written)."""
        data: dict[str, Any] = {}
        if self.proxies:
            data["proxies"] = [proxy_to_v1(p) for p in self.proxies.values()]
        if self.visitors:
            data["visitors"] = [visitor_to_v1(v) for v in self.visitors.values()]
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".store-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
