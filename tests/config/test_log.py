"""log.to / log.level / log.maxDays: console or file, daily rotation, colour only on a terminal."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from pyfrp.log import DailyFileHandler, FrpFormatter, setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    import pyfrp.log

    if pyfrp.log._installed is not None:
        pyfrp.log._installed.close()
        pyfrp.log._installed = None
    root.handlers[:] = handlers
    root.setLevel(level)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("pyfrp", logging.INFO, __file__, 1, msg, None, None)


def test_daily_rotation_names_and_keeps_max_days(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 28, 23, 59))
    path = tmp_path / "logs" / "frps.log"
    h = DailyFileHandler(str(path), max_days=2, now=clock)
    h.setFormatter(logging.Formatter("%(message)s"))
    h.emit(_record("day 28"))
    clock.t = datetime(2026, 11, 29, 0, 0, 1)
    h.emit(_record("day 29"))
    # golib's backup name: the new day's midnight, in the file's stem, before the extension
    assert (tmp_path / "logs" / "frps.20261129-000000.log").read_text() == "day 28\n"
    assert path.read_text() == "day 29\n"
    for when, text in [
        (datetime(2026, 11, 30, 12), "day 30"),
        (datetime(2026, 12, 1, 12), "day 1"),
        (datetime(2026, 12, 2, 12), "day 2"),
    ]:
        clock.t = when
        h.emit(_record(text))
    h.close()
    backups = sorted(p.name for p in (tmp_path / "logs").iterdir() if p.name != "frps.log")
    # now is Dec 2 12:00; maxDays=2 keeps backups stamped after Nov 30 12:00
    assert backups == ["frps.20261201-000000.log", "frps.20261202-000000.log"]
    assert path.read_text() == "day 2\n"


def test_workers_sharing_a_log_rotate_it_once(tmp_path: Path) -> None:
    """pyfrps's workers each rotate the one file at their first record of a day: yesterday's
    lines of all of them end in one backup, today's in the new file, none lost."""
    clock = Clock(datetime(2026, 11, 28, 23, 59))
    path = tmp_path / "frps.log"
    workers = [DailyFileHandler(str(path), now=clock) for _ in range(3)]
    for n, h in enumerate(workers):
        h.setFormatter(logging.Formatter("%(message)s"))
        h.emit(_record(f"w{n} day 28"))
    clock.t = datetime(2026, 11, 29, 0, 0, 1)
    for n, h in enumerate(workers):
        h.emit(_record(f"w{n} day 29"))
    for h in workers:
        h.emit(_record("later"))
        h.close()
    backup = tmp_path / "frps.20261129-000000.log"
    assert backup.read_text().splitlines() == [f"w{n} day 28" for n in range(3)]
    assert path.read_text().splitlines() == [f"w{n} day 29" for n in range(3)] + ["later"] * 3


def test_existing_log_file_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "frpc.log"
    path.write_text("old\n")
    h = DailyFileHandler(str(path))
    h.setFormatter(logging.Formatter("%(message)s"))
    h.emit(_record("new"))
    h.close()
    assert path.read_text() == "old\nnew\n"


def test_setup_logging_to_a_file_with_level(tmp_path: Path, restore_root: None) -> None:
    path = tmp_path / "frps.log"
    setup_logging(str(path), "warn", 3, False)
    logging.getLogger("pyfrp.test").info("hidden")
    logging.getLogger("pyfrp.test").warning("shown %d", 1)
    text = path.read_text()
    assert "hidden" not in text
    assert "[W] " in text
    assert text.rstrip().endswith("shown 1")
    assert "\x1b[" not in text


def test_setup_logging_bad_file_raises(tmp_path: Path, restore_root: None) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(FileExistsError):  # os.makedirs on a file
        setup_logging(str(tmp_path / "f" / "x.log"))


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("tty", "disable", "coloured"), [(True, False, True), (True, True, False),
                                                          (False, False, False)])  # fmt: skip
def test_colour_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, restore_root: None, tty: bool, disable: bool, coloured: bool
) -> None:
    out = _Tty() if tty else io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    setup_logging("console", "info", 3, disable)
    logging.getLogger("pyfrp.test").warning("hello")
    assert ("\x1b[1;33m" in out.getvalue()) is coloured
    assert "hello" in out.getvalue()


def test_trace_records_have_their_letter() -> None:
    rec = logging.LogRecord("pyfrp", 5, __file__, 1, "x", None, None)
    assert "[T]" in FrpFormatter().format(rec)
    assert os.path.basename(__file__) in FrpFormatter().format(rec)
