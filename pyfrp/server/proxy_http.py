"""Server-side ``type = http`` and ``type = https`` proxies (server/proxy/http.go, https.go).

Neither listens on a port of its own: each registers routes in the shared vhost routers and
opens work connections on demand for them. Both validate domains like frp
(pkg/config/v1/validation/proxy.go) before registering anything.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyfrp.log import PrefixLogger
from pyfrp.proto.msg import NewProxy
from pyfrp.server.ports import PortError
from pyfrp.server.proxy import TcpProxy, start_work_conn
from pyfrp.vhost.conn import WorkConn
from pyfrp.vhost.http import HttpRoute, VhostHttpServer
from pyfrp.vhost.https import HttpsRoute, VhostHttpsServer
from pyfrp.vhost.router import RouteConflict

if TYPE_CHECKING:
    from pyfrp.server.control import Control

log = logging.getLogger(__name__)


def canonical_addr(host: str, port: int) -> str:
    """frp util.CanonicalAddr: no port for 80 and 443."""
    return host if port in (80, 443) else f"{host}:{port}"


def build_domains(msg: NewProxy, subdomain_host: str) -> list[str]:
    """Validated domains of an http/https proxy (custom_domains, then subdomain.subdomain_host).

    Raises PortError with frp's texts.
    """
    for domain in msg.custom_domains:
        if (
            subdomain_host
            and len(subdomain_host.split(".")) < len(domain.split("."))
            and domain.endswith("." + subdomain_host)
        ):
            raise PortError(
                f"custom domain [{domain}] should not belong to subdomain host [{subdomain_host}]"
            )
    domains = [d for d in msg.custom_domains if d]
    if msg.subdomain:
        if not subdomain_host:
            raise PortError(
                "subdomain is not supported because this feature is not enabled in server"
            )
        if "." in msg.subdomain or "*" in msg.subdomain:
            raise PortError("'.' and '*' are not supported in subdomain")
        domains.append(f"{msg.subdomain}.{subdomain_host}")
    return domains


class _VhostProxy:
    """What http and https proxies share: the name, the work connections, the lifecycle."""

    kind = ""

    def __init__(self, control: Control, msg: NewProxy) -> None:
        self.control = control
        self.msg = msg
        self.name = msg.proxy_name
        self.remote_addr = ""
        self.log = PrefixLogger(log, control.run_id, self.name)

    async def open_work_conn(
        self, src: tuple[str, int], dst: tuple[str, int] = ("", 0)
    ) -> WorkConn | None:
        return await start_work_conn(self.control, self.msg, self.log, src, dst)

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class HttpProxy(_VhostProxy):
    kind = "http"

    def __init__(self, control: Control, msg: NewProxy, vhost: VhostHttpServer) -> None:
        super().__init__(control, msg)
        self.vhost = vhost
        self._routes: list[tuple[str, str, str, HttpRoute]] = []

    async def start(self) -> None:
        cfg = self.control.service.cfg
        msg = self.msg
        domains = build_domains(msg, cfg.subdomain_host)
        locations = msg.locations or [""]
        addrs: list[str] = []
        try:
            for domain in domains:
                for location in locations:
                    route = HttpRoute(
                        opener=self,
                        rewrite_host=msg.host_header_rewrite,
                        username=msg.http_user,
                        password=msg.http_pwd,
                        headers=dict(msg.headers),
                        response_headers=dict(msg.response_headers),
                    )
                    self.vhost.add_route(domain, location, msg.route_by_http_user, route)
                    self._routes.append((domain, location, msg.route_by_http_user, route))
                    # frp lists a domain once per location.
                    addrs.append(canonical_addr(domain, cfg.vhost_http_port))
                    self.log.info(
                        "http proxy listen for host [%s] location [%s] group [%s], "
                        "routeByHTTPUser [%s]",
                        domain, location, msg.group, msg.route_by_http_user,
                    )  # fmt: skip
        except RouteConflict as exc:
            await self.close()
            raise PortError(str(exc)) from None
        self.remote_addr = ",".join(addrs)

    async def close(self) -> None:
        for domain, location, user, route in self._routes:
            self.vhost.remove_route(domain, location, user, route)
        self._routes.clear()


class HttpsProxy(_VhostProxy):
    kind = "https"

    def __init__(self, control: Control, msg: NewProxy, vhost: VhostHttpsServer) -> None:
        super().__init__(control, msg)
        self.vhost = vhost
        self._domains: list[str] = []

    async def start(self) -> None:
        cfg = self.control.service.cfg
        domains = build_domains(self.msg, cfg.subdomain_host)
        addrs: list[str] = []
        route = HttpsRoute(opener=self)
        try:
            for domain in domains:
                self.vhost.add_route(domain, route)
                self._domains.append(domain)
                addrs.append(canonical_addr(domain, cfg.vhost_https_port))
                self.log.info("https proxy listen for host [%s] group [%s]", domain, self.msg.group)
        except RouteConflict as exc:
            await self.close()
            raise PortError(str(exc)) from None
        self.remote_addr = ",".join(addrs)

    async def close(self) -> None:
        for domain in self._domains:
            self.vhost.remove_route(domain)
        self._domains.clear()


# Every kind of proxy a Control may hold.
ServerProxy = TcpProxy | HttpProxy | HttpsProxy
