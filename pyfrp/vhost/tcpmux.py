"""The tcpmux HTTP CONNECT vhost on ``tcpmux_httpconnect_port`` (frp pkg/util/tcpmux,
pkg/util/vhost/vhost.go): a client sends ``CONNECT host:port HTTP/1.1``, frps routes on the host
(and on the Basic ``Proxy-Authorization`` user, for ``route_by_http_user``) over the domains of
``type = tcpmux`` proxies, and the connection becomes a tunnel to the proxy's local service.

frp's order of events, kept: the head must arrive within 30 s; no route -> 404 page, closed; a
route -> ``200 OK`` (unless ``tcpmux_passthrough``, which forwards the CONNECT head itself to the
service instead), then the route's credentials are checked (-> 407, closed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyfrp.proto.auth import same_secret
from pyfrp.vhost.conn import WorkConnOpener
from pyfrp.vhost.http import parse_basic
from pyfrp.vhost.http1 import MAX_HEAD, HttpError, find_head_end, parse_request_head
from pyfrp.vhost.notfound import not_found_page
from pyfrp.vhost.routed import RoutedConn, RoutedServer
from pyfrp.vhost.router import Elsewhere, Route, Router, canonical_host

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 30.0  # frp server/service.go vhostReadWriteTimeout
CONNECT_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
PROXY_AUTH_REQUIRED = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
    b'Proxy-Authenticate: Basic realm="Restricted"\r\nContent-Length: 0\r\n\r\n'
)


@dataclass(eq=False, slots=True)
class TcpmuxRoute:
    opener: WorkConnOpener
    username: str = ""
    password: str = ""


def not_found_response(page: bytes, version: str) -> bytes:
    return (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n"
        + f"Server: frp/{version}\r\nContent-Length: {len(page)}\r\n\r\n".encode()
        + page
    )


class VhostTcpmuxServer(RoutedServer):
    def __init__(
        self,
        *,
        passthrough: bool = False,
        version: str = "",
        not_found_page: str = "",
        head_timeout: float = HEAD_TIMEOUT,
    ) -> None:
        super().__init__()
        self.router: Router[TcpmuxRoute | Elsewhere] = Router()
        self.passthrough = passthrough
        self.version = version
        self.not_found_path = not_found_page
        self.head_timeout = head_timeout

    def conn_factory(self) -> RoutedConn:
        return _ConnectConn(self)

    def add_route(
        self, domain: str, user: str, route: TcpmuxRoute
    ) -> Route[TcpmuxRoute | Elsewhere]:
        return self.router.add(domain, "", user, route)

    def remove_route(self, domain: str, user: str) -> None:
        self.router.remove(domain, "", user)


class _ConnectConn(RoutedConn):
    awaited = "CONNECT request"

    def __init__(self, server: VhostTcpmuxServer) -> None:
        super().__init__(server._conns, server.head_timeout)
        self.server = server

    def examine(self) -> None:
        end = find_head_end(self.buf)
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self.close()
            return
        transport = self.decided()
        try:
            req = parse_request_head(bytes(self.buf[:end]))
            if req.method != "CONNECT":
                raise HttpError("connections to tcp vhost must be of method CONNECT")
        except HttpError as exc:
            log.debug("get hostname from http/https request error: %s", exc)
            self.close()
            return
        host = canonical_host(req.host)
        user, password = parse_basic(req.get("proxy-authorization")) or ("", "")
        found = self.server.router.lookup(host, "", user)
        if found is None:
            log.debug("http request for host [%s] path [] httpUser [%s] not found", host, user)
            page = not_found_page(self.server.not_found_path)
            transport.write(not_found_response(page, self.server.version))
            transport.close()
            return
        route = found.payload
        if isinstance(route, Elsewhere):
            self.send_to_worker(self.server.hand_over, route.pick())
            return
        if not self.server.passthrough:
            transport.write(CONNECT_OK)
            del self.buf[:end]  # the service sees only what follows the CONNECT head
        if route.username and not (
            same_secret(user, route.username) & same_secret(password, route.password)
        ):
            log.debug("auth failed for user: %s", route.username)
            transport.write(PROXY_AUTH_REQUIRED)
            transport.close()
            return
        self.route_to(route.opener, f"new request host [{host}] path [] httpUser [{user}]")
