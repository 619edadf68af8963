"""A vhost connection read until its first bytes name a route, then spliced whole to a work
connection: the https vhost (a TLS ClientHello's SNI) and the tcpmux one (an HTTP CONNECT head).

Until it is routed, the bytes collect in ``buf`` and ``examine()`` (the subclass's) looks at them
after every read; it calls ``route_to()`` with the chosen opener, or closes. The first bytes must
arrive within the server's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from pyfrp.net.listen import serve_tcp
from pyfrp.net.splice import splice
from pyfrp.vhost.conn import HandOver, WorkConnOpener, peer_of

log = logging.getLogger(__name__)


class RoutedServer:
    """The listener and live connections of a routed vhost; ``conn_factory`` makes one
    RoutedConn per accepted connection."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[RoutedConn] = set()
        self.hand_over: HandOver | None = None  # set in a pyfrps worker

    def conn_factory(self) -> RoutedConn:
        raise NotImplementedError

    async def listen(self, host: str, port: int, sock: socket.socket | None = None) -> int:
        self._server, self.port = await serve_tcp(self.conn_factory, host, port, sock)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.close()


class RoutedConn(asyncio.Protocol):
    awaited = "first bytes"  # what the deadline waits for, in its log line

    def __init__(self, conns: set[RoutedConn], timeout: float) -> None:
        self.conns = conns  # the server's live connections
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.ended = False
        self.routed = False
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.conns.add(self)
        self.timer = asyncio.get_running_loop().call_later(self.timeout, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        if not self.routed:
            log.debug("no %s within %.0f s, closing", self.awaited, self.timeout)
            self.close()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        assert self.transport is not None
        if self.routed:  # bytes that arrived before the splice took over
            self.transport.pause_reading()
            return
        self.examine()

    def examine(self) -> None:
        raise NotImplementedError

    def decided(self) -> asyncio.Transport:
        """The first bytes were read: no more deadline, no more reading until the splice."""
        assert self.transport is not None
        self.routed = True
        self._stop_timer()
        self.transport.pause_reading()
        return self.transport

    def send_to_worker(self, hand_over: HandOver | None, worker: int) -> None:
        """The route is another worker's: the connection goes there, its bytes unread."""
        transport, self.transport = self.transport, None
        self.conns.discard(self)
        if transport is None or hand_over is None:
            return
        hand_over(worker, transport, bytes(self.buf))

    def route_to(self, opener: WorkConnOpener, label: str) -> None:
        """Splice to a work connection of ``opener``, the bytes in ``buf`` first."""
        self.task = asyncio.get_running_loop().create_task(self._join(opener, label))

    def eof_received(self) -> bool:
        self.ended = True
        if not self.routed:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.conns.discard(self)
        self._stop_timer()

    async def _join(self, opener: WorkConnOpener, label: str) -> None:
        user = self.transport
        assert user is not None
        try:
            opened = await opener.open_work_conn(peer_of(user), peer_of(user, "sockname"))
            if opened is None:
                return
            if self.ended and user.is_closing():
                opened.transport.close()
                return
            log.debug("%s -> [%s]", label, opener.name)
            early = bytes(self.buf)
            self.buf.clear()
            await splice(
                user,
                opened.transport,
                a_pending=early,
                a_ended=self.ended,
                b_pending=opened.pending,
                b_ended=opened.ended,
            )
        finally:
            self.conns.discard(self)
            user.close()
