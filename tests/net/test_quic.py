"""QUIC streams as asyncio Transports (pyfrp.net.quic), on two real UDP sockets on loopback, on
asyncio's loop and on uvloop: what xtcp's splice needs of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

from pyfrp.net import quic
from pyfrp.net.splice import HoldProtocol, splice
from tests.net import test_mux
from tests.net.test_mux import MB, Peer, Run, attach, sha, until, write_politely

run = test_mux.run  # the same both-loops fixture


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


class Pair:
    def __init__(self) -> None:
        self.accepted: asyncio.Queue[tuple[quic.QuicStream, Peer]] = asyncio.Queue()
        self.peer_kw: dict[str, bool] = {}
        self.dialer: quic.QuicTunnel | None = None
        self.listener: quic.QuicTunnel | None = None

    def on_stream(self, stream: quic.QuicStream) -> None:
        self.accepted.put_nowait((stream, attach(stream, Peer(**self.peer_kw))))

    def open(self, **kw: bool) -> tuple[quic.QuicStream, Peer]:
        assert self.dialer is not None
        stream = self.dialer.open_stream()
        return stream, attach(stream, Peer(**kw))


@contextlib.asynccontextmanager
async def tunnel_pair(idle_timeout: float = 30) -> AsyncIterator[Pair]:
    pair = Pair()
    a, b = udp(), udp()
    accepting = asyncio.ensure_future(quic.accept(b, pair.on_stream, idle_timeout=idle_timeout))
    pair.dialer = await quic.dial(a, b.getsockname(), idle_timeout=idle_timeout)
    pair.listener, close_listener = await accepting
    try:
        yield pair
    finally:
        pair.dialer.close_tunnel()
        pair.listener.close_tunnel()
        close_listener()


def test_bytes_both_ways_through_a_splice(run: Run) -> None:
    """A QUIC stream spliced to a TCP echo: 8 MiB there and back, byte for byte."""
    data = os.urandom(8 * MB)

    async def main() -> None:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while chunk := await r.read(65536):
                w.write(chunk)
                await w.drain()
            w.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with tunnel_pair() as pair:
            s, p = pair.open()
            s.write(b"x")  # the peer learns of a stream with its first bytes
            remote, rpeer = await pair.accepted.get()
            first = await rpeer.received(1)
            remote.pause_reading()
            local, lheld = await asyncio.get_running_loop().create_connection(
                HoldProtocol, "127.0.0.1", port
            )
            joined = asyncio.ensure_future(
                splice(remote, local, a_pending=first, b_pending=lheld.take())
            )
            await write_politely(s, p, data)
            got = await p.received(len(data) + 1)
            assert sha(got) == sha(b"x" + data)
            s.close()
            await joined
        server.close()

    run(main)


def test_streams_first_heard_of_out_of_order_all_arrive(run: Run) -> None:
    """A later stream's first bytes may come before an earlier one's (quic-go interleaves
    them): neither is taken for an old, finished stream."""

    async def main() -> None:
        async with tunnel_pair() as pair:
            streams = [pair.open() for _ in range(4)]
            for i in (3, 1, 2, 0):
                streams[i][0].write(b"%d" % i)
            got = sorted(
                [bytes(await (await pair.accepted.get())[1].received(1)) for _ in range(4)]
            )
            assert got == [b"0", b"1", b"2", b"3"]

    run(main)


def test_close_flushes_then_the_peer_sees_eof(run: Run) -> None:
    data = os.urandom(2 * MB)

    async def main() -> None:
        async with tunnel_pair() as pair:
            s, p = pair.open()
            s.write(data)
            s.close()
            assert s.is_closing()
            assert await p.lost is None
            _, rpeer = await pair.accepted.get()
            await rpeer.lost
            assert sha(rpeer.data) == sha(data)
            assert rpeer.events == ["data", "eof", "lost"]

    run(main)


def test_write_eof_keeps_reading(run: Run) -> None:
    async def main() -> None:
        async with tunnel_pair() as pair:
            pair.peer_kw = {"keep_open": True}
            s, p = pair.open(keep_open=True)
            s.write(b"request")
            s.write_eof()
            remote, rpeer = await pair.accepted.get()
            await rpeer.eof
            assert rpeer.data == b"request"
            remote.write(b"response")
            remote.write_eof()
            await p.lost
            assert p.data == b"response"

    run(main)


def test_abort_resets_the_peer_and_the_tunnel_goes_on(run: Run) -> None:
    async def main() -> None:
        async with tunnel_pair() as pair:
            s, _ = pair.open()
            s.write(b"x")
            remote, rpeer = await pair.accepted.get()
            await rpeer.received(1)
            s.abort()
            exc = await rpeer.lost
            assert isinstance(exc, ConnectionResetError)
            assert "eof" not in rpeer.events
            remote.write(b"into the void")  # no error for writing to a reset stream
            s2, _ = pair.open()
            s2.write(b"next")
            _, rpeer2 = await pair.accepted.get()
            assert await rpeer2.received(4) == b"next"

    run(main)


def test_paused_reader_holds_bytes_until_resumed(run: Run) -> None:
    async def main() -> None:
        async with tunnel_pair() as pair:
            pair.peer_kw = {"paused": True}
            s, _ = pair.open()
            s.write(b"held back")
            s.write_eof()
            remote, rpeer = await pair.accepted.get()
            await asyncio.sleep(0.05)
            assert rpeer.data == b""
            assert not rpeer.eof.done()
            remote.resume_reading()
            await rpeer.eof
            assert rpeer.data == b"held back"

    run(main)


def test_writer_pauses_above_high_water_and_resumes_when_acked(run: Run) -> None:
    async def main() -> None:
        async with tunnel_pair() as pair:
            s, p = pair.open()
            s.set_write_buffer_limits(high=256 * 1024)
            s.write(bytes(1 * MB))
            assert s.get_write_buffer_size() > 256 * 1024
            assert p.pauses == 1
            await p.writable.wait()
            assert p.resumes == 1
            _, rpeer = await pair.accepted.get()
            await rpeer.received(MB)

    run(main)


def test_tunnel_loss_reaches_every_stream(run: Run) -> None:
    async def main() -> None:
        async with tunnel_pair() as pair:
            streams = [pair.open() for _ in range(3)]
            for s, _ in streams:
                s.write(b"hi")
            remotes = [await pair.accepted.get() for _ in range(3)]
            assert pair.listener is not None
            pair.listener.close_tunnel()
            for _, peer in streams:
                assert isinstance(await peer.lost, ConnectionResetError)
            for _, peer in remotes:
                assert isinstance(await peer.lost, ConnectionResetError)
            assert pair.dialer is not None
            await until(pair.dialer.terminated.is_set)

    run(main)


def test_idle_tunnel_outlives_the_idle_timeout(run: Run) -> None:
    """Both ends ping (frp's keepalivePeriod), so a tunnel nobody uses stays up."""

    async def main() -> None:
        async with tunnel_pair(idle_timeout=0.6) as pair:
            await asyncio.sleep(2.0)
            assert pair.dialer is not None
            assert not pair.dialer.terminated.is_set()
            s, _ = pair.open()
            s.write(b"after a quiet while")
            _, rpeer = await pair.accepted.get()
            assert await rpeer.received(19) == b"after a quiet while"

    run(main)
