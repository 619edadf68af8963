from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Pyfrp, echo_server


@pytest.fixture
def pyfrp(tmp_path: Path) -> Iterator[Pyfrp]:
    h = Pyfrp(tmp_path)
    yield h
    h.stop_all()


@pytest.fixture
def echo() -> Iterator[int]:
    with echo_server() as port:
        yield port


def peers_bin() -> Path | None:
    root = Path(os.environ.get("FRP_PEERS_DIR") or Path.home() / ".cache" / "frp-peers")
    b = root / "bin"
    ok = all(os.access(b / n, os.X_OK) for n in ("frps-go", "frpc-go", "frpc-go-new"))
    return b if ok else None


@pytest.fixture(scope="session")
def peers() -> Path:
    b = peers_bin()
    if b is None:
        pytest.skip("real frp peers absent: run ../shared/peers/setup")
    return b
