"""pyfrpc: login, the control loop, work connections and reconnection (client/service.go,
client/control.go)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import platform
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from pyfrp.client import health
from pyfrp.client.auth import ClientAuth
from pyfrp.client.connector import Connector
from pyfrp.client.proxies import PROXY_TYPES
from pyfrp.client.proxies.base import ClientProxy, wire_name
from pyfrp.client.store import Store
from pyfrp.client.visitors import VISITOR_TYPES
from pyfrp.client.visitors.base import Visitor, VisitorError
from pyfrp.client.vnet import Controller
from pyfrp.client.workconn import connect, dial_work_conn, local_name
from pyfrp.config.model import ClientConfig, ProxyConfig, VisitorConfig
from pyfrp.errors import AuthError, FrameError, OIDCError, ProtocolError, ProxyError
from pyfrp.log import PrefixLogger
from pyfrp.net import resolve
from pyfrp.net.handover import adopt_socket
from pyfrp.net.layer import AeadLayer, CryptoLayer
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.splice import HoldProtocol
from pyfrp.proto import wire2
from pyfrp.proto.crypto import derive_key
from pyfrp.proto.msg import (
    CloseProxy,
    Login,
    LoginResp,
    Message,
    NatHoleResp,
    NewProxy,
    NewProxyResp,
    NewWorkConn,
    Ping,
    Pong,
    ReqWorkConn,
    StartWorkConn,
)
from pyfrp.version import FRP_VERSION

if TYPE_CHECKING:
    from pyfrp.client.workers import Workers

log = logging.getLogger(__name__)

LOGIN_RESP_TIMEOUT = 10.0
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "i386": "386", "i686": "386", "armv7l": "arm", "armv6l": "arm"}  # fmt: skip


def new_proxy_msg(p: ProxyConfig, user: str) -> NewProxy:
    """NewProxy as Go frpc's MarshalToMsg fills it: base fields, then only the type's own."""
    msg = NewProxy(
        proxy_name=wire_name(user, p.name),
        proxy_type=p.type,
        use_encryption=p.use_encryption,
        use_compression=p.use_compression,
        bandwidth_limit=p.bandwidth_limit,
        bandwidth_limit_mode="" if p.bandwidth_limit_mode == "client" else p.bandwidth_limit_mode,
        group=p.group,
        group_key=p.group_key,
        metas=dict(p.metas),
        annotations=dict(p.annotations),
    )
    known = p.type in ("tcp", "udp", "http", "https", "tcpmux", "stcp", "sudp", "xtcp")
    if p.type in ("tcp", "udp") or not known:
        msg.remote_port = p.remote_port
    if p.type in ("http", "https", "tcpmux") or not known:
        msg.custom_domains = list(p.custom_domains)
        msg.subdomain = p.subdomain
    if p.type == "tcpmux":
        msg.multiplexer = p.multiplexer
        msg.http_user = p.http_user
        msg.http_pwd = p.http_pwd
        msg.route_by_http_user = p.route_by_http_user
    if p.type == "http" or not known:
        msg.locations = list(p.locations)
        msg.http_user = p.http_user
        msg.http_pwd = p.http_pwd
        msg.host_header_rewrite = p.host_header_rewrite
        msg.headers = dict(p.request_headers)
        msg.response_headers = dict(p.response_headers)
        msg.route_by_http_user = p.route_by_http_user
    if p.type in ("stcp", "sudp", "xtcp") or not known:
        msg.sk = p.secret_key
        msg.allow_users = list(p.allow_users)
    return msg


class Session:
    """One login to frps: the control connection and everything that rides on it."""

    def __init__(
        self, client: Client, connector: Connector, conn: MessageConn, run_id: str
    ) -> None:
        self.client = client
        self.connector = connector
        self.conn = conn
        self.run_id = run_id
        self.v2_crypto: tuple[str, bytes] | None = None  # wire v2: (AEAD algorithm, transcript)
        self.log = PrefixLogger(log, run_id)
        self.proxies = {p.name: self._new_proxy(p) for p in client.cfg.proxies}
        # NatHoleResp waiters by transaction id (frp's MessageTransporter lanes)
        self._waiting: dict[str, asyncio.Future[NatHoleResp]] = {}
        self.visitors = [self._new_visitor(v) for v in client.cfg.visitors]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._checks: dict[str, asyncio.Task[None]] = {}  # health check monitors by proxy
        self.last_pong = time.monotonic()

    def _new_proxy(self, p: ProxyConfig) -> ClientProxy:
        proxy = PROXY_TYPES[p.type](p, self.client.cfg, self.log, self)
        proxy.vnet = self.client.vnet
        return proxy

    def _new_visitor(self, v: VisitorConfig) -> Visitor:
        visitor = VISITOR_TYPES[v.type](v, self.client.cfg, self, self.log)
        visitor.vnet = self.client.vnet
        return visitor

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def update(self, proxies: list[ProxyConfig], visitors: list[VisitorConfig]) -> None:
        """Apply a reload (client/proxy/proxy_manager.go UpdateAll): close the proxies and
        visitors that are gone or changed, start the new and changed ones; the rest, and their
        connections, are untouched."""
        cfg = self.client.cfg
        wanted = {p.name: p for p in proxies}
        removed = [n for n, px in self.proxies.items() if wanted.get(n) != px.cfg]
        workers = self.client.workers
        for name in removed:
            self.proxies.pop(name).close()
            if workers is not None:
                workers.drop(name)
            checks = self._checks.pop(name, None)
            if checks is not None:
                checks.cancel()
            self._send(CloseProxy(proxy_name=wire_name(cfg.user, name)))
        if removed:
            self.log.info("proxy removed: [%s]", " ".join(removed))
        added = [p for p in proxies if p.name not in self.proxies]
        for p in added:
            self.proxies[p.name] = self._new_proxy(p)
            if workers is not None:
                workers.proxy(p)
            self._register(p)
        if added:
            self.log.info("proxy added: [%s]", " ".join(p.name for p in added))
        keep = {v.name: v for v in visitors}
        started: list[Visitor] = []
        for visitor in list(self.visitors):
            if keep.get(visitor.cfg.name) != visitor.cfg:
                visitor.close()
                self.visitors.remove(visitor)
                self.log.info("visitor removed: [%s]", visitor.cfg.name)
        running = {v.cfg.name for v in self.visitors}
        for v in visitors:
            if v.name not in running:
                visitor = self._new_visitor(v)
                self.visitors.append(visitor)
                started.append(visitor)
                self.log.info("visitor added: [%s]", v.name)
        if started:
            self.spawn(self._start_visitors(started))

    def _send(self, msg: Message) -> None:
        try:
            self.conn.send(msg)
        except ConnectionError:
            pass  # the session is ending; the next one registers everything again

    def _register(self, p: ProxyConfig) -> None:
        """Send NewProxy now, or, with a health check, whenever the local service is healthy."""
        if not p.health_check.type or not p.local_port:
            self._send(new_proxy_msg(p, self.client.cfg.user))
            return
        proxy = self.proxies[p.name]
        proxy.status = "new"

        def healthy() -> None:
            proxy.status = "wait start"
            self._send(new_proxy_msg(p, self.client.cfg.user))

        def unhealthy() -> None:
            proxy.status = "check failed"
            if self.client.workers is not None:
                self.client.workers.state(p.name, False)
            self._send(CloseProxy(proxy_name=wire_name(self.client.cfg.user, p.name)))

        task = asyncio.get_running_loop().create_task(
            health.monitor(p, proxy.log, healthy, unhealthy)
        )
        self._checks[p.name] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        cfg = self.client.cfg
        if self.v2_crypto is not None:
            self.conn.push_layer(AeadLayer, self.v2_crypto, cfg.token, True)
        else:
            self.conn.push_layer(CryptoLayer, derive_key(cfg.token))
        for p in self.client.cfg.proxies:
            self._register(p)
        if self.visitors:
            self.spawn(self._start_visitors(self.visitors))
        if cfg.heartbeat_interval > 0:
            self.spawn(self._heartbeat())
        try:
            while True:
                msg = await self.conn.recv()
                if isinstance(msg, ReqWorkConn):
                    self.spawn(self._work_conn())
                elif isinstance(msg, NewProxyResp):
                    self._proxy_resp(msg)
                elif isinstance(msg, NatHoleResp):
                    waiter = self._waiting.pop(msg.transaction_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(msg)
                elif isinstance(msg, Pong):
                    if msg.error:
                        self.log.warning("pong contains error: %s", msg.error)
                        return
                    self.last_pong = time.monotonic()
        except ProtocolError as exc:
            self.log.warning("control connection error: %s", exc)
        except (ConnectionError, OSError) as exc:
            self.log.debug("control connection closed: %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        self.conn.close()
        self.connector.close()
        if self.client.workers is not None:
            self.client.workers.end()
        for t in list(self._tasks):
            t.cancel()
        for proxy in self.proxies.values():
            proxy.close()
        for visitor in self.visitors:
            visitor.close()

    async def connect_server(self) -> MessageConn:
        return await connect(self.connector, self.client.cfg)

    def send_control(self, msg: Message) -> None:
        self.conn.send(msg)

    async def request(self, msg: Message, transaction_id: str, limit: float) -> NatHoleResp:
        waiter: asyncio.Future[NatHoleResp] = asyncio.get_running_loop().create_future()
        self._waiting[transaction_id] = waiter
        try:
            self.conn.send(msg)
            async with asyncio.timeout(limit):
                return await waiter
        finally:
            self._waiting.pop(transaction_id, None)

    def transfer(self, visitor: str, held: HoldProtocol) -> None:
        for v in self.visitors:
            if v.cfg.name == visitor:
                v.take_conn(held)
                return
        raise VisitorError(f"visitor [{visitor}] not found")

    async def _start_visitors(self, visitors: list[Visitor]) -> None:
        for v in list(visitors):
            try:
                v.make_plugin()
            except ValueError as exc:
                self.log.warning("new visitor error: %s", exc)
                self.visitors.remove(v)
                continue
            try:
                await v.start()
            except OSError as exc:
                v.log.warning("start error: %s", exc)
            else:
                v.log.info("start visitor success")

    def send_close_proxies(self) -> None:
        cfg = self.client.cfg
        for name in self.proxies:
            try:
                self.conn.send(CloseProxy(proxy_name=wire_name(cfg.user, name)))
            except ConnectionError:
                return

    async def _heartbeat(self) -> None:
        cfg = self.client.cfg
        # frp checks the Pong timeout whenever one is set: by default only without tcp_mux (yamux
        # keepalives watch the link then), but an explicit heartbeatTimeout counts with it too.
        timeout = cfg.effective_heartbeat_timeout
        check = timeout > 0
        while True:
            self.log.debug("send heartbeat to server")
            ping = Ping()
            try:
                await self.client.auth.set_ping(ping)
            except OIDCError as exc:
                self.log.warning(
                    "error during ping authentication: %s, skip sending ping message", exc
                )
            else:
                try:
                    self.conn.send(ping)
                except ConnectionError:
                    return
            await asyncio.sleep(cfg.heartbeat_interval)
            if check and time.monotonic() - self.last_pong > timeout:
                self.log.warning("heartbeat timeout")
                self.conn.abort()
                return

    def _proxy_resp(self, msg: NewProxyResp) -> None:
        name = local_name(self.client.cfg.user, msg.proxy_name)
        proxy = self.proxies.get(name)
        if proxy is None:
            return
        if msg.error:
            proxy.status, proxy.err = "start error", msg.error
            self.log.warning("[%s] start error: %s", name, msg.error)
        else:
            proxy.status, proxy.err, proxy.remote_addr = "running", "", msg.remote_addr
            self.log.info("[%s] start proxy success", name)
        if self.client.workers is not None:
            self.client.workers.state(name, proxy.running)
        waiter = self.client.starting.pop(name, None)
        if waiter is not None and not waiter.done():
            waiter.set_result((msg.remote_addr, msg.error))

    async def _work_conn(self) -> None:
        msg = NewWorkConn(run_id=self.run_id)
        try:
            await self.client.auth.set_new_work_conn(msg)
        except OIDCError as exc:
            self.log.warning("error during NewWorkConn authentication: %s", exc)
            return
        workers = self.client.workers
        if workers is not None and (helper := workers.pick()) is not None:
            workers.work(helper, msg)
            return
        got = await dial_work_conn(self.connector, self.client.cfg, msg, self.log)
        if got is not None:
            await self.serve_work(*got)

    async def serve_work(self, conn: MessageConn, start: StartWorkConn, name: str) -> None:
        proxy = self.proxies.get(name)
        if proxy is None or not proxy.running:
            # Go frpc closes it without a word: frps may start a user connection on the work
            # connection before this side has read NewProxyResp on the control connection.
            self.log.debug("[%s] no running proxy for work connection, closing it", name)
            conn.close()
            return
        await proxy.handle_work_conn(conn, start)


class Client:
    """pyfrpc: the session to frps, kept up, and the admin API beside it.

    ``path`` is the config file (reload and ``/api/config`` read it); ``file_proxies`` and
    ``file_visitors`` are what it holds, and the store (``store.path``) adds its own: the
    session runs both.
    """

    def __init__(
        self, cfg: ClientConfig, path: str = "", allow_unsafe: frozenset[str] = frozenset()
    ) -> None:
        self.cfg = cfg
        self.path = path
        self.allow_unsafe = allow_unsafe  # --allow-unsafe, for reloads
        resolve.set_dns_server(cfg.dns_server)  # process-wide, as Go's net.DefaultResolver
        self.auth = ClientAuth(cfg)  # frp keeps the first config's auth across reloads
        self.run_id = ""
        self.session: Session | None = None
        self.file_proxies = list(cfg.proxies)
        self.file_visitors = list(cfg.visitors)
        self.store: Store | None = Store(cfg.store_path) if cfg.store_path else None
        # featureGates VirtualNet and virtualNet.address: the TUN device, opened by run()
        self.vnet = Controller(cfg.virtual_net_address) if cfg.virtual_net_address else None
        self._combine()
        self._stopping = False
        self._stopped = asyncio.Event()
        # for the Python API (pyfrp.api): the first login's outcome, and proxies being started
        self.logged_in = asyncio.Event()
        # serverAddrs (pyfrp's failover): the frps endpoints, and the one in use or being tried
        self.endpoints = _endpoints(cfg)
        self.endpoint = 0
        self._to_first = False
        self.last_error = ""
        self.starting: dict[str, asyncio.Future[tuple[str, str]]] = {}
        # pyfrp.workers > 1: the helper processes carrying work connections (client/workers.py)
        self.workers: Workers | None = None

    def _combine(self) -> None:
        store = self.store
        self.cfg.proxies = self.file_proxies + list(store.proxies.values() if store else [])
        self.cfg.visitors = self.file_visitors + list(store.visitors.values() if store else [])

    def apply(
        self, proxies: list[ProxyConfig] | None = None, visitors: list[VisitorConfig] | None = None
    ) -> None:
        """Run these proxies and visitors from the file (None: keep the file's) plus the store's."""
        if proxies is not None:
            self.file_proxies = proxies
        if visitors is not None:
            self.file_visitors = visitors
        self._combine()
        if self.session is not None:
            self.session.update(self.cfg.proxies, self.cfg.visitors)

    @property
    def proxy_states(self) -> list[ClientProxy]:
        """The running session's proxies (none while not logged in, as frpc)."""
        return list(self.session.proxies.values()) if self.session is not None else []

    def _endpoint_cfg(self) -> ClientConfig:
        if not self.cfg.server_addrs:
            return self.cfg
        host, port = self.endpoints[self.endpoint]
        return dataclasses.replace(self.cfg, server_addr=host, server_port=port)

    def prefer_first(self) -> None:
        """Back to the first of serverAddrs (pyfrpc reload): the session on another endpoint
        ends and the next login starts from the first, going on down the list if it is down."""
        if self.endpoint == 0 or len(self.endpoints) < 2:
            return
        self.endpoint = 0
        if self.session is not None:
            log.info("moving back to server [%s:%d]", *self.endpoints[0])
            self._to_first = True
            self.session.close()

    async def _login(self) -> Session:
        cfg = self.cfg
        connector = Connector(self._endpoint_cfg())
        try:
            await connector.open()
            conn = await connect(connector, cfg)
            hello = b""
            if conn.v2:
                tls = cfg.tls_enable or cfg.protocol == "wss"
                hello = wire2.client_hello(
                    wire2.new_random(), transport=cfg.protocol, tls=tls, tcp_mux=cfg.tcp_mux
                )
                conn.send_raw(wire2.encode_frame(wire2.FRAME_CLIENT_HELLO, hello))
            login = Login(
                version=FRP_VERSION,
                hostname=socket.gethostname(),  # Go frpc sends os.Hostname()
                os=sys.platform if sys.platform != "win32" else "windows",
                arch=_GOARCH.get(platform.machine().lower(), platform.machine().lower()),
                user=cfg.user,
                client_id=cfg.client_id,
                run_id=self.run_id,
                metas=dict(cfg.metas),
                pool_count=cfg.pool_count,
            )
            await self.auth.set_login(login)
            conn.send(login)
            v2_crypto = None
            async with asyncio.timeout(LOGIN_RESP_TIMEOUT):
                if conn.v2:
                    v2_crypto = await _server_hello(conn, hello)
                resp = await conn.recv_as(LoginResp)
        except BaseException:
            connector.close()
            raise
        if resp.error:
            connector.close()
            raise AuthError(resp.error)
        self.run_id = resp.run_id
        session = Session(self, connector, conn, resp.run_id)
        session.v2_crypto = v2_crypto
        session.log.info("login to server success, get run id [%s]", resp.run_id)
        return session

    async def run(self) -> int:
        """Log in and keep the session up until stopped. Returns the process exit code."""
        if self.vnet is not None:
            try:
                self.vnet.start()
            except (OSError, ValueError) as exc:
                log.error("init virtual network controller error: %s", exc)
                return 1
            log.info("virtual network controller start...")
        if self.cfg.workers > 1:
            from pyfrp.client.workers import Workers  # loaded only for it (pickle, the links)

            self.workers = Workers(self.cfg.workers, self._handed_back)
            try:
                await self.workers.start()
            except OSError as exc:
                log.error("start pyfrpc workers error: %s", exc)
                await self.workers.close()
                return 1
        try:
            return await self._run()
        finally:
            if self.workers is not None:
                await self.workers.close()
            if self.vnet is not None:
                self.vnet.stop()

    async def _handed_back(
        self,
        start: StartWorkConn,
        sock: socket.socket,
        pending: bytes,
        ended: bool,
        v2: bool,
        remote: tuple[str, int] | None,
    ) -> None:
        """A work connection a helper dialled for a proxy served here."""
        session = self.session
        if session is None:
            sock.close()
            return
        conn = await adopt_socket(lambda: MessageConn.speaking(v2), sock, pending, ended)
        assert isinstance(conn, MessageConn)
        conn.remote = remote
        await session.serve_work(conn, start, local_name(self.cfg.user, start.proxy_name))

    async def _run(self) -> int:
        admin = None
        if self.cfg.web.port:
            from pyfrp.client.admin import Admin

            admin = Admin(self)
            try:
                await admin.web.start()
            except OSError as exc:
                log.error("start admin server error: %s", exc)
                return 1
            log.info("admin server listen on %s", admin.web.address)
        loop = asyncio.get_running_loop()
        sessions = loop.create_task(self._keep_session())
        stopped = loop.create_task(self._stopped.wait())
        try:
            await asyncio.wait({sessions, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            sessions.cancel()
            await asyncio.gather(sessions, return_exceptions=True)
            if admin is not None:
                await admin.web.close()
        if sessions.cancelled():  # stopped
            return 0
        return sessions.result()

    async def _keep_session(self) -> int:
        cfg = self.cfg
        first = True
        failures = 0
        many = len(self.endpoints) > 1
        round_start = self.endpoint
        while not self._stopping:
            try:
                if many:
                    log.info("try to connect to server [%s:%d]...", *self.endpoints[self.endpoint])
                else:
                    log.info("try to connect to server...")
                self.session = await self._login()
            except (OSError, TimeoutError, ProtocolError, AuthError, OIDCError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                if isinstance(exc, AuthError):
                    log.warning("login to the server failed: %s", exc)
                else:
                    log.warning("connect to server error: %s", exc or type(exc).__name__)
                if many:  # the next endpoint at once; a pause only after a whole round
                    self.endpoint = (self.endpoint + 1) % len(self.endpoints)
                    if self.endpoint != round_start:
                        continue
                if first and cfg.login_fail_exit:
                    log.error(
                        "login to the server failed: %s. With loginFailExit enabled, "
                        "no additional retries will be attempted",
                        exc or type(exc).__name__,
                    )
                    return 1
                failures += 1
                await asyncio.sleep(_backoff(failures))
                continue
            first = False
            failures = 0
            if self.workers is not None:
                self.workers.session(self._endpoint_cfg(), self.run_id, self.cfg.proxies)
            self.logged_in.set()
            await self.session.run()
            self.session = None
            if not self._stopping:
                log.warning("control connection to server lost, reconnecting")
                if many and not self._to_first:  # fail over: the next one first
                    self.endpoint = (self.endpoint + 1) % len(self.endpoints)
                self._to_first = False
                round_start = self.endpoint
        return 0

    async def proxy_started(self, name: str, limit: float) -> str:
        """frps's answer to proxy ``name``'s NewProxy: its remote address, or ProxyError."""
        session = self.session
        proxy = session.proxies.get(name) if session is not None else None
        if proxy is not None and proxy.status == "running":
            return str(proxy.remote_addr)
        waiter: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self.starting[name] = waiter
        try:
            async with asyncio.timeout(limit):
                remote, error = await waiter
        except TimeoutError:
            raise ProxyError(f"[{name}] no answer from frps within {limit:.0f} s") from None
        finally:
            self.starting.pop(name, None)
        if error:
            raise ProxyError(f"[{name}] start error: {error}")
        return remote

    def stop(self) -> None:
        self._stopping = True
        if self.session is not None:
            self.session.send_close_proxies()
            self.session.close()
        self._stopped.set()


async def _server_hello(conn: MessageConn, hello: bytes) -> tuple[str, bytes]:
    """Read frps's ServerHello: (the AEAD algorithm, the transcript hash) of the control channel."""
    frame_type, payload = await conn.recv_frame()
    if frame_type != wire2.FRAME_SERVER_HELLO:
        raise FrameError(f"unexpected frame type {frame_type}, want {wire2.FRAME_SERVER_HELLO}")
    try:
        algorithm = wire2.check_server_hello(hello, payload)
    except ValueError as exc:
        raise AuthError(str(exc)) from None
    return algorithm, wire2.transcript_hash(hello, payload)


def _endpoints(cfg: ClientConfig) -> list[tuple[str, int]]:
    """serverAddrs as (host, port), or the one serverAddr:serverPort."""
    out = []
    for addr in cfg.server_addrs:
        host, _, port = addr.rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out or [(cfg.server_addr, cfg.server_port)]


def _backoff(failures: int) -> float:
    """frpc's fast-then-exponential retry: 3 quick tries, then 1 s doubling, capped at 20 s."""
    if failures <= 3:
        return 0.2
    return float(min(20, 2 ** (failures - 4)))
