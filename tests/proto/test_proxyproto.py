"""PROXY protocol headers, byte for byte what frp's go-proxyproto (v0.7.0) writes for the same
addresses (vectors printed by a Go program against that module)."""

from __future__ import annotations

import pytest

from pyfrp.proto.proxyproto import V2_SIGNATURE, header

V4 = (("127.0.0.1", 1234), ("127.0.0.1", 80))
V6 = (("::1", 1234), ("2001:db8::1", 443))
UDP = (("10.0.0.7", 5353), ("127.0.0.1", 53))


@pytest.mark.parametrize(
    ("version", "addrs", "udp", "go_hex"),
    [
        ("v2", V4, False, "0d0a0d0a000d0a515549540a2111000c7f0000017f00000104d20050"),
        (
            "v1",
            V4,
            False,
            "50524f58592054435034203132372e302e302e31203132372e302e302e3120313233342038300d0a",
        ),
        (
            "v2",
            V6,
            False,
            "0d0a0d0a000d0a515549540a212100240000000000000000000000000000000120010db8"
            "00000000000000000000000104d201bb",
        ),
        (
            "v1",
            V6,
            False,
            "50524f58592054435036203a3a3120323030313a6462383a3a312031323334203434330d0a",
        ),
        ("v2", UDP, True, "0d0a0d0a000d0a515549540a2112000c0a0000077f00000114e90035"),
        ("v1", UDP, True, "50524f585920554e4b4e4f574e0d0a"),
    ],
    ids=["v2-tcp4", "v1-tcp4", "v2-tcp6", "v1-tcp6", "v2-udp4", "v1-udp"],
)
def test_same_bytes_as_go_proxyproto(
    version: str, addrs: tuple[tuple[str, int], tuple[str, int]], udp: bool, go_hex: str
) -> None:
    assert header(version, *addrs, udp=udp).hex() == go_hex


def test_mixed_families_say_unknown_rather_than_lie() -> None:
    src, dst = ("10.0.0.7", 1), ("::1", 2)
    assert header("v1", src, dst) == b"PROXY UNKNOWN\r\n"
    assert header("v2", src, dst) == V2_SIGNATURE + b"\x20\x00\x00\x00"  # LOCAL, no addresses
    # An IPv4-mapped IPv6 address is IPv4 (Go's To4).
    assert header("v1", ("::ffff:10.0.0.7", 1), ("127.0.0.1", 2)).startswith(b"PROXY TCP4 10.0.0.7")
