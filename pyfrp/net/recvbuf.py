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
from typing import cast

SIZE = 256 * 1024
KEEP = 8  # buffers kept for reuse (while views of some are still queued); more are not kept

COPY_BELOW = 8 * 1024  # filled() copies reads shorter than this and keeps lending the buffer

_free: list[bytearray] = []
_lent: memoryview | None = None  # of the buffer lent now; dropped when it goes back (see _refs)


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
    global _lent
    if _lent is None:
        _lent = memoryview(_take())
    return _lent


def filled(nbytes: int) -> bytes | memoryview:
    """For ``buffer_updated``: the bytes just read into the lent buffer.

    A short read is copied (cheaper than handing the buffer on, and the next read reuses it).
    Otherwise the buffer goes back and the result is a read-only view of it: the promise that
    its bytes stay as they are while anyone holds it, so a yamux stream may queue it without a
    copy (:meth:`pyfrp.proto.yamux.Session.send_data`). Hold it briefly: it pins the buffer;
    what must wait in a queue goes through :func:`for_queue`."""
    global _lent
    view, _lent = _lent, None
    assert view is not None, "buffer_updated without get_buffer"
    if nbytes < COPY_BELOW:
        _lent = view
        return bytes(view[:nbytes])
    if _COUNTED and len(_free) < KEEP:
        # Reused only once the view returned here and its slices are gone.
        _free.append(cast(bytearray, view.obj))
    return view.toreadonly()[:nbytes]


def for_queue(data: bytes | memoryview) -> bytes | memoryview:
    """``data`` fit to wait in a queue: a view of anything but bytes (a lent buffer, say) is
    copied out, as it would pin the whole buffer while it waits."""
    if type(data) is memoryview and type(data.obj) is not bytes:
        return data.tobytes()
    return data
