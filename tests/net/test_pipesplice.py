"""Kernel splicing (pyfrp.net.pipesplice): when a join moves to it, what it leaves behind, and its
fallback when no pipe can be had. The copy semantics themselves are test_splice's, which runs
every case on this path too."""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import socket
import struct
import subprocess
import sys

import pytest

from pyfrp.net import pipesplice
from pyfrp.net.mux import MuxSession
from pyfrp.net.splice import HoldProtocol, join
from tests.net import test_mux
from tests.net.test_mux import MB, Run, sha
from tests.net.test_splice import rig, tcp_pair

run = test_mux.run

pytestmark = pytest.mark.skipif(not pipesplice.AVAILABLE, reason="no splice(2) here")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def pipes() -> int:
    """Open pipe fds of this process."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        except FileNotFoundError:  # the fd of the listing itself
            pass
    return n


async def echo_through(count: int, size: int) -> None:
    """``count`` joined pairs, one after another, each carrying ``size`` bytes each way."""
    for _ in range(count):
        async with rig() as r:
            user, backend = await r.connect_users()
            joined = join(r.a, r.b)
            up, down = os.urandom(size), os.urandom(size)
            user.write(up)
            backend.write(down)
            assert sha(await r.backend.received(size)) == sha(up)
            assert sha(await r.user.received(size)) == sha(down)
            user.close()
            await r.backend.lost
            assert joined.done
            assert joined.spliced
            assert joined.counts == (size, size)


def test_a_bulk_transfer_moves_to_the_kernel(run: Run) -> None:
    """Short exchanges stay with the protocols; past SPLICE_AFTER bytes the sockets leave their
    transports and the rest flows through the kernel, in order."""
    first, rest = os.urandom(1000), os.urandom(pipesplice.SPLICE_AFTER + 3 * MB)

    async def main() -> None:
        async with rig() as r:
            user, backend = await r.connect_users()
            joined = join(r.a, r.b)
            user.write(first)
            await r.backend.received(len(first))
            short_exchange = joined.spliced
            assert not r.a.is_closing()
            user.write(rest)
            assert sha(await r.backend.received(len(first) + len(rest))) == sha(first + rest)
            assert (short_exchange, joined.spliced) == (False, True)
            assert r.a.is_closing()  # the sockets left their transports
            assert r.b.is_closing()
            backend.write(b"and back")
            assert (await r.user.received(8)) == b"and back"
            user.close()
            await r.backend.lost
            assert joined.done
            assert joined.counts == (len(first) + len(rest), 8)

    run(main)


def test_only_bare_tcp_transports_qualify(run: Run) -> None:
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
            assert pipesplice.bare_tcp(a)
            assert not pipesplice.bare_tcp(client.open_stream())
        finally:
            a.close()
            user_sock.close()
            client.close()
            server.close()
            await asyncio.gather(client.closed, server.closed)

    run(main)


@pytest.fixture
def splice_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipesplice, "SPLICE_AFTER", 0)


@pytest.mark.usefixtures("splice_at_once")
def test_no_fd_is_left_behind(run: Run) -> None:
    """Pipes go back to a bounded pool; sockets are closed with the join."""

    async def main() -> None:
        await echo_through(2, MB)  # fill the pool first
        gc.collect()  # an earlier test's garbage closing its fd mid-way is not ours to count
        before = open_fds()
        await echo_through(20, 2 * MB)
        await asyncio.sleep(0)
        assert open_fds() <= before
        assert pipesplice._lent == 0  # every pipe counted against the budget came back

    run(main)


@pytest.mark.usefixtures("splice_at_once")
def test_past_the_pipe_budget_the_bytes_still_flow(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no pipe to be had (budget spent, fd limit), chunks are copied through user space."""
    monkeypatch.setattr(pipesplice, "PIPE_BUDGET", 0)
    monkeypatch.setattr(pipesplice, "_pool", [])

    async def main() -> None:
        before = pipes()
        await echo_through(1, 3 * MB)
        assert pipes() == before

    run(main)


def test_pipes_take_at_most_a_quarter_of_the_fd_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 0 < pipesplice.PIPE_BUDGET * 2 <= soft // 4


@pytest.mark.usefixtures("splice_at_once")
def test_a_reset_peer_closes_the_other_side(run: Run) -> None:
    async def main() -> None:
        async with rig() as r:
            user, _ = await r.connect_users()
            joined = join(r.a, r.b)
            done = asyncio.get_running_loop().create_future()
            joined.on_done = lambda: done.set_result(None)
            user.write(b"x")
            await r.backend.received(1)
            assert joined.spliced
            sock = user.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            user.abort()  # RST
            await done
            await r.backend.lost
            assert r.backend.data == b"x"

    run(main)


@pytest.mark.usefixtures("splice_at_once")
def test_peer_pauses_while_the_pipe_is_full(run: Run) -> None:
    """A backend that reads nothing stops the reading of the user until it reads again."""
    data = os.urandom(32 * MB)

    async def main() -> None:
        async with rig() as r:
            user, backend = await r.connect_users()
            backend.pause_reading()
            joined = join(r.a, r.b)
            user.write(data)
            await test_mux.until(lambda: joined.spliced)
            taken = -1
            while joined.counts[0] != taken:  # until the copy stalls
                taken = joined.counts[0]
                await asyncio.sleep(0.05)
            assert 0 < taken < len(data)
            assert user.get_write_buffer_size() > 0
            backend.resume_reading()
            assert sha(await r.backend.received(len(data))) == sha(data)
            user.close()

    run(main)


def test_pyfrp_no_splice_turns_it_off() -> None:
    """The documented switch: PYFRP_NO_SPLICE=1 keeps every join on the protocol pair."""
    code = "from pyfrp.net import pipesplice; print(pipesplice.AVAILABLE)"
    env = {**os.environ, "PYFRP_NO_SPLICE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
