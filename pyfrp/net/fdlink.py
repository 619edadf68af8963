"""A SOCK_SEQPACKET Unix socket carrying cluster messages (proto/cluster.py) and the file
descriptors sent beside them (SCM_RIGHTS), driven by the loop's reader/writer callbacks.

Both ends are our own processes, so a malformed datagram is a bug, not an attack: it is logged
and dropped (with any descriptors it brought), and the link goes on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from pyfrp.errors import FrameError
from pyfrp.proto import cluster

log = logging.getLogger(__name__)

OnMessage = Callable[[dict[str, Any], bytes, list[int]], None]
MAX_FDS = 4


def link_pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):  # room for a burst of hand-overs while the other side is busy
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * cluster.MAX_DATAGRAM)
    return a, b


class FdLink:
    def __init__(self, sock: socket.socket, on_message: OnMessage, on_lost: Callable[[], None]):
        self.sock = sock
        sock.setblocking(False)
        self._on_message = on_message
        self._on_lost = on_lost
        self._queue: collections.deque[tuple[bytes, list[int]]] = collections.deque()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    def send(self, msg: dict[str, Any], data: bytes = b"", fds: Sequence[int] = ()) -> None:
        """Queue one message; the descriptors are closed here once sent (or the link is gone)."""
        owned = list(fds)
        if self._closed:
            _close_all(owned)
            return
        self._queue.append((cluster.encode(msg, data), owned))
        if len(self._queue) == 1:
            self._flush()

    def _flush(self) -> None:
        while self._queue:
            datagram, fds = self._queue[0]
            try:
                socket.send_fds(self.sock, [datagram], fds) if fds else self.sock.send(datagram)
            except BlockingIOError:
                self._loop.add_writer(self.sock.fileno(), self._writable)
                return
            except OSError as exc:
                log.warning("cluster link send failed: %s", exc)
                self._lost()
                return
            self._queue.popleft()
            _close_all(fds)

    def _writable(self) -> None:
        self._loop.remove_writer(self.sock.fileno())
        self._flush()

    def _readable(self) -> None:
        for _ in range(64):  # then let the loop breathe
            try:
                datagram, fds, flags, _ = socket.recv_fds(self.sock, cluster.MAX_DATAGRAM, MAX_FDS)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("cluster link receive failed: %s", exc)
                self._lost()
                return
            if not datagram and not fds:
                self._lost()
                return
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                log.warning("cluster link: truncated message dropped")
                _close_all(fds)
                continue
            try:
                msg, data = cluster.decode(datagram)
            except FrameError as exc:
                log.warning("cluster link: %s", exc)
                _close_all(fds)
                continue
            self._on_message(msg, data, fds)

    def _lost(self) -> None:
        if self._closed:
            return
        self.close()
        self._on_lost()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self.sock.fileno())
        self._loop.remove_writer(self.sock.fileno())
        for _, fds in self._queue:
            _close_all(fds)
        self._queue.clear()
        self.sock.close()


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
