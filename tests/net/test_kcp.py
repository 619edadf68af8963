"""KCP sessions as asyncio Transports (pyfrp.net.kcp) on real UDP sockets on loopback, on
asyncio's loop and on uvloop: integrity, loss (retransmission and FEC recovery), flow control."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pyfrp.net import kcp
from pyfrp.net import tls as tls_mod
from pyfrp.net.mux import MuxSession
from pyfrp.net.splice import HoldProtocol
from pyfrp.net.tlslayer import TlsLayer
from tests.net import test_mux
from tests.net.test_mux import MB, Peer, Run, attach, sha, until, write_politely

run = test_mux.run  # the same both-loops fixture


_OPEN: list[kcp.KcpServer | asyncio.Transport] = []


async def serve(host: str, port: int, factory: Callable[[], asyncio.BaseProtocol]) -> kcp.KcpServer:
    server = await kcp.kcp_serve(host, port, factory)
    _OPEN.append(server)
    return server


async def dial(
    host: str, port: int, factory: Callable[[], asyncio.BaseProtocol]
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    transport, protocol = await kcp.kcp_connect(host, port, factory)
    _OPEN.append(transport)
    return transport, protocol


def closing(main: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``main``, then every endpoint it made closed, even when it fails: uvloop's close() would
    wait forever on a UDP socket still open."""

    async def wrapped() -> None:
        try:
            await main()
        finally:
            while _OPEN:
                _OPEN.pop().close()

    return wrapped


class Accepted:
    def __init__(self, **kw: bool) -> None:
        self.peers: list[Peer] = []
        self.kw = kw

    def __call__(self) -> Peer:
        peer = Peer(**self.kw)
        self.peers.append(peer)
        return peer


def lossy(monkeypatch: pytest.MonkeyPatch, rate: float, seed: int = 3) -> None:
    """Drop ``rate`` of the datagrams every KCP endpoint receives."""
    rng = random.Random(seed)
    for cls in (kcp.KcpServer, kcp._DialEndpoint):
        real: Callable[..., None] = cls.datagram_received

        def dropping(self: Any, data: bytes, addr: Any, real: Callable[..., None] = real) -> None:
            if rng.random() >= rate:
                real(self, data, addr)

        monkeypatch.setattr(cls, "datagram_received", dropping)


async def pair(**server_kw: bool) -> tuple[kcp.KcpServer, Accepted, kcp.KcpSession, Peer]:
    accepted = Accepted(**server_kw)
    server = await serve("127.0.0.1", 0, accepted)
    transport, protocol = await dial("127.0.0.1", server.port, Peer)
    assert isinstance(transport, kcp.KcpSession)
    assert isinstance(protocol, Peer)
    return server, accepted, transport, protocol


async def one_session(server: kcp.KcpServer, accepted: Accepted) -> tuple[kcp.KcpSession, Peer]:
    await until(lambda: bool(accepted.peers))
    return next(iter(server.sessions.values())), accepted.peers[0]


def test_bytes_both_ways_intact(run: Run) -> None:
    up, down = os.urandom(3 * MB), os.urandom(3 * MB)

    async def main() -> None:
        server, accepted, client, cpeer = await pair()
        await write_politely(client, cpeer, up)
        session, speer = await one_session(server, accepted)
        assert session.get_extra_info("peername") == client.get_extra_info("sockname")
        await write_politely(session, speer, down)
        assert sha(await speer.received(len(up))) == sha(up)
        assert sha(await cpeer.received(len(down))) == sha(down)
        client.close()
        server.close()
        await server.wait_closed()

    run(closing(main))


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_lost_datagrams_are_recovered(
    run: Run, monkeypatch: pytest.MonkeyPatch, rate: float
) -> None:
    """Datagrams dropped both ways: retransmission and FEC parity make up for them."""
    lossy(monkeypatch, rate)
    data = os.urandom(2 * MB)

    async def main() -> None:
        server, accepted, client, cpeer = await pair()
        await write_politely(client, cpeer, data)
        session, speer = await one_session(server, accepted)
        assert sha(await speer.received(len(data))) == sha(data)
        assert session._dec.recovered > 0  # some rebuilt from parity
        assert client.kcp.retransmits > 0  # some sent again
        client.close()
        server.close()

    run(closing(main))


def test_paused_reader_bounds_memory(run: Run) -> None:
    """A reader that stops: the receive queue fills to its window, the sender's window closes,
    the writer is paused, and nothing grows; reading again gets every byte."""
    data = os.urandom(16 * MB)

    async def main() -> None:
        server, accepted, client, cpeer = await pair(paused=True)
        writing = asyncio.ensure_future(write_politely(client, cpeer, data))
        session, speer = await one_session(server, accepted)
        await until(lambda: cpeer.pauses > 0 and client.kcp.rmt_wnd == 0)
        await asyncio.sleep(0.3)
        assert not writing.done()
        assert speer.total == 0
        k = session.kcp
        assert len(k.rcv_queue) <= k.rcv_wnd
        assert len(k.rcv_buf) <= k.rcv_wnd
        queued = client.kcp.wait_snd()
        assert queued <= client.kcp.snd_wnd * 2 + 64  # a window in flight, one queued, a write
        speer.transport.resume_reading()  # type: ignore[union-attr]
        await writing
        assert sha(await speer.received(len(data))) == sha(data)
        client.close()
        server.close()

    run(closing(main))


def test_close_forgets_the_session_at_once(run: Run) -> None:
    """As kcp-go: close() flushes once and forgets; the peer hears nothing more."""

    async def main() -> None:
        server, accepted, client, cpeer = await pair()
        client.write(b"last words")
        session, speer = await one_session(server, accepted)
        assert await speer.received(10) == b"last words"
        await until(lambda: client.kcp.wait_snd() == 0)
        client.close()
        assert client.is_closing()
        assert await cpeer.lost is None
        client.write(b"ignored")
        session.write(b"into the void")
        await asyncio.sleep(0.1)
        assert cpeer.total == 0
        assert not speer.lost.done()  # no close on the wire: frp's heartbeats notice
        server.close()
        assert await speer.lost is None

    run(closing(main))


def test_sessions_are_told_apart_by_address_and_conversation(run: Run) -> None:
    async def main() -> None:
        accepted = Accepted()
        server = await serve("127.0.0.1", 0, accepted)
        ends = [await dial("127.0.0.1", server.port, Peer) for _ in range(3)]
        for i, (t, _) in enumerate(ends):
            t.write(b"hello %d" % i)
        await until(lambda: len(accepted.peers) == 3 and all(p.total == 7 for p in accepted.peers))
        assert sorted(bytes(p.data) for p in accepted.peers) == [b"hello 0", b"hello 1", b"hello 2"]
        for session in server.sessions.values():
            session.write(b"bye %d" % session.conv)
        for t, p in ends:
            assert isinstance(t, kcp.KcpSession)
            expect = b"bye %d" % t.conv
            assert isinstance(p, Peer)
            assert await p.received(len(expect)) == expect
            t.close()
        server.close()

    run(closing(main))


def test_unreachable_server_fails_the_session(run: Run) -> None:
    """ICMP port unreachable for the dialing socket ends the session with an error."""

    async def main() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        transport, protocol = await dial("127.0.0.1", port, Peer)
        assert isinstance(protocol, Peer)
        transport.write(b"anyone?")
        assert isinstance(await protocol.lost, ConnectionRefusedError)

    run(closing(main))


def test_garbage_datagrams_are_ignored(run: Run) -> None:
    async def main() -> None:
        server, accepted, client, _ = await pair()
        client.write(b"first")
        _, speer = await one_session(server, accepted)
        await speer.received(5)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", server.port))
        s.send(b"\xff" * 3)  # too short to be anything: no session
        s.send(b"\x01" * 40)  # a bare KCP header with a bad command: a session that ignores it
        s.close()
        client.write(b" second")
        assert await speer.received(12) == b"first second"
        client.close()
        server.close()

    run(closing(main))


def test_yamux_over_tls_over_kcp(run: Run) -> None:
    """frp's stack on a KCP session: TLS (as a layer), then yamux; 2 MiB each way on a stream."""
    data = os.urandom(2 * MB)

    async def main() -> None:
        servers: list[MuxSession] = []

        def accept() -> asyncio.BaseProtocol:
            return HoldProtocol()

        server = await serve("127.0.0.1", 0, accept)
        lower, _ = await dial("127.0.0.1", server.port, HoldProtocol)
        client_tls = TlsLayer(lower, tls_mod.client_context(), server_side=False)
        lower.set_protocol(client_tls)
        client = MuxSession(client=True, keepalive_interval=0)
        client_tls.set_protocol(client)
        client.connection_made(client_tls)
        client_tls.start()
        lower.resume_reading()  # HoldProtocol paused it
        stream = client.open_stream()
        speer_of_stream: list[Peer] = []
        cpeer = attach(stream, Peer())
        stream.write(data)

        await until(lambda: bool(server.sessions))
        session = next(iter(server.sessions.values()))
        held = session.get_protocol()
        assert isinstance(held, HoldProtocol)
        server_tls = TlsLayer(session, tls_mod.server_context(), server_side=True)
        session.set_protocol(server_tls)
        mux = MuxSession(client=False, keepalive_interval=0)
        mux.on_stream = lambda s: speer_of_stream.append(attach(s, Peer()))
        servers.append(mux)
        server_tls.set_protocol(mux)
        mux.connection_made(server_tls)
        server_tls.start(held.take())
        session.resume_reading()
        await until(lambda: bool(speer_of_stream))
        speer = speer_of_stream[0]
        assert sha(await speer.received(len(data))) == sha(data)
        assert speer.transport is not None
        speer.transport.write(data[::-1])
        assert sha(await cpeer.received(len(data))) == sha(data[::-1])
        client.close()
        mux.close()
        server.close()

    run(closing(main))
