"""QUIC tunnels over an existing UDP socket (aioquic), with each stream an asyncio Transport so
that the splice, layers and protocols used for TCP work on it unchanged.

xtcp's two frpc ends talk QUIC through the hole they punched (client/proxy/xtcp.go,
client/visitor/xtcp.go): TLS 1.3, ALPN ``frp``, the listening end a throwaway self-signed
certificate, the dialing end verifying nothing, one bidirectional stream per user connection.

Flow control: writes stop (``pause_writing``) while a stream holds more than its high-water mark
unacknowledged; aioquic grants the peer receive credit as data arrives rather than as it is read,
so a paused reader buffers here instead of slowing the peer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode
from cryptography.hazmat.primitives.asymmetric import ec

from pyfrp.net import chainverify, resolve
from pyfrp.net.listen import bind_udp_socket
from pyfrp.net.tls import self_signed_cert

log = logging.getLogger(__name__)
# aioquic logs every packet at debug and stream resets at info, under "quic".
logging.getLogger("quic").setLevel(logging.WARNING)

ALPN = "frp"
KEEPALIVE = 10.0  # frp's transport.quic.keepalivePeriod: an idle tunnel outlives the idle timeout
WRITE_HIGH = 1 << 20
WRITE_LOW = WRITE_HIGH // 4

OnStream = Callable[["QuicStream"], None]
# Checks the peer's certificate once the handshake is done; raises ssl.SSLCertVerificationError.
VerifyPeer = Callable[[QuicConnection], None]
BAD_CERTIFICATE = QuicErrorCode.CRYPTO_ERROR + 42  # the TLS alert, as QUIC carries it


class QuicStream(asyncio.Transport):
    """One bidirectional QUIC stream as a Transport: ``close()`` ends our side (FIN) and stops
    the peer's (STOP_SENDING), as frp's net.Conn over a quic stream does."""

    def __init__(self, tunnel: QuicTunnel, stream_id: int) -> None:
        super().__init__()
        self._tunnel = tunnel
        self.stream_id = stream_id
        self._protocol: asyncio.BaseProtocol | None = None
        self._reading = True
        self._held: list[bytes] = []
        self._held_eof = False
        self._fin_sent = False
        self._fin_received = False
        self._closed = False
        self._lost = False
        self._write_paused = False
        self._high, self._low = WRITE_HIGH, WRITE_LOW

    # -- asyncio.Transport
    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._tunnel.peer
        if name == "sockname":
            sock = self._tunnel.sock
            return sock.getsockname() if sock is not None else default
        return default

    def is_closing(self) -> bool:
        return self._closed or self._lost

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading:
            return
        self._reading = True
        held, self._held = self._held, []
        for data in held:
            if self._lost or not self._reading:
                self._held.append(data)
                continue
            self._deliver(data)
        if self._held_eof and self._reading and not self._held:
            self._held_eof = False
            self._deliver_eof()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = WRITE_HIGH if high is None else high
        self._low = self._high // 4 if low is None else low

    def get_write_buffer_size(self) -> int:
        return self._tunnel.unacked(self.stream_id)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._lost or self._fin_sent or not data:
            return
        self._tunnel.send(self.stream_id, bytes(data), False)
        if not self._write_paused and self.get_write_buffer_size() > self._high:
            self._write_paused = True
            self._tunnel.paused.add(self)
            protocol = self._protocol
            if isinstance(protocol, asyncio.Protocol | asyncio.BufferedProtocol):
                protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not (self._fin_sent or self._lost):
            self._fin_sent = True
            self._tunnel.send(self.stream_id, b"", True)

    def close(self) -> None:
        if self._closed:
            return
        self.write_eof()
        if not (self._fin_received or self._lost):
            self._tunnel.stop_reading(self.stream_id)
        self._closed = True
        self._connection_lost(None)

    def abort(self) -> None:
        if not (self._lost or (self._fin_sent and self._fin_received)):
            self._tunnel.reset(self.stream_id)
        self._closed = True
        self._connection_lost(None)

    # -- from the tunnel
    def _data(self, data: bytes, end: bool) -> None:
        if self._lost:
            return
        if data:
            if self._reading and not self._held:
                self._deliver(data)
            else:
                self._held.append(data)
        if end:
            self._fin_received = True
            if self._reading and not self._held:
                self._deliver_eof()
            else:
                self._held_eof = True

    def _deliver(self, data: bytes) -> None:
        protocol = self._protocol
        if isinstance(protocol, asyncio.BufferedProtocol):
            buf = memoryview(protocol.get_buffer(len(data)))
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            protocol.buffer_updated(n)
            if n < len(data):
                self._deliver(data[n:])
        elif isinstance(protocol, asyncio.Protocol):
            protocol.data_received(data)

    def _deliver_eof(self) -> None:
        protocol = self._protocol
        keep = False
        if isinstance(protocol, asyncio.Protocol | asyncio.BufferedProtocol):
            keep = bool(protocol.eof_received())
        if not keep:
            self.close()
        elif self._fin_sent:
            self._connection_lost(None)

    def _writable(self) -> None:
        if self._write_paused and self.get_write_buffer_size() <= self._low:
            self._write_paused = False
            self._tunnel.paused.discard(self)
            protocol = self._protocol
            if isinstance(protocol, asyncio.Protocol | asyncio.BufferedProtocol):
                protocol.resume_writing()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._tunnel.forget(self)
        protocol = self._protocol
        if protocol is not None:
            asyncio.get_running_loop().call_soon(protocol.connection_lost, exc)


class QuicTunnel(QuicConnectionProtocol):
    """One QUIC connection; ``open_stream`` on the dialing end, ``on_stream`` for the peer's."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: Any = None,
        on_stream: OnStream | None = None,
        verify: VerifyPeer | None = None,
    ) -> None:
        super().__init__(quic)
        self.on_stream = on_stream
        self.verify = verify
        self.refusal: ssl.SSLCertVerificationError | None = None
        self.streams: dict[int, QuicStream] = {}
        self.paused: set[QuicStream] = set()
        self.sock: socket.socket | None = None
        self.terminated = asyncio.Event()
        self.connected = asyncio.Event()
        # The peer's finished streams: every id below the floor, and those in the set. (Their
        # first frames may arrive out of order, so "below the highest seen" is not finished.)
        self._peer_floor = 1 if quic.configuration.is_client else 0
        self._peer_done: set[int] = set()
        self.owns_transport = False  # the dialing end: closing the tunnel closes the socket
        idle = quic.configuration.idle_timeout
        self._keepalive_period = min(KEEPALIVE, idle / 3)
        self._keepalive: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.sock = transport.get_extra_info("socket")
        self._keepalive = self._loop.call_later(self._keepalive_period, self._ping)

    def _ping(self) -> None:
        if self.terminated.is_set():
            return
        self._quic.send_ping(0)
        self.transmit()
        self._keepalive = self._loop.call_later(self._keepalive_period, self._ping)

    @property
    def peer(self) -> tuple[str, int] | None:
        """The other end's address (the connection's current network path)."""
        paths = self._quic._network_paths
        return (paths[0].addr[0], paths[0].addr[1]) if paths else None

    def open_stream(self) -> QuicStream:
        """A new stream; give it a protocol (set_protocol) before yielding."""
        if self.terminated.is_set():
            raise ConnectionError("quic connection closed")
        sid = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(sid, b"")  # creates it: the next call gets the next id
        stream = self.streams[sid] = QuicStream(self, sid)
        return stream

    # -- for the streams
    def send(self, sid: int, data: bytes, end: bool) -> None:
        try:
            self._quic.send_stream_data(sid, data, end_stream=end)
        except (RuntimeError, ValueError, AssertionError) as exc:  # reset, stopped or closed
            stream = self.streams.get(sid)
            if stream is not None:
                stream._connection_lost(ConnectionResetError(str(exc)))
            return
        self._transmit_soon()

    def stop_reading(self, sid: int) -> None:
        try:
            self._quic.stop_stream(sid, 0)
        except ValueError:  # the stream is already gone on aioquic's side
            return
        self._transmit_soon()

    def reset(self, sid: int) -> None:
        try:
            self._quic.reset_stream(sid, 0)
        except ValueError:
            return
        self._transmit_soon()

    def unacked(self, sid: int) -> int:
        stream = self._quic._streams.get(sid)
        if stream is None:
            return 0
        sender = stream.sender
        return sender._buffer_stop - sender._buffer_start

    def _ours(self, sid: int) -> bool:
        return sid % 4 == (0 if self._quic.configuration.is_client else 1)

    def forget(self, stream: QuicStream) -> None:
        sid = stream.stream_id
        if self.streams.get(sid) is stream:
            del self.streams[sid]
        self.paused.discard(stream)
        if not self._ours(sid):
            self._peer_done.add(sid)
            while self._peer_floor in self._peer_done:
                self._peer_done.remove(self._peer_floor)
                self._peer_floor += 4

    # -- aioquic
    def transmit(self) -> None:
        super().transmit()
        for stream in list(self.paused):
            stream._writable()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            if self.verify is not None:
                try:
                    self.verify(self._quic)
                except ssl.SSLCertVerificationError as exc:
                    self.refusal = exc
                    if not self._quic.configuration.is_client:  # frpc logs it as a login error
                        log.warning("quic connection from %s refused: %s", self.peer, exc)
                    self._quic.close(error_code=BAD_CERTIFICATE, reason_phrase=str(exc))
                    self.transmit()
                    return
            self.connected.set()
        elif isinstance(event, events.StreamDataReceived):
            if not self.connected.is_set():
                return  # a refused peer's (aioquic yields none before HandshakeCompleted)
            stream = self.streams.get(event.stream_id)
            if stream is None:
                sid = event.stream_id
                if self._ours(sid) or sid < self._peer_floor or sid in self._peer_done:
                    return  # data for a stream we already closed
                if self.on_stream is None:
                    self._peer_done.add(sid)
                    self._quic.reset_stream(sid, 0)
                    return
                stream = self.streams[event.stream_id] = QuicStream(self, event.stream_id)
                self.on_stream(stream)
            stream._data(event.data, event.end_stream)
        elif isinstance(event, events.StreamReset | events.StopSendingReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._connection_lost(ConnectionResetError("stream reset by peer"))
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated.set()
            if self._keepalive is not None:
                self._keepalive.cancel()
            lost = ConnectionResetError(event.reason_phrase or "quic connection closed")
            for stream in list(self.streams.values()):
                stream._connection_lost(lost)

    def close_tunnel(self) -> None:
        """Close the connection (CONNECTION_CLOSE, code 0) and every stream."""
        for stream in list(self.streams.values()):
            stream._connection_lost(ConnectionResetError("quic connection closed"))
        if not self.terminated.is_set():
            self.close()  # sends CONNECTION_CLOSE at once
        self.terminated.set()
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.owns_transport and self._transport is not None:
            self._transport.close()


def _configuration(is_client: bool, idle_timeout: float) -> QuicConfiguration:
    cfg = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        idle_timeout=idle_timeout,
        max_stream_data=6 << 20,
        max_data=15 << 20,
    )
    if is_client:
        cfg.verify_mode = ssl.CERT_NONE  # frp's xtcp dialer: InsecureSkipVerify
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        cfg.certificate = self_signed_cert(key)
        cfg.private_key = key
    return cfg


async def dial(sock: socket.socket, peer: tuple[str, int], idle_timeout: float = 30) -> QuicTunnel:
    """A QUIC connection to ``peer`` from the (already bound) UDP ``sock``."""
    loop = asyncio.get_running_loop()
    cfg = _configuration(True, idle_timeout)
    cfg.server_name = peer[0]
    quic = QuicConnection(configuration=cfg)
    sock.setblocking(False)
    _, tunnel = await loop.create_datagram_endpoint(lambda: QuicTunnel(quic), sock=sock)
    tunnel.owns_transport = True
    try:
        tunnel.connect(peer)
        await _connected(tunnel)
    except BaseException:
        tunnel.close_tunnel()
        raise
    return tunnel


async def _connected(tunnel: QuicTunnel) -> None:
    done = asyncio.ensure_future(tunnel.connected.wait())
    lost = asyncio.ensure_future(tunnel.terminated.wait())
    try:
        await asyncio.wait((done, lost), return_when=asyncio.FIRST_COMPLETED)
    finally:
        done.cancel()
        lost.cancel()
    if tunnel.refusal is not None:
        raise tunnel.refusal
    if not tunnel.connected.is_set():
        raise ConnectionError("quic handshake failed")


class _OneServer(QuicServer):
    """aioquic's server on our socket, handing its first connection to ``accepted``."""

    def __init__(self, accepted: asyncio.Future[QuicTunnel], on_stream: OnStream, **kw: Any):
        super().__init__(create_protocol=functools.partial(self._create, on_stream=on_stream), **kw)
        self.accepted = accepted

    def _create(self, quic: QuicConnection, *, stream_handler: Any, on_stream: OnStream) -> Any:
        tunnel = QuicTunnel(quic, on_stream=on_stream)
        if not self.accepted.done():
            self.accepted.set_result(tunnel)
        return tunnel


async def accept(
    sock: socket.socket,
    on_stream: OnStream,
    idle_timeout: float = 30,
    handshake_limit: float = 10,
) -> tuple[QuicTunnel, Callable[[], None]]:
    """Listen on the (already bound) UDP ``sock`` for one QUIC connection; each stream the
    peer opens goes to ``on_stream``. Returns the tunnel and a function closing the listener."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[QuicTunnel] = loop.create_future()
    cfg = _configuration(False, idle_timeout)
    sock.setblocking(False)
    _, server = await loop.create_datagram_endpoint(
        lambda: _OneServer(accepted, on_stream, configuration=cfg), sock=sock
    )
    try:
        async with asyncio.timeout(handshake_limit):
            tunnel = await accepted
            await _connected(tunnel)
    except BaseException:
        server.close()
        raise
    return tunnel, server.close


# -- frp's quic transport (transport.protocol = "quic", frps quicBindPort): each frp connection,
# control or work, is one stream of one QUIC connection; no yamux and no TLS inside.


def transport_configuration(
    is_client: bool,
    idle_timeout: float,
    *,
    cert_file: str = "",
    key_file: str = "",
    server_name: str = "",
) -> QuicConfiguration:
    """frp's TLS settings on QUIC: frpc shows its certificate if it has one (and verifies frps's
    only given a CA: dial_transport); frps shows its own or a self-signed one. A trusted CA is
    checked at the end of the handshake, the way Go does (OpenSSL, under aioquic, refuses frp's
    e2e chains; see chainverify)."""
    cfg = _configuration(is_client, idle_timeout)
    if is_client:
        cfg.server_name = server_name
    if cert_file and key_file:
        cfg.load_cert_chain(cert_file, key_file)
    return cfg


async def dial_transport(
    host: str, port: int, configuration: QuicConfiguration, trusted_ca_file: str = ""
) -> QuicTunnel:
    """frpc's QUIC connection to frps's quicBindPort; with ``trusted_ca_file`` frps's chain is
    verified before any stream opens."""
    loop = asyncio.get_running_loop()
    infos = await resolve.getaddrinfo(host, port, socket.SOCK_DGRAM)  # frpc's dnsServer, if any
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
    quic = QuicConnection(configuration=configuration)
    verify = None
    if trusted_ca_file:
        verify = _chain_check(trusted_ca_file, configuration.server_name or host, "frps")
    _, tunnel = await loop.create_datagram_endpoint(
        lambda: QuicTunnel(quic, verify=verify), sock=sock
    )
    tunnel.owns_transport = True
    try:
        tunnel.connect(addr)
        await _connected(tunnel)
    except BaseException:
        tunnel.close_tunnel()
        raise
    return tunnel


def _chain_check(cafile: str, server_name: str | None, peer: str) -> VerifyPeer:
    """The peer's chain against ``cafile``: frps's for ``server_name``, or frpc's (None)."""

    def verify(quic: QuicConnection) -> None:
        tls = quic.tls
        if tls is None or tls._peer_certificate is None:
            raise ssl.SSLCertVerificationError(f"{peer} showed no certificate")
        chainverify.verify_peer(
            cafile, server_name, tls._peer_certificate, tls._peer_certificate_chain
        )

    return verify


def _request_client_certificate(quic: QuicConnection) -> None:
    """Have the server's TLS ask for the client's certificate (Go's RequireAndVerifyClientCert):
    aioquic has the switch, set on the TLS context it creates with the first Initial packet."""
    initialize = quic._initialize

    def _initialize(peer_cid: bytes) -> None:
        initialize(peer_cid)
        quic.tls._request_client_certificate = True

    quic._initialize = _initialize  # type: ignore[method-assign]


async def serve_transport(
    host: str,
    port: int,
    configuration: QuicConfiguration,
    on_stream: OnStream,
    trusted_ca_file: str = "",
) -> QuicServer:
    """frps's quicBindPort: every stream of every connection goes to ``on_stream``; with
    ``trusted_ca_file`` only clients showing a certificate it signed get that far."""
    loop = asyncio.get_running_loop()
    sock = bind_udp_socket(host, port)
    verify = _chain_check(trusted_ca_file, None, "frpc") if trusted_ca_file else None

    def create(quic: QuicConnection, stream_handler: Any = None) -> QuicTunnel:
        if verify is not None:
            _request_client_certificate(quic)
        return QuicTunnel(quic, on_stream=on_stream, verify=verify)

    _, server = await loop.create_datagram_endpoint(
        lambda: QuicServer(configuration=configuration, create_protocol=create), sock=sock
    )
    return server
