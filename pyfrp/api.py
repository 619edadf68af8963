"""pyfrp from Python: run frps or frpc inside a program and open tunnels from code.

    async with pyfrp.Server(bind_port=0, token="s3cret") as server:
        async with pyfrp.Client(server_port=server.bind_port, token="s3cret") as client:
            tunnel = await client.expose_tcp(local_port=8888)
            print(tunnel.remote_port)

Settings are the config files' (the legacy INI's snake_case names, ``bind_port``, ``token``,
``subdomain_host``, ``tls_enable``; the v1 names, ``bindPort`` or ``transport.tls.enable``, work
too), checked as a file's are: an unknown name or a wrong type raises ConfigError. ``bind_port=0``
picks a free port (``Server.bind_port`` tells which); so does ``"auto"`` for
``vhost_http_port``, ``vhost_https_port`` and ``tcpmux_httpconnect_port``, where 0 means off
(as in frp). Refusals raise with frp's text: AuthError for a login frps refuses, ProxyError for a
proxy it will not start (``port already used``).

``pyfrp.expose(...)`` does the client side for a notebook or a script: a client on a background
thread, returning once the tunnel is up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyfrp.config.decode import parse_port_ranges, proxy_schema, suggest
from pyfrp.config.load import client_from_v1, proxy_from_v1, server_from_v1
from pyfrp.config.model import ClientConfig, ProxyConfig, ServerConfig
from pyfrp.config.schema import CLIENT, PROXY_TYPES, SERVER, Kind, Opt, ini_index
from pyfrp.errors import AuthError, ConfigError, ProxyError

log = logging.getLogger("pyfrp.api")
T = TypeVar("T")

AUTO_PORTS = ("vhostHTTPPort", "vhostHTTPSPort", "tcpmuxHTTPConnectPort")
START_TIMEOUT = 30.0
_names = itertools.count(1)


def _v1(settings: dict[str, Any], table: dict[str, Opt], what: str) -> dict[str, Any]:
    """Keyword arguments (INI or v1 names) as the nested v1 table the file loaders check."""
    by_ini = ini_index(table)
    out: dict[str, Any] = {}
    for name, value in settings.items():
        key = name if name in table else by_ini.get(name)
        if key is None:
            hint = suggest(name, sorted({*table, *by_ini}))
            raise ConfigError(f"{what}: {name}: unknown setting{hint}")
        kind = table[key].kind
        if isinstance(value, str) and kind is Kind.STR_LIST:
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, str) and kind is Kind.PORT_RANGES:
            value = [{"start": a, "end": b} for a, b in parse_port_ranges(value, f"{what}: {name}")]
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def server_config(**settings: Any) -> ServerConfig:
    """frps's config from keyword arguments (see the module doc)."""
    auto = []
    free_bind = False
    by_ini = ini_index(SERVER)
    for name in list(settings):
        key = name if name in SERVER else by_ini.get(name, name)
        if key in AUTO_PORTS and settings[name] == "auto":
            auto.append(key)
            del settings[name]
        elif key == "bindPort" and settings[name] in (0, "auto"):
            free_bind = True  # a file's 0 is frp's default, 7000; here: any free port
            del settings[name]
    cfg, notices = server_from_v1(_v1(settings, SERVER, "pyfrp.Server"), "pyfrp.Server")
    for notice in notices:
        log.warning("%s", notice)
    for key in auto:  # -1: listen on a free port (the services read the port back)
        setattr(cfg, SERVER[key].attr or "", -1)
    if free_bind:
        cfg.bind_port = 0
    return cfg


def client_config(**settings: Any) -> ClientConfig:
    """frpc's config from keyword arguments (see the module doc); proxies come later."""
    settings.setdefault("server_addr", "127.0.0.1")
    cfg, notices = client_from_v1(_v1(settings, CLIENT, "pyfrp.Client"), "pyfrp.Client")
    for notice in notices:
        log.warning("%s", notice)
    return cfg


def proxy_config(proxy_type: str, **settings: Any) -> ProxyConfig:
    if proxy_type not in PROXY_TYPES:
        raise ConfigError(f"pyfrp: unknown proxy type {proxy_type!r}")
    name = settings.pop("name", None) or f"{proxy_type}-{next(_names)}"
    table = _v1(settings, proxy_schema(proxy_type), f"proxy {name}")
    return proxy_from_v1({"name": name, "type": proxy_type, **table}, f"proxy {name}")


class Server:
    """pyfrps in this event loop: ``async with Server(**settings) as server``."""

    def __init__(self, **settings: Any) -> None:
        self.cfg = server_config(**settings)
        self._server: Any = None

    async def __aenter__(self) -> Server:
        from pyfrp.server.service import Server as Service

        self._server = Service(self.cfg)
        try:
            await self._server.start()
        except BaseException:
            await self._server.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.close()

    @property
    def bind_port(self) -> int:
        return int(self._server.bind_port)

    @property
    def vhost_http_port(self) -> int:
        return self.cfg.vhost_http_port

    @property
    def vhost_https_port(self) -> int:
        return self.cfg.vhost_https_port


@dataclass
class Tunnel:
    """A proxy the client runs: ``remote_port`` (tcp, udp) or ``url`` (http, https)."""

    name: str
    type: str
    remote_addr: str
    _client: Client = field(repr=False)

    @property
    def remote_port(self) -> int | None:
        _, _, port = self.remote_addr.rpartition(":")
        return int(port) if port.isdigit() and "," not in self.remote_addr else None

    @property
    def url(self) -> str | None:
        if self.type not in ("http", "https"):
            return None
        return f"{self.type}://{self.remote_addr.split(',')[0]}"

    async def close(self) -> None:
        """Take the proxy down (frps closes its port or routes)."""
        await self._client.remove(self.name)


class Client:
    """pyfrpc in this event loop: ``async with Client(**settings) as client``; logged in to
    frps on entry (AuthError if it refuses), proxies added with ``expose_*``."""

    def __init__(self, **settings: Any) -> None:
        self.cfg = client_config(**settings)
        self._client: Any = None
        self._task: asyncio.Task[int] | None = None

    async def __aenter__(self) -> Client:
        from pyfrp.client.service import Client as Service

        self._client = service = Service(self.cfg)
        self._task = asyncio.get_running_loop().create_task(service.run())
        login = asyncio.ensure_future(service.logged_in.wait())
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.wait({login, self._task}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await self.__aexit__()
            raise
        finally:
            login.cancel()
        if not service.logged_in.is_set():
            error = service.last_error or "could not reach frps"
            await self.__aexit__()
            raise AuthError(error)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def expose(self, proxy_type: str, **settings: Any) -> Tunnel:
        """Any proxy type with its settings (``local_port``, ``remote_port``, ``subdomain``, ...):
        returns once frps has started it; ProxyError with frps's reason otherwise."""
        p = proxy_config(proxy_type, **settings)
        service = self._client
        if any(q.name == p.name for q in service.file_proxies):
            raise ProxyError(f"proxy [{p.name}] already exists")
        service.apply(proxies=[*service.file_proxies, p])
        try:
            remote = await service.proxy_started(p.name, START_TIMEOUT)
        except BaseException:
            await self.remove(p.name)
            raise
        return Tunnel(p.name, p.type, remote, self)

    async def expose_tcp(self, local_port: int, remote_port: int = 0, **settings: Any) -> Tunnel:
        return await self.expose("tcp", local_port=local_port, remote_port=remote_port, **settings)

    async def expose_http(self, local_port: int, subdomain: str = "", **settings: Any) -> Tunnel:
        if subdomain:
            settings["subdomain"] = subdomain
        return await self.expose("http", local_port=local_port, **settings)

    async def remove(self, name: str) -> None:
        service = self._client
        service.apply(proxies=[q for q in service.file_proxies if q.name != name])


# ------------------------------------------------------------------------ from sync code


class _Background:
    """One event loop on a daemon thread, shared by every ``expose`` of the process."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, T], timeout: float = START_TIMEOUT + 5) -> T:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="pyfrp", daemon=True).start()
                cls._loop = loop
            loop = cls._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


@dataclass
class SyncTunnel:
    """What ``expose`` returns: the tunnel's address; ``close()`` takes it and its client down."""

    tunnel: Tunnel
    _client: Client = field(repr=False)

    @property
    def url(self) -> str | None:
        return self.tunnel.url

    @property
    def remote_port(self) -> int | None:
        return self.tunnel.remote_port

    def close(self) -> None:
        _Background.run(self._client.__aexit__())


def expose(
    local_port: int, proxy_type: str = "http", *, proxy: dict[str, Any] | None = None, **client: Any
) -> SyncTunnel:
    """From synchronous code: log in to frps (``server_addr``, ``server_port``, ``token``, ...
    as keyword arguments) and expose ``local_port`` as ``proxy_type`` with ``proxy``'s settings
    (``{"subdomain": "jupyter"}``, ``{"remote_port": 6000}``). Raises as ``Client`` does."""

    async def start() -> SyncTunnel:
        c = Client(**client)
        await c.__aenter__()
        try:
            tunnel = await c.expose(proxy_type, local_port=local_port, **(proxy or {}))
        except BaseException:
            await c.__aexit__()
            raise
        return SyncTunnel(tunnel, c)

    return _Background.run(start())
