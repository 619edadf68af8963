"""The TUN adapter's pure parts, and its error when the system has no TUN support."""

from __future__ import annotations

import ipaddress

import pytest

from pyfrp.net import tun


def test_device_name_follows_the_highest_utun_suffix() -> None:
    assert tun.next_name(["lo", "eth0"]) == "utun0"
    assert tun.next_name(["utun0", "utun3", "utunx", "utun", "tun9"]) == "utun4"


def test_address_needs_a_prefix_like_go_parse_cidr() -> None:
    assert tun.parse_cidr("100.86.0.1/24") == ipaddress.ip_interface("100.86.0.1/24")
    assert tun.parse_cidr("fd00:86::1/64").network.prefixlen == 64
    for bad in ("100.86.0.1", "100.86.0.300/24", "x/24"):
        with pytest.raises(ValueError, match=f"invalid CIDR address: {bad}"):
            tun.parse_cidr(bad)


def test_missing_clone_device_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tun, "CLONE_DEVICE", "/nonexistent/net/tun")
    with pytest.raises(tun.TunError, match=r"failed to create TUN device 'utun\d+': .*"
                       r"/nonexistent/net/tun does not exist"):  # fmt: skip
        tun.open_tun("100.86.0.1/24")
