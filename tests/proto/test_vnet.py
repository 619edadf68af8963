"""frp's virtual network framing (pkg/vnet/message.go) and the header fields routing uses."""

from __future__ import annotations

import ipaddress

import pytest

from pyfrp.errors import FrameError
from pyfrp.proto.vnet import MAX_MESSAGE, PacketDecoder, encode_packet, packet_addrs

# A 28-byte IPv4 ICMP echo from 100.86.0.2 to 100.86.0.1.
IPV4 = bytes.fromhex("4500001c000040004001000064560002645600010800f7ff00000000")
IPV6 = (
    bytes.fromhex("6000000000003a40")
    + (b"\xfd" + b"\0" * 14 + b"\x02")
    + (b"\xfd" + b"\0" * 14 + b"\x01")
)


def test_frame_is_a_little_endian_length_then_the_packet() -> None:
    assert encode_packet(IPV4) == bytes.fromhex("1c000000") + IPV4
    assert encode_packet(b"\x45" * 300)[:4] == bytes.fromhex("2c010000")


def test_empty_and_oversized_packets_are_refused_on_write() -> None:
    with pytest.raises(ValueError, match="message data length is 0"):
        encode_packet(b"")
    with pytest.raises(ValueError, match=r"message too large: 1048577 > 1048576"):
        encode_packet(bytes(MAX_MESSAGE + 1))
    assert len(encode_packet(bytes(MAX_MESSAGE))) == MAX_MESSAGE + 4


def test_decoder_reassembles_any_chunking() -> None:
    stream = encode_packet(IPV4) + encode_packet(IPV6) + encode_packet(b"\x60" * 1500)
    for size in (1, 3, 4, 5, 7, 64, len(stream)):
        d = PacketDecoder()
        got: list[bytes] = []
        for i in range(0, len(stream), size):
            got += d.feed(stream[i : i + size])
        assert got == [IPV4, IPV6, b"\x60" * 1500]
        assert d.buffered == 0


def test_decoder_refuses_lengths_frp_refuses() -> None:
    with pytest.raises(FrameError, match="message length is 0"):
        PacketDecoder().feed(bytes(4))
    with pytest.raises(FrameError, match=r"message too large: 1048577 > 1048576"):
        PacketDecoder().feed(bytes.fromhex("01001000"))
    d = PacketDecoder()
    assert d.feed(bytes.fromhex("00001000")) == []  # exactly 1 MiB: allowed, awaits its bytes
    assert d.buffered == 4


def test_addresses_of_ipv4_and_ipv6_packets() -> None:
    v4 = ipaddress.IPv4Address
    assert packet_addrs(IPV4) == (v4("100.86.0.2"), v4("100.86.0.1"))
    v6 = ipaddress.IPv6Address
    assert packet_addrs(IPV6) == (v6("fd00::2"), v6("fd00::1"))


@pytest.mark.parametrize(
    "packet",
    [b"", b"\x45" * 19, bytes.fromhex("46") + bytes(19), b"\x60" * 39, b"\x50" * 40],
    ids=["empty", "short-v4", "options-past-end", "short-v6", "version-5"],
)
def test_what_frp_discards_has_no_addresses(packet: bytes) -> None:
    assert packet_addrs(packet) is None
