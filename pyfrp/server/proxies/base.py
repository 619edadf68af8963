"""What every server-side proxy type shares (server/proxy/proxy.go): the interface the control
and the service know proxies by, what a proxy may use of the server, and the registry of types.

A proxy module imports this one and nothing above it: it reaches its frpc only through a
``ProxyHost`` (the Control) and the server's shared listeners through ``Resources``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pyfrp.config.model import ServerConfig
from pyfrp.log import PrefixLogger
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.ratelimit import bucket_for
from pyfrp.net.splice import HoldProtocol, Joined, join
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.msg import NewProxy, NewVisitorConn, StartWorkConn
from pyfrp.server.groups import Groups
from pyfrp.server.nathole import NatHoleController
from pyfrp.server.plugins import PluginManager, PluginRejected, UserInfo
from pyfrp.server.ports import PortManager
from pyfrp.server.stats import Stats
from pyfrp.vhost.conn import WorkConn
from pyfrp.vhost.http import VhostHttpServer
from pyfrp.vhost.https import VhostHttpsServer
from pyfrp.vhost.tcpmux import VhostTcpmuxServer

log = logging.getLogger("pyfrp.server.proxy")


class ProxyHost(Protocol):
    """The control connection a proxy belongs to: its frpc's pool of work connections."""

    run_id: str
    v2: bool  # its frpc speaks wire protocol v2 (work connections too)
    token: str  # the token its frpc logged in with: the key of use_encryption

    @property
    def user(self) -> str:
        """The user its frpc logged in as."""
        ...

    @property
    def user_info(self) -> UserInfo:
        """Who it is, as server plugins are told."""
        ...

    def take_work_conn(self, start: StartWorkConn) -> MessageConn | None:
        """A pooled work connection with ``start`` sent on it, or None at once."""
        ...

    async def get_work_conn(self, start: StartWorkConn) -> MessageConn | None:
        """As take_work_conn, asking frpc for one and waiting (None after userConnTimeout)."""
        ...


class VisitorTarget(Protocol):
    """A proxy that visitors reach through NewVisitorConn (stcp, sudp, xtcp)."""

    def admit(self, msg: NewVisitorConn, user: str) -> None:
        """Check a visitor connection of ``user``; raises PortError with frp's text."""
        ...

    def accept(
        self,
        msg: NewVisitorConn,
        transport: asyncio.Transport,
        pending: bytes,
        ended: bool,
        v2: bool = False,
    ) -> None:
        """Take the admitted connection (NewVisitorConnResp already sent on it); ``v2``: the
        visitor speaks wire protocol v2."""
        ...


@dataclass(slots=True)
class Resources:
    """What the server shares between proxies."""

    cfg: ServerConfig
    tcp_ports: PortManager
    udp_ports: PortManager
    nathole: NatHoleController
    stats: Stats = field(default_factory=Stats)
    plugins: PluginManager | None = None
    groups: Groups = field(default_factory=Groups)  # load-balancing groups, by kind and key
    vhost_http: VhostHttpServer | None = None
    vhost_https: VhostHttpsServer | None = None
    vhost_tcpmux: VhostTcpmuxServer | None = None
    # stcp/sudp/xtcp proxies by name, for NewVisitorConn (server/visitor's listeners).
    visitor_targets: dict[str, VisitorTarget] = field(default_factory=dict)
    # pyfrp.workers > 1: a tcp group's port is shared with the other workers (SO_REUSEPORT);
    # this is told (group name, port) when a group's first member picked a random one.
    group_port_bound: Callable[[str, int], None] | None = None


class Proxy:
    """One registered NewProxy. ``start`` raises PortError with frp's text for NewProxyResp."""

    kind: ClassVar[str] = ""
    uses_port: ClassVar[bool] = False  # counts against max_ports_per_client

    def __init__(self, host: ProxyHost, msg: NewProxy, res: Resources) -> None:
        self.host = host
        self.msg = msg
        self.res = res
        self.name = msg.proxy_name
        self.remote_addr = ""
        self.log = PrefixLogger(log, host.run_id, self.name)
        self._tasks: set[asyncio.Task[None]] = set()
        self._joins: set[Joined] = set()
        # bandwidthLimitMode = "server": frps meters the proxy's work connections
        server_side = msg.bandwidth_limit_mode == "server"
        self.bucket = bucket_for(msg.bandwidth_limit) if server_side else None

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def join_user(self, held: HoldProtocol, work: WorkConn) -> None:
        """Splice a held user (or visitor) connection with a started work connection."""
        user = held.transport
        assert user is not None
        joined = join(
            user,
            work.transport,
            a_pending=held.take(),
            a_ended=held.ended,
            b_pending=work.pending,
            b_ended=work.ended,
        )
        self.conn_opened()
        if joined.done:
            self.conn_closed(*joined.counts)
        else:
            self._joins.add(joined)
            joined.on_done = functools.partial(self._joined_done, joined)

    def _joined_done(self, joined: Joined) -> None:
        self._joins.discard(joined)
        self.conn_closed(*joined.counts)

    def conn_opened(self) -> None:
        self.res.stats.conn_opened(self.name)

    def conn_closed(self, bytes_in: int, bytes_out: int) -> None:
        self.res.stats.conn_closed(self.name, bytes_in, bytes_out)

    def drop_users(self) -> None:
        """Abort the user connections in flight and joined (the proxy is closing)."""
        for t in list(self._tasks):
            t.cancel()
        for j in list(self._joins):
            j.abort()

    @property
    def asks_plugins(self) -> bool:
        """Server plugins want to hear of each user connection (NewUserConn; not for http)."""
        plugins = self.res.plugins
        return plugins is not None and self.kind != "http" and plugins.handles("NewUserConn")

    async def user_allowed(self, src: tuple[str, int]) -> bool:
        plugins = self.res.plugins
        if plugins is None or not self.asks_plugins:
            return True
        try:
            addr = f"{src[0]}:{src[1]}"
            await plugins.new_user_conn(self.host.user_info, self.name, self.kind, addr)
        except PluginRejected as exc:
            self.log.warning("the user conn [%s:%d] was rejected, err:%s", src[0], src[1], exc)
            return False
        return True

    def start_msg(
        self, src: tuple[str, int] = ("", 0), dst: tuple[str, int] = ("", 0)
    ) -> StartWorkConn:
        return StartWorkConn(
            proxy_name=self.name, src_addr=src[0], src_port=src[1], dst_addr=dst[0], dst_port=dst[1]
        )

    def wrap(self, conn: MessageConn) -> WorkConn:
        """Stack the proxy's encryption/compression on a work connection that got StartWorkConn."""
        transport, pending, ended = conn.detach()
        top, pending = wrap_work_transport(
            transport,
            pending,
            token=self.host.token,
            use_encryption=self.msg.use_encryption,
            use_compression=self.msg.use_compression,
            bucket=self.bucket,
        )
        return WorkConn(top, pending, ended)

    async def open_work_conn(
        self, src: tuple[str, int] = ("", 0), dst: tuple[str, int] = ("", 0)
    ) -> WorkConn | None:
        """A started, wrapped work connection for a user at ``src``; None if frpc gave none
        (or a server plugin refused the user)."""
        if not await self.user_allowed(src):
            return None
        conn = await self.host.get_work_conn(self.start_msg(src, dst))
        if conn is None:
            self.log.warning("failed to get work connection for user [%s:%d]", src[0], src[1])
            return None
        return self.wrap(conn)


PROXY_TYPES: dict[str, type[Proxy]] = {}


def register(kind: str) -> Callable[[type[Proxy]], type[Proxy]]:
    def deco(cls: type[Proxy]) -> type[Proxy]:
        cls.kind = kind
        PROXY_TYPES[kind] = cls
        return cls

    return deco
