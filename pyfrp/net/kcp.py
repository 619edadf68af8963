"""frp's ``kcp`` transport: KCP sessions (with kcp-go's FEC) over UDP, each as an asyncio
Transport, so frp's usual stream (optional 0x17+TLS, then yamux or bare messages) runs on it.

Settings are frp's (pkg/util/net/kcp.go, golib's dialKCPServer): stream mode, write delay (new
data waits for the next 20 ms tick unless the window is full), nodelay 1/20/2/1, MTU 1350,
windows 1024/1024 on frps and 128/512 on frpc, no immediate ACKs, FEC 10+3, no encryption.

KCP has no handshake and no close: the dialing end picks a random conversation id, the
listening end makes a session for every new (address, conversation) it hears from, and a
closed session just stops talking (frp notices through yamux keepalives and heartbeats).

Flow control: ``write`` never blocks; the protocol is paused while more than a window of
segments waits to be sent. A paused reader leaves received segments in KCP's receive queue,
whose fill is the window we advertise, so the peer stops sending.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pyfrp.net import resolve
from pyfrp.net.listen import bind_udp_socket
from pyfrp.proto import kcp as kcpproto
from pyfrp.proto.kcp import Kcp, KcpError
from pyfrp.proto.kcpfec import TYPE_DATA, TYPE_PARITY, FecDecoder, FecEncoder

log = logging.getLogger(__name__)

DATA_SHARDS = 10
PARITY_SHARDS = 3
READ_BUFFER = 4 << 20  # frp's SetReadBuffer/SetWriteBuffer(4194304)


@dataclass(frozen=True, slots=True)
class KcpOptions:
    snd_wnd: int
    rcv_wnd: int
    mtu: int = 1350
    nodelay: tuple[int, int, int, int] = (1, 20, 2, 1)
    write_delay: bool = True
    ack_nodelay: bool = False


SERVER_OPTIONS = KcpOptions(1024, 1024)  # frp's ListenKcp
CLIENT_OPTIONS = KcpOptions(128, 512)  # golib's dialKCPServer

_T0 = time.monotonic()


def _now_ms() -> int:
    return int((time.monotonic() - _T0) * 1000) & 0xFFFFFFFF


class KcpSession(asyncio.Transport):
    """One KCP conversation as a stream Transport (no half-close: KCP has none)."""

    def __init__(
        self,
        conv: int,
        sendto: Callable[[bytes], None],
        peer: Any,
        sockname: Any,
        options: KcpOptions,
        on_gone: Callable[[KcpSession], None] | None = None,
    ) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self.conv = conv
        self.peer = peer
        self._sockname = sockname
        self._sendto = sendto
        self._on_gone = on_gone
        self.options = options
        k = self.kcp = Kcp(conv, stream=True)
        k.set_nodelay(*options.nodelay)
        k.set_mtu(options.mtu)
        k.set_window(options.snd_wnd, options.rcv_wnd)
        self._enc = FecEncoder(DATA_SHARDS, PARITY_SHARDS)
        self._dec = FecDecoder(DATA_SHARDS, PARITY_SHARDS)
        self._protocol: asyncio.BaseProtocol | None = None
        self._reading = True
        self._closing = False  # close() called: lingering until the peer has everything
        self._lost = False  # connection_lost delivered (or scheduled)
        self._gone = False  # forgotten: no more packets in or out
        self._write_paused = False
        self._high = options.snd_wnd
        self.bad_packets = 0
        self._timer: asyncio.Handle | None = self._loop.call_soon(self._update)

    # -- asyncio.Transport
    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        if name == "sockname":
            return self._sockname
        return default

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def is_reading(self) -> bool:
        return self._reading and not self._lost

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading:
            return
        self._reading = True
        self._deliver()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        # counted in segments: a window's worth by default
        mss = self.kcp.mss
        self._high = self.options.snd_wnd if high is None else max(high // mss, 1)

    def get_write_buffer_size(self) -> int:
        return sum(len(s.data) for s in self.kcp.snd_queue)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost or not data:
            return
        k = self.kcp
        k.send(data)
        if not self.options.write_delay or not k.can_send():
            self._flush()
        if not self._write_paused and len(k.snd_queue) > self._high:
            self._write_paused = True
            protocol = self._protocol
            if isinstance(protocol, asyncio.Protocol | asyncio.BufferedProtocol):
                protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        """KCP has no half-close (kcp-go's conn has no CloseWrite): nothing to send. A no-op
        rather than asyncio's NotImplementedError, as layers above forward it blindly."""

    def close(self) -> None:
        """Like kcp-go's Close: one last flush, then the session is forgotten (what the peer
        has not acknowledged by then is lost; frp closes its streams before the session)."""
        if self._closing or self._gone:
            return
        self._closing = True
        self._flush()
        self._connection_lost(None)
        self._forget()

    def abort(self) -> None:
        self._closing = True
        self._connection_lost(None)
        self._forget()

    # -- from the socket
    def datagram_received(self, data: bytes) -> None:
        if self._gone:
            return
        k = self.kcp
        now = _now_ms()
        slid = False
        try:
            kind = int.from_bytes(data[4:6], "little")
            if kind in (TYPE_DATA, TYPE_PARITY):
                if len(data) < 8:
                    raise KcpError("short fec packet")
                packet, recovered = self._dec.decode(data, self._plausible)
                if packet is not None and len(packet) >= kcpproto.OVERHEAD:
                    slid = k.input(packet, now)
                for r in recovered:
                    slid = k.input(r, now, regular=False) or slid
            else:
                slid = k.input(data, now)
        except (KcpError, ValueError):
            self.bad_packets += 1
            return
        if slid:
            self._flush(now)
        elif self.options.ack_nodelay and k.acklist:
            self._flush(now, ack_only=True)
        if k.rcv_queue and self._reading and not self._lost:
            self._deliver()
        self._check_writable()

    def _plausible(self, packet: bytes) -> bool:
        """A recovered packet must at least be KCP of this conversation."""
        return len(packet) >= kcpproto.OVERHEAD and kcpproto.conv_of(packet) == self.conv

    def connection_error(self, exc: Exception) -> None:
        """The socket failed (e.g. ICMP port unreachable on the dialing end)."""
        self._connection_lost(exc)
        self._forget()

    # -- internals
    def _flush(self, now: int | None = None, ack_only: bool = False) -> int:
        if now is None:
            now = _now_ms()
        interval = self.kcp.flush(now, ack_only)
        packets = self.kcp.packets()
        if packets:
            send = self._sendto
            enc = self._enc
            try:
                for p in packets:
                    for dgram in enc.encode(p, now):
                        send(dgram)
            except OSError as exc:
                self.connection_error(exc)
        return interval

    def _update(self) -> None:
        self._timer = None
        if self._gone or not self._loop.is_running():
            return  # uvloop runs due timers while closing: re-arming would never end
        interval = self._flush()
        k = self.kcp
        if k.dead:
            self.abort()
            return
        self._check_writable()
        self._timer = self._loop.call_later(interval / 1000, self._update)

    def _deliver(self) -> None:
        while self._reading and not self._lost:
            data = self.kcp.recv()
            if not data:
                return
            protocol = self._protocol
            if isinstance(protocol, asyncio.BufferedProtocol):
                view = memoryview(data)
                while view:
                    buf = memoryview(protocol.get_buffer(len(view)))
                    n = min(len(buf), len(view))
                    buf[:n] = view[:n]
                    protocol.buffer_updated(n)
                    view = view[n:]
            elif isinstance(protocol, asyncio.Protocol):
                protocol.data_received(data)

    def _check_writable(self) -> None:
        if self._write_paused and len(self.kcp.snd_queue) <= self._high // 2:
            self._write_paused = False
            protocol = self._protocol
            if isinstance(protocol, asyncio.Protocol | asyncio.BufferedProtocol) and not self._lost:
                protocol.resume_writing()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        protocol = self._protocol
        if protocol is not None:
            self._loop.call_soon(protocol.connection_lost, exc)

    def _forget(self) -> None:
        if self._gone:
            return
        self._gone = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.kcp.snd_queue.clear()
        self.kcp.snd_buf.clear()
        if self._on_gone is not None:
            self._on_gone(self)


def _header_conv_sn(data: bytes) -> tuple[int, int] | None:
    """kcp-go's listener: the conv and sn of a datagram's first KCP segment, when it has one
    (a parity shard has none)."""
    kind = int.from_bytes(data[4:6], "little")
    if kind in (TYPE_DATA, TYPE_PARITY):
        if kind == TYPE_DATA and len(data) >= 8 + kcpproto.OVERHEAD:
            return int.from_bytes(data[8:12], "little"), int.from_bytes(data[20:24], "little")
        return None
    if len(data) < kcpproto.OVERHEAD:
        return None
    return int.from_bytes(data[0:4], "little"), int.from_bytes(data[12:16], "little")


class KcpServer(asyncio.DatagramProtocol):
    """A UDP socket accepting KCP sessions, one per (address, conversation)."""

    def __init__(self, protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._factory = protocol_factory
        self.sessions: dict[Any, KcpSession] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self._closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        session = self.sessions.get(addr)
        head = _header_conv_sn(data)
        if session is not None:
            if head is None or head[0] == session.conv:
                session.datagram_received(data)
                return
            if head[1] != 0:
                return  # another conversation's data from that address: stale, drop it
            session.abort()  # sn 0 from the same address: the peer restarted
        if head is None or self.transport is None:
            return
        session = KcpSession(
            head[0],
            functools.partial(self.transport.sendto, addr=addr),
            addr,
            self.transport.get_extra_info("sockname"),
            SERVER_OPTIONS,
            self._gone,
        )
        self.sessions[addr] = session
        protocol = self._factory()
        session.set_protocol(protocol)
        protocol.connection_made(session)
        session.datagram_received(data)

    def _gone(self, session: KcpSession) -> None:
        if self.sessions.get(session.peer) is session:
            del self.sessions[session.peer]

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about one peer; the listener goes on (kcp-go ignores it too)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    def close(self) -> None:
        """Stop listening and drop every session (they share the socket)."""
        for session in list(self.sessions.values()):
            session.abort()
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        await self._closed


class _DialEndpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.session: KcpSession | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.session is not None:
            self.session.datagram_received(data)

    def error_received(self, exc: Exception) -> None:
        if self.session is not None:
            self.session.connection_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.connection_error(exc or ConnectionResetError("kcp socket closed"))


def _set_buffers(sock: socket.socket | None) -> None:
    if sock is None:
        return
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, READ_BUFFER)
        except OSError:
            pass


async def kcp_connect(
    host: str,
    port: int,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    options: KcpOptions = CLIENT_OPTIONS,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """A KCP session to host:port from a fresh UDP socket (like loop.create_connection; KCP
    has no handshake, so this returns at once)."""
    loop = asyncio.get_running_loop()
    infos = await resolve.getaddrinfo(host, port, socket.SOCK_DGRAM)  # frpc's dnsServer, if any
    transport, endpoint = await loop.create_datagram_endpoint(
        _DialEndpoint, remote_addr=infos[0][4][:2], family=infos[0][0]
    )
    conv = int.from_bytes(os.urandom(4), "little")
    return _start(transport, endpoint, conv, options, protocol_factory)


async def kcp_on_socket(
    sock: socket.socket,
    peer: tuple[str, int],
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    conv: int,
    options: KcpOptions = SERVER_OPTIONS,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """A KCP session with ``peer`` on an already bound UDP ``sock`` (xtcp's punched hole,
    where both ends talk as conversation ``conv``); the session owns the socket."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    sock.connect(peer)
    transport, endpoint = await loop.create_datagram_endpoint(_DialEndpoint, sock=sock)
    return _start(transport, endpoint, conv, options, protocol_factory)


def _start(
    transport: asyncio.DatagramTransport,
    endpoint: _DialEndpoint,
    conv: int,
    options: KcpOptions,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    _set_buffers(transport.get_extra_info("socket"))
    session = KcpSession(
        conv,
        transport.sendto,
        transport.get_extra_info("peername"),
        transport.get_extra_info("sockname"),
        options,
        lambda _s: transport.close(),
    )
    endpoint.session = session
    protocol = protocol_factory()
    session.set_protocol(protocol)
    protocol.connection_made(session)
    return session, protocol


async def kcp_serve(
    host: str, port: int, protocol_factory: Callable[[], asyncio.BaseProtocol]
) -> KcpServer:
    """Accept KCP sessions on UDP host:port ("" = every address); ``.port`` is the bound port."""
    loop = asyncio.get_running_loop()
    sock = bind_udp_socket(host, port)
    _set_buffers(sock)
    _, server = await loop.create_datagram_endpoint(lambda: KcpServer(protocol_factory), sock=sock)
    return server
