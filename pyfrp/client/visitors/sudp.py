"""``type = sudp`` visitor (client/visitor/sudp.go): datagrams to bindAddr:bindPort travel as
UDPPacket messages over one visitor connection, dialed at the first datagram and again at the
first one after it ends (60 s without a message from the proxy's side ends it; that side pings
every 30 s); replies go back to each datagram's sender."""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import Any

from pyfrp.client.visitors.base import Visitor, VisitorError, register
from pyfrp.errors import ProtocolError
from pyfrp.net.batch import WriteBatch
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.udpaddr import reply_addr, user_addr
from pyfrp.proto import wire2
from pyfrp.proto.framing import encode_udp_packet
from pyfrp.proto.msg import UDPPacket

READ_TIMEOUT = 60.0
QUEUE = 1024  # frp's channel capacity, in datagrams


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, visitor: SudpVisitor) -> None:
        self.visitor = visitor

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.visitor.from_user(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass


@register("sudp")
class SudpVisitor(Visitor):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._users: asyncio.DatagramTransport | None = None
        self._conn: MessageConn | None = None
        self._task: asyncio.Task[None] | None = None
        self._queue: collections.deque[bytes] = collections.deque(maxlen=QUEUE)
        self._family = socket.AF_INET
        self._batch = WriteBatch(QUEUE * (self.client.udp_packet_size + 64))

    async def start(self) -> None:
        cfg = self.cfg
        self._users, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Listener(self), local_addr=(cfg.bind_addr, cfg.bind_port)
        )
        sock = self._users.get_extra_info("socket")
        self._family = sock.family if sock is not None else socket.AF_INET
        self.log.info("sudp start to work, listen on %s:%d", cfg.bind_addr, cfg.bind_port)

    def from_user(self, data: bytes, addr: Any) -> None:
        size = self.client.udp_packet_size
        encode = wire2.encode_udp_packet if self.client.wire_protocol == "v2" else encode_udp_packet
        frame = encode(data[:size], user_addr(addr))
        conn = self._conn
        if conn is None or conn.transport is None:
            self._queue.append(frame)
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._work())
        else:  # dropped when the visitor connection cannot keep up
            self._batch.add(conn.transport, frame)

    async def _work(self) -> None:
        try:
            try:
                top, pending, ended = await self.dial()
            except VisitorError as exc:
                self.log.warning("newVisitorConn to frps error: %s, try to reconnect", exc)
                self._queue.clear()  # frp drops the datagram that triggered the dial
                return
            conn = MessageConn.attach(top, self.client.wire_protocol == "v2")
            if pending:
                conn.data_received(pending)
            if ended:
                conn.eof_received()
            self._conn = conn
            while self._queue and conn.transport is not None:
                conn.transport.write(self._queue.popleft())
            try:
                await self._read(conn)
            finally:
                self._conn = None
                conn.close()
        finally:
            self._task = None

    async def _read(self, conn: MessageConn) -> None:
        users = self._users
        assert users is not None
        try:
            while True:
                async with asyncio.timeout(READ_TIMEOUT):
                    msg = await conn.recv()
                if isinstance(msg, UDPPacket) and msg.remote_addr is not None:
                    try:
                        users.sendto(msg.content, reply_addr(msg.remote_addr, self._family))
                    except (OSError, ValueError, TypeError) as exc:
                        self.log.debug("udp packet for [%s]: %s", msg.remote_addr.ip, exc)
        except (TimeoutError, ConnectionError, OSError, ProtocolError) as exc:
            self.log.warning("read from workconn for user udp conn error: %s", exc or "timeout")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._conn is not None:
            self._conn.close()
        if self._users is not None:
            self._users.close()
            self._users = None
