"""``type = tcpmux`` with ``multiplexer = httpconnect`` (server/proxy/tcpmux.go): routes in the
shared HTTP CONNECT vhost, one per domain, like an https proxy's."""

from __future__ import annotations

import functools

from pyfrp.proto.msg import NewProxy
from pyfrp.server.groups import GroupOpener
from pyfrp.server.ports import PortError
from pyfrp.server.proxies.base import Proxy, ProxyHost, Resources, register
from pyfrp.server.proxies.vhost import build_domains, canonical_addr
from pyfrp.vhost.router import RouteConflict
from pyfrp.vhost.tcpmux import TcpmuxRoute


@register("tcpmux")
class TcpmuxProxy(Proxy):
    def __init__(self, host: ProxyHost, msg: NewProxy, res: Resources) -> None:
        super().__init__(host, msg, res)
        self._domains: list[str] = []
        self._grouped: list[tuple[str, ...]] = []

    async def start(self) -> None:
        msg = self.msg
        if msg.multiplexer != "httpconnect":
            raise PortError(f"unknown multiplexer [{msg.multiplexer}]")
        vhost = self.res.vhost_tcpmux
        if vhost is None:
            raise PortError("tcpmux httpconnect multiplexer is not enabled in server")
        cfg = self.res.cfg
        route = TcpmuxRoute(opener=self, username=msg.http_user, password=msg.http_pwd)
        addrs: list[str] = []
        groups = self.res.groups
        try:
            for domain in build_domains(msg, cfg.subdomain_host):
                if msg.group:
                    where = ("tcpmux", domain, msg.route_by_http_user)
                    group = groups.join(where, msg.group, msg.group_key, None, self)
                    self._grouped.append(where)
                    if group.shared is None:
                        shared = TcpmuxRoute(
                            opener=GroupOpener(group), username=msg.http_user,
                            password=msg.http_pwd,
                        )  # fmt: skip
                        vhost.add_route(domain, msg.route_by_http_user, shared)
                        group.shared = shared
                        group.release = functools.partial(
                            vhost.remove_route, domain, msg.route_by_http_user
                        )
                else:
                    vhost.add_route(domain, msg.route_by_http_user, route)
                    self._domains.append(domain)
                addrs.append(canonical_addr(domain, cfg.tcpmux_httpconnect_port))
                self.log.info(
                    "tcpmux httpconnect multiplexer listens for host [%s], group [%s] "
                    "routeByHTTPUser [%s]",
                    domain, msg.group, msg.route_by_http_user,
                )  # fmt: skip
        except (RouteConflict, PortError) as exc:  # a conflict, or a group refusing us
            await self.close()
            raise PortError(str(exc)) from None
        self.remote_addr = ",".join(addrs)

    async def close(self) -> None:
        vhost = self.res.vhost_tcpmux
        if vhost is not None:
            for domain in self._domains:
                vhost.remove_route(domain, self.msg.route_by_http_user)
        self._domains.clear()
        for where in self._grouped:
            self.res.groups.leave(where, self)
        self._grouped.clear()
