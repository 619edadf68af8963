"""``type = stcp`` visitor (client/visitor/stcp.go): every connection to bindAddr:bindPort gets
its own visitor connection to frps, spliced to it. ``bindPort = -1``: no listener (in frp such a
visitor is reached only through another visitor's fallback)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from pyfrp.client.visitors.base import UserConn, Visitor, VisitorError, register
from pyfrp.net.listen import BACKLOG
from pyfrp.net.splice import HoldProtocol, Joined, join


@register("stcp")
class StcpVisitor(Visitor):
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

    def take_conn(self, held: HoldProtocol) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(held))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, held: HoldProtocol) -> None:
        user = held.transport
        assert user is not None
        self.log.debug("get a new stcp user connection")
        try:
            top, pending, ended = await self.dial()
        except VisitorError as exc:
            self.log.warning("dialRawVisitorConn error: %s", exc)
            user.close()
            return
        except asyncio.CancelledError:
            user.close()
            raise
        joined = join(
            user, top, a_pending=held.take(), a_ended=held.ended, b_pending=pending, b_ended=ended
        )
        if not joined.done:
            self._joins.add(joined)
            joined.on_done = functools.partial(self._joins.discard, joined)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for j in list(self._joins):
            j.abort()
