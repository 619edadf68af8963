"""``type = stcp`` visitor (client/visitor/stcp.go): every connection to bindAddr:bindPort gets
its own visitor connection to frps, spliced to it. ``bindPort = -1``: no listener (in frp such a
visitor is reached only through another visitor's fallback)."""

from __future__ import annotations

import asyncio

from pyfrp.client.visitors.base import StreamVisitor, VisitorError, drop_user, register
from pyfrp.net.splice import HoldProtocol


@register("stcp")
class StcpVisitor(StreamVisitor):
    async def handle(self, held: HoldProtocol) -> None:
        user = held.transport
        assert user is not None
        self.log.debug("get a new stcp user connection")
        try:
            top, pending, ended = await self.dial()
        except VisitorError as exc:
            self.log.warning("dialRawVisitorConn error: %s", exc)
            drop_user(held, str(exc))
            return
        except asyncio.CancelledError:
            user.close()
            raise
        self.join_user(held, top, pending, ended)
