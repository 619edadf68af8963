"""The bound on connections that have not yet said who they are: accepted on bind_port, still in
the first-byte sniff, the TLS handshake or before their first frp message (a pyfrp addition: Go
frps only times each one out after 10 s).

A flood of such connections could otherwise hold every file descriptor for those seconds and
starve real clients. Past ``limit`` pending connections the oldest is closed for each new one,
once it has had ``grace`` seconds: a real frpc's login or work connection is done in
milliseconds, so the oldest pending connections are the silent ones, and a legitimate burst
(1000 work connections at once without tcp_mux) is not cut while it is young. Past twice the
limit the oldest goes regardless of age."""

from __future__ import annotations

import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)

GRACE = 5.0
REPORT_EVERY = 10.0


def default_limit() -> int:
    """A quarter of the descriptors this process may open, between 64 and 4096."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(64, min(4096, soft // 4))


class PreLoginPool:
    def __init__(self, limit: int, grace: float = GRACE) -> None:
        self.limit = limit
        self.grace = grace
        self.evicted = 0  # closed to make room, in all
        self._pending: OrderedDict[Hashable, tuple[float, Callable[[], Any]]] = OrderedDict()
        self._unreported = 0
        self._reported_at = 0.0

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, key: Hashable, close: Callable[[], Any]) -> None:
        """A new connection, closed by ``close`` if it must make room later."""
        now = time.monotonic()
        pending = self._pending
        while len(pending) >= self.limit:
            old_key, (since, old_close) = next(iter(pending.items()))
            if now - since < self.grace and len(pending) < 2 * self.limit:
                break
            del pending[old_key]
            self.evicted += 1
            self._unreported += 1
            old_close()
        pending[key] = (now, close)
        if self._unreported and now - self._reported_at >= REPORT_EVERY:
            log.warning(
                "%d connections pending login over the limit of %d: closed %d that had sent "
                "no frp message",
                len(pending),
                self.limit,
                self._unreported,
            )
            self._unreported = 0
            self._reported_at = now

    def attach(self, key: Hashable, close: Callable[[], Any]) -> None:
        """The connection's owner changed (a protocol took the socket): close through it."""
        entry = self._pending.get(key)
        if entry is not None:
            self._pending[key] = (entry[0], close)

    def close_all(self) -> None:
        """Close every pending connection (the server is stopping)."""
        pending, self._pending = self._pending, OrderedDict()
        for _, close in pending.values():
            close()

    def release(self, key: Hashable) -> None:
        """The connection said who it is, or is gone."""
        self._pending.pop(key, None)
