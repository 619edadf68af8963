"""Logging in frp's shape.

``2026-11-28 20:39:23.084 [I] [server/control.py:120] [runid] [proxy] text``.

Operators grep frp logs for lines such as ``[ssh] start proxy success``; the same texts appear
here, with the same level letters and bracketed prefixes.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

_LETTERS = {"DEBUG": "D", "INFO": "I", "WARNING": "W", "ERROR": "E", "CRITICAL": "E"}
_COLORS = {"D": "\x1b[0;34m", "I": "\x1b[0;32m", "W": "\x1b[0;33m", "E": "\x1b[0;31m"}
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_PKG_ROOT = os.path.dirname(os.path.abspath(__file__))


class FrpFormatter(logging.Formatter):
    def __init__(self, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        letter = _LETTERS.get(record.levelname, "I")
        when = self.formatTime(record, "%Y-%m-%d %H:%M:%S") + f".{int(record.msecs):03d}"
        src = (
            os.path.relpath(record.pathname, _PKG_ROOT)
            if record.pathname.startswith(_PKG_ROOT)
            else record.filename
        )
        line = f"{when} [{letter}] [{src}:{record.lineno}] {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if self.color:
            return f"{_COLORS[letter]}{line}\x1b[0m"
        return line


def setup_logging(to: str = "console", level: str = "info", disable_color: bool = False) -> None:
    """Configure the root logger like frp's log.to / log.level."""
    handler: logging.Handler
    if to in ("", "console"):
        handler = logging.StreamHandler(sys.stdout)
        color = not disable_color and sys.stdout.isatty()
    else:
        handler = logging.FileHandler(to, encoding="utf-8")
        color = False
    handler.setFormatter(FrpFormatter(color))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    lvl = _LEVELS.get(level.lower(), logging.INFO)
    root.setLevel(lvl)


class PrefixLogger(logging.LoggerAdapter[logging.Logger]):
    """Prepends ``[a] [b] `` prefixes, as frp's xlog does with run ids and proxy names."""

    def __init__(self, logger: logging.Logger, *prefixes: str) -> None:
        super().__init__(logger, {})
        self.prefix = "".join(f"[{p}] " for p in prefixes if p)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs.setdefault("stacklevel", 1)
        return self.prefix + str(msg), kwargs

    def child(self, *prefixes: str) -> PrefixLogger:
        new = PrefixLogger(self.logger)
        new.prefix = self.prefix + "".join(f"[{p}] " for p in prefixes if p)
        return new
