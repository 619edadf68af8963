"""Server-side ``type = http`` and ``type = https`` proxies (server/proxy/http.go, https.go).

Neither listens on a port of its own: each registers routes in the shared vhost routers and
opens work connections on demand for them. Both validate domains like frp
(pkg/config/v1/validation/proxy.go) before registering anything.
"""

from __future__ import annotations

import functools

from pyfrp.proto.msg import NewProxy
from pyfrp.server.groups import GroupOpener
from pyfrp.server.ports import PortError
from pyfrp.server.proxies.base import Proxy, ProxyHost, Resources, register
from pyfrp.vhost.conn import WorkConnOpener
from pyfrp.vhost.http import HttpRoute, VhostHttpServer
from pyfrp.vhost.https import HttpsRoute, VhostHttpsServer
from pyfrp.vhost.router import RouteConflict


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


def _vhost_port_unset(kind: str) -> PortError:
    return PortError(f"type [{kind}] not supported when vhost {kind} port is not set")


@register("http")
class HttpProxy(Proxy):
    def __init__(self, host: ProxyHost, msg: NewProxy, res: Resources) -> None:
        super().__init__(host, msg, res)
        self._routes: list[tuple[str, str, str, HttpRoute]] = []
        self._grouped: list[tuple[str, ...]] = []  # the group routes it is a member of

    @property
    def vhost(self) -> VhostHttpServer:
        if self.res.vhost_http is None:
            raise _vhost_port_unset(self.kind)
        return self.res.vhost_http

    async def start(self) -> None:
        cfg = self.res.cfg
        msg = self.msg
        vhost = self.vhost
        domains = build_domains(msg, cfg.subdomain_host)
        locations = msg.locations or [""]
        addrs: list[str] = []
        try:
            for domain in domains:
                for location in locations:
                    user = msg.route_by_http_user
                    if msg.group:
                        self._join_group(vhost, domain, location)
                    else:
                        route = self._route(self)
                        vhost.add_route(domain, location, user, route)
                        self._routes.append((domain, location, user, route))
                    # frp lists a domain once per location.
                    addrs.append(canonical_addr(domain, cfg.vhost_http_port))
                    self.log.info(
                        "http proxy listen for host [%s] location [%s] group [%s], "
                        "routeByHTTPUser [%s]",
                        domain, location, msg.group, msg.route_by_http_user,
                    )  # fmt: skip
        except (RouteConflict, PortError) as exc:  # a conflict, or a group refusing us
            await self.close()
            raise PortError(str(exc)) from None
        self.remote_addr = ",".join(addrs)

    def _route(self, opener: WorkConnOpener) -> HttpRoute:
        msg = self.msg
        return HttpRoute(
            opener=opener,
            rewrite_host=msg.host_header_rewrite,
            username=msg.http_user,
            password=msg.http_pwd,
            headers=dict(msg.headers),
            response_headers=dict(msg.response_headers),
        )

    def _join_group(self, vhost: VhostHttpServer, domain: str, location: str) -> None:
        """One route for the group (the first member's settings), each request to the next
        member (server/group/http.go)."""
        msg, groups = self.msg, self.res.groups
        user = msg.route_by_http_user
        where = ("http", domain, location, user)
        group = groups.join(where, msg.group, msg.group_key, None, self)
        if group.shared is None:
            route = self._route(GroupOpener(group))
            route.pooled = False
            try:
                vhost.add_route(domain, location, user, route)
            except RouteConflict:
                groups.leave(where, self)
                raise
            group.shared = route
            group.release = functools.partial(vhost.remove_route, domain, location, user, route)
        self._grouped.append(where)

    async def close(self) -> None:
        for domain, location, user, route in self._routes:
            self.vhost.remove_route(domain, location, user, route)
        self._routes.clear()
        for where in self._grouped:
            self.res.groups.leave(where, self)
        self._grouped.clear()


@register("https")
class HttpsProxy(Proxy):
    def __init__(self, host: ProxyHost, msg: NewProxy, res: Resources) -> None:
        super().__init__(host, msg, res)
        self._domains: list[str] = []
        self._grouped: list[tuple[str, ...]] = []

    @property
    def vhost(self) -> VhostHttpsServer:
        if self.res.vhost_https is None:
            raise _vhost_port_unset(self.kind)
        return self.res.vhost_https

    async def start(self) -> None:
        cfg = self.res.cfg
        vhost = self.vhost
        domains = build_domains(self.msg, cfg.subdomain_host)
        addrs: list[str] = []
        route = HttpsRoute(opener=self)
        try:
            for domain in domains:
                if self.msg.group:
                    self._join_group(vhost, domain)
                else:
                    vhost.add_route(domain, route)
                    self._domains.append(domain)
                addrs.append(canonical_addr(domain, cfg.vhost_https_port))
                self.log.info("https proxy listen for host [%s] group [%s]", domain, self.msg.group)
        except (RouteConflict, PortError) as exc:  # a conflict, or a group refusing us
            await self.close()
            raise PortError(str(exc)) from None
        self.remote_addr = ",".join(addrs)

    def _join_group(self, vhost: VhostHttpsServer, domain: str) -> None:
        msg, groups = self.msg, self.res.groups
        where = ("https", domain)
        group = groups.join(where, msg.group, msg.group_key, None, self)
        if group.shared is None:
            try:
                vhost.add_route(domain, HttpsRoute(opener=GroupOpener(group)))
            except RouteConflict:
                groups.leave(where, self)
                raise
            group.shared = domain
            group.release = functools.partial(vhost.remove_route, domain)
        self._grouped.append(where)

    async def close(self) -> None:
        for domain in self._domains:
            self.vhost.remove_route(domain)
        self._domains.clear()
        for where in self._grouped:
            self.res.groups.leave(where, self)
        self._grouped.clear()
