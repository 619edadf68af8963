"""``type = tcp`` (and the work connections of http/https, which frpc handles alike): dial
local_ip:local_port for each work connection and splice."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from pyfrp.client import plugins
from pyfrp.client.proxies.base import ClientProxy, register
from pyfrp.net import resolve
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.splice import HoldProtocol, splice
from pyfrp.proto.msg import StartWorkConn
from pyfrp.proto.proxyproto import header_for_user

LOCAL_DIAL_TIMEOUT = 10.0


@register("tcp")
class TcpProxy(ClientProxy):
    async def handle_work_conn(self, conn: MessageConn, start: StartWorkConn) -> None:
        await self.serve_work(conn, functools.partial(self.wrap, conn), start)

    async def serve_work(
        self,
        work: asyncio.BaseTransport | MessageConn,
        wrap: Callable[[], tuple[asyncio.Transport, bytes, bool]],
        start: StartWorkConn,
    ) -> None:
        """Hand a work connection to the proxy's plugin, else to the local service."""
        cfg = self.cfg
        if cfg.plugin:
            top, pending, ended = wrap()
            await plugins.serve(
                cfg.plugin, self.log, top, pending, ended, start, cfg.proxy_protocol_version,
                self.vnet, cfg.name,
            )  # fmt: skip
            return
        await self.join_local(work, wrap, start)

    def close(self) -> None:
        # frp's VirtualNetPlugin.Close: the proxy's packet connections end with it
        if self.vnet is not None and self.cfg.plugin:
            self.vnet.drop_owner(self.cfg.name)

    async def join_local(
        self,
        work: asyncio.BaseTransport | MessageConn,
        wrap: Callable[[], tuple[asyncio.Transport, bytes, bool]],
        start: StartWorkConn,
    ) -> None:
        """Dial local_ip:local_port and splice it with the work connection: ``wrap()`` gives
        its top transport (the proxy's layers on it), the bytes read and whether it ended.
        ``work`` is closed if the dial fails."""
        cfg = self.cfg
        try:
            async with asyncio.timeout(LOCAL_DIAL_TIMEOUT):  # no extra Task, unlike wait_for
                local, held = await resolve.create_connection(
                    HoldProtocol, cfg.local_ip, cfg.local_port
                )
        except (OSError, TimeoutError) as exc:
            self.log.warning(
                "connect to local service [%s:%d] error: %s",
                cfg.local_ip,
                cfg.local_port,
                exc or "timeout",
            )
            work.close()
            return
        except asyncio.CancelledError:
            work.close()
            raise
        pp = header_for_user(cfg.proxy_protocol_version, start)
        if pp:
            local.write(pp)
        top, pending, ended = wrap()
        self.log.debug(
            "join connections, user [%s:%d] local [%s:%d]",
            start.src_addr, start.src_port, cfg.local_ip, cfg.local_port,
        )  # fmt: skip
        try:
            await splice(
                top,
                local,
                a_pending=pending,
                a_ended=ended,
                b_pending=held.take(),
                b_ended=held.ended,
            )
        finally:
            top.close()
            local.close()


@register("http")
class HttpProxy(TcpProxy):
    """frps does the HTTP; frpc splices its work connections as tcp ones."""


@register("https")
class HttpsProxy(TcpProxy):
    """frps routes by SNI; frpc splices its work connections as tcp ones."""


@register("tcpmux")
class TcpmuxProxy(TcpProxy):
    """frps answers the CONNECT; frpc splices the tunnel's work connections as tcp ones."""


@register("stcp")
class StcpProxy(TcpProxy):
    """frps joins visitors to work connections; frpc splices them as tcp ones."""
