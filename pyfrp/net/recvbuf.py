"""Receive buffers for BufferedProtocols that hand what they read on as views.

Reading into a buffer of our own saves the copy into a fresh ``bytes`` per read (and, under TLS,
the join of the decrypted records). A view handed on may be kept, though: a transport that cannot
send at once queues it. So a buffer is reused only once no view of it is alive, which CPython's
reference count tells exactly: every live memoryview chain over a bytearray holds one reference
to it. A buffer still viewed is passed over; up to ``KEEP`` buffers wait in the free list for
their views to go, and any beyond that are freed with their last view.

A read is synchronous (get_buffer, the read, buffer_updated run in one loop callback), so one
buffer lent at a time serves every connection of the process, and an idle connection holds none,
even when its read ended without data (EAGAIN after a full buffer: no buffer_updated).
"""

from __future__ import annotations

import sys

SIZE = 256 * 1024
KEEP = 8  # buffers kept for reuse (while views of some are still queued); more are not kept

COPY_BELOW = 8 * 1024  # filled() copies reads shorter than this and keeps lending the buffer

_free: list[bytearray] = []
_lent: bytearray | None = None
_lent_view: memoryview | None = None  # of _lent; dropped when _lent goes back (see _refs)


# Without reference counts (PyPy has no sys.getrefcount) no buffer goes back for reuse.
_COUNTED = hasattr(sys, "getrefcount")


def _refs(buf: bytearray) -> int:
    return sys.getrefcount(buf)


def _unviewed_refs() -> int:
    # What _refs reports for a buffer that only a list refers to (interpreter versions differ).
    free = [bytearray(1)]
    return _refs(free[0])


_UNVIEWED = _unviewed_refs() if _COUNTED else 0


def _take() -> bytearray:
    free = _free
    for i in range(len(free)):
        if _refs(free[i]) == _UNVIEWED:
            return free.pop(i)
    return bytearray(SIZE)


def lend() -> memoryview:
    """For ``get_buffer``: a view of a buffer no one else refers to.

    A view, not the bytearray: asyncio's TLS transport slices what it gets to fill the rest, and
    a bytearray's slice is a copy."""
    global _lent, _lent_view
    if _lent_view is None:
        _lent = _take()
        _lent_view = memoryview(_lent)
    return _lent_view


def filled(nbytes: int) -> bytes | memoryview:
    """For ``buffer_updated``: the bytes just read into the lent buffer.

    A short read is copied (cheaper than handing the buffer on, and the next read reuses it).
    Otherwise the buffer goes back and the result is a read-only view of it: the promise that
    its bytes stay as they are while anyone holds it, so a yamux stream may queue it without a
    copy (:meth:`pyfrp.proto.yamux.Session.send_data`). Hold it briefly: it pins the buffer."""
    global _lent, _lent_view
    view = _lent_view
    assert view is not None, "buffer_updated without get_buffer"
    if nbytes < COPY_BELOW:
        return bytes(view[:nbytes])
    buf, _lent, _lent_view = _lent, None, None
    assert buf is not None
    if _COUNTED and len(_free) < KEEP:
        _free.append(buf)  # reused only once the view returned here and its slices are gone
    return view.toreadonly()[:nbytes]
