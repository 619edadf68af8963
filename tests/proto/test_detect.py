"""First byte on frps's bind port (pyfrp.proto.detect, pkg/util/net/tls.go)."""

from __future__ import annotations

import pytest

from pyfrp.proto.detect import (
    FRP_TLS_HEAD_BYTE,
    TLS_HANDSHAKE_BYTE,
    FirstByte,
    classify_first_byte,
)


def test_constants() -> None:
    assert (FRP_TLS_HEAD_BYTE, TLS_HANDSHAKE_BYTE) == (0x17, 0x16)


@pytest.mark.parametrize(
    ("first", "kind"),
    [
        (0x17, FirstByte.CUSTOM_TLS),  # frpc with tls.enable and the custom first byte
        (0x16, FirstByte.TLS),  # a bare TLS ClientHello (disableCustomTLSFirstByte)
        (ord("o"), FirstByte.PLAIN),  # Login, tcpMux = false
        (0x00, FirstByte.PLAIN),  # yamux version byte, tcpMux = true
        (ord("F"), FirstByte.PLAIN),  # wire v2 magic: plain here, refused by the framing
        (0xFF, FirstByte.PLAIN),
    ],
)
def test_classify(first: int, kind: FirstByte) -> None:
    assert classify_first_byte(first) is kind


def test_only_two_bytes_mean_tls() -> None:
    tls = {b for b in range(256) if classify_first_byte(b) is not FirstByte.PLAIN}
    assert tls == {0x16, 0x17}
