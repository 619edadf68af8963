"""The slice of STUN (RFC 5389, RFC 5780) xtcp uses: a Binding request, and the mapped and
"other" addresses of its success response (frp's golib net/stun). IPv4 only, as frp's
discovery."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111

ATTR_MAPPED_ADDRESS = 0x0001
ATTR_CHANGED_ADDRESS = 0x0005  # RFC 3489's name for OTHER-ADDRESS
ATTR_ERROR_CODE = 0x0009
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_OTHER_ADDRESS = 0x802C

_HEADER = struct.Struct(">HHI12s")  # type, length, cookie, transaction id
HEADER_SIZE = _HEADER.size  # 20

Addr = tuple[str, int]


class StunError(ValueError):
    pass


@dataclass(slots=True)
class StunMessage:
    type: int
    transaction_id: bytes
    attributes: list[tuple[int, bytes]]

    def get(self, attr: int) -> bytes | None:
        for t, v in self.attributes:
            if t == attr:
                return v
        return None


def new_transaction_id() -> bytes:
    return os.urandom(12)


def encode(msg_type: int, transaction_id: bytes, attributes: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(
        struct.pack(">HH", t, len(v)) + v + b"\0" * (-len(v) % 4) for t, v in attributes
    )
    return _HEADER.pack(msg_type, len(body), MAGIC_COOKIE, transaction_id) + body


def decode(data: bytes) -> StunMessage:
    if len(data) < HEADER_SIZE:
        raise StunError(f"message of {len(data)} bytes is shorter than the STUN header")
    msg_type, length, cookie, tid = _HEADER.unpack_from(data)
    if msg_type & 0xC000 or cookie != MAGIC_COOKIE:
        raise StunError("not a STUN message")
    if length % 4 or HEADER_SIZE + length != len(data):
        raise StunError(f"message length {length} does not match the datagram")
    attrs: list[tuple[int, bytes]] = []
    off = HEADER_SIZE
    while off < len(data):
        if len(data) - off < 4:
            raise StunError(f"attribute header is truncated at offset {off}")
        t, n = struct.unpack_from(">HH", data, off)
        end = off + 4 + n
        if end + (-n % 4) > len(data):
            raise StunError(f"attribute 0x{t:04x} is truncated")
        attrs.append((t, data[off + 4 : end]))
        off = end + (-n % 4)
    return StunMessage(msg_type, tid, attrs)


def binding_request(transaction_id: bytes) -> bytes:
    return encode(BINDING_REQUEST, transaction_id, [])


def _plain_address(addr: Addr) -> bytes:
    return struct.pack(">BBH", 0, 1, addr[1]) + socket.inet_aton(addr[0])


def _xor_address(addr: Addr) -> bytes:
    ip = struct.unpack(">I", socket.inet_aton(addr[0]))[0] ^ MAGIC_COOKIE
    return struct.pack(">BBHI", 0, 1, addr[1] ^ (MAGIC_COOKIE >> 16), ip)


def _parse_address(value: bytes, xor: bool) -> Addr:
    if len(value) < 8 or value[1] != 1:
        raise StunError("address attribute is not an IPv4 address")
    _, _, port, ip = struct.unpack_from(">BBHI", value)
    if xor:
        port ^= MAGIC_COOKIE >> 16
        ip ^= MAGIC_COOKIE
    return socket.inet_ntoa(struct.pack(">I", ip)), port


def binding_success(transaction_id: bytes, mapped: Addr, other: Addr | None = None) -> bytes:
    """What a STUN server answers (used by the tests' loopback STUN server)."""
    attrs = [(ATTR_XOR_MAPPED_ADDRESS, _xor_address(mapped))]
    if other is not None:
        attrs.append((ATTR_OTHER_ADDRESS, _plain_address(other)))
    return encode(BINDING_SUCCESS, transaction_id, attrs)


def parse_binding_response(data: bytes, transaction_id: bytes) -> tuple[Addr, Addr | None] | None:
    """(mapped address, other address or None) of a success response to ``transaction_id``;
    None for a datagram that answers something else. Raises StunError for an error response
    or a malformed one."""
    msg = decode(data)
    if msg.transaction_id != transaction_id:
        return None
    if msg.type == BINDING_ERROR:
        raise StunError("binding request failed")
    if msg.type != BINDING_SUCCESS:
        return None
    xored = msg.get(ATTR_XOR_MAPPED_ADDRESS)
    plain = msg.get(ATTR_MAPPED_ADDRESS)
    if xored is not None:
        mapped = _parse_address(xored, xor=True)
    elif plain is not None:
        mapped = _parse_address(plain, xor=False)
    else:
        raise StunError("no external address found")
    other_v = msg.get(ATTR_OTHER_ADDRESS) or msg.get(ATTR_CHANGED_ADDRESS)
    other = _parse_address(other_v, xor=False) if other_v is not None else None
    return mapped, other
