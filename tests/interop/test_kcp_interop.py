"""pyfrp's KCP (pyfrp.net.kcp) against the real kcp-go v5.6.13 that frp links, with frp's
settings on both ends: a small Go peer (tests/interop/kcp_peer.go.txt) is built in a temporary
directory; the tests skip when Go or the module is not available. Datagrams are dropped on the
pyfrp side so that each end must rebuild some from the other's Reed-Solomon parity."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyfrp.net import kcp
from tests.net.test_mux import MB, Peer, sha, until, write_politely

pytestmark = pytest.mark.interop

KCP_GO = "github.com/xtaci/kcp-go/v5@v5.6.13"


@pytest.fixture(scope="module")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain")
    src = tmp_path_factory.mktemp("kcp_peer")
    (src / "main.go").write_text((Path(__file__).parent / "kcp_peer.go.txt").read_text())
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    steps = [[go, "mod", "init", "kcppeer"], [go, "get", KCP_GO], [go, "build", "-o", "peer", "."]]
    for cmd in steps:
        done = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"cannot build the kcp-go peer: {done.stderr.strip()[-300:]}")
    return src / "peer"


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()  # also closes the pipes


async def _line(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    line = await asyncio.to_thread(p.stdout.readline)
    assert line, p.stderr.read() if p.stderr else "peer exited"
    return line.strip()


def _drop_sends(session: kcp.KcpSession, rate: float) -> None:
    rng = random.Random(5)
    real = session._sendto

    def sendto(data: bytes) -> None:
        if rng.random() >= rate:
            real(data)

    session._sendto = sendto


def test_pyfrp_dials_kcp_go(go_peer: Path, spawn: Callable[..., subprocess.Popen[str]]) -> None:
    """pyfrp (frpc's settings) sends 4 MiB to a kcp-go listener (frps's), losing 5 % on the way:
    the data arrives intact and kcp-go rebuilt some of it from pyfrp's parity."""
    data = os.urandom(4 * MB)
    sink = spawn(str(go_peer), "sink", str(len(data)))

    async def main() -> None:
        port = int(await _line(sink))
        transport, protocol = await kcp.kcp_connect("127.0.0.1", port, Peer)
        assert isinstance(transport, kcp.KcpSession)
        assert isinstance(protocol, Peer)
        _drop_sends(transport, 0.05)
        await write_politely(transport, protocol, data)
        report = (await asyncio.wait_for(_line(sink), 60)).split()
        transport.close()
        assert report[1] == sha(data)
        assert int(report[5]) > 0  # FEC recoveries on the Go side

    asyncio.run(main())


def test_kcp_go_dials_pyfrp(
    go_peer: Path, spawn: Callable[..., subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kcp-go (frpc's settings) sends 4 MiB to pyfrp's listener, which loses 5 % of what it
    receives: the data arrives intact, partly rebuilt from kcp-go's parity."""
    rng = random.Random(9)
    real: Callable[..., None] = kcp.KcpServer.datagram_received

    def dropping(self: Any, data: bytes, addr: Any) -> None:
        if rng.random() >= 0.05:
            real(self, data, addr)

    monkeypatch.setattr(kcp.KcpServer, "datagram_received", dropping)
    n = 4 * MB

    async def main() -> None:
        peers: list[Peer] = []

        def accept() -> Peer:
            peers.append(Peer())
            return peers[-1]

        server = await kcp.kcp_serve("127.0.0.1", 0, accept)
        source = spawn(str(go_peer), "source", f"127.0.0.1:{server.port}", str(n))
        expect = (await _line(source)).split()[1]
        await until(lambda: bool(peers))
        got = await asyncio.wait_for(peers[0].received(n), 60)
        assert hashlib.sha256(got).hexdigest() == expect
        session = next(iter(server.sessions.values()))
        assert session._dec.recovered > 0
        server.close()

    asyncio.run(main())


def test_echo_through_kcp_go(go_peer: Path, spawn: Callable[..., subprocess.Popen[str]]) -> None:
    """Both directions at once: 2 MiB through a kcp-go echo and back."""
    data = os.urandom(2 * MB)
    echo = spawn(str(go_peer), "echo")

    async def main() -> None:
        port = int(await _line(echo))
        transport, protocol = await kcp.kcp_connect("127.0.0.1", port, Peer)
        assert isinstance(protocol, Peer)
        await write_politely(transport, protocol, data)
        got = await asyncio.wait_for(protocol.received(len(data)), 60)
        assert sha(got) == sha(data)
        transport.close()

    asyncio.run(main())
