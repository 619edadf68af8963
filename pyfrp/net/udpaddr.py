"""User addresses in UDPPacket messages, as Go writes them.

A dual-stack (IPv6) socket sees an IPv4 user as ``::ffff:a.b.c.d``; Go's net.UDPAddr prints it
``a.b.c.d``, and a peer may send it back that way, which an IPv6 socket must map again.
"""

from __future__ import annotations

import socket
from typing import Any

from pyfrp.proto.msg import UDPAddr


def user_addr(addr: Any) -> UDPAddr:
    """A datagram's source address (from the loop) as a UDPPacket's address."""
    ip = str(addr[0])
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip.removeprefix("::ffff:")
    return UDPAddr(ip=ip, port=int(addr[1]))


def reply_addr(a: UDPAddr, family: int) -> tuple[str, int]:
    """Where to send a datagram for UDPPacket address ``a`` from a socket of ``family``."""
    ip = a.ip
    if family == socket.AF_INET6 and "." in ip and ":" not in ip:
        ip = "::ffff:" + ip
    return ip, a.port
