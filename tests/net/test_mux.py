"""The yamux asyncio adapter (pyfrp.net.mux) over real sockets, on asyncio's loop and on uvloop.

Two MuxSessions talk over a socketpair; hostile or unresponsive peers are a raw socket. Every
test runs on both loops, and fails if anything reaches the loop's exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import pytest

from pyfrp.net import mux, recvbuf
from pyfrp.net import tls as tls_mod
from pyfrp.net.mux import MuxSession, MuxStream
from pyfrp.proto.yamux import FRP_MAX_WINDOW, INITIAL_WINDOW

T = TypeVar("T")
MB = 1 << 20
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:
    import uvloop

    LOOPS["uvloop"] = uvloop.new_event_loop
except ImportError:  # without the speed extra: asyncio's loop only
    pass
Run = Callable[[Callable[[], Awaitable[Any]]], Any]


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    """Run an async test body on the parametrized loop; fail on anything the loop had to report."""
    factory = LOOPS[request.param]

    def runner(main: Callable[[], Awaitable[T]], timeout: float = 15.0) -> T:
        reported: list[dict[str, Any]] = []

        async def guarded() -> T:
            asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
            async with asyncio.timeout(timeout):
                return await main()

        with asyncio.Runner(loop_factory=factory) as r:
            result = r.run(guarded())
        assert not reported, reported
        return result

    return runner


class Peer(asyncio.Protocol):
    """A protocol that records what its transport delivers, in order."""

    def __init__(self, *, paused: bool = False, keep_open: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.total = 0
        self.chunk_types: set[type] = set()
        self.events: list[str] = []
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[Exception | None] = loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.pauses = 0
        self.resumes = 0
        self._paused = paused
        self._keep_open = keep_open
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._paused:
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        assert not self.lost.done(), "data after connection_lost"
        assert not self.eof.done(), "data after eof_received"
        self.chunk_types.add(type(data))
        self.data += data
        self.total += len(data)
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        for n, fut in self._waiters:
            if self.total >= n and not fut.done():
                fut.set_result(None)

    def eof_received(self) -> bool:
        self.events.append("eof")
        self.eof.set_result(None)
        return self._keep_open

    def pause_writing(self) -> None:
        self.pauses += 1
        self.writable.clear()

    def resume_writing(self) -> None:
        self.resumes += 1
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)

    async def received(self, n: int) -> bytes:
        """Wait until ``n`` bytes have arrived in all; return those still in ``data``."""
        if self.total < n:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append((n, fut))
            await fut
        return bytes(self.data)


def attach(transport: asyncio.Transport, peer: Peer) -> Peer:
    transport.set_protocol(peer)
    peer.connection_made(transport)
    return peer


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


async def until(cond: Callable[[], bool]) -> None:
    """Poll for a state no callback announces (the test's overall timeout bounds the wait)."""
    while not cond():  # noqa: ASYNC110
        await asyncio.sleep(0.002)


async def write_politely(transport: asyncio.Transport, peer: Peer, data: bytes) -> None:
    """Write in 64 KiB pieces, waiting whenever the transport asked us to pause."""
    for i in range(0, len(data), 65536):
        await peer.writable.wait()
        transport.write(data[i : i + 65536])


class Pair:
    def __init__(self, client: MuxSession, server: MuxSession) -> None:
        self.client = client
        self.server = server
        self.accepted: asyncio.Queue[tuple[MuxStream, Peer]] = asyncio.Queue()
        self.make_peer: Callable[[], Peer] = Peer

    def on_stream(self, stream: MuxStream) -> None:
        self.accepted.put_nowait((stream, attach(stream, self.make_peer())))

    def open(self, **kw: bool) -> tuple[MuxStream, Peer]:
        stream = self.client.open_stream()
        return stream, attach(stream, Peer(**kw))


@contextlib.asynccontextmanager
async def session_pair(keepalive: float = 0, *, tls: bool = False) -> AsyncIterator[Pair]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    client = MuxSession(client=True, keepalive_interval=keepalive)
    server = MuxSession(client=False, keepalive_interval=keepalive)
    pair = Pair(client, server)
    server.on_stream = pair.on_stream
    if tls:
        await asyncio.gather(
            loop.create_connection(
                lambda: client, sock=a, ssl=tls_mod.client_context(), server_hostname=""
            ),
            loop.connect_accepted_socket(lambda: server, b, ssl=tls_mod.server_context()),
        )
    else:
        await loop.create_connection(lambda: client, sock=a)
        await loop.create_connection(lambda: server, sock=b)
    try:
        yield pair
    finally:
        client.close()
        server.close()
        await asyncio.gather(client.closed, server.closed)


@contextlib.asynccontextmanager
async def raw_peer(*, client: bool, **kw: Any) -> AsyncIterator[tuple[MuxSession, socket.socket]]:
    """A MuxSession whose peer is a bare socket the test reads and writes byte by byte."""
    loop = asyncio.get_running_loop()
    a, raw = socket.socketpair()
    raw.setblocking(False)
    session = MuxSession(client=client, keepalive_interval=kw.pop("keepalive_interval", 0), **kw)
    await loop.create_connection(lambda: session, sock=a)
    try:
        yield session, raw
    finally:
        session.close()
        await session.closed
        raw.close()


async def read_until_eof(raw: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while True:
        try:
            chunk = await loop.sock_recv(raw, 65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


async def read_exactly(raw: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while len(out) < n:
        chunk = await loop.sock_recv(raw, n - len(out))
        assert chunk, f"EOF after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


def hdr(type_: int, flags: int, stream_id: int, length: int, version: int = 0) -> bytes:
    return struct.pack(">BBHII", version, type_, flags, stream_id, length)


SYN1 = hdr(1, 1, 1, FRP_MAX_WINDOW - INITIAL_WINDOW)
ACK1 = hdr(1, 2, 1, FRP_MAX_WINDOW - INITIAL_WINDOW)
GO_AWAY_PROTOCOL_ERROR = hdr(3, 0, 0, 1)


# --- data ---------------------------------------------------------------------------------------


def test_bytes_both_ways_beyond_the_window(run: Run) -> None:
    """8 MiB each way on two streams at once: more than the 6 MiB window, so credit must flow."""
    payloads = [os.urandom(8 * MB) for _ in range(4)]

    async def main() -> None:
        async with session_pair() as pair:
            (s1, p1), (s2, p2) = pair.open(), pair.open()
            (r1, q1), (r2, q2) = await pair.accepted.get(), await pair.accepted.get()
            assert (s1.stream_id, s2.stream_id) == (1, 3)
            assert (r1.stream_id, r2.stream_id) == (1, 3)
            s1.write(payloads[0])  # one huge write: the stream buffers it
            r1.write(payloads[1])
            await asyncio.gather(
                write_politely(s2, p2, payloads[2]), write_politely(r2, q2, payloads[3])
            )
            got = await asyncio.gather(
                q1.received(8 * MB), p1.received(8 * MB), q2.received(8 * MB), p2.received(8 * MB)
            )
            assert [sha(g) for g in got] == [sha(p) for p in payloads]
            assert [len(g) for g in got] == [8 * MB] * 4
            assert p1.pauses == p1.resumes == 1  # 8 MiB is over the 256 KiB high-water mark
            for s in (s1, r1, s2, r2):
                assert s.get_write_buffer_size() == 0

    run(main)


def test_paused_stream_does_not_block_others(run: Run) -> None:
    slow_data, fast_data = os.urandom(8 * MB), os.urandom(8 * MB)

    async def main() -> None:
        async with session_pair() as pair:
            pair.make_peer = lambda: Peer(paused=True)
            slow, slow_peer = pair.open()
            slow_remote, slow_remote_peer = await pair.accepted.get()
            pair.make_peer = Peer
            fast, _ = pair.open()
            _, fast_remote_peer = await pair.accepted.get()

            slow.write(slow_data)
            fast.write(fast_data)
            assert sha(await fast_remote_peer.received(8 * MB)) == sha(fast_data)
            # the paused stream got nothing, and its sender framed exactly one window's worth
            await until(lambda: slow.get_write_buffer_size() == 8 * MB - FRP_MAX_WINDOW)
            await asyncio.sleep(0.05)
            assert slow.get_write_buffer_size() == 8 * MB - FRP_MAX_WINDOW
            assert slow_remote_peer.data == b""
            assert (slow_peer.pauses, slow_peer.resumes) == (1, 0)
            assert not pair.server.is_closed
            assert not pair.client.is_closed

            slow_remote.resume_reading()
            assert sha(await slow_remote_peer.received(8 * MB)) == sha(slow_data)
            await slow_peer.writable.wait()
            assert slow.get_write_buffer_size() == 0
            assert (slow_peer.pauses, slow_peer.resumes) == (1, 1)

    run(main)


def test_pause_reading_midway_holds_the_rest(run: Run) -> None:
    data = os.urandom(2 * MB)

    async def main() -> None:
        async with session_pair() as pair:
            s, _ = pair.open()
            remote, rpeer = await pair.accepted.get()
            s.write(data[: MB // 2])
            await rpeer.received(MB // 2)
            remote.pause_reading()
            assert not remote.is_reading()
            s.write(data[MB // 2 :])
            s.close()
            await asyncio.sleep(0.05)
            assert len(rpeer.data) == MB // 2
            assert not rpeer.eof.done()  # the EOF waits behind the held bytes
            remote.resume_reading()
            await rpeer.lost
            assert sha(rpeer.data) == sha(data)
            assert rpeer.events == ["data", "eof", "lost"]

    run(main)


def test_paused_stream_pins_no_more_than_its_window(run: Run) -> None:
    """A peer interleaves 1-byte frames for a paused stream with big frames for a busy one.

    The paused stream may buffer up to its window of payload (here 150 bytes), but nothing like
    the ~30 MB of other streams' data that passed through the same read buffers.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        peers: list[Peer] = []
        async with raw_peer(client=False, on_stream=None) as (session, raw):

            def on_stream(stream: MuxStream) -> None:
                peers.append(attach(stream, Peer(paused=not peers)))

            session.on_stream = on_stream
            await loop.sock_sendall(raw, SYN1 + hdr(1, 1, 3, FRP_MAX_WINDOW - INITIAL_WINDOW))
            await until(lambda: len(peers) == 2)
            big = 200_000
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                for i in range(150):
                    await loop.sock_sendall(raw, hdr(0, 0, 1, 1) + b"x" + hdr(0, 0, 3, big))
                    await loop.sock_sendall(raw, bytes(big))
                    await peers[1].received((i + 1) * big)
                    peers[1].data.clear()
                held = tracemalloc.get_traced_memory()[0] - base
            finally:
                tracemalloc.stop()
            assert peers[0].data == b""
            assert held < 4 * MB, f"{held} bytes held for 150 bytes of paused payload"

    run(main)


def test_stream_out_of_window_does_not_pin_receive_buffers(run: Run) -> None:
    """What a stream cannot send yet is copied out of the receive buffer it was read into, so
    a stream stalled on its window holds its own bytes, not a 256 KiB buffer per read."""

    async def main() -> None:
        async with raw_peer(client=True) as (session, raw):
            stream = session.open_stream()
            stream.write(bytes(INITIAL_WINDOW))  # the whole window: the peer grants no more
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                n = recvbuf.COPY_BELOW  # the shortest read that is handed on as a view
                for i in range(40):  # 40 reads from a socket into the stream
                    recvbuf.lend()[:n] = bytes([i]) * n
                    stream.write(recvbuf.filled(n))
                held = tracemalloc.get_traced_memory()[0] - base
            finally:
                tracemalloc.stop()
            assert stream.get_write_buffer_size() == 40 * n
            assert held < 40 * n + MB, f"{held} bytes held for {40 * n} bytes of pending data"
            got = await read_exactly(raw, 12 + 12 + INITIAL_WINDOW)  # SYN, header, the window
            assert got[24:] == bytes(INITIAL_WINDOW)

    run(main)


def test_stream_protocols_get_bytes(run: Run) -> None:
    async def main() -> None:
        async with session_pair() as pair:
            s, _ = pair.open()
            _, rpeer = await pair.accepted.get()
            s.write(b"hello")
            await rpeer.received(5)
            assert rpeer.chunk_types == {bytes}, "asyncio.Protocol.data_received takes bytes"

    run(main)


class ViewKeeper(Peer):
    """Keeps every chunk it is given as is, like a transport that queues a view it cannot send."""

    accepts_buffer = True

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[bytes | memoryview] = []

    def data_received(self, data: bytes) -> None:
        self.kept.append(data)
        super().data_received(data)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_payload_views_stay_intact_while_held(run: Run, tls: bool) -> None:
    """Payloads are views of the session's receive buffer: one still held must never see that
    buffer reused for the next read."""
    payload = os.urandom(8 * MB)

    async def main() -> None:
        async with session_pair(tls=tls) as pair:
            pair.make_peer = ViewKeeper
            s, _ = pair.open()
            await write_politely(s, Peer(), payload)
            _, keeper = await pair.accepted.get()
            await cast(ViewKeeper, keeper).received(8 * MB)
            kept = cast(ViewKeeper, keeper).kept
            assert memoryview in {type(k) for k in kept}, "payloads were not handed on as views"
            assert sha(b"".join(kept)) == sha(payload)

    run(main)


# --- write-side flow control ----------------------------------------------------------------------


def test_write_buffer_high_water(run: Run) -> None:
    async def main() -> None:
        async with session_pair() as pair:
            s, p = pair.open()
            s.set_write_buffer_limits(high=64 * 1024)
            assert s.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
            # before the ACK only the spec's 256 KiB window is open
            s.write(bytes(300_000))
            assert s.get_write_buffer_size() == 300_000 - INITIAL_WINDOW
            assert p.pauses == 0
            s.write(bytes(100_000))
            assert s.get_write_buffer_size() == 400_000 - INITIAL_WINDOW
            assert p.pauses == 1
            s.write(b"more")
            assert p.pauses == 1
            await p.writable.wait()  # the ACK's window update drained the buffer
            assert (p.pauses, p.resumes) == (1, 1)
            assert s.get_write_buffer_size() == 0
            _, rpeer = await pair.accepted.get()
            assert len(await rpeer.received(400_004)) == 400_004

    run(main)


# --- closing --------------------------------------------------------------------------------------


def test_close_gives_peer_eof_then_connection_lost(run: Run) -> None:
    async def main() -> None:
        async with session_pair() as pair:
            s, p = pair.open()
            s.write(b"hello")
            s.close()
            assert s.is_closing()
            s.write(b"ignored after close")
            _, rpeer = await pair.accepted.get()
            assert await rpeer.lost is None
            assert rpeer.data == b"hello"
            assert rpeer.events == ["data", "eof", "lost"]
            assert await p.lost is None
            assert p.events == ["lost"]
            await until(lambda: not pair.client.streams and not pair.server.streams)

    run(main)


def test_close_flushes_buffered_data_first(run: Run) -> None:
    data = os.urandom(8 * MB)

    async def main() -> None:
        async with session_pair() as pair:
            s, p = pair.open()
            s.write(data)
            s.close()
            assert s.get_write_buffer_size() > 0
            await asyncio.sleep(0)
            assert not p.lost.done()  # still flushing
            _, rpeer = await pair.accepted.get()
            await rpeer.lost
            assert sha(rpeer.data) == sha(data)
            assert rpeer.events == ["data", "eof", "lost"]
            assert await p.lost is None

    run(main)


def test_write_eof_keeps_reading(run: Run) -> None:
    async def main() -> None:
        async with session_pair() as pair:
            pair.make_peer = lambda: Peer(keep_open=True)
            s, p = pair.open()
            assert s.can_write_eof()
            s.write(b"request")
            s.write_eof()
            remote, rpeer = await pair.accepted.get()
            await rpeer.eof
            remote.write(b"response")
            remote.close()
            await p.lost  # after the response when half-close works; at once with the bug
            assert p.data == b"response"

    run(main)


def test_abort_resets_the_peer(run: Run) -> None:
    async def main() -> None:
        async with session_pair() as pair:
            s, p = pair.open()
            s.write(b"x")
            remote, rpeer = await pair.accepted.get()
            await rpeer.received(1)
            s.write(bytes(8 * MB))  # buffered data is discarded, not flushed
            s.abort()
            assert s.is_closing()
            assert await p.lost is None
            exc = await rpeer.lost
            assert isinstance(exc, ConnectionResetError)
            assert "eof" not in rpeer.events
            assert len(rpeer.data) < 8 * MB
            remote.write(b"into the void")  # no error for writing to a reset stream
            assert remote.is_closing()
            assert not pair.client.is_closed
            assert not pair.server.is_closed
            # the session goes on
            s2, _ = pair.open()
            s2.write(b"next")
            _, rpeer2 = await pair.accepted.get()
            assert await rpeer2.received(4) == b"next"

    run(main)


def test_session_loss_reaches_every_stream(run: Run) -> None:
    async def main() -> None:
        async with session_pair() as pair:
            local = [pair.open() for _ in range(3)]
            remote = [await pair.accepted.get() for _ in range(3)]
            local[0][0].write(bytes(8 * MB))  # one with data still queued
            pair.client.close()
            for _, peer in local + remote:
                assert isinstance(await peer.lost, ConnectionError)
            await asyncio.gather(pair.client.closed, pair.server.closed)
            assert pair.client.is_closed
            assert pair.server.is_closed
            assert not pair.client.streams
            assert not pair.server.streams
            with pytest.raises(ConnectionResetError):
                pair.client.open_stream()

    run(main)


def test_unwanted_stream_is_refused(run: Run) -> None:
    async def main() -> None:
        async with session_pair() as pair:
            pair.server.on_stream = None
            s, p = pair.open()
            s.write(b"anyone?")
            assert isinstance(await p.lost, ConnectionResetError)
            assert not pair.server.is_closed

    run(main)


# --- hostile and unusual peers --------------------------------------------------------------------

HOSTILE = {
    "version-5": hdr(0, 0, 1, 0, version=5),
    "type-9": hdr(9, 0, 1, 0),
    "over-window": hdr(0, 0, 1, FRP_MAX_WINDOW + 1),
    "syn-on-even-id": hdr(1, 1, 2, 0),
    "syn-reused-id": SYN1,
    "data-on-stream-0": hdr(0, 0, 0, 1) + b"x",
    "never-opened-id": hdr(0, 0, 7, 1) + b"x",
}


@pytest.mark.parametrize("frame", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_frame_closes_session_quietly(run: Run, frame: bytes) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        accepted: list[Peer] = []
        async with raw_peer(
            client=False, on_stream=lambda s: accepted.append(attach(s, Peer()))
        ) as (session, raw):
            await loop.sock_sendall(raw, SYN1 + hdr(0, 0, 1, 2) + b"hi")
            assert await read_exactly(raw, 12) == ACK1
            await accepted[0].received(2)
            await loop.sock_sendall(raw, frame)
            # GoAway(protocol error), then the connection closes
            assert await read_until_eof(raw) == GO_AWAY_PROTOCOL_ERROR
            assert isinstance(await accepted[0].lost, ConnectionError)
            await session.closed
            assert session.is_closed

    run(main)


def test_go_away_normal_stops_new_streams_only(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with raw_peer(client=True) as (session, raw):
            s = session.open_stream()
            p = attach(s, Peer())
            assert await read_exactly(raw, 12) == SYN1
            await loop.sock_sendall(raw, ACK1 + hdr(3, 0, 0, 0) + hdr(0, 0, 1, 3) + b"old")
            assert await p.received(3) == b"old"
            with pytest.raises(ConnectionResetError):
                session.open_stream()
            s.write(b"still")
            assert await read_exactly(raw, 17) == hdr(0, 0, 1, 5) + b"still"
            assert not session.is_closed

    run(main)


def test_go_away_error_ends_the_session(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with raw_peer(client=True) as (session, raw):
            p = attach(session.open_stream(), Peer())
            await read_exactly(raw, 12)
            await loop.sock_sendall(raw, ACK1 + GO_AWAY_PROTOCOL_ERROR)
            assert isinstance(await p.lost, ConnectionError)
            await session.closed
            assert await read_until_eof(raw) == b""

    run(main)


def test_keepalive_answered_keeps_session(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mux, "PING_TIMEOUT", 0.1)

    async def main() -> None:
        async with session_pair(keepalive=0.02) as pair:
            await asyncio.sleep(0.4)
            assert not pair.client.is_closed
            assert not pair.server.is_closed
            s, _ = pair.open()
            s.write(b"alive")
            _, rpeer = await pair.accepted.get()
            assert await rpeer.received(5) == b"alive"

    run(main)


def test_keepalive_timeout_aborts_session(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mux, "PING_TIMEOUT", 0.1)

    async def main() -> None:
        async with raw_peer(client=True, keepalive_interval=0.02) as (session, raw):
            p = attach(session.open_stream(), Peer())
            assert await read_exactly(raw, 12) == SYN1
            assert await read_exactly(raw, 12) == hdr(2, 1, 0, 1)  # Ping(SYN), opaque 1
            assert isinstance(await p.lost, ConnectionError)  # nobody answered
            await session.closed

    run(main)


def test_ping_from_peer_is_answered(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with raw_peer(client=False) as (_, raw):
            await loop.sock_sendall(raw, hdr(2, 1, 0, 0xDEADBEEF))
            assert await read_exactly(raw, 12) == hdr(2, 2, 0, 0xDEADBEEF)

    run(main)
