"""frps's ``/api/v2`` (server/http/controller_v2.go): what frp 0.70's own dashboard UI reads,
paged and filtered, each answer inside ``{"code", "msg", "data"}``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from pyfrp.config.model import PROXY_TYPES
from pyfrp.proto.msg import NewProxy
from pyfrp.server.stats import RESERVE_DAYS, ProxyStats, Stats
from pyfrp.web.server import HTTPError, api_v2

PAGE_SIZE, MAX_PAGE_SIZE = 50, 200
# controller_v2.go apiV2ProxyTypes: the order proxies are gathered in.
V2_TYPES = ("tcp", "udp", "http", "https", "tcpmux", "stcp", "xtcp", "sudp")
assert set(V2_TYPES) == set(PROXY_TYPES)


def _positive(raw: str | None, default: int, name: str) -> int:
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise HTTPError(400, f"{name} must be a positive integer")
    return value


def _page(request: web.Request, items: list[Any]) -> dict[str, Any]:
    page = _positive(request.query.get("page"), 1, "page")
    size = _positive(request.query.get("pageSize"), PAGE_SIZE, "pageSize")
    if size > MAX_PAGE_SIZE:
        raise HTTPError(400, f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
    start = (page - 1) * size
    return {"total": len(items), "page": page, "pageSize": size, "items": items[start:][:size]}


def _status_filter(request: web.Request) -> str:
    status = request.query.get("status", "").lower()
    if status not in ("", "all", "online", "offline"):
        raise HTTPError(400, "status must be one of all, online, offline")
    return status


def _matches(online: bool, status: str) -> bool:
    return status in ("", "all") or (status == "online") == online


def _contains(q: str, *values: str) -> bool:
    return any(q in v.lower() for v in values)


def _base_spec(msg: NewProxy) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if msg.annotations:
        spec["annotations"] = dict(msg.annotations)
    if msg.metas:
        spec["metadatas"] = dict(msg.metas)
    spec["transport"] = {
        "useEncryption": msg.use_encryption,
        "useCompression": msg.use_compression,
        "bandwidthLimit": msg.bandwidth_limit,
        "bandwidthLimitMode": msg.bandwidth_limit_mode or "client",
    }
    spec["loadBalancer"] = {"group": msg.group}
    return spec


def proxy_spec(ptype: str, msg: NewProxy | None) -> dict[str, Any]:
    """``spec``: the type and one block named by it (empty while the proxy is offline)."""
    block: dict[str, Any] = {}
    if msg is not None:
        block = _base_spec(msg)
        if ptype in ("tcp", "udp"):
            block["remotePort"] = msg.remote_port
        if ptype in ("http", "https", "tcpmux"):
            if msg.custom_domains:
                block["customDomains"] = list(msg.custom_domains)
            if msg.subdomain:
                block["subdomain"] = msg.subdomain
        if ptype == "http":
            if msg.locations:
                block["locations"] = list(msg.locations)
            if msg.host_header_rewrite:
                block["hostHeaderRewrite"] = msg.host_header_rewrite
        if ptype == "tcpmux":
            if msg.multiplexer:
                block["multiplexer"] = msg.multiplexer
            if msg.route_by_http_user:
                block["routeByHTTPUser"] = msg.route_by_http_user
    return {"type": ptype, ptype: block}


def _unix(t: dt.datetime | None) -> int:
    return int(t.timestamp()) if t is not None else 0


class Online(Protocol):
    """An online proxy, as the dashboard shows it: what it registered with."""

    @property
    def msg(self) -> NewProxy: ...


class V1(Protocol):
    """What the v2 API builds on (dashboard.Dashboard, the v1 API)."""

    stats: Stats

    @property
    def proxies(self) -> Mapping[str, Online]:
        """The proxies online now."""
        ...

    def clear_offline(self) -> tuple[int, int]: ...

    async def server_info(self, request: web.Request) -> dict[str, Any]: ...

    def client_info(self, key: str) -> dict[str, Any]: ...


class DashboardV2:
    def __init__(self, v1: V1) -> None:
        self.v1 = v1

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v2/users", api_v2(self.users))
        r.add_get("/api/v2/system/info", api_v2(self.system_info))
        r.add_post("/api/v2/system/prune", api_v2(self.prune))
        r.add_get("/api/v2/clients", api_v2(self.clients))
        r.add_get("/api/v2/clients/{key}", api_v2(self.client))
        r.add_get("/api/v2/proxies", api_v2(self.proxies))
        r.add_get("/api/v2/proxies/{name}/traffic", api_v2(self.traffic))
        r.add_get("/api/v2/proxies/{name}", api_v2(self.proxy))

    def _all_stats(self, ptype: str = "") -> list[ProxyStats]:
        stats = self.v1.stats.proxies.values()
        return [ps for t in ((ptype,) if ptype else V2_TYPES) for ps in stats if ps.type == t]

    def _proxy(self, ps: ProxyStats) -> dict[str, Any]:
        proxy = self.v1.proxies.get(ps.name)
        status: dict[str, Any] = {
            "phase": "online" if proxy is not None else "offline",
            "todayTrafficIn": ps.traffic_in.today(),
            "todayTrafficOut": ps.traffic_out.today(),
            "curConns": ps.cur_conns,
        }
        if ps.last_start is not None:
            status["lastStartAt"] = _unix(ps.last_start)
        if ps.last_close is not None:
            status["lastCloseAt"] = _unix(ps.last_close)
        return {
            "name": ps.name,
            "user": ps.user,
            "clientID": ps.client_id,
            "spec": proxy_spec(ps.type, proxy.msg if proxy is not None else None),
            "status": status,
        }

    async def system_info(self, request: web.Request) -> dict[str, Any]:
        info = await self.v1.server_info(request)
        status_keys = ("totalTrafficIn", "totalTrafficOut", "curConns", "clientCounts")
        config = {k: v for k, v in info.items() if k != "version" and k not in status_keys}
        config.pop("proxyTypeCount")
        config.setdefault("allowPortsStr", "")
        config.setdefault("tlsForce", False)
        status = {k: info[k] for k in status_keys}
        status["proxyTypeCount"] = info["proxyTypeCount"]
        return {"version": info["version"], "config": config, "status": status}

    async def prune(self, request: web.Request) -> dict[str, Any]:
        kind = request.query.get("type", "").lower()
        if not kind:
            raise HTTPError(400, "type is required")
        if kind != "offline_proxies":
            raise HTTPError(400, "type must be one of offline_proxies")
        cleared, total = self.v1.clear_offline()
        return {"type": kind, "cleared": cleared, "total": total}

    async def users(self, request: web.Request) -> dict[str, Any]:
        counts: dict[str, dict[str, Any]] = {}

        def of(user: str) -> dict[str, Any]:
            return counts.setdefault(user, {"user": user, "clientCount": 0, "proxyCount": 0})

        for c in self.v1.stats.clients.values():
            of(c.user)["clientCount"] += 1
        for ps in self._all_stats():
            of(ps.user)["proxyCount"] += 1
        q = request.query.get("q", "").lower()
        items = [u for _, u in sorted(counts.items()) if not q or q in u["user"].lower()]
        return _page(request, items)

    async def clients(self, request: web.Request) -> dict[str, Any]:
        status = _status_filter(request)
        query = request.query
        q = query.get("q", "").lower()
        items = []
        for key, c in self.v1.stats.clients.items():
            if "user" in query and c.user != query["user"]:
                continue
            if query.get("clientID") and (c.client_id or c.run_id) != query["clientID"]:
                continue
            if query.get("runID") and c.run_id != query["runID"]:
                continue
            if not _matches(c.online, status):
                continue
            info = self.v1.client_info(key)
            texts = ("key", "user", "clientID", "runID", "version", "wireProtocol", "hostname",
                     "clientIP")  # fmt: skip
            if q and not _contains(q, *(str(info.get(k, "")) for k in texts)):
                continue
            items.append(info)
        items.sort(key=lambda i: (i["user"], i["clientID"], i["key"]))
        return _page(request, items)

    async def client(self, request: web.Request) -> dict[str, Any]:
        key = request.match_info["key"]
        c = self.v1.stats.clients.get(key)
        if c is None:
            raise HTTPError(404, f"client {key} not found")
        ident = c.client_id or c.run_id
        mine = [ps for ps in self._all_stats() if ps.user == c.user and ps.client_id == ident]
        return {
            **self.v1.client_info(key),
            "status": {
                "phase": "online" if c.online else "offline",
                "curConns": sum(ps.cur_conns for ps in mine),
                "proxyCount": len(mine),
            },
        }

    async def proxies(self, request: web.Request) -> dict[str, Any]:
        status = _status_filter(request)
        ptype = request.query.get("type", "").lower()
        if ptype and ptype not in V2_TYPES:
            raise HTTPError(400, f"type must be one of {', '.join(V2_TYPES)}")
        query = request.query
        q = query.get("q", "").lower()
        items = []
        for ps in self._all_stats(ptype):
            item = self._proxy(ps)
            if "user" in query and item["user"] != query["user"]:
                continue
            if query.get("clientID") and item["clientID"] != query["clientID"]:
                continue
            if not _matches(item["status"]["phase"] == "online", status):
                continue
            if q and not _contains(q, *_searchable(item)):
                continue
            items.append(item)
        items.sort(key=lambda i: (i["spec"]["type"], i["name"]))
        return _page(request, items)

    async def proxy(self, request: web.Request) -> dict[str, Any]:
        ps = self.v1.stats.proxies.get(request.match_info["name"])
        if ps is None:
            raise HTTPError(404, "no proxy info found")
        return self._proxy(ps)

    async def traffic(self, request: web.Request) -> dict[str, Any]:
        name = request.match_info["name"]
        ps = self.v1.stats.proxies.get(name)
        if ps is None:
            raise HTTPError(404, "no proxy info found")
        today = dt.date.today()
        ins, outs = ps.traffic_in.last_days(RESERVE_DAYS), ps.traffic_out.last_days(RESERVE_DAYS)
        history = [
            {
                "date": (today - dt.timedelta(days=age)).isoformat(),
                "trafficIn": ins[age],
                "trafficOut": outs[age],
            }
            for age in range(RESERVE_DAYS - 1, -1, -1)
        ]
        return {"name": name, "unit": "bytes", "granularity": "day", "history": history}


def _searchable(item: dict[str, Any]) -> list[str]:
    """What ``q`` is matched against (matchV2ProxyQuery)."""
    spec = item["spec"]
    block = spec[spec["type"]]
    values = [item["name"], spec["type"], item["user"], item["clientID"], item["status"]["phase"]]
    if "remotePort" in block:
        values.append(str(block["remotePort"]))
    if spec["type"] in ("http", "https", "tcpmux"):
        values += [*block.get("customDomains", []), block.get("subdomain", "")]
    return values
