"""The splice (pyfrp.net.splice): two real TCP connections joined, by a pair of Protocols or in
the kernel (pyfrp.net.pipesplice).

user <-TCP-> [a  splice  b] <-TCP-> backend, on asyncio's loop and on uvloop, both ways of copying.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from pyfrp.net import pipesplice, recvbuf
from pyfrp.net.mux import MuxSession, MuxStream
from pyfrp.net.splice import WRITE_HIGH_WATER, HoldProtocol, splice
from tests.net import test_mux
from tests.net.test_mux import MB, Peer, Run, attach, sha, until, write_politely

run = test_mux.run  # the same both-loops fixture


@pytest.fixture(autouse=True, params=["kernel", "protocols"])
def copy_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the protocol pair and with splice(2) (when the platform has it) from
    the first chunk on."""
    if request.param == "kernel" and not pipesplice.AVAILABLE:
        pytest.skip("no splice(2) here")
    monkeypatch.setattr(pipesplice, "AVAILABLE", request.param == "kernel")
    monkeypatch.setattr(pipesplice, "SPLICE_AFTER", 0)
    return str(request.param)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of loopback TCP sockets."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


@dataclass
class Rig:
    user: Peer
    backend: Peer
    a: asyncio.Transport  # the proxy's end towards the user
    b: asyncio.Transport  # the proxy's end towards the backend
    held_a: HoldProtocol
    held_b: HoldProtocol
    user_sock: socket.socket
    backend_sock: socket.socket

    async def connect_users(self) -> tuple[asyncio.Transport, asyncio.Transport]:
        """Start the user's and the backend's protocols; returns their transports."""
        loop = asyncio.get_running_loop()
        user, _ = await loop.create_connection(lambda: self.user, sock=self.user_sock)
        backend, _ = await loop.create_connection(lambda: self.backend, sock=self.backend_sock)
        return user, backend


@contextlib.asynccontextmanager
async def rig(*, user_first: bytes = b"", user_shutdown: bool = False) -> AsyncIterator[Rig]:
    """Both TCP pairs, with the proxy ends held by HoldProtocol.

    ``user_first`` is sent (and ``user_shutdown`` done) before the proxy end is even wrapped.
    """
    loop = asyncio.get_running_loop()
    user_sock, proxy_a = tcp_pair()
    proxy_b, backend_sock = tcp_pair()
    if user_first:
        user_sock.sendall(user_first)
    if user_shutdown:
        user_sock.shutdown(socket.SHUT_WR)
    a, held_a = await loop.create_connection(HoldProtocol, sock=proxy_a)
    b, held_b = await loop.create_connection(HoldProtocol, sock=proxy_b)
    r = Rig(Peer(), Peer(), a, b, held_a, held_b, user_sock, backend_sock)
    try:
        yield r
    finally:
        for t in (a, b, r.user.transport, r.backend.transport):
            if t is not None:
                t.close()
        if r.user.transport is None:  # never handed to a transport
            user_sock.close()
            backend_sock.close()
        await asyncio.sleep(0)


async def start(r: Rig, *, a_pending: bytes = b"", b_pending: bytes = b"") -> asyncio.Task[Any]:
    """Splice in a task, as the proxies do: what the holders kept is taken at the last moment."""

    async def go() -> tuple[int, int]:
        return await splice(
            r.a,
            r.b,
            a_pending=a_pending + r.held_a.take(),
            b_pending=b_pending + r.held_b.take(),
            a_ended=r.held_a.ended,
            b_ended=r.held_b.ended,
        )

    task = asyncio.create_task(go())
    await asyncio.sleep(0)  # the splice owns both transports from here on
    return task


def test_bytes_both_ways_then_close(run: Run) -> None:
    up, down = os.urandom(6 * MB), os.urandom(6 * MB)

    async def main() -> None:
        async with rig() as r:
            user, backend = await r.connect_users()
            task = await start(r)
            await asyncio.gather(
                write_politely(user, r.user, up),
                write_politely(backend, r.backend, down),
            )
            got_up, got_down = await asyncio.gather(
                r.backend.received(len(up)), r.user.received(len(down))
            )
            assert (sha(got_up), sha(got_down)) == (sha(up), sha(down))
            assert not task.done()
            user.close()
            assert await task == (len(up), len(down))
            await r.backend.lost
            assert r.backend.events == ["data", "eof", "lost"]
            assert r.a.is_closing()
            assert r.b.is_closing()

    run(main)


def test_eof_from_backend_closes_both_after_its_data(run: Run) -> None:
    async def main() -> None:
        async with rig() as r:
            _, backend = await r.connect_users()
            task = await start(r)
            backend.write(b"last words")
            backend.write_eof()
            assert await task == (0, 10)
            assert await r.user.lost is None
            assert r.user.data == b"last words"
            assert r.user.events == ["data", "eof", "lost"]
            await r.backend.lost  # the proxy closed its side too: no half-close end to end

    run(main)


def test_eof_behind_a_slow_reader_still_delivers_everything(run: Run) -> None:
    """The backend writes 8 MB and FIN while the user reads nothing: all 8 MB arrive, then EOF."""
    down = os.urandom(8 * MB)

    async def main() -> None:
        async with rig() as r:
            user, backend = await r.connect_users()
            user.pause_reading()
            task = await start(r)
            backend.write(down)
            backend.write_eof()
            await asyncio.sleep(0.1)  # the copy is now stuck behind the user
            assert not task.done() or task.result() == (0, len(down))
            user.resume_reading()
            await r.user.lost
            assert sha(r.user.data) == sha(down)
            assert r.user.events == ["data", "eof", "lost"]
            assert await task == (0, len(down))

    run(main)


def test_pending_bytes_go_first(run: Run) -> None:
    async def main() -> None:
        async with rig() as r:
            user, backend = await r.connect_users()
            task = await start(r, a_pending=b"early-a|", b_pending=b"early-b|")
            user.write(b"late-a")
            backend.write(b"late-b")
            assert await r.backend.received(14) == b"early-a|late-a"
            assert await r.user.received(14) == b"early-b|late-b"
            backend.close()
            assert await task == (14, 14)

    run(main)


def test_ended_side_delivers_pending_then_closes(run: Run) -> None:
    async def main() -> None:
        async with rig() as r:
            await r.connect_users()
            result = await splice(r.a, r.b, a_pending=b"goodbye", a_ended=True)
            assert result == (7, 0)
            await r.backend.lost
            assert r.backend.data == b"goodbye"
            assert r.backend.events == ["data", "eof", "lost"]
            await r.user.lost

    run(main)


def test_hold_protocol_keeps_early_bytes(run: Run) -> None:
    """uvloop reads once despite pause_reading() in connection_made; nothing may be lost."""

    async def main() -> None:
        async with rig(user_first=b"early bytes|") as r:
            await asyncio.sleep(0.05)
            assert not r.a.is_reading()
            assert bytes(r.held_a.pending) in (
                b"",
                b"early bytes|",
            )  # read (uvloop) or still queued
            assert not r.held_a.ended
            user, _ = await r.connect_users()
            held = bytes(r.held_a.pending)
            user.write(b"later")
            await asyncio.sleep(0.02)
            assert not r.a.is_reading()
            assert r.held_a.pending == held  # paused again: the rest waits in the socket
            task = await start(r)
            assert await r.backend.received(17) == b"early bytes|later"
            user.close()
            await task

    run(main)


def test_hold_protocol_then_eof_before_splice(run: Run) -> None:
    async def main() -> None:
        async with rig(user_first=b"only this", user_shutdown=True) as r:
            await asyncio.sleep(0.02)
            assert not r.a.is_reading()
            await r.connect_users()
            await splice(r.a, r.b, a_pending=r.held_a.take(), a_ended=r.held_a.ended, b_pending=b"")
            await r.backend.lost
            assert r.backend.data == b"only this"
            assert "eof" in r.backend.events

    run(main)


def test_hold_protocol_take_empties(run: Run) -> None:
    async def main() -> None:
        async with rig() as r:
            r.held_a.data_received(b"abc")
            r.held_a.data_received(b"def")
            assert r.held_a.take() == b"abcdef"
            assert r.held_a.take() == b""
            assert not r.a.is_reading()

    run(main)


def test_backpressure_bounds_the_proxy_buffer(run: Run) -> None:
    data = os.urandom(24 * MB)

    async def main() -> None:
        async with rig() as r:
            user, backend = await r.connect_users()
            backend.pause_reading()
            task = await start(r)
            writer = asyncio.create_task(write_politely(user, r.user, data))
            # the backend reads nothing: the user is eventually told to pause
            await until(lambda: not r.user.writable.is_set())
            await asyncio.sleep(0.1)
            assert not writer.done()
            assert r.b.get_write_buffer_size() <= WRITE_HIGH_WATER + 256 * 1024
            assert not r.a.is_reading()
            backend.resume_reading()
            assert sha(await r.backend.received(len(data))) == sha(data)
            await writer
            user.close()
            assert await task == (len(data), 0)

    run(main)


def test_stalled_writer_holds_its_bytes_not_receive_buffers(run: Run, copy_path: str) -> None:
    """Reads land in 256 KiB receive buffers (pyfrp.net.recvbuf). What queues up in front of a
    backend that reads nothing is a copy of each read, not a view pinning its buffer."""
    if copy_path == "kernel":
        pytest.skip("the kernel path holds no bytes in Python")

    async def main() -> None:
        async with rig() as r:
            user, backend = await r.connect_users()
            backend.pause_reading()
            task = await start(r)
            sent = 0
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                n = recvbuf.COPY_BELOW  # the shortest read that is handed on as a view
                while r.a.is_reading():  # until the splice stops reading the user
                    user.write(os.urandom(n))
                    sent += n
                    await asyncio.sleep(0)  # one read per write, mostly
                held = tracemalloc.get_traced_memory()[0] - base
            finally:
                tracemalloc.stop()
            assert held < 2 * WRITE_HIGH_WATER + 2 * MB, f"{held} bytes held for {sent} sent"
            backend.resume_reading()
            await r.backend.received(sent)
            user.close()
            assert await task == (sent, 0)

    run(main)


def test_cancel_aborts_both(run: Run) -> None:
    async def main() -> None:
        async with rig() as r:
            await r.connect_users()
            task = await start(r)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert task.cancelled()
            await asyncio.wait([r.user.lost, r.backend.lost], timeout=0.5)
            assert r.a.is_closing()
            assert r.b.is_closing()
            assert r.user.lost.done()
            assert r.backend.lost.done()

    run(main)


def test_tcp_to_mux_stream(run: Run) -> None:
    """The same splice joins a TCP connection and a yamux stream."""
    up, down = os.urandom(7 * MB), os.urandom(7 * MB)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        remote: list[Peer] = []
        s1, s2 = socket.socketpair()
        client = MuxSession(client=True, keepalive_interval=0)
        server = MuxSession(
            client=False, keepalive_interval=0, on_stream=lambda s: remote.append(attach(s, Peer()))
        )
        await loop.create_connection(lambda: client, sock=s1)
        await loop.create_connection(lambda: server, sock=s2)
        user_sock, proxy_sock = tcp_pair()
        a, held = await loop.create_connection(HoldProtocol, sock=proxy_sock)
        user = Peer()
        await loop.create_connection(lambda: user, sock=user_sock)
        try:
            stream: MuxStream = client.open_stream()
            task = asyncio.create_task(splice(a, stream, a_pending=held.take()))
            await until(lambda: bool(remote))
            far = remote[0]
            assert user.transport is not None
            assert far.transport is not None
            await asyncio.gather(
                write_politely(user.transport, user, up),
                write_politely(far.transport, far, down),
            )
            got_up, got_down = await asyncio.gather(far.received(len(up)), user.received(len(down)))
            assert (sha(got_up), sha(got_down)) == (sha(up), sha(down))
            far.transport.close()  # FIN on the stream ends the splice
            assert await task == (len(up), len(down))
            assert await user.lost is None
            assert user.events[-2:] == ["eof", "lost"]
        finally:
            client.close()
            server.close()
            await asyncio.gather(client.closed, server.closed)

    run(main)
