"""Listening sockets as Go's net.Listen makes them: the backlog and the options. A module of its
own, light to import: pyfrps's supervisor binds every worker's sockets with it and loads nothing
of the relay itself."""

from __future__ import annotations

import socket


def _somaxconn() -> int:
    """The listen backlog Go uses (net.maxListenerBacklog): the kernel's somaxconn, 4096 on
    current Linux; a burst of connections beyond asyncio's default of 100 is then queued by the
    kernel instead of reset."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            n = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return socket.SOMAXCONN
    return min(max(n, 1), 65535)


BACKLOG = _somaxconn()


def bind_socket(
    host: str, port: int, *, backlog: int = BACKLOG, reuse_port: bool = False
) -> socket.socket:
    """A listening, non-blocking TCP socket; raises OSError like Go's net.Listen would fail.
    ``reuse_port``: one of several sockets on the port, the kernel spreading connections."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
