"""Remote ports for tcp and udp proxies (server/ports/ports.go): allow list, binding. frps keeps
one manager per protocol, so a tcp and a udp proxy may share a port number."""

from __future__ import annotations

import functools
import random
import socket
from collections.abc import Callable

from pyfrp.net.bind import bind_socket

# frps tries this many random ports for remote_port = 0.
_RANDOM_TRIES = 5


class PortError(Exception):
    """Text is frp's error text for NewProxyResp."""


class PortManager:
    def __init__(
        self,
        bind_addr: str,
        allow_ports: list[tuple[int, int]],
        bind: Callable[..., socket.socket] = bind_socket,
    ) -> None:
        self.bind_addr = bind_addr
        self.allow = allow_ports
        self.bind = bind
        self.used: set[int] = set()

    def allowed(self, port: int) -> bool:
        # Go's free-port set holds 1-65535 only: a NewProxy asking for 70000 is "not allowed"
        # (getaddrinfo would bind 70000 % 65536).
        if not 0 < port <= 65535:
            return False
        return not self.allow or any(a <= port <= b for a, b in self.allow)

    def acquire(self, port: int, *, reuse_port: bool = False) -> tuple[int, socket.socket]:
        """Bind ``port`` (0: a random allowed free port); returns (port, socket).
        ``reuse_port``: a port other pyfrps workers listen on too (a group's, tcp only)."""
        bind = functools.partial(self.bind, reuse_port=True) if reuse_port else self.bind
        if port == 0:
            return self._acquire_random(bind)
        if not self.allowed(port):
            raise PortError("port not allowed")
        if port in self.used:
            raise PortError("port already used")
        try:
            sock = bind(self.bind_addr, port)
        except OSError:
            raise PortError("port unavailable") from None
        self.used.add(port)
        return port, sock

    def _acquire_random(self, bind: Callable[..., socket.socket]) -> tuple[int, socket.socket]:
        candidates: list[int] = []
        if self.allow:
            for a, b in self.allow:
                candidates.extend(random.randint(a, b) for _ in range(_RANDOM_TRIES))
            random.shuffle(candidates)
            candidates = candidates[: _RANDOM_TRIES * 4]
        else:
            candidates = [0] * _RANDOM_TRIES  # let the kernel pick
        for cand in candidates:
            if cand in self.used:
                continue
            try:
                sock = bind(self.bind_addr, cand)
            except OSError:
                continue
            port = sock.getsockname()[1]
            if port in self.used or not self.allowed(port):
                sock.close()
                continue
            self.used.add(port)
            return port, sock
        raise PortError("no available port")

    def release(self, port: int) -> None:
        self.used.discard(port)
