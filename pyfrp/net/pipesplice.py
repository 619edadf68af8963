"""Bare TCP to bare TCP through the kernel: splice(2) via a pipe, the bytes never enter Python.

When both ends of a join are plain TCP sockets (a ``tcp`` proxy without TLS, tcp_mux, encryption
or compression), copying through user space costs two memory copies per hop. Once such a join has
carried ``SPLICE_AFTER`` bytes one way, each socket is taken out of its transport (its fd
duplicated, the transport aborted) and the loop watches the fds: readable ->
``splice(src, pipe)``, then ``splice(pipe, dst)``. Semantics are those of
:func:`pyfrp.net.splice.join`: the first EOF or error on either side closes both, after what was
already read has been written; the writer being blocked stops the reading (bounded memory: one
pipe per direction at most).

Pipes are held only while they carry bytes: an emptied pipe goes back to a small shared pool,
so idle connections cost no extra fds, and pipes never hold more than a quarter of the fd limit.
When no pipe can be had, the chunk is copied through user space instead. Linux only;
``PYFRP_NO_SPLICE=1`` turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

AVAILABLE = (
    sys.platform == "linux" and hasattr(os, "splice") and not os.environ.get("PYFRP_NO_SPLICE")
)

# A connection moves to the kernel once one direction carried this much (pyfrp.net.splice).
SPLICE_AFTER = 1024 * 1024
# Larger pipes move more per splice call (64 KiB default: ~20 % slower here). 256 KiB, not the
# 1 MiB maximum: past pipe-user-pages-soft (64 MiB) an unprivileged user gets 8 KiB pipes.
PIPE_SIZE = 256 * 1024
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, Linux; fcntl itself is not on Windows
_POOL_MAX = 16
_READ_FALLBACK = 256 * 1024
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)

_pool: list[tuple[int, int]] = []
_lent = 0  # pipes taken from _take_pipe and not yet given back or closed


def _fd_budget() -> int:
    """Pipes may hold at most a quarter of the fd limit: the rest is for connections, which
    must not fail to be accepted because stalled copies hold pipes."""
    try:
        import resource  # not on Windows, where there is no splice either
    except ImportError:
        return 0
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 16 if soft == resource.RLIM_INFINITY else soft // 8


PIPE_BUDGET = _fd_budget()


def _take_pipe() -> tuple[int, int] | None:
    """A pipe, or None when the budget or the fd limit is reached: then a chunk is copied
    through user space."""
    global _lent
    if _pool:
        pipe = _pool.pop()
    elif _lent >= PIPE_BUDGET:
        return None
    else:
        try:
            pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # EMFILE/ENFILE
            return None
        try:
            import fcntl

            fcntl.fcntl(pipe[1], _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # the default 64 KiB works too
    _lent += 1
    return pipe


def _give_pipe(pipe: tuple[int, int], *, reusable: bool = True) -> None:
    global _lent
    _lent -= 1
    if reusable and len(_pool) < _POOL_MAX:
        _pool.append(pipe)
    else:
        os.close(pipe[0])
        os.close(pipe[1])


def _plain_transport_types() -> tuple[type, ...]:
    types: list[type] = []
    try:
        from asyncio.selector_events import _SelectorSocketTransport  # type: ignore[attr-defined]

        types.append(_SelectorSocketTransport)
    except ImportError:  # pragma: no cover - private name
        pass
    try:
        from uvloop.loop import TCPTransport  # type: ignore[attr-defined]

        types.append(TCPTransport)
    except ImportError:
        pass
    return tuple(types)


_PLAIN = _plain_transport_types()


def bare_tcp(t: Any) -> bool:
    """Whether ``t`` is the loop's own TCP transport (not TLS, yamux, or one of our layers)."""
    return type(t) in _PLAIN and t.get_extra_info("socket") is not None


class _Flow:
    """One direction: src -> (pending bytes, then the pipe) -> dst."""

    __slots__ = ("count", "dst", "in_pipe", "pending", "pipe", "reading", "src", "writing")

    def __init__(self, src: int, dst: int) -> None:
        self.src, self.dst = src, dst
        self.pending: memoryview | None = None  # read without a pipe, not yet written
        self.pipe: tuple[int, int] | None = None
        self.in_pipe = 0
        self.count = 0
        self.reading = self.writing = False

    @property
    def queued(self) -> bool:
        return self.in_pipe > 0 or self.pending is not None


class PipeJoined:
    """A running kernel splice: ``counts`` and ``abort()``; ``on_end`` is called when either
    side ends or on abort (possibly more than once: it must be idempotent)."""

    __slots__ = ("_closed", "_ending", "_fds", "_flows", "_loop", "_on_end")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, a: int, b: int, on_end: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._fds = (a, b)
        self._flows = (_Flow(a, b), _Flow(b, a))
        self._ending = False
        self._closed: set[int] = set()
        self._on_end = on_end

    @property
    def counts(self) -> tuple[int, int]:
        return self._flows[0].count, self._flows[1].count

    def _start(self) -> None:
        for f in self._flows:
            self._pump(f)

    # -- the copy loop
    def _on_readable(self, f: _Flow) -> None:
        if f.pipe is None:
            f.pipe = _take_pipe()
        try:
            if f.pipe is None:
                data = os.read(f.src, _READ_FALLBACK)
                n = len(data)
                if n:
                    f.pending = memoryview(data)
            else:
                n = os.splice(f.src, f.pipe[1], PIPE_SIZE, flags=_FLAGS)
                f.in_pipe = n
        except BlockingIOError:
            n = -1
        except OSError as exc:
            log.debug("splice read: %s", exc)
            self.abort()
            return
        if n == 0:
            if f.pipe is not None:
                _give_pipe(f.pipe)
                f.pipe = None
            self._end()
            return
        if n > 0:
            f.count += n
        self._pump(f)

    def _pump(self, f: _Flow) -> None:
        """Write what is queued; then wait for dst (still queued) or for src (all written)."""
        try:
            if f.pending is not None:
                k = os.write(f.dst, f.pending)
                f.pending = f.pending[k:] if k < len(f.pending) else None
            while f.pending is None and f.in_pipe:
                assert f.pipe is not None
                f.in_pipe -= os.splice(f.pipe[0], f.dst, f.in_pipe, flags=_FLAGS)
        except BlockingIOError:
            pass
        except OSError as exc:
            log.debug("splice write: %s", exc)
            self.abort()
            return
        if f.in_pipe == 0 and f.pipe is not None:
            _give_pipe(f.pipe)
            f.pipe = None
        if f.queued:
            self._watch(f, read=False, write=True)
        elif self._ending:
            self._watch(f, read=False, write=False)
            self._close_fd(f.dst)
        else:
            self._watch(f, read=True, write=False)

    def _watch(self, f: _Flow, *, read: bool, write: bool) -> None:
        loop = self._loop
        if read != f.reading:
            f.reading = read
            if read:
                loop.add_reader(f.src, self._on_readable, f)
            else:
                loop.remove_reader(f.src)
        if write != f.writing:
            f.writing = write
            if write:
                loop.add_writer(f.dst, self._pump, f)
            else:
                loop.remove_writer(f.dst)

    # -- ending
    def _end(self) -> None:
        """EOF or error on one side: stop reading both, close each side once its bytes are out."""
        if self._ending:
            return
        self._ending = True
        for f in self._flows:  # no fd may be closed while the loop still watches it
            self._watch(f, read=False, write=f.writing)
        for f in self._flows:
            if not f.queued:
                self._close_fd(f.dst)
        self._on_end()

    def _close_fd(self, fd: int) -> None:
        if fd not in self._closed:
            self._closed.add(fd)
            os.close(fd)
        if len(self._closed) == 2:
            for f in self._flows:
                if f.pipe is not None:  # bytes left in it: not reusable
                    _give_pipe(f.pipe, reusable=False)
                    f.pipe = None

    def abort(self) -> None:
        self._ending = True
        for f in self._flows:
            self._watch(f, read=False, write=False)
            f.pending, f.in_pipe = None, 0
        for fd in self._fds:
            self._close_fd(fd)
        self._on_end()


def detach_fd(t: asyncio.Transport) -> int:
    """A duplicate of the socket's fd; the transport is aborted."""
    fd = os.dup(t.get_extra_info("socket").fileno())
    t.set_protocol(asyncio.Protocol())
    t.abort()
    return fd


def start(a: asyncio.Transport, b: asyncio.Transport, on_end: Callable[[], None]) -> PipeJoined:
    """Take both sockets out of their transports and splice them.

    Both must be :func:`bare_tcp`, open, with nothing in their write buffers, and their
    protocols must have handed on every byte read so far.
    """
    joined = PipeJoined(asyncio.get_running_loop(), detach_fd(a), detach_fd(b), on_end)
    joined._start()
    return joined
