"""``type = tcp`` (server/proxy/tcp.go): a listener on remote_port whose every connection is
joined to a work connection."""

from __future__ import annotations

import asyncio
import socket

from pyfrp.net.bind import BACKLOG
from pyfrp.net.splice import HoldProtocol
from pyfrp.proto.msg import NewProxy
from pyfrp.server.groups import Group
from pyfrp.server.ports import PortError
from pyfrp.server.proxies.base import Proxy, ProxyHost, Resources, register


class _UserConn(HoldProtocol):
    """A user connection on a proxy's port, held until its work connection is ready."""

    def __init__(self, proxy: TcpProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def on_held(self, transport: asyncio.Transport) -> None:
        self.proxy.spawn_user(self)


@register("tcp")
class TcpProxy(Proxy):
    uses_port = True

    def __init__(self, host: ProxyHost, msg: NewProxy, res: Resources) -> None:
        super().__init__(host, msg, res)
        self.port = 0
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._group: Group[TcpProxy] | None = None
        # pyfrp.workers > 1: the port the group's members on other workers listen on (0: none
        # yet, or remote_port itself)
        self.group_port = 0

    async def start(self) -> None:
        if self.msg.group:
            await self._start_in_group()
            return
        self.port, self._sock = self.res.tcp_ports.acquire(self.msg.remote_port)
        loop = asyncio.get_running_loop()
        try:
            # create_server listens again on a given socket, with its own backlog of 100 by default.
            self._server = await loop.create_server(
                lambda: _UserConn(self), sock=self._sock, backlog=BACKLOG
            )
        except OSError as exc:
            await self.close()
            raise PortError("port unavailable") from exc
        self.remote_addr = f":{self.port}"
        self.log.info("tcp proxy listen port [%d]", self.port)

    async def _start_in_group(self) -> None:
        """Share the group's port: its listener hands each user to the next member."""
        msg, res = self.msg, self.res
        group = res.groups.join(("tcp", msg.group), msg.group, msg.group_key, msg.remote_port, self)
        self._group = group
        if group.shared is None:
            wanted = self.group_port or msg.remote_port
            shared = res.group_port_bound is not None
            try:
                port, sock = res.tcp_ports.acquire(wanted, reuse_port=shared)
            except PortError:
                res.groups.leave(("tcp", msg.group), self)
                raise
            if res.group_port_bound is not None and not wanted:
                res.group_port_bound(msg.group, port)
            try:
                server = await asyncio.get_running_loop().create_server(
                    lambda: _UserConn(group.pick()), sock=sock, backlog=BACKLOG
                )
            except OSError as exc:
                sock.close()
                res.tcp_ports.release(port)
                res.groups.leave(("tcp", msg.group), self)
                raise PortError("port unavailable") from exc

            def release() -> None:
                server.close()
                res.tcp_ports.release(port)

            group.shared, group.release = port, release
        self.port = group.shared
        self.remote_addr = f":{self.port}"
        self.log.info("tcp proxy listen port [%d] in group [%s]", msg.remote_port, msg.group)

    def spawn_user(self, held: _UserConn) -> None:
        user = held.transport
        assert user is not None
        src = user.get_extra_info("peername") or ("", 0)
        dst = user.get_extra_info("sockname") or ("", 0)
        self.log.debug("get a user connection [%s:%d]", src[0], src[1])
        # Usually a pooled work connection is ready: join at once, without a task.
        conn = None if self.asks_plugins else self.host.take_work_conn(self.start_msg(src, dst))
        if conn is None:
            self.spawn(self._wait_work_conn(held, src, dst))
        else:
            self.log.debug("join connections, user [%s:%d]", src[0], src[1])
            self.join_user(held, self.wrap(conn))

    async def _wait_work_conn(
        self, held: _UserConn, src: tuple[str, int], dst: tuple[str, int]
    ) -> None:
        user = held.transport
        assert user is not None
        try:
            work = await self.open_work_conn(src, dst)
        except asyncio.CancelledError:
            user.close()
            raise
        if work is None:
            user.close()
        else:
            self.log.debug("join connections, user [%s:%d]", src[0], src[1])
            self.join_user(held, work)

    async def close(self) -> None:
        if self._group is not None:
            self.res.groups.leave(("tcp", self.msg.group), self)
            self._group = None
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        if self._sock is not None:
            self.res.tcp_ports.release(self.port)
            self._sock = None
        self.drop_users()
