"""xtcp's ``protocol = kcp`` tunnel (client/visitor/xtcp.go KCPTunnelSession, client/proxy/xtcp.go
listenByKCP): KCP on the punched UDP socket, both ends conversation 1 with frps-side windows
(1024/1024), and yamux inside (the visitor the client, 10 s keepalives, 6 MiB stream windows).
Offers what the QUIC tunnel offers: ``open_stream``, ``terminated``, ``close_tunnel``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from pyfrp.net.kcp import SERVER_OPTIONS, kcp_on_socket
from pyfrp.net.mux import MuxSession, MuxStream

CONV = 1
KEEPALIVE = 10.0
MAX_WINDOW = 6 << 20


class KcpTunnel:
    def __init__(self, session: MuxSession) -> None:
        self.session = session
        self.terminated = asyncio.Event()
        session.closed.add_done_callback(lambda _f: self.terminated.set())

    def open_stream(self) -> MuxStream:
        """A new stream; give it a protocol (set_protocol) before yielding."""
        if self.terminated.is_set():
            raise ConnectionError("kcp tunnel closed")
        return self.session.open_stream()

    def close_tunnel(self) -> None:
        self.session.close()
        self.terminated.set()


async def open_tunnel(
    sock: socket.socket,
    peer: tuple[str, int],
    *,
    client: bool,
    on_stream: Callable[[MuxStream], None] | None = None,
) -> KcpTunnel:
    """The tunnel on the punched ``sock`` (which it then owns) to ``peer``."""
    session = MuxSession(
        client=client, on_stream=on_stream, keepalive_interval=KEEPALIVE, max_window=MAX_WINDOW
    )
    await kcp_on_socket(sock, peer, lambda: session, CONV, SERVER_OPTIONS)
    return KcpTunnel(session)
