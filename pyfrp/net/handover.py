"""A connection moving to another of our processes (SCM_RIGHTS over an FdLink): pyfrps's
workers hand connections to the one that owns their client or route, pyfrpc's helpers hand work
connections they cannot serve to the main process.

A bare TCP socket goes whole, with the bytes already read from it. One that cannot leave its
process (TLS state, a yamux stream) is bridged: a socketpair's far end goes, and this process
copies between the two from then on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from pyfrp.net.pipesplice import bare_tcp, detach_fd
from pyfrp.net.splice import HoldProtocol, join
from pyfrp.proto import cluster

log = logging.getLogger(__name__)

# A connection handed over with more bytes than this already read goes through a bridge: one
# message (proto/cluster.py) never needs more.
MAX_HANDED_BYTES = cluster.MAX_DATAGRAM - cluster.MAX_JSON - 1024

_bridges: set[asyncio.Task[None]] = set()


def hand_over(transport: asyncio.Transport, pending: bytes, ended: bool) -> tuple[int, bytes, bool]:
    """The connection as a descriptor for another process, with the bytes and end-of-stream
    that process must see first. The socket itself when it is bare TCP and ``pending`` fits in
    one message; else a bridge's far end (the bridge carries ``pending`` itself)."""
    if bare_tcp(transport) and len(pending) <= MAX_HANDED_BYTES:
        return detach_fd(transport), pending, ended
    near, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    held = HoldProtocol()
    transport.set_protocol(held)
    held.connection_made(transport)
    task = asyncio.get_running_loop().create_task(_bridge(transport, held, pending, ended, near))
    _bridges.add(task)
    task.add_done_callback(_bridges.discard)
    return far.detach(), b"", False


async def _bridge(
    transport: asyncio.Transport,
    held: HoldProtocol,
    pending: bytes,
    ended: bool,
    near: socket.socket,
) -> None:
    loop = asyncio.get_running_loop()
    try:
        bridge, far_held = await loop.connect_accepted_socket(HoldProtocol, near)
    except OSError as exc:
        log.warning("connection bridge failed: %s", exc)
        transport.abort()
        near.close()
        return
    join(
        transport,
        bridge,
        a_pending=pending + held.take(),
        a_ended=ended or held.ended,
        b_pending=far_held.take(),  # the other process may have answered already
        b_ended=far_held.ended,
    )


async def adopt_socket(
    factory: Callable[[], asyncio.BaseProtocol], sock: socket.socket, pending: bytes, ended: bool
) -> asyncio.BaseProtocol:
    """Give a handed-over socket a protocol of ``factory``, which sees ``pending`` (the bytes
    the other process read) before anything read here."""

    def made() -> asyncio.BaseProtocol:
        return _Prefed(factory(), pending, ended)

    _, wrapper = await asyncio.get_running_loop().connect_accepted_socket(made, sock)
    assert isinstance(wrapper, _Prefed)
    return wrapper.inner


class _Prefed(asyncio.Protocol):
    """Hands ``pending`` to the real protocol as soon as it has its transport, then steps
    aside (the transport's protocol becomes the real one)."""

    def __init__(self, inner: asyncio.BaseProtocol, pending: bytes, ended: bool) -> None:
        self.inner = inner
        self.pending = pending
        self.ended = ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        inner = self.inner
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if self.pending:
            cast(Any, inner).data_received(self.pending)
        if self.ended:
            cast(Any, inner).eof_received()
