"""The PROXY protocol header frpc puts before a user's bytes to the local service
(``transport.proxyProtocolVersion``; frp uses go-proxyproto's ``HeaderProxyFromAddrs``).

v1 is a text line, ``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n`` (``PROXY UNKNOWN\\r\\n`` for
what v1 cannot say, such as UDP); v2 is binary: a 12-byte signature, version/command, family/
protocol, length, then the addresses. The family follows the source address, as in
go-proxyproto; a destination of the other family cannot be written, so then the header says
"unknown" (v1) or LOCAL (v2) instead of writing a broken one.
"""

from __future__ import annotations

import ipaddress
import struct

from pyfrp.proto.msg import StartWorkConn

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_PROXY, _LOCAL = 0x21, 0x20  # version 2 with command PROXY / LOCAL
_TCP, _UDP = 0x01, 0x02
_INET, _INET6 = 0x10, 0x20


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # Go's To4() takes a mapped address as IPv4
    return ip


def header(version: str, src: tuple[str, int], dst: tuple[str, int], udp: bool = False) -> bytes:
    """The header for a user at ``src`` who reached ``dst``; ``version`` "v1" or else v2."""
    sip, dip = _ip(src[0]), _ip(dst[0])
    known = sip is not None and dip is not None and sip.version == dip.version
    if version == "v1":
        if udp or not known or sip is None or dip is None:
            return b"PROXY UNKNOWN\r\n"
        proto = "TCP4" if sip.version == 4 else "TCP6"
        return f"PROXY {proto} {sip} {dip} {src[1]} {dst[1]}\r\n".encode()
    if not known or sip is None or dip is None:
        return V2_SIGNATURE + bytes([_LOCAL, 0]) + struct.pack("!H", 0)
    family = _INET if sip.version == 4 else _INET6
    addrs = sip.packed + dip.packed + struct.pack("!HH", src[1], dst[1])
    kind = family | (_UDP if udp else _TCP)
    return V2_SIGNATURE + bytes([_PROXY, kind]) + struct.pack("!H", len(addrs)) + addrs


def header_for_user(version: str, start: StartWorkConn) -> bytes:
    """The header before a user's stream (the addresses frps put in StartWorkConn), or b"" when
    there is none to write: no version set, or no source (frp's condition). A missing
    destination is 127.0.0.1, as frpc fills it in."""
    if not version or not start.src_addr or not start.src_port:
        return b""
    src = (start.src_addr, start.src_port)
    return header(version, src, (start.dst_addr or "127.0.0.1", start.dst_port))
