"""How pyfrpc reaches frps (client/connector.go): TCP, optional 0x17 + TLS, optional yamux.

``transport.protocol`` puts something under that: a websocket on TCP (``websocket``: the 0x17 +
TLS go inside it; ``wss``: TLS first, the websocket inside), or a KCP session over UDP.

With tcp_mux every logical connection (control first, then work connections) is a stream of one
session; without it each is a new TCP (+TLS) connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING

from pyfrp.config.model import ClientConfig
from pyfrp.net import resolve
from pyfrp.net.layer import insert_layer
from pyfrp.net.listen import join_host_port
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.mux import MuxSession
from pyfrp.net.tls import ClientContext, client_context
from pyfrp.net.tlslayer import TlsLayer
from pyfrp.proto.detect import FRP_TLS_HEAD_BYTE

if TYPE_CHECKING:
    from pyfrp.net.quic import QuicTunnel


class _Placeholder(asyncio.Protocol):
    """Protocol for a transport until its real owner attaches."""


class Connector:
    def __init__(self, cfg: ClientConfig) -> None:
        self.cfg = cfg
        self._server_name = cfg.tls_server_name or cfg.server_addr
        self._tls = (
            client_context(
                cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_trusted_ca_file, self._server_name
            )
            if cfg.tls_enable
            else None
        )
        self.session: MuxSession | None = None
        self.quic: QuicTunnel | None = None  # transport.protocol = quic: a stream per connection
        # No proxy, local address or dnsServer: the loop's own create_connection does it all.
        self._direct = not (cfg.proxy_url or cfg.connect_server_local_ip or cfg.dns_server)

    async def _dial(self) -> asyncio.Transport:
        protocol = self.cfg.protocol
        if protocol == "tcp":
            return await self._dial_tcp(self._tls)
        if protocol == "kcp":
            from pyfrp.net.kcp import kcp_connect  # loaded only for it

            async with asyncio.timeout(self.cfg.dial_server_timeout):
                lower, _ = await kcp_connect(
                    self.cfg.server_addr, self.cfg.server_port, _Placeholder
                )
            return lower if self._tls is None else await self._tls_over(lower)
        from pyfrp.net.websocket import client_layer  # websocket or wss: websockets loads here

        if protocol == "wss":  # TLS (no custom byte), then the websocket (Host: the TLS name)
            tls = self._tls or client_context(server_name=self._server_name)
            return await client_layer(
                await self._dial_tcp(tls, custom_byte=False), self._server_name
            )
        lower = await client_layer(
            await self._dial_tcp(None), join_host_port(self.cfg.server_addr, self.cfg.server_port)
        )
        return lower if self._tls is None else await self._tls_over(lower)

    async def _tls_over(self, lower: asyncio.Transport) -> asyncio.Transport:
        """0x17 (unless disabled) and a TLS client on a transport the loop did not make."""
        assert self._tls is not None
        if not self.cfg.disable_custom_tls_first_byte:
            lower.write(bytes([FRP_TLS_HEAD_BYTE]))
        layer = TlsLayer(lower, self._tls, server_side=False, server_hostname=self._server_name)
        insert_layer(lower, layer)
        layer.start()
        try:
            async with asyncio.timeout(self.cfg.dial_server_timeout):
                await layer.handshake
        except BaseException:
            lower.abort()
            raise
        return layer

    async def _dial_tcp(
        self, tls_ctx: ClientContext | None, *, custom_byte: bool = True
    ) -> asyncio.Transport:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        if tls_ctx is None and self._direct:
            # one call: a work connection is dialled per user without tcp_mux
            async with asyncio.timeout(cfg.dial_server_timeout):
                transport, _ = await loop.create_connection(
                    _Placeholder, cfg.server_addr, cfg.server_port
                )
            return transport
        async with asyncio.timeout(cfg.dial_server_timeout):
            sock = await self._tcp()
        if tls_ctx is None:
            try:
                tcp, _ = await loop.create_connection(_Placeholder, sock=sock)
            except BaseException:
                sock.close()
                raise
            return tcp
        try:
            if custom_byte and not cfg.disable_custom_tls_first_byte:
                await loop.sock_sendall(sock, bytes([FRP_TLS_HEAD_BYTE]))
            tcp, _ = await loop.create_connection(_Placeholder, sock=sock)
        except BaseException:
            sock.close()
            raise
        # TCP first, TLS second, not create_connection(ssl=...): when that call is cancelled (frpc
        # stopping, control connection lost) just after the TCP connect while the handshake
        # completes in the same loop turn, uvloop closes the socket under a TLS protocol that still
        # thinks it is up, and that protocol's first read then logs "Fatal error on SSL protocol".
        # A cancelled start_tls shuts the TLS layer down itself; the socket is ours to abort.
        offered = tls_ctx.offer()
        try:
            # Like Go, ssl sends no SNI for an IP literal (but still verifies it with a CA).
            tls = await loop.start_tls(
                tcp,
                tcp.get_protocol(),
                tls_ctx,
                server_hostname=self._server_name,
                ssl_handshake_timeout=cfg.dial_server_timeout,
            )
        except BaseException:
            tcp.abort()
            raise
        if tls is None:  # the loop closed the transport during the handshake
            raise ConnectionResetError("connection closed during the TLS handshake")
        tls_ctx.handshake_done(tls.get_extra_info("ssl_object"), offered)
        return tls

    async def _tcp(self) -> socket.socket:
        """A TCP connection to frps: through the proxy if any, from connectServerLocalIP if set."""
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        host, port, local_ip = cfg.server_addr, cfg.server_port, cfg.connect_server_local_ip
        if cfg.proxy_url and cfg.protocol in ("tcp", "websocket", "wss"):
            from pyfrp.net import proxydial  # python-socks: only with a proxy

            sock = await proxydial.dial(
                cfg.proxy_url, host, port, local_ip, limit=cfg.dial_server_timeout
            )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        infos: list[resolve.AddrInfo]
        try:  # an IP literal needs no resolver thread (a dial per work conn without tcp_mux)
            ip = ipaddress.ip_address(host)
        except ValueError:
            infos = await resolve.getaddrinfo(host, port)
        else:
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            infos = [(fam, socket.SOCK_STREAM, 0, "", (host, port))]
        last: OSError | None = None
        for family, type_, proto, _, addr in infos:
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            try:
                if local_ip:
                    sock.bind((local_ip, 0))
                await loop.sock_connect(sock, addr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            except BaseException:  # cancelled: frpc stopping
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise last or OSError(f"cannot resolve {self.cfg.server_addr}")

    async def open(self) -> None:
        """Establish the session (tcp_mux, or QUIC) before the control connection is opened."""
        cfg = self.cfg
        if cfg.protocol == "quic":
            from pyfrp.net.quic import dial_transport, transport_configuration

            tls = cfg.tls_enable
            quic_cfg = transport_configuration(
                True,
                cfg.quic_max_idle_timeout,
                cert_file=cfg.tls_cert_file if tls else "",
                key_file=cfg.tls_key_file if tls else "",
                server_name=self._server_name,
            )
            ca = cfg.tls_trusted_ca_file if tls else ""
            async with asyncio.timeout(cfg.dial_server_timeout):
                self.quic = await dial_transport(cfg.server_addr, cfg.server_port, quic_cfg, ca)
        elif self.cfg.tcp_mux:
            transport = await self._dial()
            session = MuxSession(
                client=True, keepalive_interval=self.cfg.tcp_mux_keepalive_interval
            )
            # Paused across the switch: uvloop picks a transport's read path (into the session's
            # buffer, or a fresh bytes per read) when reading starts, not at set_protocol.
            transport.pause_reading()
            transport.set_protocol(session)
            session.connection_made(transport)
            transport.resume_reading()
            self.session = session

    async def connect(self) -> MessageConn:
        """A new logical connection to frps in message mode."""
        if self.quic is not None:
            return MessageConn.attach(self.quic.open_stream())
        if self.session is not None:
            return MessageConn.attach(self.session.open_stream())
        return MessageConn.attach(await self._dial())

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        if self.quic is not None:
            self.quic.close_tunnel()
