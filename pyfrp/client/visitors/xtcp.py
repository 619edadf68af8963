"""``type = xtcp`` visitor (client/visitor/xtcp.go): one QUIC connection (with ``protocol = kcp``,
KCP and yamux) through a punched NAT hole to the proxy's frpc, one stream per user connection.
The hole is made when the first user arrives (or at start with ``keepTunnelOpen``); a user who
cannot get a stream within ``fallbackTimeoutMs`` goes to the ``fallbackTo`` visitor (usually an
stcp one through frps)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from pyfrp.client import nathole
from pyfrp.client.visitors.base import (
    StreamVisitor,
    VisitorError,
    drop_user,
    register,
    target_name,
)
from pyfrp.net.splice import HoldProtocol
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.auth import privilege_key
from pyfrp.proto.msg import NatHoleVisitor
from pyfrp.proto.nathole import new_id

if TYPE_CHECKING:
    from pyfrp.net import kcpmux, quic

OPEN_TUNNEL_TIMEOUT = 20.0
RETRY_OPEN = 0.5
MIN_PUNCH_INTERVAL = 10.0


@register("xtcp")
class XtcpVisitor(StreamVisitor):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._tunnel: quic.QuicTunnel | kcpmux.KcpTunnel | None = None
        self._punch = asyncio.Event()

    async def start(self) -> None:
        await super().start()
        self.spawn(self._puncher())
        if self.cfg.keep_tunnel_open:
            self.spawn(self._keep_open())

    # -- the tunnel
    def _open_stream(self) -> asyncio.Transport:
        tunnel = self._tunnel
        if tunnel is None or tunnel.terminated.is_set():
            self._drop_tunnel()
            self._punch.set()
            raise VisitorError("no tunnel session")
        try:
            return tunnel.open_stream()
        except ConnectionError as exc:
            self._drop_tunnel()
            self._punch.set()
            raise VisitorError(str(exc)) from exc

    def _drop_tunnel(self) -> None:
        if self._tunnel is not None:
            self._tunnel.close_tunnel()
            self._tunnel = None

    async def _open_tunnel(self, limit: float) -> asyncio.Transport:
        end = time.monotonic() + min(limit, OPEN_TUNNEL_TIMEOUT)
        while True:
            try:
                return self._open_stream()
            except VisitorError as exc:
                if str(exc) != "no tunnel session":
                    self.log.warning("get tunnel connection error: %s", exc)
            left = end - time.monotonic()
            if left <= 0:
                raise VisitorError("open tunnel timeout")
            await asyncio.sleep(min(RETRY_OPEN, left))

    async def _puncher(self) -> None:
        while True:
            await self._punch.wait()
            started = time.monotonic()
            try:
                await self._make_hole()
            except OSError as exc:
                self.log.warning("make nat hole error: %s", exc)
            self._punch.clear()
            # Not more often than every 10 s.
            await asyncio.sleep(max(0.0, MIN_PUNCH_INTERVAL - (time.monotonic() - started)))

    async def _keep_open(self) -> None:
        cfg = self.cfg
        self._punch.set()
        retry_gap = 3600 / max(cfg.max_retries_an_hour, 1)
        while True:
            await asyncio.sleep(max(cfg.min_retry_interval, 1))
            self.log.debug("keepTunnelOpenWorker try to check tunnel...")
            try:
                stream = self._open_stream()
            except VisitorError as exc:
                self.log.warning("keepTunnelOpenWorker get tunnel connection error: %s", exc)
                await asyncio.sleep(retry_gap)
                continue
            self.log.debug("keepTunnelOpenWorker check success")
            stream.set_protocol(HoldProtocol())
            stream.close()

    async def _make_hole(self) -> None:
        cfg = self.cfg
        name = target_name(self.client.user, cfg.server_user, cfg.server_name)
        try:
            await nathole.pre_check(self.host, name)
        except nathole.NatHoleError as exc:
            self.log.warning("nathole precheck error: %s", exc)
            return
        try:
            prepared = await nathole.prepare(
                self.client.nat_hole_stun_server, cfg.disable_assisted_addrs, self.log
            )
        except nathole.NatHoleError as exc:
            self.log.warning("nathole prepare error: %s", exc)
            return
        sock = prepared.sock
        now = int(time.time())
        tid = new_id()
        msg = NatHoleVisitor(
            transaction_id=tid,
            proxy_name=name,
            protocol=cfg.protocol,
            sign_key=privilege_key(cfg.secret_key, now),
            timestamp=now,
            mapped_addrs=prepared.addrs,
            assisted_addrs=prepared.assisted,
        )
        try:
            resp = await nathole.exchange(self.host, msg, tid, self.log)
        except nathole.NatHoleError as exc:
            sock.close()
            self.log.warning("nathole exchange info error: %s", exc)
            return
        try:
            sock, raddr = await nathole.make_hole(sock, resp, cfg.secret_key, self.log)
        except nathole.NatHoleError as exc:
            self.log.warning("make hole error: %s", exc)
            return
        tunnel: quic.QuicTunnel | kcpmux.KcpTunnel
        from pyfrp.net import kcpmux, quic  # aioquic: ~10 MiB, only once a hole is punched

        try:
            if cfg.protocol == "kcp":
                tunnel = await kcpmux.open_tunnel(sock, raddr, client=True)
            else:
                tunnel = await quic.dial(sock, raddr)
        except (OSError, ConnectionError) as exc:
            sock.close()
            self.log.warning("init tunnel session error: dial %s error: %s", cfg.protocol, exc)
            return
        self._drop_tunnel()
        self._tunnel = tunnel

    # -- users
    async def handle(self, held: HoldProtocol) -> None:
        cfg = self.cfg
        user = held.transport
        assert user is not None
        self.log.debug("get a new xtcp user connection")
        timeout = cfg.fallback_timeout_ms / 1000 if cfg.fallback_to else OPEN_TUNNEL_TIMEOUT
        try:
            stream = await self._open_tunnel(timeout)
        except VisitorError as exc:
            self.log.error("open tunnel error: %s", exc)
            if not cfg.fallback_to:
                drop_user(held, str(exc))
                return
            self.log.debug("try to transfer connection to visitor: %s", cfg.fallback_to)
            try:
                self.host.transfer(cfg.fallback_to, held)
            except VisitorError as exc2:
                self.log.error("transfer connection to visitor %s error: %s", cfg.fallback_to, exc2)
                drop_user(held, str(exc2))
            return
        except asyncio.CancelledError:
            user.close()
            raise
        stream.set_protocol(HoldProtocol())
        top, _ = wrap_work_transport(
            stream,
            b"",
            token=cfg.secret_key,
            use_encryption=cfg.use_encryption,
            use_compression=cfg.use_compression,
        )
        self.join_user(held, top, b"", False)

    def close(self) -> None:
        super().close()
        self._drop_tunnel()
