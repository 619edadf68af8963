"""``type = xtcp`` (server/proxy/xtcp.go): no port and no traffic through frps. The proxy listens
on the NAT hole controller by name; for each visitor session frps takes a work connection, writes
the session's NatHoleSid on it and closes it, which tells the proxy's frpc to start punching."""

from __future__ import annotations

from pyfrp.proto.msg import NatHoleSid, NewProxy
from pyfrp.server.nathole import NatHoleError
from pyfrp.server.ports import PortError
from pyfrp.server.proxies.base import Proxy, ProxyHost, Resources, register


@register("xtcp")
class XtcpProxy(Proxy):
    def __init__(self, host: ProxyHost, msg: NewProxy, res: Resources) -> None:
        super().__init__(host, msg, res)
        # Without allowUsers, only visitors of the proxy's own user.
        self.allow_users = msg.allow_users or [host.user]
        self._listening = False

    async def start(self) -> None:
        try:
            self.res.nathole.listen_client(self.name, self.msg.sk, self.allow_users, self._on_sid)
        except NatHoleError as exc:
            raise PortError(str(exc)) from exc
        self._listening = True

    def _on_sid(self, sid: str) -> None:
        self.spawn(self._send_sid(sid))

    async def _send_sid(self, sid: str) -> None:
        conn = await self.host.get_work_conn(self.start_msg())
        if conn is None:
            return
        try:
            conn.send(NatHoleSid(sid=sid))
        except (ConnectionError, OSError) as exc:
            self.log.warning("write nat hole sid package error, %s", exc)
        conn.close()

    async def close(self) -> None:
        if self._listening:
            self.res.nathole.close_client(self.name)
            self._listening = False
        self.drop_users()
