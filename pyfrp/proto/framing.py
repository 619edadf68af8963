"""v1 message framing (fatedier/golib msg/json/pack.go, process.go).

A frame is one type byte, a signed 64-bit big-endian body length, then that many bytes of JSON.
Bodies over 10240 bytes, negative lengths and unknown type bytes are fatal to the connection.

``MessageDecoder`` never reads ahead of the frame it returns: the bytes after it stay buffered and
``take_remaining()`` hands them over, because after LoginResp the same byte stream turns into
ciphertext (or raw proxied data after StartWorkConn).
"""

from __future__ import annotations

import base64
import json
import struct

from pyfrp.errors import FrameError, MessageError
from pyfrp.proto.msg import MESSAGE_TYPES, Message, UDPAddr, UDPPacket

MAX_BODY = 10240
HEADER = struct.Struct(">cq")
HEADER_SIZE = HEADER.size  # 9

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_DECODE = json.JSONDecoder().decode


def encode_message(msg: Message, max_body: int = MAX_BODY) -> bytes:
    """The complete frame for ``msg``: one ``write()`` of it is one Go ``WriteMsg``."""
    body = _ENCODE(msg.to_json()).encode("utf-8")
    if len(body) > max_body:
        raise MessageError(
            f"{type(msg).__name__} body is {len(body)} bytes, over the peer's limit of {max_body}"
        )
    return HEADER.pack(msg.TYPE, len(body)) + body


def encode_udp_packet(content: bytes, addr: UDPAddr, max_body: int = MAX_BODY) -> bytes:
    """``encode_message(UDPPacket(content, remote_addr=addr))``, byte for byte, at a fraction of
    its cost: every datagram of a udp/sudp proxy is one of these."""
    if not content:
        return encode_message(UDPPacket(content=content, remote_addr=addr), max_body)
    body = b"".join(
        (
            b'{"c":"',
            base64.b64encode(content),
            b'","r":{"IP":',
            _ENCODE(addr.ip).encode(),
            b',"Port":',
            str(addr.port).encode(),
            b',"Zone":',
            _ENCODE(addr.zone).encode(),
            b"}}",
        )
    )
    if len(body) > max_body:
        raise MessageError(
            f"UDPPacket body is {len(body)} bytes, over the peer's limit of {max_body}"
        )
    return HEADER.pack(b"u", len(body)) + body


def decode_body(type_byte: bytes, body: bytes | bytearray | memoryview) -> Message:
    """Parse one frame body of a known type byte."""
    cls = MESSAGE_TYPES[type_byte]
    try:
        obj = _DECODE(str(body, "utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, 5000-digit ints
        raise MessageError(f"{cls.__name__} body is not valid JSON: {exc}") from exc
    if obj is None:  # Go unmarshals `null` into a zero-valued struct
        obj = {}
    if not isinstance(obj, dict):
        raise MessageError(f"{cls.__name__} body must be a JSON object, got {type(obj).__name__}")
    return cls.from_json(obj)


def _describe(type_byte: bytes) -> str:
    ch = type_byte.decode("latin-1")
    return f"0x{type_byte.hex()} ({ch!r})" if ch.isprintable() else f"0x{type_byte.hex()}"


class BufferedDecoder:
    """The byte buffer under an incremental decoder (v1 messages here, wire v2 frames in wire2),
    and what a MessageConn asks of either when it switches decoders."""

    __slots__ = ("_buf",)

    def __init__(self, pending: bytes = b"") -> None:
        self._buf = bytearray(pending)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def take_remaining(self) -> bytes:
        """Bytes received after the last decoded item; the decoder is left empty."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    @property
    def buffered(self) -> int:
        return len(self._buf)


class MessageDecoder(BufferedDecoder):
    """Incremental decoder: ``feed()`` bytes, then call ``next_message()`` until it returns None."""

    __slots__ = ("_max_body",)

    def __init__(self, max_body: int = MAX_BODY) -> None:
        super().__init__()
        self._max_body = max_body

    def next_message(self) -> Message | None:
        """The next complete message, or None if more bytes are needed.

        Raises FrameError for a bad header (checked as soon as its 9 bytes are in, before waiting
        for any body) and MessageError for a bad body.
        """
        buf = self._buf
        if not buf:
            return None
        type_byte = bytes(buf[:1])
        if type_byte not in MESSAGE_TYPES:
            raise FrameError(
                f"message type byte {_describe(type_byte)} is not an frp v1 message type"
            )
        if len(buf) < HEADER_SIZE:
            return None
        _, length = HEADER.unpack_from(buf)
        if length < 0:
            raise FrameError(f"message length {length} is negative")
        if length > self._max_body:
            raise FrameError(f"message length {length} exceeds the limit of {self._max_body}")
        end = HEADER_SIZE + length
        if len(buf) < end:
            return None
        body = buf[HEADER_SIZE:end]
        del buf[:end]
        return decode_body(type_byte, body)

    def peek(self, n: int) -> bytes:
        """Up to ``n`` buffered bytes, left in place (frps sniffing wire v2's magic)."""
        return bytes(self._buf[:n])
