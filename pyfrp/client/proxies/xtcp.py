"""``type = xtcp`` (client/proxy/xtcp.go): frps sends a NatHoleSid on a work connection when a
visitor wants in; this end discovers its addresses, trades them for the visitor's through frps,
punches, reports, then accepts the visitor's QUIC connection on the punched socket (or, with the
visitor's ``protocol = kcp``, talks KCP and yamux through it). Each stream is one user
connection, wrapped by the secret key and spliced to the local service."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pyfrp.client import nathole
from pyfrp.client.proxies.base import register, wire_name
from pyfrp.client.proxies.tcp import TcpProxy
from pyfrp.errors import ProtocolError
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.splice import HoldProtocol
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.msg import NatHoleClient, NatHoleReport, NatHoleSid, StartWorkConn
from pyfrp.proto.nathole import new_id

SID_TIMEOUT = 10.0


@register("xtcp")
class XtcpProxy(TcpProxy):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_work_conn(self, conn: MessageConn, start: StartWorkConn) -> None:
        try:
            async with asyncio.timeout(SID_TIMEOUT):
                sid = await conn.recv_as(NatHoleSid)
        except (OSError, TimeoutError, ProtocolError) as exc:
            self.log.error("xtcp read from workConn error: %s", exc or "timeout")
            return
        finally:
            conn.close()
        try:
            await self._punch_and_serve(sid.sid, start)
        except nathole.NatHoleError as exc:
            self.log.warning("%s", exc)

    async def _punch_and_serve(self, sid: str, start: StartWorkConn) -> None:
        cfg = self.cfg
        self.log.debug("nathole prepare start")
        try:
            prepared = await nathole.prepare(
                self.client.nat_hole_stun_server, cfg.disable_assisted_addrs, self.log
            )
        except nathole.NatHoleError as exc:
            raise nathole.NatHoleError(f"nathole prepare error: {exc}") from exc
        sock = prepared.sock
        try:
            tid = new_id()
            msg = NatHoleClient(
                transaction_id=tid,
                proxy_name=wire_name(self.client.user, self.cfg.name),
                sid=sid,
                mapped_addrs=prepared.addrs,
                assisted_addrs=prepared.assisted,
            )
            try:
                resp = await nathole.exchange(self.host, msg, tid, self.log)
            except nathole.NatHoleError as exc:
                raise nathole.NatHoleError(f"nathole exchange info error: {exc}") from exc
            try:
                sock, peer = await nathole.make_hole(sock, resp, cfg.secret_key, self.log)
            except nathole.NatHoleError as exc:
                self.host.send_control(NatHoleReport(sid=resp.sid, success=False))
                raise nathole.NatHoleError(f"make hole error: {exc}") from exc
            self.host.send_control(NatHoleReport(sid=resp.sid, success=True))
            if resp.protocol == "kcp":
                await self._serve_kcp(sock, peer, start)
            else:
                await self._serve(sock, start)
        finally:
            sock.close()

    async def _serve_kcp(
        self, sock: socket.socket, peer: tuple[str, int], start: StartWorkConn
    ) -> None:
        from pyfrp.net import kcpmux  # the tunnel stacks load with the first hole

        tunnel = await kcpmux.open_tunnel(
            sock, peer, client=False, on_stream=lambda s: self._stream(s, start)
        )
        try:
            await tunnel.terminated.wait()
            self.log.error("accept connection error: kcp tunnel closed")
        finally:
            tunnel.close_tunnel()

    async def _serve(self, sock: socket.socket, start: StartWorkConn) -> None:
        try:
            from pyfrp.net import quic  # aioquic: ~10 MiB, only once a hole is punched

            tunnel, close_listener = await quic.accept(sock, lambda s: self._stream(s, start))
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.log.error("quic accept connection error: %s", exc or "timeout")
            return
        try:
            await tunnel.terminated.wait()
            self.log.debug("quic accept stream error: connection closed")
        finally:
            tunnel.close_tunnel()
            close_listener()

    def _stream(self, stream: asyncio.Transport, start: StartWorkConn) -> None:
        held = HoldProtocol()
        stream.set_protocol(held)
        held.connection_made(stream)
        task = asyncio.get_running_loop().create_task(self._join_stream(stream, held, start))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _join_stream(
        self, stream: asyncio.Transport, held: HoldProtocol, start: StartWorkConn
    ) -> None:
        cfg = self.cfg

        def wrap() -> tuple[asyncio.Transport, bytes, bool]:
            top, pending = wrap_work_transport(
                stream,
                held.take(),
                token=cfg.secret_key,  # xtcp's streams are keyed by the secret key
                use_encryption=cfg.use_encryption,
                use_compression=cfg.use_compression,
            )
            return top, pending, held.ended

        await self.serve_work(stream, wrap, start)

    def close(self) -> None:
        super().close()
        for t in list(self._tasks):
            t.cancel()
