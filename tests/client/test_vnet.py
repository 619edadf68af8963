"""The virtual network's routing (frp pkg/vnet/controller.go) without a TUN device: packets the
kernel would hand over go to the visitor route for their destination, else back over the work
connection their destination last sent from; bad framing drops one connection only."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pyfrp.client.vnet import Controller, PacketConn, host_route
from pyfrp.log import PrefixLogger
from pyfrp.proto.vnet import PacketDecoder, encode_packet


def ipv4(src: str, dst: str) -> bytes:
    def raw(a: str) -> bytes:
        return bytes(int(x) for x in a.split("."))

    header = bytes.fromhex("4500001c0000400040010000")  # 28 bytes, ICMP, no checksum
    return header + raw(src) + raw(dst) + bytes(8)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closed = False
        self.protocol: Any = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def write(self, data: Any) -> None:
        self.sent += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.protocol.connection_lost(None)

    def packets(self) -> list[bytes]:
        return PacketDecoder().feed(self.sent)


class FakeTun:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, packet: bytes) -> None:
        self.written.append(packet)


LOG = PrefixLogger(logging.getLogger("test.vnet"), "")


def controller() -> tuple[Controller, FakeTun]:
    c = Controller("100.86.0.1/24")
    tun = FakeTun()
    c.tun = tun  # type: ignore[assignment]
    return c, tun


def test_work_connection_packets_reach_the_tun_and_replies_go_back_by_source() -> None:
    c, tun = controller()
    a, b = FakeTransport(), FakeTransport()
    c.serve(a, encode_packet(ipv4("100.86.0.2", "100.86.0.1")), False, LOG, "p")
    c.serve(b, b"", False, LOG, "p")
    b.protocol.data_received(encode_packet(ipv4("100.86.0.3", "100.86.0.1")))
    assert tun.written == [ipv4("100.86.0.2", "100.86.0.1"), ipv4("100.86.0.3", "100.86.0.1")]
    c._from_tun(ipv4("100.86.0.1", "100.86.0.3"))
    c._from_tun(ipv4("100.86.0.1", "100.86.0.2"))
    c._from_tun(ipv4("100.86.0.1", "100.86.0.9"))  # nobody sent from there: dropped
    assert a.packets() == [ipv4("100.86.0.1", "100.86.0.2")]
    assert b.packets() == [ipv4("100.86.0.1", "100.86.0.3")]
    b.close()  # its addresses are forgotten
    c._from_tun(ipv4("100.86.0.1", "100.86.0.3"))
    assert b.packets() == [ipv4("100.86.0.1", "100.86.0.3")]


def test_visitor_route_wins_over_source_routes() -> None:
    c, tun = controller()
    work = FakeTransport()
    c.serve(work, encode_packet(ipv4("100.86.0.5", "100.86.0.1")), False, LOG, "p")
    lost: list[str] = []
    conn = c.add_client_route("v", [host_route("100.86.0.5")], lost.append, LOG)
    tunnel = FakeTransport()
    tunnel.set_protocol(conn)
    conn.connection_made(tunnel)
    c._from_tun(ipv4("100.86.0.1", "100.86.0.5"))
    assert tunnel.packets() == [ipv4("100.86.0.1", "100.86.0.5")]
    assert work.packets() == []
    conn.data_received(encode_packet(ipv4("100.86.0.5", "100.86.0.1")))
    assert tun.written[-1] == ipv4("100.86.0.5", "100.86.0.1")
    c.remove_client_route("v")
    c._from_tun(ipv4("100.86.0.1", "100.86.0.5"))
    assert work.packets() == [ipv4("100.86.0.1", "100.86.0.5")]


def test_bad_framing_closes_that_connection_only() -> None:
    c, _tun = controller()
    bad, good = FakeTransport(), FakeTransport()
    c.serve(bad, b"", False, LOG, "p")
    c.serve(good, encode_packet(ipv4("100.86.0.2", "100.86.0.1")), False, LOG, "p")
    bad.protocol.data_received(bytes(4))  # length 0: frp's "message length is 0"
    assert bad.closed
    assert not good.closed
    c._from_tun(ipv4("100.86.0.1", "100.86.0.2"))
    assert len(good.packets()) == 1


def test_closing_a_proxy_closes_its_connections() -> None:
    c, _ = controller()
    mine, other = FakeTransport(), FakeTransport()
    c.serve(mine, b"", False, LOG, "p")
    c.serve(other, b"", False, LOG, "q")
    c.drop_owner("p")
    assert mine.closed
    assert not other.closed


def test_non_ip_packets_are_discarded() -> None:
    c, tun = controller()
    work = FakeTransport()
    c.serve(work, encode_packet(b"\x00" * 30), False, LOG, "p")
    assert tun.written == [b"\x00" * 30]  # frp writes what the server side sends as is
    lost: list[str] = []
    conn = c.add_client_route("v", [host_route("100.86.0.5")], lost.append, LOG)
    t = FakeTransport()
    t.set_protocol(conn)
    conn.connection_made(t)
    conn.data_received(encode_packet(b"\x00" * 30))  # frp's client loop discards it
    assert tun.written == [b"\x00" * 30]
    assert isinstance(conn, PacketConn)
