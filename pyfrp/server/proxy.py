"""Server-side proxies (server/proxy/): one object per registered NewProxy."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from typing import TYPE_CHECKING

from pyfrp.log import PrefixLogger
from pyfrp.net.listen import BACKLOG
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.splice import HoldProtocol, Joined, join
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.msg import NewProxy, StartWorkConn
from pyfrp.vhost.conn import WorkConn

if TYPE_CHECKING:
    from pyfrp.server.control import Control

log = logging.getLogger(__name__)


def _start_msg(msg: NewProxy, src: tuple[str, int], dst: tuple[str, int]) -> StartWorkConn:
    return StartWorkConn(
        proxy_name=msg.proxy_name,
        src_addr=src[0],
        src_port=src[1],
        dst_addr=dst[0],
        dst_port=dst[1],
    )


def _wrap(control: Control, msg: NewProxy, conn: MessageConn) -> WorkConn:
    """Stack the proxy's encryption/compression on a work connection that got StartWorkConn."""
    transport, pending, ended = conn.detach()
    top, pending = wrap_work_transport(
        transport,
        pending,
        token=control.service.cfg.token,
        use_encryption=msg.use_encryption,
        use_compression=msg.use_compression,
    )
    return WorkConn(top, pending, ended)


async def start_work_conn(
    control: Control,
    msg: NewProxy,
    logger: PrefixLogger,
    src: tuple[str, int],
    dst: tuple[str, int] = ("", 0),
) -> WorkConn | None:
    """A pooled work connection of ``control`` with StartWorkConn sent and the proxy's
    encryption/compression stacked on it; None if frpc gave none in time."""
    conn = await control.get_work_conn(_start_msg(msg, src, dst))
    if conn is None:
        logger.warning("failed to get work connection for user [%s:%d]", src[0], src[1])
        return None
    return _wrap(control, msg, conn)


class _UserConn(HoldProtocol):
    """A user connection on a proxy's port, held until its work connection is ready."""

    def __init__(self, proxy: TcpProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def on_held(self, transport: asyncio.Transport) -> None:
        self.proxy.spawn_user(self)


class TcpProxy:
    """A ``type = tcp`` proxy: listens on remote_port and joins each user to a work connection."""

    def __init__(self, control: Control, msg: NewProxy, port: int, sock: socket.socket) -> None:
        self.control = control
        self.msg = msg
        self.name = msg.proxy_name
        self.port = port
        self._sock = sock
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._joins: set[Joined] = set()
        self.log = PrefixLogger(log, control.run_id, self.name)

    @property
    def remote_addr(self) -> str:
        return f":{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # create_server listens again on a given socket, with its own backlog of 100 by default.
        self._server = await loop.create_server(
            lambda: _UserConn(self), sock=self._sock, backlog=BACKLOG
        )
        self.log.info("tcp proxy listen port [%d]", self.port)

    def spawn_user(self, held: _UserConn) -> None:
        user = held.transport
        assert user is not None
        src = user.get_extra_info("peername") or ("", 0)
        dst = user.get_extra_info("sockname") or ("", 0)
        self.log.debug("get a user connection [%s:%d]", src[0], src[1])
        # Usually a pooled work connection is ready: join at once, without a task.
        conn = self.control.take_work_conn(_start_msg(self.msg, src, dst))
        if conn is None:
            task = asyncio.get_running_loop().create_task(self._wait_work_conn(held, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._join(held, src, _wrap(self.control, self.msg, conn))

    async def _wait_work_conn(
        self, held: _UserConn, src: tuple[str, int], dst: tuple[str, int]
    ) -> None:
        user = held.transport
        assert user is not None
        try:
            work = await start_work_conn(self.control, self.msg, self.log, src, dst)
        except asyncio.CancelledError:
            user.close()
            raise
        if work is None:
            user.close()
        else:
            self._join(held, src, work)

    def _join(self, held: _UserConn, src: tuple[str, int], work: WorkConn) -> None:
        user = held.transport
        assert user is not None
        self.log.debug("join connections, user [%s:%d]", src[0], src[1])
        joined = join(
            user,
            work.transport,
            a_pending=held.take(),
            a_ended=held.ended,
            b_pending=work.pending,
            b_ended=work.ended,
        )
        if not joined.done:
            self._joins.add(joined)
            joined.on_done = functools.partial(self._joins.discard, joined)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        else:
            self._sock.close()
        self.control.service.ports.release(self.port)
        for t in list(self._tasks):
            t.cancel()
        for j in list(self._joins):
            j.abort()
