"""What a vhost front end needs from a proxy: a way to open work connections.

The vhost package stays below ``pyfrp.server``: a server-side proxy hands the router an object
with ``open_work_conn``, which sends StartWorkConn on a pooled work connection and returns the
transport with the proxy's encryption/compression already stacked on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# pyfrp.workers: give a client connection (and the bytes read from it) to another worker
HandOver = Callable[[int, asyncio.Transport, bytes], None]


@dataclass(slots=True)
class WorkConn:
    """A started work connection: the caller must set a protocol before yielding to the loop."""

    transport: asyncio.Transport
    pending: bytes  # bytes already read from it (decoded)
    ended: bool  # the peer already closed it


class WorkConnOpener(Protocol):
    @property
    def name(self) -> str: ...

    async def open_work_conn(
        self, src: tuple[str, int], dst: tuple[str, int] = ("", 0)
    ) -> WorkConn | None:
        """A work connection for a user at ``src`` (``dst``: the frps address it reached).

        None if frpc gave none in time (frp's userConnTimeout).
        """
        ...

    def conn_opened(self) -> None:
        """A work connection went into use (the dashboard's current connections)."""

    def conn_closed(self, bytes_in: int, bytes_out: int) -> None:
        """It ended, having carried ``bytes_in`` from users and ``bytes_out`` back."""


def peer_of(transport: asyncio.BaseTransport, name: str = "peername") -> tuple[str, int]:
    addr = transport.get_extra_info(name)
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return "", 0
