"""Accepting frp connections on bind_port: plaintext, bare TLS and 0x17+TLS on one port.

Accepted sockets are classified by peeking at their first byte (so a bare ClientHello is not
consumed) before asyncio sees them; TLS then runs in the event loop's own TLS transport.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyfrp.net.bind import BACKLOG
from pyfrp.net.prelogin import PreLoginPool
from pyfrp.net.tlslayer import TlsLayer
from pyfrp.proto.detect import WEBSOCKET_PATH, FirstByte, classify_first_byte

if TYPE_CHECKING:
    from pyfrp.net.websocket import WebSocketLayer

log = logging.getLogger(__name__)

# golib mux DefaultTimeout / CheckAndEnableTLSServerConnWithTimeout: 10 s for the first bytes.
FIRST_BYTE_TIMEOUT = 10.0
# golib's mux HTTPMatchFunc: the first three bytes of an HTTP method (frp messages start with a
# lower-case type byte, yamux with 0, TLS with 0x16/0x17: none of these).
HTTP_METHOD_HEADS = frozenset(
    m.encode() for m in ("GET", "HEA", "POS", "PUT", "DEL", "CON", "OPT", "TRA", "PAT", "PRI")
)
HTTP_FIRST_BYTES = frozenset(h[0] for h in HTTP_METHOD_HEADS)
TLS_HANDSHAKE_TIMEOUT = 10.0
# frps's websocket listener takes what starts so, ahead of the vhost HTTP one (server/service.go).
WEBSOCKET_HEAD = b"GET " + WEBSOCKET_PATH.encode()


def join_host_port(host: str, port: int) -> str:
    """``host:port`` as Go's net.JoinHostPort writes it (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_udp_socket(host: str, port: int) -> socket.socket:
    """A bound, non-blocking UDP socket; raises OSError like Go's net.ListenUDP would fail."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.bind(addr)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_tcp(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    sock: socket.socket | None = None,
) -> tuple[asyncio.Server, int]:
    """A loop TCP server on host:port ("" = every address), or on ``sock``, a listening socket
    bound already (a pyfrps worker's, inherited); returns it and its bound port."""
    loop = asyncio.get_running_loop()
    if sock is not None:
        server = await loop.create_server(protocol_factory, sock=sock, backlog=BACKLOG)
    else:
        server = await loop.create_server(
            protocol_factory, host or None, port, reuse_address=True, backlog=BACKLOG
        )
    return server, int(server.sockets[0].getsockname()[1])


async def _wait_readable(sock: socket.socket, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await asyncio.wait_for(fut, seconds)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def _peek(conn: socket.socket, n: int, seconds: float) -> bytes:
    """The first ``n`` bytes (fewer if the peer ends or stays silent), left unread.

    Polled: the socket stays readable while peeked bytes sit in it. The pause doubles up to
    0.1 s, so a peer that sends one byte and stalls costs ~100 wake-ups, not thousands."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    pause = 0.001
    while True:
        data = conn.recv(n, socket.MSG_PEEK)
        left = deadline - loop.time()
        if len(data) >= n or not data or left <= 0:
            return data
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.1)


class FrpListener:
    """Accept loop; hands each classified connection to ``protocol_factory`` via the loop."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        tls_context: ssl.SSLContext,
        tls_force: bool,
        prelogin: PreLoginPool | None = None,
    ) -> None:
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.tls_context = tls_context
        self.tls_force = tls_force
        # every accepted connection is in it until its first frp message (or its close)
        self.prelogin = prelogin
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        # vhost_http_port / vhost_https_port equal to bind_port: plain HTTP requests and TLS
        # ClientHellos (then frpc must use the custom first byte) go to these (frp's mux).
        self.http_factory: Callable[[], asyncio.BaseProtocol] | None = None
        self.https_factory: Callable[[], asyncio.BaseProtocol] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._pending) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sock.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(self.sock)
            except OSError as exc:  # EMFILE and friends: keep serving
                log.warning("accept on bind port failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._handshake(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            if self.prelogin is not None:
                self.prelogin.admit((addr[0], addr[1]), task.cancel)

    def _websocket_open(self, ws: WebSocketLayer) -> None:
        sniffer = self.sniffer()
        ws.set_protocol(sniffer)
        sniffer.connection_made(ws)

    def sniffer(self) -> StreamSniffer:
        """What a websocket or KCP connection starts with: frp's TLS check, then our protocol."""
        return StreamSniffer(self.protocol_factory, self.tls_context, self.tls_force)

    async def _shared_port(
        self, conn: socket.socket, first: int
    ) -> Callable[[], asyncio.BaseProtocol] | None:
        """The vhost protocol for a connection on a shared bind_port, or None for frp's own."""
        if first == 0x16 and self.https_factory is not None:
            return self.https_factory
        if self.http_factory is not None and first in HTTP_FIRST_BYTES:
            head = await _peek(conn, 3, FIRST_BYTE_TIMEOUT)
            if head in HTTP_METHOD_HEADS:
                return self.http_factory
        return None

    def _owned(self, peer: Any, transport: asyncio.Transport, frp: bool = True) -> None:
        """A protocol has the socket: pending-login connections are closed through it now;
        other services' (vhost on a shared port) are not ours to count."""
        if self.prelogin is not None:
            key = (peer[0], peer[1])
            if frp:
                self.prelogin.attach(key, transport.abort)
            else:
                self.prelogin.release(key)

    async def _handshake(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = conn.getpeername()
        owned = False
        try:
            try:  # usually the client's first bytes are already here: no reader round trip
                first = conn.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                first = None
            if first is None and not await _wait_readable(conn, FIRST_BYTE_TIMEOUT):
                log.info(
                    "connection from %s sent nothing for %.0f s, closing", peer, FIRST_BYTE_TIMEOUT
                )
                conn.close()
                return
            if first is None:
                first = conn.recv(1, socket.MSG_PEEK)
            if not first:
                conn.close()
                return
            if first == WEBSOCKET_HEAD[:1]:
                head = await _peek(conn, len(WEBSOCKET_HEAD), FIRST_BYTE_TIMEOUT)
                if head == WEBSOCKET_HEAD:
                    from pyfrp.net.websocket import server_layer  # websockets: only when asked

                    transport, _ = await loop.connect_accepted_socket(
                        lambda: server_layer(self._websocket_open), conn
                    )
                    owned = True
                    self._owned(peer, transport)
                    return
            shared = await self._shared_port(conn, first[0])
            if shared is not None:
                transport, _ = await loop.connect_accepted_socket(shared, conn)
                owned = True
                self._owned(peer, transport, frp=False)
                return
            kind = classify_first_byte(first[0])
            if kind is FirstByte.PLAIN:
                if self.tls_force:
                    log.warning("non-TLS connection received on a TlsOnly server from %s", peer)
                    conn.close()
                    return
                transport, _ = await loop.connect_accepted_socket(self.protocol_factory, conn)
                owned = True
                self._owned(peer, transport)
                return
            if kind is FirstByte.CUSTOM_TLS:
                conn.recv(1)
            transport, _ = await loop.connect_accepted_socket(
                self.protocol_factory,
                conn,
                ssl=self.tls_context,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
            owned = True
            self._owned(peer, transport)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info(
                "connection from %s closed during handshake: %s", peer, exc or type(exc).__name__
            )
            conn.close()
        except asyncio.CancelledError:
            conn.close()
            raise
        finally:
            if not owned and self.prelogin is not None:
                self.prelogin.release((peer[0], peer[1]))


class StreamSniffer(asyncio.Protocol):
    """frps's TLS check (CheckAndEnableTLSServerConn) on a transport that cannot be peeked (a
    websocket, a KCP session): its first byte read decides: 0x17 (dropped) or 0x16 start a TLS
    server, anything else is plaintext, refused under ``tls_force``. Then ``protocol_factory``'s
    protocol takes the transport (or the TLS layer on it) over."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        tls_context: ssl.SSLContext,
        tls_force: bool,
    ) -> None:
        self._factory = protocol_factory
        self._tls_context = tls_context
        self._tls_force = tls_force
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's: no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        t = self._transport
        if not data or t is None:
            return
        self._transport = None  # decided: later bytes go to whoever takes over
        kind = classify_first_byte(data[0])
        if kind is FirstByte.PLAIN:
            if self._tls_force:
                log.warning(
                    "non-TLS connection received on a TlsOnly server from %s",
                    t.get_extra_info("peername"),
                )
                t.close()
                return
            self._hand_over(t, data)
            return
        if kind is FirstByte.CUSTOM_TLS:
            data = data[1:]
        layer = TlsLayer(t, self._tls_context, server_side=True)
        t.set_protocol(layer)
        timer = asyncio.get_running_loop().call_later(TLS_HANDSHAKE_TIMEOUT, t.abort)

        def done(fut: asyncio.Future[None]) -> None:
            timer.cancel()
            if fut.cancelled() or fut.exception() is not None:
                log.info(
                    "connection from %s closed during handshake: %s",
                    t.get_extra_info("peername"),
                    fut.exception() if not fut.cancelled() else "cancelled",
                )
                t.abort()
                return
            self._hand_over(layer, layer.take())

        layer.handshake.add_done_callback(done)
        layer.start(data)

    def _hand_over(self, transport: asyncio.Transport, data: bytes) -> None:
        proto = self._factory()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if data:
            proto.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
