"""Kernel splicing (pyfrp.net.pipesplice): when join() takes it, what it leaves behind, and its
fallback when no pipe can be had. The copy semantics themselves are test_splice's, which runs
every case on this path too."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from pyfrp.net import pipesplice
from pyfrp.net.mux import MuxSession
from pyfrp.net.splice import HoldProtocol, TransportJoined, join
from tests.net import test_mux
from tests.net.test_mux import MB, Run, sha
from tests.net.test_splice import rig, tcp_pair

run = test_mux.run

pytestmark = pytest.mark.skipif(not pipesplice.AVAILABLE, reason="no splice(2) here")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def echo_through(count: int, size: int) -> None:
    """``count`` joined pairs, one after another, each carrying ``size`` bytes each way."""
    for _ in range(count):
        async with rig() as r:
            await r.connect_users()
            joined = join(r.a, r.b)
            assert isinstance(joined, pipesplice.PipeJoined)
            assert r.user.transport is not None
            assert r.backend.transport is not None
            up, down = os.urandom(size), os.urandom(size)
            r.user.transport.write(up)
            r.backend.transport.write(down)
            assert sha(await r.backend.received(size)) == sha(up)
            assert sha(await r.user.received(size)) == sha(down)
            r.user.transport.close()
            await r.backend.lost
            assert joined.done
            assert joined.counts == (size, size)


def test_bare_tcp_pairs_are_spliced_in_the_kernel(run: Run) -> None:
    async def main() -> None:
        async with rig() as r:
            joined = join(r.a, r.b)
            assert isinstance(joined, pipesplice.PipeJoined)
            assert r.a.is_closing()  # the sockets left their transports
            assert r.b.is_closing()
            joined.abort()

    run(main)


def test_a_mux_stream_keeps_the_protocol_pair(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        s1, s2 = socket.socketpair()
        client = MuxSession(client=True, keepalive_interval=0)
        server = MuxSession(client=False, keepalive_interval=0)
        await loop.create_connection(lambda: client, sock=s1)
        await loop.create_connection(lambda: server, sock=s2)
        user_sock, proxy_sock = tcp_pair()
        a, _ = await loop.create_connection(HoldProtocol, sock=proxy_sock)
        try:
            joined = join(a, client.open_stream())
            assert isinstance(joined, TransportJoined)
            joined.abort()
        finally:
            user_sock.close()
            client.close()
            server.close()
            await asyncio.gather(client.closed, server.closed)

    run(main)


def test_no_fd_is_left_behind(run: Run) -> None:
    """Pipes go back to a bounded pool; sockets are closed with the join."""

    async def main() -> None:
        await echo_through(2, MB)  # fill the pool first
        before = open_fds()
        await echo_through(20, 2 * MB)
        await asyncio.sleep(0)
        assert open_fds() == before

    run(main)


def test_without_pipes_the_bytes_still_flow(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the fd limit no pipe can be made: chunks are copied through user space instead."""
    monkeypatch.setattr(pipesplice, "_take_pipe", lambda: None)
    run(lambda: echo_through(1, 3 * MB))


def test_a_reset_peer_closes_the_other_side(run: Run) -> None:
    async def main() -> None:
        async with rig() as r:
            await r.connect_users()
            joined = join(r.a, r.b)
            done = asyncio.get_running_loop().create_future()
            joined.on_done = lambda: done.set_result(None)
            assert r.user.transport is not None
            sock = r.user.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            r.user.transport.abort()  # RST
            await done
            await r.backend.lost
            assert r.backend.data == b""

    run(main)


def test_peer_pauses_while_the_pipe_is_full(run: Run) -> None:
    """A backend that reads nothing stops the reading of the user until it reads again."""
    data = os.urandom(32 * MB)

    async def main() -> None:
        async with rig() as r:
            await r.connect_users()
            assert r.user.transport is not None
            assert r.backend.transport is not None
            r.backend.transport.pause_reading()
            joined = join(r.a, r.b)
            r.user.transport.write(data)
            taken = -1
            while joined.counts[0] != taken:  # until the copy stalls
                taken = joined.counts[0]
                await asyncio.sleep(0.05)
            assert 0 < taken < len(data)
            assert r.user.transport.get_write_buffer_size() > 0
            r.backend.transport.resume_reading()
            assert sha(await r.backend.received(len(data))) == sha(data)
            r.user.transport.close()

    run(main)
