"""The HTTPS vhost on ``vhost_https_port``: TLS passthrough routed by SNI (frp vhost/https.go).

frps never terminates TLS here. It reads the ClientHello (30 s deadline, frp's
vhostReadWriteTimeout), routes on its lower-case ``server_name`` over the domains of ``type =
https`` proxies (exact, ``*.`` wildcards, then ``*``; a hello without SNI reaches only ``*``), and
replays every byte read so far into a work connection before splicing. With no route it answers
a fatal ``unrecognized_name`` alert, as Go's handshake without a certificate does, and closes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyfrp.vhost.conn import WorkConnOpener
from pyfrp.vhost.routed import RoutedConn, RoutedServer
from pyfrp.vhost.router import Elsewhere, Route, Router
from pyfrp.vhost.sni import ALERT_UNRECOGNIZED_NAME, MAX_HELLO, ClientHelloError, parse_client_hello

log = logging.getLogger(__name__)

# frp server/service.go vhostReadWriteTimeout
HELLO_TIMEOUT = 30.0
# Records carrying a maximal ClientHello, with their 5-byte headers.
_MAX_BUFFER = MAX_HELLO + 5 * 8


@dataclass(eq=False, slots=True)
class HttpsRoute:
    opener: WorkConnOpener


class VhostHttpsServer(RoutedServer):
    def __init__(self, *, hello_timeout: float = HELLO_TIMEOUT) -> None:
        super().__init__()
        self.router: Router[HttpsRoute | Elsewhere] = Router()
        self.hello_timeout = hello_timeout

    def conn_factory(self) -> RoutedConn:
        return _TlsConn(self)

    def add_route(self, domain: str, route: HttpsRoute) -> Route[HttpsRoute | Elsewhere]:
        return self.router.add(domain, "", "", route)

    def remove_route(self, domain: str) -> None:
        self.router.remove(domain, "", "")


class _TlsConn(RoutedConn):
    awaited = "TLS ClientHello"

    def __init__(self, server: VhostHttpsServer) -> None:
        super().__init__(server._conns, server.hello_timeout)
        self.server = server

    def examine(self) -> None:
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
        transport = self.decided()
        found = self.server.router.lookup(name, "", "")
        if found is None:
            log.debug("https request for host [%s] not found", name)
            transport.write(ALERT_UNRECOGNIZED_NAME)
            transport.close()
            return
        if isinstance(found.payload, Elsewhere):
            self.send_to_worker(self.server.hand_over, found.payload.pick())
            return
        self.route_to(found.payload.opener, f"new https request for host [{name}]")
