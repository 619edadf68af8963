"""What kind of connection arrives on bind_port (pkg/util/net/tls.go, server/service.go).

frps reads the first byte: 0x17 is frp's custom TLS marker (consumed; TLS follows), 0x16 is a bare
TLS ClientHello (replayed into the handshake), anything else is plaintext frp (or yamux).
"""

from __future__ import annotations

import enum

FRP_TLS_HEAD_BYTE = 0x17
TLS_HANDSHAKE_BYTE = 0x16


class FirstByte(enum.Enum):
    CUSTOM_TLS = "0x17+tls"  # consume one byte, then a TLS server handshake
    TLS = "tls"  # TLS server handshake from the first byte
    PLAIN = "plain"


def classify_first_byte(first: int) -> FirstByte:
    if first == FRP_TLS_HEAD_BYTE:
        return FirstByte.CUSTOM_TLS
    if first == TLS_HANDSHAKE_BYTE:
        return FirstByte.TLS
    return FirstByte.PLAIN


# frp's websocket transport asks for this path on bind_port (pkg/util/net/websocket.go).
WEBSOCKET_PATH = "/~!frp"
