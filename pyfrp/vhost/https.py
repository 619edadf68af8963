"""The HTTPS vhost on ``vhost_https_port``: TLS passthrough routed by SNI (frp vhost/https.go).

frps never terminates TLS here. It reads the ClientHello (30 s deadline, frp's
vhostReadWriteTimeout), routes on its lower-case ``server_name`` over the domains of ``type =
https`` proxies (exact, ``*.`` wildcards, then ``*``; a hello without SNI reaches only ``*``), and
replays every byte read so far into a work connection before splicing. With no route it answers
a fatal ``unrecognized_name`` alert, as Go's handshake without a certificate does, and closes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import cast

from pyfrp.net.listen import serve_tcp
from pyfrp.net.splice import splice
from pyfrp.vhost.conn import WorkConnOpener, peer_of
from pyfrp.vhost.router import Route, Router
from pyfrp.vhost.sni import ALERT_UNRECOGNIZED_NAME, MAX_HELLO, ClientHelloError, parse_client_hello

log = logging.getLogger(__name__)

# frp server/service.go vhostReadWriteTimeout
HELLO_TIMEOUT = 30.0
# Records carrying a maximal ClientHello, with their 5-byte headers.
_MAX_BUFFER = MAX_HELLO + 5 * 8


@dataclass(eq=False, slots=True)
class HttpsRoute:
    opener: WorkConnOpener


class VhostHttpsServer:
    def __init__(self, *, hello_timeout: float = HELLO_TIMEOUT) -> None:
        self.router: Router[HttpsRoute] = Router()
        self.hello_timeout = hello_timeout
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[_TlsConn] = set()

    async def listen(self, host: str, port: int) -> int:
        self._server, self.port = await serve_tcp(lambda: _TlsConn(self), host, port)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.close()

    def add_route(self, domain: str, route: HttpsRoute) -> Route[HttpsRoute]:
        return self.router.add(domain, "", "", route)

    def remove_route(self, domain: str) -> None:
        self.router.remove(domain, "", "")


class _TlsConn(asyncio.Protocol):
    def __init__(self, server: VhostHttpsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.ended = False
        self.routed = False
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server._conns.add(self)
        self.timer = asyncio.get_running_loop().call_later(self.server.hello_timeout, self._timeout)

    def _timeout(self) -> None:
        self.timer = None
        if not self.routed:
            log.debug("no TLS ClientHello within %.0f s, closing", self.server.hello_timeout)
            self.close()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.routed:  # bytes that arrived before the splice took over
            assert self.transport is not None
            self.transport.pause_reading()
            return
        try:
            name = parse_client_hello(self.buf)
        except ClientHelloError as exc:
            log.debug("get hostname from https request error: %s", exc)
            self.close()
            return
        if name is None:
            if len(self.buf) > _MAX_BUFFER:
                self.close()
            return
        assert self.transport is not None
        self.routed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport.pause_reading()
        found = self.server.router.lookup(name, "", "")
        if found is None:
            log.debug("https request for host [%s] not found", name)
            self.transport.write(ALERT_UNRECOGNIZED_NAME)
            self.transport.close()
            return
        self.task = asyncio.get_running_loop().create_task(self._join(name, found.payload))

    def eof_received(self) -> bool:
        self.ended = True
        if not self.routed:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.server._conns.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    async def _join(self, name: str, route: HttpsRoute) -> None:
        user = self.transport
        assert user is not None
        try:
            opened = await route.opener.open_work_conn(peer_of(user), peer_of(user, "sockname"))
            if opened is None:
                user.close()
                return
            if self.ended and user.is_closing():
                opened.transport.close()
                return
            log.debug("new https request for host [%s] -> [%s]", name, route.opener.name)
            hello = bytes(self.buf)
            self.buf.clear()
            await splice(
                user,
                opened.transport,
                a_pending=hello,
                a_ended=self.ended,
                b_pending=opened.pending,
                b_ended=opened.ended,
            )
        finally:
            self.server._conns.discard(self)
            user.close()
