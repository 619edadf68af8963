"""A Linux TUN device as an asyncio packet source and sink (frp pkg/vnet/tun_linux.go).

frpc names its device ``utunN`` (one past the highest ``utun`` suffix in use), gives it MTU 1420,
the ``virtualNet.address`` (an address with its prefix, the connected route comes with it), and
brings it up. frp does this over netlink; ioctls on a datagram socket do the same for one
address, without a dependency or the ``ip`` tool. Needs CAP_NET_ADMIN and /dev/net/tun.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Callable

CLONE_DEVICE = "/dev/net/tun"
BASE_NAME = "utun"
MTU = 1420
READ_SIZE = 65536
READS_PER_WAKEUP = 64  # packets read per readiness callback before yielding to the loop

# linux/if_tun.h, linux/sockios.h, linux/if.h
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCSIFMTU = 0x8922
SIOCGIFINDEX = 0x8933
IFF_UP = 0x1
IFF_RUNNING = 0x40

_IFREQ = 40  # struct ifreq: 16-byte name and a 24-byte union


class TunError(OSError):
    """The device could not be created or configured (message as frp's)."""


def parse_cidr(addr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """Go's net.ParseCIDR: an address with a prefix length, or ``invalid CIDR address``."""
    if "/" not in addr:
        raise ValueError(f"invalid CIDR address: {addr}")
    try:
        return ipaddress.ip_interface(addr)
    except ValueError:
        raise ValueError(f"invalid CIDR address: {addr}") from None


def next_name(existing: list[str], base: str = BASE_NAME) -> str:
    """``utunN`` with N one past the highest numeric suffix among ``existing`` names."""
    highest = -1
    for name in existing:
        suffix = name[len(base) :] if name.startswith(base) else ""
        if suffix.isdigit():
            highest = max(highest, int(suffix))
    return f"{base}{highest + 1}"


def _ifreq(name: str, payload: bytes = b"") -> bytes:
    return struct.pack("16s", name.encode()) + payload.ljust(_IFREQ - 16, b"\0")


def _go_errno(exc: OSError) -> str:
    """An errno as Go prints it: ``permission denied``."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _sockaddr_in(ip: ipaddress.IPv4Address) -> bytes:
    return struct.pack("=H", socket.AF_INET) + b"\0\0" + ip.packed


class TunDevice:
    """An open TUN device: ``start(on_packet)`` delivers each packet read, ``write`` sends one
    to the kernel. Closing the descriptor removes the device (it is not persistent)."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, on_packet: Callable[[bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop

        def readable() -> None:
            for _ in range(READS_PER_WAKEUP):
                try:
                    packet = os.read(self.fd, READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    return
                if not packet:
                    return
                on_packet(packet)

        loop.add_reader(self.fd, readable)

    def write(self, packet: bytes) -> None:
        """Hand one packet to the kernel; a full queue drops it, as a congested link would."""
        try:
            os.write(self.fd, packet)
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd < 0:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1


def open_tun(addr: str) -> TunDevice:
    """Create and configure the device for ``addr`` (``100.86.0.1/24``); raises ValueError for
    a bad address and TunError when the system refuses."""
    iface = parse_cidr(addr)
    if not sys.platform.startswith("linux"):
        raise TunError(f"virtual network is not supported on {sys.platform} by pyfrp")
    name = next_name([n for _, n in socket.if_nameindex()])
    try:
        fd = os.open(CLONE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TunError(
            f"failed to create TUN device '{name}': CreateTUN({name!r}) failed; "
            f"{CLONE_DEVICE} does not exist"
        ) from None
    except OSError as exc:
        raise TunError(
            f"failed to create TUN device '{name}': open {CLONE_DEVICE}: {_go_errno(exc)}"
        ) from None
    try:
        req = _ifreq(name, struct.pack("=H", IFF_TUN | IFF_NO_PI))
        try:
            got = fcntl.ioctl(fd, TUNSETIFF, req)
        except OSError as exc:
            raise TunError(f"failed to create TUN device '{name}': {_go_errno(exc)}") from None
        name = got[:16].rstrip(b"\0").decode()
        os.set_blocking(fd, False)
        _configure(name, iface)
    except BaseException:
        os.close(fd)
        raise
    return TunDevice(fd, name)


def _configure(name: str, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s, SIOCSIFMTU, _ifreq(name, struct.pack("=i", MTU)))
            if isinstance(iface, ipaddress.IPv4Interface):
                fcntl.ioctl(s, SIOCSIFADDR, _ifreq(name, _sockaddr_in(iface.ip)))
                fcntl.ioctl(s, SIOCSIFNETMASK, _ifreq(name, _sockaddr_in(iface.netmask)))
            else:
                index = socket.if_nametoindex(name)
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
                    prefix = iface.network.prefixlen
                    in6_ifreq = struct.pack("=16sIi", iface.ip.packed, prefix, index)
                    fcntl.ioctl(s6, SIOCSIFADDR, in6_ifreq)
            flags = struct.unpack_from("=H", fcntl.ioctl(s, SIOCGIFFLAGS, _ifreq(name)), 16)[0]
            up = struct.pack("=H", flags | IFF_UP | IFF_RUNNING)
            fcntl.ioctl(s, SIOCSIFFLAGS, _ifreq(name, up))
        except OSError as exc:
            raise TunError(
                f"configure TUN device '{name}' with {iface}: {_go_errno(exc)}"
            ) from None
