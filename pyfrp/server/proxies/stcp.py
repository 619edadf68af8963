"""``type = stcp`` and ``type = sudp`` (server/proxy/stcp.go, sudp.go, server/visitor): no port
of their own. A visitor (another frpc) dials bind_port and sends NewVisitorConn naming the proxy;
frps checks the secret key and the allowed users, then joins that connection to a work
connection, as a tcp proxy joins a user's. For sudp the joined bytes are UDPPacket messages,
which frps never looks into.
"""

from __future__ import annotations

import asyncio

from pyfrp.net.msgconn import MessageConn
from pyfrp.net.splice import HoldProtocol
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.auth import verify_privilege_key
from pyfrp.proto.msg import NewProxy, NewVisitorConn, Ping, Pong, UDPPacket
from pyfrp.server.ports import PortError
from pyfrp.server.proxies.base import Proxy, ProxyHost, Resources, register
from pyfrp.vhost.conn import WorkConn


@register("stcp")
class StcpProxy(Proxy):
    def __init__(self, host: ProxyHost, msg: NewProxy, res: Resources) -> None:
        super().__init__(host, msg, res)
        # Without allowUsers, only visitors of the proxy's own user.
        self.allow_users = msg.allow_users or [host.user]
        self._listening = False

    async def start(self) -> None:
        if self.name in self.res.visitor_targets:
            raise PortError(f"custom listener for [{self.name}] is repeated")
        self.res.visitor_targets[self.name] = self
        self._listening = True
        self.log.info("%s proxy custom listen success", self.kind)

    def admit(self, msg: NewVisitorConn, user: str) -> None:
        """Check a visitor connection; raises PortError with frp's text."""
        if not verify_privilege_key(self.msg.sk, msg.timestamp, msg.sign_key):
            raise PortError(f"visitor connection of [{self.name}] auth failed")
        if user not in self.allow_users and "*" not in self.allow_users:
            raise PortError(f"visitor connection of [{self.name}] user [{user}] not allowed")

    def accept(
        self,
        msg: NewVisitorConn,
        transport: asyncio.Transport,
        pending: bytes,
        ended: bool,
        v2: bool = False,
    ) -> None:
        """Take an admitted visitor connection (after NewVisitorConnResp): the visitor's
        encryption (keyed by the secret key) and compression are stacked here."""
        src = transport.get_extra_info("peername") or ("", 0)
        top, pending = wrap_work_transport(
            transport,
            pending,
            token=self.msg.sk,
            use_encryption=msg.use_encryption,
            use_compression=msg.use_compression,
        )
        held = HoldProtocol()
        held.pending += pending
        held.ended = ended
        top.set_protocol(held)
        held.connection_made(top)
        self.spawn(self._join(held, (src[0], src[1]), v2))

    async def _join(self, held: HoldProtocol, src: tuple[str, int], v2: bool) -> None:
        visitor = held.transport
        assert visitor is not None
        try:
            work = await self.open_work_conn(src)
        except asyncio.CancelledError:
            visitor.close()
            raise
        if work is None:
            visitor.close()
        elif self.kind == "sudp" and v2 != self.host.v2:
            await self._bridge(held, work, v2)
        else:
            self.join_user(held, work)

    async def _bridge(self, held: HoldProtocol, work: WorkConn, visitor_v2: bool) -> None:
        """A v1 and a v2 frpc on one sudp proxy: re-frame their UDPPackets (and Pings)."""
        names = ("v2" if self.host.v2 else "v1", "v2" if visitor_v2 else "v1")
        self.log.info(
            "bridge mixed SUDP payload codecs, proxy wireProtocol [%s], visitor wireProtocol [%s]",
            *names,
        )
        assert held.transport is not None
        visitor = MessageConn.attach(held.transport, visitor_v2)
        proxy = MessageConn.attach(work.transport, self.host.v2)
        for conn, pending, ended in (
            (visitor, held.take(), held.ended),
            (proxy, work.pending, work.ended),
        ):
            if pending:
                conn.data_received(pending)
            if ended:
                conn.eof_received()
        held.transport.resume_reading()
        counts = [0, 0]

        async def pump(src: MessageConn, dst: MessageConn, i: int) -> None:
            while True:
                msg = await src.recv()
                if isinstance(msg, UDPPacket):
                    counts[i] += len(msg.content)
                    dst.send(msg)
                elif isinstance(msg, (Ping, Pong)):
                    dst.send(msg)

        self.conn_opened()
        loop = asyncio.get_running_loop()
        tasks = {
            loop.create_task(pump(visitor, proxy, 0)),
            loop.create_task(pump(proxy, visitor, 1)),
        }
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            visitor.close()
            proxy.close()
            self.conn_closed(counts[0], counts[1])

    async def close(self) -> None:
        if self._listening and self.res.visitor_targets.get(self.name) is self:
            del self.res.visitor_targets[self.name]
        self._listening = False
        self.drop_users()


@register("sudp")
class SudpProxy(StcpProxy):
    """frps joins sudp visitors exactly as stcp ones; only the two frpc ends speak UDPPacket."""
