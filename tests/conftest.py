from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Proc, Pyfrp, echo_server


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


def native_bin() -> Path | None:
    """Native Go frp 0.70.1 built by ../shared/peers/native (frps, frpc)."""
    root = Path(os.environ.get("FRP_NATIVE_DIR") or Path.home() / ".cache" / "frp-native")
    b = root / "bin"
    ok = all(os.access(b / n, os.X_OK) for n in ("frps", "frpc"))
    return b if ok else None


# The Go peers by the names the interop tests use: the emulated older releases of
# ../shared/peers/setup and native 0.70.1 (frps-native, frpc-native).
NATIVE_PEERS = {"frps-native": "frps", "frpc-native": "frpc"}


def peer_exe(kind: str) -> Path:
    """The executable of Go peer ``kind``; skips the test when that peer is not built."""
    if kind in NATIVE_PEERS:
        b = native_bin()
        if b is None:
            pytest.skip("native Go frp 0.70.1 absent: run ../shared/peers/native")
        return b / NATIVE_PEERS[kind]
    b = peers_bin()
    if b is None:
        pytest.skip("real frp peers absent: run ../shared/peers/setup")
    return b / kind


# (server, proxy client, visitor client): pyfrp or native Go each, every mix but all-Go.
TRIPLES = [
    (s, p, v)
    for s in ("pyfrps", "frps-native")
    for p in ("pyfrpc", "frpc-native")
    for v in ("pyfrpc", "frpc-native")
    if (s, p, v) != ("frps-native", "frpc-native", "frpc-native")
]


def start_any(
    pyfrp: Pyfrp, tmp: Path, kind: str, config: str, tag: str = "", suffix: str = ".ini"
) -> Proc:
    """Start pyfrps, pyfrpc or the Go peer ``kind`` with ``config`` (INI, or as ``suffix``)."""
    if kind == "pyfrps":
        return pyfrp.frps(config, suffix=suffix)
    if kind == "pyfrpc":
        return pyfrp.frpc(config, suffix=suffix)
    name = f"{kind}-{tag}" if tag else kind
    cfg = tmp / f"{name}{suffix}"
    cfg.write_text(config)
    return Proc(name, [peer_exe(kind), "-c", cfg], tmp / f"{name}.log", tmp)


@pytest.fixture(scope="session")
def peers() -> Path:
    b = peers_bin()
    if b is None:
        pytest.skip("real frp peers absent: run ../shared/peers/setup")
    return b
