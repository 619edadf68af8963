"""frpc's virtual network (frp pkg/vnet/controller.go, pkg/plugin/client/virtual_net.go,
pkg/plugin/visitor/virtual_net.go), behind ``featureGates = { VirtualNet = true }``.

One TUN device per client (``virtualNet.address``) and two routing tables for the packets the
kernel sends into it:

* client routes (the visitor plugin): a visitor's ``destinationIP`` (a host route) -> the
  connection that visitor keeps open through its stcp/xtcp tunnel;
* server routes (the proxy plugin): the source address of a packet that came in on a work
  connection -> that connection, so replies go back the way the request came.

A packet's destination is looked up in the client routes first, then among the server routes;
a packet with no route is dropped. Each connection carries length-framed IP packets
(:mod:`pyfrp.proto.vnet`) in both directions.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

from pyfrp.errors import FrameError
from pyfrp.log import PrefixLogger
from pyfrp.net.tun import TunDevice, open_tun
from pyfrp.proto.vnet import IPAddress, PacketDecoder, encode_packet, packet_addrs

log = logging.getLogger("pyfrp.client.vnet")

# A connection's write buffer past which packets from the TUN are dropped: frp's write blocks
# its TUN reader instead; IP is lossy, and one slow tunnel must not stall the others.
WRITE_LIMIT = 4 * 1024 * 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PacketConn(asyncio.Protocol):
    """One framed-packet connection (a work connection or a visitor's tunnel end): packets in
    go to ``on_packet``, ``send`` frames packets out."""

    def __init__(
        self,
        on_packet: Callable[[PacketConn, bytes], None],
        on_lost: Callable[[PacketConn, str], None],
    ) -> None:
        self._on_packet = on_packet
        self._on_lost = on_lost
        self._decoder = PacketDecoder()
        self.transport: asyncio.Transport | None = None
        self._reason = "EOF"
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except FrameError as exc:  # frp drops such a connection
            self._reason = str(exc)
            packets = []
            if self.transport is not None:
                self.transport.close()
        for p in packets:
            self._on_packet(self, p)

    def eof_received(self) -> bool:
        if self._decoder.buffered:
            self._reason = "read message data error: unexpected EOF"
        else:
            self._reason = "read message length error: EOF"
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if exc is not None:
            self._reason = str(exc) or type(exc).__name__
        self._on_lost(self, self._reason)

    def send(self, packet: bytes) -> bool:
        t = self.transport
        if t is None or t.is_closing() or t.get_write_buffer_size() > WRITE_LIMIT:
            return False
        t.write(encode_packet(packet))
        return True

    def close(self) -> None:
        """Close it from this end (its proxy or visitor is going away)."""
        if self.transport is not None and not self.transport.is_closing():
            self._reason = "read message length error: use of closed network connection"
            self.transport.close()


class Controller:
    """The TUN device and the two routing tables (frp's vnet.Controller)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.tun: TunDevice | None = None
        self._client: dict[str, tuple[list[Network], PacketConn]] = {}
        self._server: dict[IPAddress, PacketConn] = {}
        self._owned: dict[str, set[PacketConn]] = {}  # proxy name -> its work connections

    def start(self) -> None:
        """Open the device and start reading it; raises ValueError/OSError (frp's Init)."""
        self.tun = open_tun(self.address)
        self.tun.start(self._from_tun)

    def stop(self) -> None:
        if self.tun is not None:
            self.tun.close()
            self.tun = None

    def _from_tun(self, packet: bytes) -> None:
        addrs = packet_addrs(packet)
        if addrs is None:
            return  # frp: "unknown packet, discarded"
        dst = addrs[1]
        for routes, conn in self._client.values():
            if any(dst in r for r in routes):
                conn.send(packet)
                return
        back = self._server.get(dst)
        if back is not None:
            back.send(packet)

    def _to_tun(self, packet: bytes) -> None:
        if self.tun is not None:
            try:
                self.tun.write(packet)
            except OSError as exc:
                log.warning("write tun error: %s", exc)

    # -- the proxy plugin's side: a work connection, routed by the source addresses it sends
    def serve(
        self, top: asyncio.Transport, pending: bytes, ended: bool, plog: PrefixLogger, owner: str
    ) -> None:
        """Take over a work connection (frp's StartServerConnReadLoop)."""

        def on_packet(conn: PacketConn, packet: bytes) -> None:
            addrs = packet_addrs(packet)
            if addrs is not None and self._server.get(addrs[0]) is not conn:
                self._server[addrs[0]] = conn
            self._to_tun(packet)

        def on_lost(conn: PacketConn, reason: str) -> None:
            plog.warning("server read error: %s", reason)
            for ip in [ip for ip, c in self._server.items() if c is conn]:
                del self._server[ip]
            self._owned.get(owner, set()).discard(conn)

        conn = PacketConn(on_packet, on_lost)
        self._owned.setdefault(owner, set()).add(conn)
        _attach(top, conn, pending, ended)

    def drop_owner(self, owner: str) -> None:
        """Close the work connections a proxy handed over (the proxy is going away)."""
        for conn in list(self._owned.pop(owner, ())):
            conn.close()

    # -- the visitor plugin's side: a tunnel end, routed by destination
    def add_client_route(
        self, name: str, routes: list[Network], on_lost: Callable[[str], None], vlog: PrefixLogger
    ) -> PacketConn:
        def on_packet(conn: PacketConn, packet: bytes) -> None:
            if packet_addrs(packet) is not None:
                self._to_tun(packet)

        def lost(conn: PacketConn, reason: str) -> None:
            vlog.warning("client read error: %s", reason)
            entry = self._client.get(name)
            if entry is not None and entry[1] is conn:
                del self._client[name]
            on_lost(reason)

        conn = PacketConn(on_packet, lost)
        self._client[name] = (routes, conn)
        return conn

    def remove_client_route(self, name: str) -> None:
        self._client.pop(name, None)


def _attach(top: asyncio.Transport, proto: PacketConn, pending: bytes, ended: bool) -> None:
    top.set_protocol(proto)
    proto.connection_made(top)
    if pending:
        proto.data_received(pending)
    if ended:
        proto.eof_received()
        top.close()
        return
    top.resume_reading()  # a detached work connection is handed over paused


def host_route(destination_ip: str) -> Network:
    """The visitor plugin's ``destinationIP`` as a /32 or /128 route; ValueError as frp's."""
    if not destination_ip:
        raise ValueError("destinationIP is required")
    try:
        ip = ipaddress.ip_address(destination_ip)
    except ValueError:
        raise ValueError(f"invalid destination IP address [{destination_ip}]") from None
    return ipaddress.ip_network(ip)


class VisitorRoute:
    """The ``virtual_net`` visitor plugin: keeps one connection into its visitor (a socket
    pair, as frp's net.Pipe) whose far end the visitor dials through to the proxy; packets for
    ``destinationIP`` go into it. When the visitor drops it, wait and open another: 10 s after
    a normal close, 60 s doubling to 300 s after consecutive errors (frp's backoff)."""

    def __init__(
        self,
        name: str,
        plugin: dict[str, Any],
        controller: Controller | None,
        give: Callable[[socket.socket], Awaitable[None]],
        vlog: PrefixLogger,
    ) -> None:
        self.name = name
        self.routes = [host_route(str(plugin.get("destinationIP", "")))]
        self.controller = controller
        self._give = give  # hands the visitor's end of the pair to the visitor
        self.log = vlog
        self._task: asyncio.Task[None] | None = None
        self._conn: PacketConn | None = None
        self.errors = 0
        self._error: str | None = None

    def start(self) -> None:
        if self.controller is None:  # no virtualNet.address: frp's plugin does nothing
            return
        self.log.info(
            "starting VirtualNetPlugin for visitor [%s], attempting to register routes for %s",
            self.name,
            self.routes[0],
        )
        self._task = asyncio.get_running_loop().create_task(self._run())

    def failed(self, reason: str) -> None:
        """The visitor could not reach the proxy for our connection (frp's CloseWithError)."""
        self._error = reason

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        controller = self.controller
        assert controller is not None
        while True:
            closed: asyncio.Future[None] = loop.create_future()
            self._error = None

            def on_lost(reason: str, closed: asyncio.Future[None] = closed) -> None:
                if not closed.done():
                    closed.set_result(None)

            ours, theirs = socket.socketpair()
            self.log.info("attempting to register client route for visitor [%s]", self.name)
            conn = controller.add_client_route(self.name, self.routes, on_lost, self.log)
            self._conn = conn
            await loop.connect_accepted_socket(functools.partial(_same, conn), ours)
            self.log.info(
                "successfully registered client route for visitor [%s]. "
                "Starting connection handler with CloseNotifyConn.",
                self.name,
            )
            await self._give(theirs)
            await closed
            error = self._last_error()
            if error is not None:
                self.errors += 1
                self.log.warning(
                    "connection closed with error for visitor [%s] (consecutive errors: %d): %s",
                    self.name,
                    self.errors,
                    error,
                )
                delay = min(60.0 * (1 << (self.errors - 1)), 300.0)
            else:
                if self.errors:
                    self.log.info(
                        "connection closed normally for visitor [%s], resetting error counter "
                        "(was %d)",
                        self.name,
                        self.errors,
                    )
                    self.errors = 0
                else:
                    self.log.info("connection closed normally for visitor [%s]", self.name)
                delay = 10.0
            conn.close()
            self._conn = None
            self.log.info(
                "waiting %s before attempting reconnection for visitor [%s]...",
                _go_duration(delay),
                self.name,
            )
            await asyncio.sleep(delay)
            self.log.info("re-establishing virtual connection for visitor [%s]...", self.name)

    def _last_error(self) -> str | None:
        return self._error

    def close(self) -> None:
        self.log.info("closing VirtualNetPlugin for visitor [%s]", self.name)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.controller is not None:
            self.controller.remove_client_route(self.name)
            self.log.info("unregistered client route for visitor [%s]", self.name)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.log.info("finished cleaning up connections during close for visitor [%s]", self.name)


def _same(conn: PacketConn) -> PacketConn:
    return conn


def _go_duration(seconds: float) -> str:
    """A whole number of seconds as Go's time.Duration prints it: ``10s``, ``5m0s``."""
    s = int(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"
