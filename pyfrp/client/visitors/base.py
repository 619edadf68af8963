"""What every visitor type shares (client/visitor/visitor.go): dialing frps with NewVisitorConn,
the secret key's encryption, and the registry of types. A visitor module imports this one and
nothing above: it reaches frps through a ``VisitorHost`` (the session)."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from pyfrp.client.nathole import ControlChannel
from pyfrp.client.vnet import Controller, VisitorRoute
from pyfrp.config.model import ClientConfig, VisitorConfig
from pyfrp.errors import ProtocolError
from pyfrp.log import PrefixLogger
from pyfrp.net.bind import BACKLOG
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.splice import HoldProtocol, Joined, join
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.auth import privilege_key
from pyfrp.proto.msg import NewVisitorConn, NewVisitorConnResp

log = logging.getLogger("pyfrp.client.visitor")

RESP_TIMEOUT = 10.0


class VisitorHost(ControlChannel, Protocol):
    """The logged-in session a visitor dials frps through."""

    run_id: str

    async def connect_server(self) -> MessageConn:
        """A new connection to frps (a yamux stream with tcp_mux), in message mode."""
        ...

    def transfer(self, visitor: str, held: HoldProtocol) -> None:
        """Hand a held user connection to the visitor named ``visitor`` (a fallback);
        raises VisitorError."""
        ...


class VisitorError(Exception):
    pass


class UserConn(HoldProtocol):
    """A user's connection to a visitor's bind port, held until the visitor serves it."""

    def __init__(self, visitor: Visitor) -> None:
        super().__init__()
        self.visitor = visitor

    def on_held(self, transport: asyncio.Transport) -> None:
        self.visitor.take_conn(self)

    def close_with_error(self, reason: str) -> None:
        """The visitor could not serve this user (frp's CloseWithError)."""
        if self.transport is not None:
            self.transport.close()


class RouteConn(UserConn):
    """The virtual_net plugin's end of its connection, served as any user's: errors reach
    the plugin, which then waits longer before it opens another."""

    def __init__(self, visitor: Visitor, route: VisitorRoute) -> None:
        super().__init__(visitor)
        self.route = route

    def close_with_error(self, reason: str) -> None:
        self.route.failed(reason)
        super().close_with_error(reason)


def drop_user(held: HoldProtocol, reason: str) -> None:
    """Close a user connection the visitor could not serve, telling a plugin's why."""
    if isinstance(held, UserConn):
        held.close_with_error(reason)
    elif held.transport is not None:
        held.transport.close()


def target_name(user: str, server_user: str, server_name: str) -> str:
    """The proxy a visitor asks for: serverUser.serverName, else the visitor's own user's."""
    owner = server_user or user
    return f"{owner}.{server_name}" if owner else server_name


class Visitor:
    kind: ClassVar[str] = ""
    vnet: Controller | None = None  # the client's virtual network, for the virtual_net plugin

    def __init__(
        self, cfg: VisitorConfig, client: ClientConfig, host: VisitorHost, logger: PrefixLogger
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.host = host
        self.log = logger.child(cfg.name)
        self.route: VisitorRoute | None = None

    def make_plugin(self) -> None:
        """Build the visitor plugin (frp's NewVisitor); ValueError for bad options."""
        if self.cfg.plugin:  # virtual_net, the only visitor plugin
            self.route = VisitorRoute(
                self.cfg.name, self.cfg.plugin, self.vnet, self._take_socket, self.log
            )

    async def _take_socket(self, sock: socket.socket) -> None:
        route = self.route
        assert route is not None
        await asyncio.get_running_loop().connect_accepted_socket(
            lambda: RouteConn(self, route), sock
        )

    async def start(self) -> None:
        """Listen on bindAddr:bindPort; raises OSError."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def take_conn(self, held: HoldProtocol) -> None:
        """Serve a user connection another visitor hands over (frp's internal listener)."""
        raise VisitorError(f"visitor [{self.cfg.name}] does not take connections of others")

    async def dial(self) -> tuple[asyncio.Transport, bytes, bool]:
        """A visitor connection frps accepted, with the visitor's encryption (keyed by the
        secret key) and compression on it: (top transport, bytes read, ended). The caller must
        give the transport a protocol before yielding. Raises VisitorError."""
        cfg = self.cfg
        try:
            conn = await self.host.connect_server()
        except (OSError, TimeoutError, ProtocolError) as exc:
            raise VisitorError(f"connect to server error: {exc}") from exc
        now = int(time.time())
        try:
            conn.send(
                NewVisitorConn(
                    run_id=self.host.run_id,
                    proxy_name=target_name(self.client.user, cfg.server_user, cfg.server_name),
                    sign_key=privilege_key(cfg.secret_key, now),
                    timestamp=now,
                    use_encryption=cfg.use_encryption,
                    use_compression=cfg.use_compression,
                )
            )
            async with asyncio.timeout(RESP_TIMEOUT):
                resp = await conn.recv_as(NewVisitorConnResp)
        except (OSError, TimeoutError, ProtocolError) as exc:
            conn.close()
            raise VisitorError(f"read newVisitorConnRespMsg error: {exc or 'timeout'}") from exc
        if resp.error:
            conn.close()
            raise VisitorError(f"start new visitor connection error: {resp.error}")
        transport, pending, ended = conn.detach()
        top, pending = wrap_work_transport(
            transport,
            pending,
            token=cfg.secret_key,
            use_encryption=cfg.use_encryption,
            use_compression=cfg.use_compression,
        )
        return top, pending, ended


class StreamVisitor(Visitor):
    """A visitor of tcp-like users (stcp, xtcp): a listener on bindAddr:bindPort (none for
    ``bindPort = -1``), a task per user (also for users other visitors hand over), and the joins
    it keeps until they end or the visitor closes."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._joins: set[Joined] = set()

    async def start(self) -> None:
        cfg = self.cfg
        if cfg.bind_port > 0:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: UserConn(self),
                cfg.bind_addr,
                cfg.bind_port,
                reuse_address=True,
                backlog=BACKLOG,
            )
        if self.route is not None:
            self.route.start()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def take_conn(self, held: HoldProtocol) -> None:
        self.spawn(self.handle(held))

    async def handle(self, held: HoldProtocol) -> None:
        """Serve one held user connection."""
        raise NotImplementedError

    def join_user(
        self, held: HoldProtocol, top: asyncio.Transport, pending: bytes, ended: bool
    ) -> None:
        """Splice the held user with ``top`` (the visitor's end of the tunnel)."""
        user = held.transport
        assert user is not None
        joined = join(
            user, top, a_pending=held.take(), a_ended=held.ended, b_pending=pending, b_ended=ended
        )
        if not joined.done:
            self._joins.add(joined)
            joined.on_done = functools.partial(self._joins.discard, joined)

    def close(self) -> None:
        if self.route is not None:
            self.route.close()
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for j in list(self._joins):
            j.abort()


VISITOR_TYPES: dict[str, type[Visitor]] = {}


def register(kind: str) -> Callable[[type[Visitor]], type[Visitor]]:
    def deco(cls: type[Visitor]) -> type[Visitor]:
        cls.kind = kind
        VISITOR_TYPES[kind] = cls
        return cls

    return deco
