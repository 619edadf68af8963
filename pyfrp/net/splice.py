"""The hot copy path: two transports joined by a pair of Protocols.

``data_received`` writes straight into the peer transport, and ``pause_writing``/``resume_writing``
pause and resume the peer's reading: no task, no await and no copy per chunk, and memory bounded by
the write buffer limits. As in golib's ``io.Join``, the first EOF or error on either side closes
both (frp never keeps a TCP half-close end to end); ``close()`` still flushes what was buffered.
Two bare TCP sockets carrying a bulk transfer move on to the kernel (:mod:`pyfrp.net.pipesplice`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import cast

from pyfrp.net import pipesplice, recvbuf

# Larger than asyncio's 64 KiB default: fewer pause/resume round trips on a fast path.
WRITE_HIGH_WATER = 1024 * 1024
_NEVER = sys.maxsize


class HoldProtocol(asyncio.Protocol):
    """Holds a new connection until it is spliced: reading paused, early bytes kept.

    uvloop starts reading only after ``connection_made`` returns, ignoring a pause_reading()
    made inside it, so bytes may still arrive here; they are kept and paused on again.
    """

    __slots__ = ("ended", "pending", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = bytearray()
        self.ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.pause_reading()
        self.on_held(self.transport)

    def on_held(self, transport: asyncio.Transport) -> None:
        """Called once the connection is made; for subclasses."""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        if self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.ended = True
        return True  # keep the transport: the splice decides when to close

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True

    def take(self) -> bytes:
        data = bytes(self.pending)
        self.pending.clear()
        return data


class _End(asyncio.BufferedProtocol):
    """One side of a join. A socket transport reads into a lent buffer (:mod:`pyfrp.net.recvbuf`)
    whose view goes straight to the peer's write; yamux streams and layers call data_received."""

    __slots__ = ("bytes_in", "joined", "peer", "splice_at", "transport")

    # data_received takes any buffer (a yamux payload view): it only hands it to write().
    accepts_buffer = True

    def __init__(self, transport: asyncio.Transport, joined: Joined) -> None:
        self.transport = transport
        self.joined = joined
        self.peer: _End = self
        self.bytes_in = 0
        self.splice_at = _NEVER

    def get_buffer(self, sizehint: int) -> memoryview:
        return recvbuf.lend()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(recvbuf.filled(nbytes))

    def data_received(self, data: bytes | memoryview) -> None:
        self.bytes_in += len(data)
        out = self.peer.transport
        if out.get_write_buffer_size():  # it will be queued
            data = recvbuf.for_queue(data)
        out.write(data)
        if self.bytes_in >= self.splice_at:
            self.joined._to_kernel()

    def eof_received(self) -> bool:
        self._finish()
        return False

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        self.transport.close()
        self.peer.transport.close()
        self.joined._finished()


class Joined:
    """A running join: byte counts, ``done``, ``on_done`` (called once when it ends, unless
    aborted) and ``abort()``.

    The copy runs in a pair of protocols; two bare TCP sockets move on to the kernel
    (:mod:`pyfrp.net.pipesplice`) once one direction has carried ``SPLICE_AFTER`` bytes: that
    costs a few syscalls per connection, which only a bulk transfer earns back."""

    __slots__ = ("_a", "_b", "_kernel", "done", "on_done")

    def __init__(self, a: asyncio.Transport, b: asyncio.Transport) -> None:
        self._a, self._b = _End(a, self), _End(b, self)
        self._a.peer, self._b.peer = self._b, self._a
        self._kernel: pipesplice.PipeJoined | None = None
        self.done = False
        self.on_done: Callable[[], None] | None = None

    @property
    def counts(self) -> tuple[int, int]:
        """(bytes a->b, bytes b->a) so far."""
        if self._kernel is None:
            return self._a.bytes_in, self._b.bytes_in
        ka, kb = self._kernel.counts
        return self._a.bytes_in + ka, self._b.bytes_in + kb

    @property
    def spliced(self) -> bool:
        """Whether the bytes now move in the kernel."""
        return self._kernel is not None

    def _to_kernel(self) -> None:
        a, b = self._a.transport, self._b.transport
        if a.get_write_buffer_size() or b.get_write_buffer_size():
            return  # nothing may be left behind in a transport: try again on the next chunk
        self._a.splice_at = self._b.splice_at = _NEVER
        if not (a.is_closing() or b.is_closing()):
            self._kernel = pipesplice.start(a, b, self._finished)

    def _finished(self) -> None:
        if not self.done:
            self.done = True
            if self.on_done is not None:
                self.on_done()

    def abort(self) -> None:
        self.done = True
        if self._kernel is not None:
            self._kernel.abort()
        else:
            self._a.transport.abort()
            self._b.transport.abort()


def join(
    a: asyncio.Transport,
    b: asyncio.Transport,
    *,
    a_pending: bytes = b"",
    b_pending: bytes = b"",
    a_ended: bool = False,
    b_ended: bool = False,
) -> Joined:
    """Start copying both ways until either side ends (the copy runs in the two protocols'
    callbacks: no task). Set ``on_done`` on the result unless it is already ``done``.

    ``x_pending`` are bytes already read from x (to go to the other side first); ``x_ended`` says x
    already saw EOF or was closed while it was someone else's.
    """
    joined = Joined(a, b)
    end_a, end_b = joined._a, joined._b
    for t in (a, b):
        t.set_write_buffer_limits(high=WRITE_HIGH_WATER)
    a.set_protocol(end_a)
    b.set_protocol(end_b)
    if a_pending:
        end_a.data_received(a_pending)
    if b_pending:
        end_b.data_received(b_pending)
    if a_ended or b_ended or a.is_closing() or b.is_closing():
        end_a._finish()
    else:
        if pipesplice.AVAILABLE and pipesplice.bare_tcp(a) and pipesplice.bare_tcp(b):
            end_a.splice_at = end_b.splice_at = pipesplice.SPLICE_AFTER
        a.resume_reading()
        b.resume_reading()
    return joined


async def splice(
    a: asyncio.Transport,
    b: asyncio.Transport,
    *,
    a_pending: bytes = b"",
    b_pending: bytes = b"",
    a_ended: bool = False,
    b_ended: bool = False,
) -> tuple[int, int]:
    """:func:`join`, awaited; returns (bytes a->b, bytes b->a). Cancelling aborts both sides."""
    joined = join(a, b, a_pending=a_pending, b_pending=b_pending, a_ended=a_ended, b_ended=b_ended)
    if not joined.done:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finished() -> None:
            if not done.done():  # cancelled and not yet resumed
                done.set_result(None)

        joined.on_done = finished
        try:
            await done
        except asyncio.CancelledError:
            joined.abort()
            raise
    return joined.counts
