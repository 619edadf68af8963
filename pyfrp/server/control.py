"""One Control per logged-in frpc (server/control.go): its message loop, work-connection pool
and proxies."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from pyfrp.config.model import ServerConfig
from pyfrp.errors import ProtocolError
from pyfrp.log import PrefixLogger
from pyfrp.net.layer import AeadLayer, CryptoLayer
from pyfrp.net.msgconn import MessageConn
from pyfrp.proto.crypto import derive_key
from pyfrp.proto.msg import (
    CloseProxy,
    Login,
    NatHoleClient,
    NatHoleReport,
    NatHoleVisitor,
    NewProxy,
    NewProxyResp,
    Ping,
    Pong,
    ReqWorkConn,
    StartWorkConn,
)
from pyfrp.server.auth import ServerAuth
from pyfrp.server.nathole import NatHoleController
from pyfrp.server.plugins import PluginManager, PluginRejected, UserInfo
from pyfrp.server.ports import PortError
from pyfrp.server.proxies import Proxy

log = logging.getLogger(__name__)


class ControlService(Protocol):
    """What a Control needs of the server (the Server in service.py)."""

    cfg: ServerConfig
    auth: ServerAuth

    @property
    def nathole(self) -> NatHoleController: ...

    @property
    def plugins(self) -> PluginManager | None: ...

    async def register_proxy(self, ctl: Control, msg: NewProxy) -> Proxy: ...

    def unregister_proxy(self, name: str) -> None: ...

    def control_closed(self, ctl: Control) -> None: ...


class Control:
    def __init__(
        self,
        service: ControlService,
        conn: MessageConn,
        login: Login,
        run_id: str,
        *,
        internal: bool = False,
        always_pass: bool = False,
    ) -> None:
        self.service = service
        # The SSH tunnel gateway's in-process client: a plain control connection, and no token
        # checks when ssh authenticated the user by key (frp: auth.AlwaysPassVerifier).
        self.internal = internal
        self.always_pass = always_pass
        self.conn = conn
        self.login = login
        self.run_id = run_id
        self.v2 = conn.v2
        # wire v2: (AEAD algorithm, transcript hash) the hellos settled
        self.v2_crypto: tuple[str, bytes] | None = None
        cfg = service.cfg
        # The token it logged in with keys its control channel and its proxies' encryption for
        # as long as it stays: a reload of frps's token (pyfrp extension) leaves open sessions be.
        self.token = cfg.token
        self.pool_count = min(max(login.pool_count, 0), cfg.max_pool_count)
        # Bounded by add_work_conn, not by the queue: a put wakes a waiting user but the
        # connection stays queued until that user's task runs, so in a burst a full queue of
        # connections already promised to waiters must not make later ones look surplus (Go's
        # channel hands a connection straight to a waiting receiver).
        self.pool: asyncio.Queue[MessageConn] = asyncio.Queue()
        self.pool_cap = self.pool_count + 10
        self._waiting = 0  # users waiting for a work connection
        self.proxies: dict[str, Proxy] = {}
        self.log = PrefixLogger(log, run_id)
        self.last_ping = time.monotonic()
        self.closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        # Control-channel encryption starts right after LoginResp (both directions, token key).
        if self.v2_crypto is not None:
            self.conn.push_layer(AeadLayer, self.v2_crypto, self.token, False)
        elif not self.internal:  # the SSH gateway's in-process client: nothing on the wire
            self.conn.push_layer(CryptoLayer, derive_key(self.token))
        for _ in range(self.pool_count):
            self.conn.send(ReqWorkConn())
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        hb_timeout = self.service.cfg.effective_heartbeat_timeout
        checker = None
        if hb_timeout > 0:
            checker = asyncio.get_running_loop().create_task(self._heartbeat_check(hb_timeout))
        try:
            while True:
                msg = await self.conn.recv()
                if isinstance(msg, NewProxy):
                    await self._new_proxy(msg)
                elif isinstance(msg, CloseProxy):
                    await self._close_proxy(msg.proxy_name)
                elif isinstance(msg, Ping):
                    await self._ping(msg)
                elif isinstance(msg, NatHoleVisitor):
                    nathole = self.service.nathole.handle_visitor(msg, self.conn.send, self.user)
                    task = asyncio.get_running_loop().create_task(nathole)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif isinstance(msg, NatHoleClient):
                    self.service.nathole.handle_client(msg, self.conn.send)
                elif isinstance(msg, NatHoleReport):
                    self.service.nathole.handle_report(msg)
                else:
                    self.log.debug("ignoring message %s on control", type(msg).__name__)
        except ProtocolError as exc:
            self.log.warning("control connection error: %s", exc)
        except (ConnectionError, OSError) as exc:
            self.log.debug("control connection closed: %s", exc)
        except asyncio.CancelledError:
            pass
        finally:
            if checker is not None:
                checker.cancel()
            await self._teardown()

    async def _ping(self, msg: Ping) -> None:
        cfg = self.service.cfg
        plugins = self.service.plugins
        err = ""
        if plugins is not None and plugins.handles("Ping"):
            try:
                msg = await plugins.ping(self.user_info, msg)
            except PluginRejected as exc:
                err = str(exc)
        if not err and not self.always_pass:
            err = await self.service.auth.verify_ping(msg)
        if err:
            self.log.warning("received invalid ping: %s", err)
            self.conn.send(Pong(error=err if cfg.detailed_errors_to_client else "invalid ping"))
            return
        self.last_ping = time.monotonic()
        self.conn.send(Pong())

    @property
    def user_info(self) -> UserInfo:
        """Who this control is, as server plugins are told."""
        return UserInfo(self.login.user, dict(self.login.metas), self.run_id)

    async def _heartbeat_check(self, limit: int) -> None:
        while True:
            await asyncio.sleep(1)
            if time.monotonic() - self.last_ping > limit:
                self.log.warning("heartbeat timeout")
                self.conn.abort()
                return

    async def _teardown(self) -> None:
        self.conn.close()
        for task in list(self._tasks):
            task.cancel()
        for name in list(self.proxies):
            await self._close_proxy(name)
        while not self.pool.empty():
            self.pool.get_nowait().close()
        self.service.control_closed(self)
        self.closed.set()
        self.log.info("client exit success")

    async def replace(self) -> None:
        """A newer login with our run id took over: close everything of ours."""
        self.log.info("replaced by a new control with the same run id")
        self.conn.abort()
        if self._task is not None:
            self._task.cancel()
        await self.closed.wait()

    # -- proxies
    async def _new_proxy(self, msg: NewProxy) -> None:
        name = msg.proxy_name
        plugins = self.service.plugins
        try:
            if plugins is not None and plugins.handles("NewProxy"):
                try:
                    msg = await plugins.new_proxy(self.user_info, msg)
                except PluginRejected as exc:
                    raise PortError(str(exc)) from None
            proxy = await self.service.register_proxy(self, msg)
        except PortError as exc:
            err = str(exc)
        else:
            self.proxies[name] = proxy
            self.conn.send(NewProxyResp(proxy_name=name, remote_addr=proxy.remote_addr))
            self.log.info("new proxy [%s] type [%s] success", name, msg.proxy_type or "tcp")
            return
        self.log.warning("new proxy [%s] type [%s] error: %s", name, msg.proxy_type or "tcp", err)
        if not self.service.cfg.detailed_errors_to_client:
            err = f"new proxy [{name}] error"
        self.conn.send(NewProxyResp(proxy_name=name, error=err))

    async def _close_proxy(self, name: str) -> None:
        proxy = self.proxies.pop(name, None)
        if proxy is None:
            return
        self.service.unregister_proxy(name)
        await proxy.close()
        self.log.info("close proxy [%s] success", name)  # server/control.go, for every type
        plugins = self.service.plugins
        if plugins is not None and plugins.handles("CloseProxy"):
            plugins.notify_close_proxy(self.user_info, name)

    @property
    def user(self) -> str:
        return self.login.user

    # -- work connections
    def add_work_conn(self, conn: MessageConn) -> None:
        if self.closed.is_set():
            conn.close()
            return
        if self.pool.qsize() >= self.pool_cap + self._waiting:
            self.log.debug("work connection pool is full, discarding")  # frps: Debug
            conn.close()
            return
        self.pool.put_nowait(conn)

    def _refill(self) -> None:
        try:
            self.conn.send(ReqWorkConn())
        except ConnectionError:
            pass

    def take_work_conn(self, start: StartWorkConn) -> MessageConn | None:
        """A live pooled work connection with ``start`` sent on it, or None if the pool has none.
        Every connection taken (live or not) asks frpc for one more."""
        pool = self.pool
        while not pool.empty():
            conn = pool.get_nowait()
            self._refill()
            if conn.transport is not None and not conn.transport.is_closing():
                conn.send(start)
                return conn
        return None

    async def get_work_conn(self, start: StartWorkConn) -> MessageConn | None:
        """Take a pooled work connection (asking for one if none), send StartWorkConn on it."""
        conn = self.take_work_conn(start)
        if conn is not None:
            return conn
        timeout = self.service.cfg.user_conn_timeout
        for _ in range(self.pool_count + 1):
            self._waiting += 1
            try:
                self.conn.send(ReqWorkConn())
                async with asyncio.timeout(timeout):
                    conn = await self.pool.get()
            except (TimeoutError, ConnectionError):
                self.log.warning("timeout trying to get work connection")
                return None
            finally:
                self._waiting -= 1
            self._refill()
            if conn.transport is None or conn.transport.is_closing():
                continue
            conn.send(start)
            return conn
        return None
