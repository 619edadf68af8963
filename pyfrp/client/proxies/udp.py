"""``type = udp`` and ``type = sudp`` (client/proxy/udp.go, sudp.go, pkg/proto/udp): UDPPacket
messages on a work connection become datagrams to local_ip:local_port, one local socket per user
address, and replies go back tagged with that address.

frp's behaviour, kept: a udp proxy has one work connection at a time (a new one replaces the
old), an sudp proxy one per visitor connection; frpc pings on each every 30 s; a local socket idle
for 30 s is closed; replies are read with a ``udpPacketSize`` buffer; what a work connection
cannot take is dropped, never queued without bound.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from pyfrp.client.proxies.base import ClientProxy, register
from pyfrp.errors import ProtocolError
from pyfrp.net import resolve
from pyfrp.net.batch import WriteBatch
from pyfrp.net.msgconn import MessageConn
from pyfrp.proto import wire2
from pyfrp.proto.framing import encode_udp_packet
from pyfrp.proto.msg import Ping, StartWorkConn, UDPAddr, UDPPacket
from pyfrp.proto.proxyproto import header

HEARTBEAT = 30.0
LOCAL_IDLE = 30.0
SEND_LIMIT = 1024 * 1600  # frp's 1024-message channel, in bytes


class _Local:
    """A connected UDP socket to the local service for one user address."""

    __slots__ = ("last", "sock", "timer", "user")

    def __init__(self, sock: socket.socket, user: UDPAddr) -> None:
        self.sock = sock
        self.user = user
        self.last = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None


class UdpForwarder:
    """One work connection's UDPPacket stream and the local sockets it feeds (udp.Forwarder)."""

    def __init__(
        self, proxy: ClientProxy, mc: MessageConn, local_addr: tuple[int, tuple[str, int]]
    ) -> None:
        self.proxy = proxy
        self.mc = mc
        self.local_addr = local_addr
        self._locals: dict[tuple[str, int, str], _Local] = {}
        self._closed = False
        self._batch = WriteBatch(SEND_LIMIT)
        self._encode = wire2.encode_udp_packet if mc.v2 else encode_udp_packet

    async def run(self, what: str) -> None:
        """Forward until the work connection ends; ``what`` names the proxy type in logs."""
        mc = self.mc
        beat = asyncio.get_running_loop().create_task(self._heartbeat())
        try:
            while True:
                msg = await mc.recv()
                if isinstance(msg, UDPPacket) and msg.remote_addr is not None:
                    self._to_local(msg.content, msg.remote_addr)
        except (ConnectionError, OSError, ProtocolError) as exc:
            if not self._closed:
                self.proxy.log.warning("read from workConn for %s error: %s", what, exc)
        finally:
            beat.cancel()
            self.close()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            self.mc.send(Ping())

    def _to_local(self, data: bytes, user: UDPAddr) -> None:
        key = (user.ip, user.port, user.zone)
        local = self._locals.get(key)
        if local is None:
            local = self._open(key, user)
            if local is None:
                return
            version = self.proxy.cfg.proxy_protocol_version
            if version:  # before the first datagram of each user (frp's udp.Forwarder)
                data = header(version, (user.ip, user.port), self.local_addr[1], udp=True) + data
        local.last = time.monotonic()
        try:
            local.sock.send(data)
        except BlockingIOError:
            pass  # the kernel's buffer is full: a datagram may be lost
        except OSError as exc:
            self.proxy.log.debug("write to local udp service error: %s", exc)
            self._close_local(key)

    def _open(self, key: tuple[str, int, str], user: UDPAddr) -> _Local | None:
        family, addr = self.local_addr
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            self.proxy.log.warning("connect to local udp service [%s:%d] error: %s", *addr, exc)
            return None
        local = self._locals[key] = _Local(sock, user)
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self._from_local, key)
        local.timer = loop.call_later(LOCAL_IDLE, self._idle_check, key)
        return local

    def _from_local(self, key: tuple[str, int, str]) -> None:
        local = self._locals.get(key)
        if local is None:
            return
        size = self.proxy.client.udp_packet_size
        transport = self.mc.transport
        while True:
            try:
                data = local.sock.recv(size)
            except OSError:  # nothing more, or an ICMP error from the local service
                return
            local.last = time.monotonic()
            if transport is not None:  # dropped when the work connection cannot keep up
                self._batch.add(transport, self._encode(data, local.user))

    def _idle_check(self, key: tuple[str, int, str]) -> None:
        local = self._locals.get(key)
        if local is None:
            return
        left = local.last + LOCAL_IDLE - time.monotonic()
        if left > 0:
            local.timer = asyncio.get_running_loop().call_later(left, self._idle_check, key)
        else:
            self._close_local(key)

    def _close_local(self, key: tuple[str, int, str]) -> None:
        local = self._locals.pop(key, None)
        if local is None:
            return
        if local.timer is not None:
            local.timer.cancel()
        asyncio.get_running_loop().remove_reader(local.sock.fileno())
        local.sock.close()

    def close(self) -> None:
        self._closed = True
        self.mc.close()
        for key in list(self._locals):
            self._close_local(key)


class _UdpBase(ClientProxy):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._local_addr: tuple[int, tuple[str, int]] | None = None
        self._forwarders: set[UdpForwarder] = set()

    async def handle_work_conn(self, conn: MessageConn, start: StartWorkConn) -> None:
        peer = conn.peername
        self.log.info(
            "incoming a new work connection for %s proxy, %s",
            self.kind,
            f"{peer[0]}:{peer[1]}" if peer else "?",
        )
        if self.kind == "udp":  # one work connection at a time: the new one replaces the old
            self.close()
        if self._local_addr is None:
            try:
                infos = await resolve.getaddrinfo(
                    self.cfg.local_ip, self.cfg.local_port, socket.SOCK_DGRAM
                )
            except OSError as exc:
                self.log.warning("resolve local address error: %s", exc)
                conn.close()
                return
            family, _, _, _, addr = infos[0]
            self._local_addr = family, (str(addr[0]), int(addr[1]))
        v2 = conn.v2
        top, pending, ended = self.wrap(conn)
        mc = MessageConn.attach(top, v2)
        if pending:
            mc.data_received(pending)
        if ended:
            mc.eof_received()
        fwd = UdpForwarder(self, mc, self._local_addr)
        self._forwarders.add(fwd)
        try:
            await fwd.run(self.kind)
        finally:
            self._forwarders.discard(fwd)

    def close(self) -> None:
        for fwd in list(self._forwarders):
            fwd.close()


@register("udp")
class UdpProxy(_UdpBase):
    pass


@register("sudp")
class SudpProxy(_UdpBase):
    pass
