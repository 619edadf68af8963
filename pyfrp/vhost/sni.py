"""Reading the SNI name from a TLS ClientHello without terminating TLS (frp vhost/https.go).

frps routes ``type = https`` proxies by the ``server_name`` of the client's first handshake
message and then replays every byte, ClientHello included, to the backend, which does the TLS.
This module only parses: ``parse_client_hello(buffer)`` says whether more bytes are needed, or
returns the name (``""`` when the hello carries none). The handshake message may span several
records, as RFC 8446 allows; like Go, a name with a trailing dot is a malformed hello.
"""

from __future__ import annotations

from pyfrp.errors import ProtocolError

RECORD_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
NAME_TYPE_HOST = 0
# Go's crypto/tls maxHandshake: a larger ClientHello is refused.
MAX_HELLO = 65536
MAX_RECORD = 16384 + 2048

# A fatal unrecognized_name alert, what Go's handshake with no certificate answers.
ALERT_UNRECOGNIZED_NAME = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70])


class ClientHelloError(ProtocolError):
    """The bytes are not a TLS ClientHello we can read."""


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ClientHelloError("ClientHello truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def vector(self, len_bytes: int) -> bytes:
        return self.take(int.from_bytes(self.take(len_bytes), "big"))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def parse_client_hello(buf: bytes | bytearray) -> str | None:
    """The SNI host name (lower-cased), ``""`` without one, or None if more bytes are needed.

    Raises ClientHelloError if ``buf`` does not start with a ClientHello.
    """
    handshake = bytearray()
    pos = 0
    need: int | None = None
    while need is None or len(handshake) < need:
        if len(buf) < pos + 5:
            return None
        ctype, major, length = buf[pos], buf[pos + 1], int.from_bytes(buf[pos + 3 : pos + 5], "big")
        if ctype != RECORD_HANDSHAKE:
            raise ClientHelloError(f"first record has type {ctype:#x}, not a TLS handshake")
        if major != 3:
            raise ClientHelloError(f"record version {major}.x is not TLS")
        if length == 0 or length > MAX_RECORD:
            raise ClientHelloError(f"record length {length} is invalid")
        if len(buf) < pos + 5 + length:
            return None
        handshake += buf[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if need is None and len(handshake) >= 4:
            if handshake[0] != HANDSHAKE_CLIENT_HELLO:
                raise ClientHelloError(f"handshake type {handshake[0]} is not a ClientHello")
            need = 4 + int.from_bytes(handshake[1:4], "big")
            if need > MAX_HELLO:
                raise ClientHelloError(f"ClientHello of {need} bytes is too large")
    return _server_name(bytes(handshake[4:need]))


def _server_name(body: bytes) -> str:
    r = _Reader(body)
    r.take(2 + 32)  # legacy_version, random
    r.vector(1)  # legacy_session_id
    r.vector(2)  # cipher_suites
    r.vector(1)  # legacy_compression_methods
    if r.left == 0:
        return ""  # no extensions at all
    exts = _Reader(r.vector(2))
    while exts.left:
        ext_type = exts.u16()
        data = exts.vector(2)
        if ext_type != EXT_SERVER_NAME:
            continue
        names = _Reader(_Reader(data).vector(2))
        while names.left:
            name_type = names.u8()
            name = names.vector(2)
            if name_type != NAME_TYPE_HOST:
                continue
            try:
                text = name.decode("ascii")
            except UnicodeDecodeError:
                raise ClientHelloError("SNI name is not ASCII") from None
            if text.endswith("."):
                raise ClientHelloError(f"SNI name {text!r} ends with a dot")
            return text.lower()
        return ""
    return ""
