"""frp's virtual network framing (pkg/vnet/message.go) and the IP header fields it routes on.

A work connection of the ``virtual_net`` plugins carries whole IP packets, each framed as a
4-byte little-endian length and that many bytes. A length of 0 or over 1 MiB is fatal to the
connection (frp refuses both on read and on write).
"""

from __future__ import annotations

import ipaddress
import struct

from pyfrp.errors import FrameError

MAX_MESSAGE = 1024 * 1024
_LEN = struct.Struct("<I")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def encode_packet(packet: bytes | bytearray | memoryview) -> bytes:
    """One framed message; ValueError for an empty or oversized packet."""
    n = len(packet)
    if n == 0:
        raise ValueError("message data length is 0")
    if n > MAX_MESSAGE:
        raise ValueError(f"message too large: {n} > {MAX_MESSAGE}")
    return _LEN.pack(n) + bytes(packet)


class PacketDecoder:
    """Feed bytes, get whole packets; FrameError on a length frp would refuse."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if n == 0:
                raise FrameError("message length is 0")
            if n > MAX_MESSAGE:
                raise FrameError(f"message too large: {n} > {MAX_MESSAGE}")
            if len(buf) - pos - 4 < n:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        if pos:
            del buf[:pos]
        return out


def packet_addrs(packet: bytes) -> tuple[IPAddress, IPAddress] | None:
    """(source, destination) of an IPv4 or IPv6 packet; None for anything else (frp discards
    it) or a header too short to parse."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if len(packet) < 20 or ihl < 20 or len(packet) < ihl:
            return None
        return ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
    if version == 6:
        if len(packet) < 40:
            return None
        return ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40])
    return None
