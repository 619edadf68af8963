"""``type = stcp`` and ``type = sudp`` (server/proxy/stcp.go, sudp.go, server/visitor): no port
of their own. A visitor (another frpc) dials bind_port and sends NewVisitorConn naming the proxy;
frps checks the secret key and the allowed users, then joins that connection to a work
connection, as a tcp proxy joins a user's. For sudp the joined bytes are UDPPacket messages,
which frps never looks into.
"""

from __future__ import annotations

import asyncio

from pyfrp.net.splice import HoldProtocol
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.auth import verify_privilege_key
from pyfrp.proto.msg import NewProxy, NewVisitorConn
from pyfrp.server.ports import PortError
from pyfrp.server.proxies.base import Proxy, ProxyHost, Resources, register


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
        self, msg: NewVisitorConn, transport: asyncio.Transport, pending: bytes, ended: bool
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
        self.spawn(self._join(held, (src[0], src[1])))

    async def _join(self, held: HoldProtocol, src: tuple[str, int]) -> None:
        visitor = held.transport
        assert visitor is not None
        try:
            work = await self.open_work_conn(src)
        except asyncio.CancelledError:
            visitor.close()
            raise
        if work is None:
            visitor.close()
        else:
            self.join_user(held, work)

    async def close(self) -> None:
        if self._listening and self.res.visitor_targets.get(self.name) is self:
            del self.res.visitor_targets[self.name]
        self._listening = False
        self.drop_users()


@register("sudp")
class SudpProxy(StcpProxy):
    """frps joins sudp visitors exactly as stcp ones; only the two frpc ends speak UDPPacket."""
