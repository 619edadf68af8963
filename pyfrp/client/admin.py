"""frpc's admin API (client/api_router.go, client/http/controller.go): status, reload, stop, the
config file, and the store of proxies and visitors, with Go frpc's paths, shapes and codes."""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from pyfrp.client.proxies.base import ClientProxy
from pyfrp.client.store import Store
from pyfrp.config.export import proxy_to_v1, visitor_to_v1
from pyfrp.config.load import load_client_config, proxy_from_v1, visitor_from_v1
from pyfrp.config.model import PROXY_TYPES, VISITOR_TYPES, ClientConfig, ProxyConfig, VisitorConfig
from pyfrp.errors import ConfigError
from pyfrp.net.listen import join_host_port
from pyfrp.web.server import HTTPError, WebServer, api, serve_assets

log = logging.getLogger(__name__)

STOP_DELAY = 0.1  # frp: GracefulClose(100 * time.Millisecond), after the answer is sent


class Running(Protocol):
    """The parts of a running pyfrpc (service.Client) the API reads and steers."""

    cfg: ClientConfig
    path: str
    store: Store | None
    allow_unsafe: frozenset[str]
    endpoints: list[tuple[str, int]]  # serverAddrs (or the one server), and the one in use
    endpoint: int

    @property
    def proxy_states(self) -> list[ClientProxy]: ...

    def apply(
        self, proxies: list[ProxyConfig] | None = None, visitors: list[VisitorConfig] | None = None
    ) -> None: ...

    def stop(self) -> None: ...

    def prefer_first(self) -> None: ...


class Admin:
    def __init__(self, client: Running) -> None:
        self.client = client
        self.web = WebServer(client.cfg.web, self._routes)

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/reload", api(self.reload))
        r.add_post("/api/stop", api(self.stop))
        r.add_get("/api/status", api(self.status))
        r.add_get("/api/config", api(self.get_config))
        r.add_put("/api/config", api(self.put_config))
        r.add_get("/api/proxy/{name}/config", api(self.proxy_config))
        r.add_get("/api/visitor/{name}/config", api(self.visitor_config))
        if self.client.store is not None:
            for kind in ("proxies", "visitors"):
                r.add_get(f"/api/store/{kind}", api(partial(self.store_list, kind)))
                r.add_post(f"/api/store/{kind}", api(partial(self.store_create, kind)))
                one = f"/api/store/{kind}/{{name}}"
                r.add_get(one, api(partial(self.store_get, kind)))
                r.add_put(one, api(partial(self.store_update, kind)))
                r.add_delete(one, api(partial(self.store_delete, kind)))
        if self.client.cfg.web.assets_dir:
            serve_assets(app, self.client.cfg.web.assets_dir)

    # -- frpc's API
    async def reload(self, request: web.Request) -> None:
        strict = request.query.get("strictConfig", "").lower() in ("1", "t", "true")
        client = self.client
        if not client.path:
            raise HTTPError(400, "invalid argument: frpc has no config file path")
        try:
            cfg, _ = load_client_config(
                client.path, strict or None, allow_unsafe=client.allow_unsafe
            )
        except ConfigError as exc:
            log.warning("reload frpc proxy config error: %s", exc)
            raise HTTPError(400, f"invalid argument: {exc}") from None
        self._check_store_names(cfg.proxies, cfg.visitors)
        client.apply(cfg.proxies, cfg.visitors)
        client.prefer_first()  # serverAddrs: back to the first (pyfrp's failover)
        log.info("success reload conf")

    async def stop(self, request: web.Request) -> None:
        asyncio.get_running_loop().call_later(STOP_DELAY, self.client.stop)

    async def status(self, request: web.Request) -> dict[str, list[dict[str, Any]]]:
        client = self.client
        out: dict[str, list[dict[str, Any]]] = {}
        for proxy in sorted(client.proxy_states, key=lambda p: p.cfg.name):
            p = proxy.cfg
            remote = ""
            if not proxy.err:
                remote = proxy.remote_addr
                if p.type in ("tcp", "udp"):
                    remote = client.endpoints[client.endpoint][0] + remote
            item = {
                "name": p.name,
                "type": p.type,
                "status": proxy.status,
                "err": proxy.err,
                "local_addr": join_host_port(p.local_ip, p.local_port) if p.local_port else "",
                "plugin": "",
                "remote_addr": remote,
            }
            if client.store is not None and p.name in client.store.proxies:
                item["source"] = "store"
            out.setdefault(p.type, []).append(item)
        return out

    async def get_config(self, request: web.Request) -> str:
        path = self.client.path
        if not path:
            raise HTTPError(400, "invalid argument: frpc has no config file path")
        try:
            return await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
        except OSError as exc:
            raise HTTPError(400, f"invalid argument: {exc.strerror or exc}") from None

    async def put_config(self, request: web.Request) -> None:
        body = await request.read()
        if not body:
            raise HTTPError(400, "body can't be empty")
        path = self.client.path
        if not path:
            raise HTTPError(400, "invalid argument: frpc has no config file path")
        try:
            await asyncio.to_thread(Path(path).write_bytes, body)
        except OSError as exc:
            raise HTTPError(500, str(exc.strerror or exc)) from None

    async def proxy_config(self, request: web.Request) -> dict[str, Any]:
        name = request.match_info["name"]
        for p in self.client.cfg.proxies:
            if p.name == name:
                return _definition(proxy_to_v1(p))
        raise HTTPError(404, f'proxy "{name}" not found')

    async def visitor_config(self, request: web.Request) -> dict[str, Any]:
        name = request.match_info["name"]
        for v in self.client.cfg.visitors:
            if v.name == name:
                return _definition(visitor_to_v1(v))
        raise HTTPError(404, f'visitor "{name}" not found')

    # -- the store
    def _check_store_names(self, proxies: list[ProxyConfig], visitors: list[VisitorConfig]) -> None:
        store = self.client.store
        if store is None:
            return
        for what, names, stored in (
            ("proxy", [p.name for p in proxies], store.proxies),
            ("visitor", [v.name for v in visitors], store.visitors),
        ):
            for name in names:
                if name in stored:
                    raise HTTPError(409, f'conflict: {what} "{name}" is both in the file and store')

    def _table(self, kind: str) -> dict[str, Any]:
        store = self.client.store
        assert store is not None
        return store.proxies if kind == "proxies" else store.visitors

    async def _parse(self, kind: str, request: web.Request, path_name: str) -> Any:
        """A ProxyDefinition / VisitorDefinition body: name, type, and exactly one block named
        by the type holding the rest (client/http/model)."""
        what = _what(kind)
        types = PROXY_TYPES if kind == "proxies" else VISITOR_TYPES
        try:
            payload = json.loads(await request.read())
        except ValueError as exc:
            raise HTTPError(400, f"parse JSON error: {exc}") from None
        if not isinstance(payload, dict):
            raise HTTPError(400, "parse JSON error: expected an object")
        name, ptype = payload.get("name"), payload.get("type")
        if not isinstance(name, str) or not name.strip():
            raise HTTPError(400, f"{what} name is required")
        if ptype not in types:
            raise HTTPError(400, f"invalid {what} type: {ptype}")
        if path_name and path_name != name:
            raise HTTPError(400, f"{what} name in URL must match name in body")
        blocks = [t for t in types if isinstance(payload.get(t), dict)]
        if len(blocks) != 1:
            raise HTTPError(400, f"exactly one {what} type block is required")
        if blocks[0] != ptype:
            raise HTTPError(400, f'{what} type block "{blocks[0]}" does not match type "{ptype}"')
        table = {**payload[ptype], "name": name, "type": ptype}
        origin = f"{request.method} {request.path}"
        try:
            if kind == "proxies":
                return proxy_from_v1(table, origin)
            return visitor_from_v1(table, origin)
        except ConfigError as exc:
            raise HTTPError(400, f"invalid argument: validation error: {exc}") from None

    def _definition_of(self, kind: str, cfg: Any) -> dict[str, Any]:
        if kind == "proxies":
            return _definition(proxy_to_v1(cfg))
        return _definition(visitor_to_v1(cfg))

    def _commit(self) -> None:
        store = self.client.store
        assert store is not None
        try:
            store.save()
        except OSError as exc:
            raise HTTPError(500, f"persist store error: {exc.strerror or exc}") from None
        self.client.apply()

    async def store_list(self, kind: str, request: web.Request) -> dict[str, Any]:
        items = sorted(self._table(kind).values(), key=lambda c: c.name)
        return {kind: [self._definition_of(kind, c) for c in items]}

    async def store_get(self, kind: str, request: web.Request) -> dict[str, Any]:
        name = request.match_info["name"]
        cfg = self._table(kind).get(name)
        if cfg is None:
            raise HTTPError(404, f'not found: {_what(kind)} "{name}"')
        return self._definition_of(kind, cfg)

    async def store_create(self, kind: str, request: web.Request) -> dict[str, Any]:
        cfg = await self._parse(kind, request, "")
        table = self._table(kind)
        existing = self.client.cfg.proxies if kind == "proxies" else self.client.cfg.visitors
        if cfg.name in table or any(c.name == cfg.name for c in existing):
            raise HTTPError(409, f'conflict: {_what(kind)} "{cfg.name}" already exists')
        table[cfg.name] = cfg
        self._commit()
        log.info('store: created %s "%s"', _what(kind), cfg.name)
        return self._definition_of(kind, cfg)

    async def store_update(self, kind: str, request: web.Request) -> dict[str, Any]:
        name = request.match_info["name"]
        cfg = await self._parse(kind, request, name)
        table = self._table(kind)
        if name not in table:
            raise HTTPError(404, f'not found: {_what(kind)} "{name}"')
        table[name] = cfg
        self._commit()
        log.info('store: updated %s "%s"', _what(kind), name)
        return self._definition_of(kind, cfg)

    async def store_delete(self, kind: str, request: web.Request) -> None:
        name = request.match_info["name"]
        table = self._table(kind)
        if table.pop(name, None) is None:
            raise HTTPError(404, f'not found: {_what(kind)} "{name}"')
        self._commit()
        log.info('store: deleted %s "%s"', _what(kind), name)


def _what(kind: str) -> str:
    return "proxy" if kind == "proxies" else "visitor"


def _definition(table: dict[str, Any]) -> dict[str, Any]:
    """frp's ProxyDefinition: name, type, and the whole table under the type's key."""
    return {"name": table["name"], "type": table["type"], table["type"]: table}
