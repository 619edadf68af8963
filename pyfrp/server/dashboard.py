"""frps's web server (server/api_router.go, server/http/controller.go): the dashboard page, frp's
JSON API with Go frps's shapes and field names, and Prometheus ``/metrics``.

The page at ``/`` (also ``/static/``, frp's address for its UI) is one HTML file in
``pyfrp/server/assets``; it reads the same API as scripts do.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from pyfrp.config.model import ServerConfig, WebServerConfig
from pyfrp.config.reload import ReloadResult
from pyfrp.proto.msg import NewProxy
from pyfrp.server.dashboard_v2 import DashboardV2, Online
from pyfrp.server.proxies import Proxy
from pyfrp.server.stats import RESERVE_DAYS, ProxyStats, Stats
from pyfrp.version import FRP_VERSION
from pyfrp.web.server import HTTPError, WebServer, api, serve_assets

if TYPE_CHECKING:
    from pyfrp.server.clusterview import ClusterView

log = logging.getLogger(__name__)

_TIME = "%m-%d %H:%M:%S"  # frp: Format("01-02 15:04:05")


def _page() -> str:
    return resources.files("pyfrp.server").joinpath("assets/dashboard.html").read_text("utf-8")


def proxy_conf(msg: NewProxy) -> dict[str, Any]:
    """A proxy's configuration as Go frps shows it (``getConfFromConfigurer``: the v1
    ProxyBaseConfig from the NewProxy message, completed, then the type's own fields)."""
    ptype = msg.proxy_type or "tcp"
    transport: dict[str, Any] = {}
    if msg.use_encryption:
        transport["useEncryption"] = True
    if msg.use_compression:
        transport["useCompression"] = True
    transport["bandwidthLimit"] = msg.bandwidth_limit
    transport["bandwidthLimitMode"] = msg.bandwidth_limit_mode or "client"
    conf: dict[str, Any] = {"name": msg.proxy_name, "type": ptype}
    if msg.annotations:
        conf["annotations"] = dict(msg.annotations)
    conf["transport"] = transport
    if msg.metas:
        conf["metadatas"] = dict(msg.metas)
    lb: dict[str, Any] = {"group": msg.group}
    if msg.group_key:
        lb["groupKey"] = msg.group_key
    conf["loadBalancer"] = lb
    conf["healthCheck"] = {"type": "", "intervalSeconds": 0}
    conf["localIP"] = "127.0.0.1"
    conf["plugin"] = None
    if ptype in ("tcp", "udp"):
        conf["remotePort"] = msg.remote_port
    if ptype in ("http", "https", "tcpmux"):
        if msg.custom_domains:
            conf["customDomains"] = list(msg.custom_domains)
        if msg.subdomain:
            conf["subdomain"] = msg.subdomain
    if ptype == "http":
        conf["locations"] = list(msg.locations) or None
        conf["hostHeaderRewrite"] = msg.host_header_rewrite
    if ptype == "tcpmux":
        conf["multiplexer"] = msg.multiplexer
        conf["routeByHTTPUser"] = msg.route_by_http_user
    return conf


def _when(t: dt.datetime | None) -> str:
    return t.strftime(_TIME) if t is not None else ""


def _ports(ranges: list[tuple[int, int]]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


class Server(Protocol):
    """What the dashboard reads of the running server (service.Server)."""

    cfg: ServerConfig
    stats: Stats
    bind_port: int

    @property
    def proxies(self) -> Mapping[str, Proxy]: ...

    def reload(self) -> ReloadResult: ...


@dataclass(frozen=True, slots=True)
class _Registered:
    msg: NewProxy


class Dashboard:
    """The routes of frps's web server over a running Server; ``view``: with pyfrp.workers,
    the figures of every worker, gathered at each request."""

    def __init__(
        self,
        server: Server,
        cfg: WebServerConfig,
        prometheus: bool,
        view: ClusterView | None = None,
    ) -> None:
        self.server = server
        self.stats: Stats = server.stats
        self.view = view
        self._gathered: Mapping[str, Online] | None = None
        self._prometheus = prometheus
        self.web = WebServer(cfg, self._routes)

    @property
    def proxies(self) -> Mapping[str, Online]:
        return self._gathered if self._gathered is not None else self.server.proxies

    @web.middleware
    async def _whole_relay(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.view is not None:
            stats, online = await self.view.gather()
            self.stats = stats
            self._gathered = {name: _Registered(msg) for name, msg in online.items()}
        response: web.StreamResponse = await handler(request)
        return response

    def clear_offline(self) -> tuple[int, int]:
        """Forget the offline proxies (every worker's): (how many, of how many)."""
        cleared, total = self.stats.clear_offline()
        if self.view is not None:
            self.view.clear_offline()  # self.stats was a merged copy
        return cleared, total

    def _routes(self, app: web.Application) -> None:
        if self.view is not None:
            app.middlewares.append(self._whole_relay)
        r = app.router
        if self._prometheus:
            r.add_get("/metrics", self._metrics_handler())
        r.add_get("/api/serverinfo", api(self.server_info))
        r.add_get("/api/proxy/{type}", api(self.proxies_by_type))
        r.add_get("/api/proxy/{type}/{name}", api(self.proxy_by_type_and_name))
        r.add_get("/api/proxies/{name}", api(self.proxy_by_name))
        r.add_get("/api/traffic/{name}", api(self.traffic))
        r.add_get("/api/clients", api(self.clients))
        r.add_get("/api/clients/{key}", api(self.client))
        r.add_delete("/api/proxies", api(self.delete_proxies))
        r.add_put("/api/reload", api(self.reload))  # pyfrp extension (frpc: GET /api/reload)
        DashboardV2(self).routes(app)
        if self.server.cfg.web.assets_dir:
            serve_assets(app, self.server.cfg.web.assets_dir)
        else:
            r.add_get("/", self._index)
            r.add_get("/static/", self._index)

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=_page(), content_type="text/html")

    async def reload(self, request: web.Request) -> dict[str, Any]:
        """Re-read frps's config file: what was applied, what needs a restart (400 and nothing
        changed when the file does not load)."""
        result = self.server.reload()
        if result.error:
            raise HTTPError(400, f"invalid argument: {result.error}")
        return result.as_json()

    # -- frp's v1 API
    async def server_info(self, request: web.Request) -> dict[str, Any]:
        cfg = self.server.cfg
        stats = self.stats
        info: dict[str, Any] = {
            "version": FRP_VERSION,
            "bindPort": self.server.bind_port,
            "vhostHTTPPort": cfg.vhost_http_port,
            "vhostHTTPSPort": cfg.vhost_https_port,
            "tcpmuxHTTPConnectPort": cfg.tcpmux_httpconnect_port,
            "kcpBindPort": cfg.kcp_bind_port,
            "quicBindPort": cfg.quic_bind_port,
            "subdomainHost": cfg.subdomain_host,
            "maxPoolCount": cfg.max_pool_count,
            "maxPortsPerClient": cfg.max_ports_per_client,
            "heartbeatTimeout": cfg.effective_heartbeat_timeout,
        }
        if cfg.allow_ports:
            info["allowPortsStr"] = _ports(cfg.allow_ports)
        if cfg.tls_force:
            info["tlsForce"] = True
        info.update(
            totalTrafficIn=stats.traffic_in.today(),
            totalTrafficOut=stats.traffic_out.today(),
            curConns=stats.cur_conns,
            clientCounts=stats.client_count,
            proxyTypeCount={t: n for t, n in sorted(stats.type_counts.items())},
        )
        return info

    def _proxy_info(self, ps: ProxyStats) -> dict[str, Any]:
        info: dict[str, Any] = {"name": ps.name}
        proxy = self.proxies.get(ps.name)
        info["conf"] = proxy_conf(proxy.msg) if proxy is not None else None
        if ps.user:
            info["user"] = ps.user
        if ps.client_id:
            info["clientID"] = ps.client_id
        info.update(
            todayTrafficIn=ps.traffic_in.today(),
            todayTrafficOut=ps.traffic_out.today(),
            curConns=ps.cur_conns,
            lastStartTime=_when(ps.last_start),
            lastCloseTime=_when(ps.last_close),
            status="online" if proxy is not None else "offline",
        )
        return info

    async def proxies_by_type(self, request: web.Request) -> dict[str, Any]:
        ptype = request.match_info["type"]
        found = [ps for ps in self.stats.proxies.values() if ps.type == ptype]
        return {"proxies": [self._proxy_info(ps) for ps in sorted(found, key=lambda p: p.name)]}

    async def proxy_by_type_and_name(self, request: web.Request) -> dict[str, Any]:
        ps = self.stats.proxies.get(request.match_info["name"])
        if ps is None or ps.type != request.match_info["type"]:
            raise HTTPError(404, "no proxy info found")
        return self._proxy_info(ps)

    async def proxy_by_name(self, request: web.Request) -> dict[str, Any]:
        ps = self.stats.proxies.get(request.match_info["name"])
        if ps is None:
            raise HTTPError(404, "no proxy info found")
        return self._proxy_info(ps)

    async def traffic(self, request: web.Request) -> dict[str, Any]:
        name = request.match_info["name"]
        ps = self.stats.proxies.get(name)
        if ps is None:
            raise HTTPError(404, "no proxy info found")
        return {
            "name": name,
            "trafficIn": ps.traffic_in.last_days(RESERVE_DAYS),
            "trafficOut": ps.traffic_out.last_days(RESERVE_DAYS),
        }

    def client_info(self, key: str) -> dict[str, Any]:
        c = self.stats.clients[key]
        info: dict[str, Any] = {
            "key": c.key,
            "user": c.user,
            "clientID": c.client_id or c.run_id,
            "runID": c.run_id,
        }
        if c.version:
            info["version"] = c.version
        info["wireProtocol"] = c.wire_protocol
        info["hostname"] = c.hostname
        if c.ip:
            info["clientIP"] = c.ip
        info["firstConnectedAt"] = int(c.first_connected.timestamp())
        info["lastConnectedAt"] = int(c.last_connected.timestamp())
        if c.disconnected is not None:
            info["disconnectedAt"] = int(c.disconnected.timestamp())
        info["online"] = c.online
        return info

    async def clients(self, request: web.Request) -> list[dict[str, Any]]:
        q = request.query
        status = q.get("status", "").lower()
        out = []
        for key, c in self.stats.clients.items():
            if q.get("user") and c.user != q["user"]:
                continue
            if q.get("clientId") and (c.client_id or c.run_id) != q["clientId"]:
                continue
            if q.get("runId") and c.run_id != q["runId"]:
                continue
            if (status == "online" and not c.online) or (status == "offline" and c.online):
                continue
            out.append(self.client_info(key))
        out.sort(key=lambda i: (i["user"], i["clientID"], i["key"]))
        return out

    async def client(self, request: web.Request) -> dict[str, Any]:
        key = request.match_info["key"]
        if key not in self.stats.clients:
            raise HTTPError(404, f"client {key} not found")
        return self.client_info(key)

    async def delete_proxies(self, request: web.Request) -> dict[str, Any]:
        if request.query.get("status") != "offline":
            raise HTTPError(400, "status only support offline")
        cleared, total = self.clear_offline()
        log.info("cleared [%d] offline proxies, total [%d] proxies", cleared, total)
        return {"Code": 200, "Msg": "success"}

    # -- Prometheus
    def _metrics_handler(self) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.process_collector import ProcessCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        ProcessCollector(registry=registry)

        async def metrics(request: web.Request) -> web.Response:
            body = generate_latest(registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        return metrics


class _Collector:
    """frp's metric names and labels (pkg/metrics/prometheus), read from Stats at scrape time."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, Metric

        stats = self.dashboard.stats
        yield GaugeMetricFamily(
            "frp_server_client_counts",
            "The current client counts of frps",
            value=stats.client_count,
        )
        counts = GaugeMetricFamily(
            "frp_server_proxy_counts", "The current proxy counts", labels=["type"]
        )
        for ptype, n in sorted(stats.type_counts.items()):
            counts.add_metric([ptype], n)
        yield counts
        detailed = GaugeMetricFamily(
            "frp_server_proxy_counts_detailed",
            "The current number of proxies grouped by type and name",
            labels=["type", "name"],
        )
        conns = GaugeMetricFamily(
            "frp_server_connection_counts",
            "The current connection counts",
            labels=["name", "type"],
        )
        # Counters keep frp's names (no "_total" suffix): dashboards query these names.
        traffic_in = Metric("frp_server_traffic_in", "The total in traffic", "counter")
        traffic_out = Metric("frp_server_traffic_out", "The total out traffic", "counter")
        for name, ps in sorted(self.dashboard.stats.proxies.items()):
            labels = {"name": name, "type": ps.type}
            if name in self.dashboard.proxies:
                detailed.add_metric([ps.type, name], 1)
            conns.add_metric([name, ps.type], ps.cur_conns)
            traffic_in.add_sample("frp_server_traffic_in", labels, ps.traffic_in.total())
            traffic_out.add_sample("frp_server_traffic_out", labels, ps.traffic_out.total())
        yield from (detailed, conns, traffic_in, traffic_out)
