"""``type = udp`` (server/proxy/udp.go): datagrams on remote_port travel to frpc as UDPPacket
messages over one work connection at a time, each tagged with the user's address so replies find
their way back.

frp's behaviour, kept: the first work connection is asked for half a second after NewProxyResp
(so frpc knows the proxy when it arrives); a work connection silent for 60 s (frpc pings every
30 s) is replaced; datagrams are cut to ``udpPacketSize`` (1500) as Go's read buffer cuts them;
while no work connection is up, or it cannot keep up, datagrams queue up to 1024 and then drop.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import Any

from pyfrp.errors import ProtocolError
from pyfrp.net.batch import WriteBatch
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.udpaddr import reply_addr, user_addr
from pyfrp.proto import wire2
from pyfrp.proto.framing import encode_udp_packet
from pyfrp.proto.msg import NewProxy, UDPPacket
from pyfrp.server.ports import PortError
from pyfrp.server.proxies.base import Proxy, ProxyHost, Resources, register

FIRST_WORK_CONN_DELAY = 0.5
WORK_CONN_READ_TIMEOUT = 60.0
RETRY_DELAY = 1.0
QUEUE = 1024  # frp's channel capacity, in datagrams
STATS_FLUSH = 1.0  # datagram bytes reach the dashboard's counters once a second


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.proxy.from_user(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for an earlier reply: UDP has no one to tell


@register("udp")
class UdpProxy(Proxy):
    uses_port = True

    def __init__(self, host: ProxyHost, msg: NewProxy, res: Resources) -> None:
        super().__init__(host, msg, res)
        self.port = 0
        self._users: asyncio.DatagramTransport | None = None
        self._work: MessageConn | None = None
        self._queue: collections.deque[bytes] = collections.deque(maxlen=QUEUE)
        self._task: asyncio.Task[None] | None = None
        self._size = res.cfg.udp_packet_size
        self._batch = WriteBatch(QUEUE * (self._size + 64))
        self._bytes_in = self._bytes_out = 0
        self._flush: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        try:
            self.port, sock = self.res.udp_ports.acquire(self.msg.remote_port)
        except PortError as exc:
            raise PortError(f"acquire port {self.msg.remote_port} error: {exc}") from None
        loop = asyncio.get_running_loop()
        try:
            self._users, _ = await loop.create_datagram_endpoint(lambda: _Listener(self), sock=sock)
        except OSError as exc:
            sock.close()
            self.res.udp_ports.release(self.port)
            raise PortError(f"listen udp port error: {exc}") from exc
        self.remote_addr = f":{self.port}"
        self.log.info("udp proxy listen port [%d]", self.port)
        self._task = loop.create_task(self._work_loop())
        self._flush = loop.call_later(STATS_FLUSH, self._flush_stats)

    def _flush_stats_now(self) -> None:
        if self._bytes_in or self._bytes_out:
            self.res.stats.add_traffic(self.name, self._bytes_in, self._bytes_out)
            self._bytes_in = self._bytes_out = 0

    def _flush_stats(self) -> None:
        self._flush_stats_now()
        self._flush = asyncio.get_running_loop().call_later(STATS_FLUSH, self._flush_stats)

    def from_user(self, data: bytes, addr: Any) -> None:
        self._bytes_in += len(data)
        encode = wire2.encode_udp_packet if self.host.v2 else encode_udp_packet
        frame = encode(data[: self._size], user_addr(addr))
        work = self._work
        if work is None or work.transport is None or self._queue:
            self._queue.append(frame)  # a full deque drops its oldest, frp drops the newest
            return
        # Dropped when the work connection cannot keep up, as by a full channel in frp.
        self._batch.add(work.transport, frame)

    async def _work_loop(self) -> None:
        await asyncio.sleep(FIRST_WORK_CONN_DELAY)
        while True:
            conn = await self.host.get_work_conn(self.start_msg())
            if conn is None:
                await asyncio.sleep(RETRY_DELAY)
                continue
            work = self.wrap(conn)
            mc = MessageConn.attach(work.transport, self.host.v2)
            if work.pending:
                mc.data_received(work.pending)
            if work.ended:
                mc.eof_received()
            self._work = mc
            while self._queue and mc.transport is not None:
                mc.transport.write(self._queue.popleft())
            try:
                await self._read(mc)
            finally:
                self._work = None
                mc.close()

    async def _read(self, mc: MessageConn) -> None:
        users = self._users
        assert users is not None
        sock = users.get_extra_info("socket")
        family = sock.family if sock is not None else socket.AF_INET
        try:
            while True:
                async with asyncio.timeout(WORK_CONN_READ_TIMEOUT):
                    msg = await mc.recv()
                if isinstance(msg, UDPPacket) and msg.remote_addr is not None:
                    self._bytes_out += len(msg.content)
                    try:
                        users.sendto(msg.content, reply_addr(msg.remote_addr, family))
                    except (OSError, ValueError, TypeError) as exc:  # an address frpc made up
                        self.log.debug("udp packet for [%s]: %s", msg.remote_addr.ip, exc)
        except (TimeoutError, ConnectionError, OSError, ProtocolError) as exc:
            self.log.warning("read from workConn for udp error: %s", exc or "timeout")

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
            self._flush_stats_now()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._work is not None:
            self._work.close()
        if self._users is not None:
            self._users.close()
            self._users = None
            self.res.udp_ports.release(self.port)
