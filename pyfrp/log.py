"""Logging in frp's shape (pkg/util/log, fatedier/golib log).

``2026-11-28 20:39:23.084 [I] [server/control.py:120] [runid] [proxy] text``.

Operators grep frp logs for lines such as ``[ssh] start proxy success``; the same texts appear
here, with the same level letters and bracketed prefixes. ``log.to`` is ``console`` (stdout,
coloured like frp's console writer, but only when stdout is a terminal) or a file, which is
rotated daily the way golib's RotateFileWriter does it: at the first record of a new day the
file is renamed to ``name.YYYYMMDD-000000.ext`` (the new day's midnight) and a fresh one is
started; backups older than ``log.maxDays`` days are deleted.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, MutableMapping
from datetime import datetime, time, timedelta
from time import sleep
from typing import Any, TextIO

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LETTERS = {"TRACE": "T", "DEBUG": "D", "INFO": "I", "WARNING": "W", "ERROR": "E", "CRITICAL": "E"}
# golib log/output_console.go brushes
_COLORS = {"T": "", "D": "\x1b[1;36m", "I": "\x1b[1;34m", "W": "\x1b[1;33m", "E": "\x1b[1;31m"}
LEVELS = {
    "trace": TRACE,
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
        if self.color and _COLORS[letter]:
            return f"{_COLORS[letter]}{line}\x1b[0m"
        return line


_BACKUP_TIME = "%Y%m%d-%H%M%S"  # golib backupTimeFormat "20060102-150405"


def _same_file(f: TextIO, path: str) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


class DailyFileHandler(logging.Handler):
    """Appends to ``path``; on the first record of a new day, rotates as frp does.

    ``now`` is injectable so tests can cross midnight without waiting for one.
    """

    def __init__(
        self, path: str, max_days: int = 3, now: Callable[[], datetime] = datetime.now
    ) -> None:
        super().__init__()
        self.path = os.path.abspath(path)
        self.max_days = max_days
        self._now = now
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._file: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._day = now().date()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            now = self._now()
            if now.date() != self._day:
                self.rotate(now)
            self._file.write(msg + "\n")
            self._file.flush()
        except Exception:
            self.handleError(record)

    def rotate(self, now: datetime) -> None:
        """Rename the current file after ``now``'s midnight and start a new one.

        pyfrps's workers all write to one file and each rotates at its first record of the
        day: the first one moves the file (a hard link that fails if the backup exists, then an
        unlink: never over a backup), the others find the backup there and only reopen."""
        self._file.close()
        stem, ext = os.path.splitext(self.path)
        backup = f"{stem}.{datetime.combine(now.date(), time()).strftime(_BACKUP_TIME)}{ext}"
        try:
            os.link(self.path, backup)
        except FileExistsError:
            pass  # another process rotated first
        except FileNotFoundError:
            pass  # nothing written yet
        except OSError:  # a filesystem without hard links: one process, as before
            os.replace(self.path, backup)
        else:
            os.unlink(self.path)
        for attempt in range(100):
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            # the old file again, if the rotating process was between its link and its unlink
            if attempt == 99 or not _same_file(self._file, backup):
                break
            self._file.close()
            sleep(0.001)
        self._day = now.date()
        self._clear(now)

    def backups(self) -> list[tuple[datetime, str]]:
        """(time, path) of each rotated file of this log, oldest first."""
        directory, name = os.path.split(self.path)
        stem, ext = os.path.splitext(name)
        rx = re.compile(re.escape(stem) + r"\.(\d{8}-\d{6})" + re.escape(ext) + "$")
        out = []
        for entry in os.listdir(directory):
            m = rx.match(entry)
            if m:
                try:
                    t = datetime.strptime(m.group(1), _BACKUP_TIME)
                except ValueError:
                    continue
                out.append((t, os.path.join(directory, entry)))
        return sorted(out)

    def _clear(self, now: datetime) -> None:
        if self.max_days <= 0:
            return
        cutoff = now - timedelta(days=self.max_days) + timedelta(milliseconds=5)
        for t, path in self.backups():
            if t < cutoff:
                try:
                    os.remove(path)
                except OSError:
                    pass

    def close(self) -> None:
        self.acquire()
        try:
            self._file.close()
        finally:
            self.release()
        super().close()


_installed: logging.Handler | None = None


def setup_logging(
    to: str = "console", level: str = "info", max_days: int = 3, disable_color: bool = False
) -> None:
    """Configure the root logger like frp's InitLogger(log.to, log.level, log.maxDays, ...).

    Raises OSError when the log file cannot be opened.
    """
    handler: logging.Handler
    if to in ("", "console"):
        handler = logging.StreamHandler(sys.stdout)
        color = not disable_color and sys.stdout.isatty()
    else:
        handler = DailyFileHandler(to, max_days)
        color = False
    handler.setFormatter(FrpFormatter(color))
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        _installed.close()
    _installed = handler
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))


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
