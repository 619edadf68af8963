"""How pyfrpc dials frps (pyfrp.client.connector) over real loopback sockets, on both loops."""

from __future__ import annotations

import asyncio
import os
import socket
import socketserver
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pyfrp.client.connector import Connector
from pyfrp.config.model import ClientConfig
from pyfrp.net.tls import server_context
from pyfrp.proto.msg import Ping
from tests.harness import HOST, open_fds, serving
from tests.net import test_mux
from tests.net.test_mux import Run, until

run = test_mux.run  # both loops; fails on anything the loop had to report


@contextmanager
def tls_server(contexts: list[ssl.SSLContext] | None = None) -> Iterator[int]:
    """A TLS echo server on its own threads: it answers while the client's loop is blocked.
    Each connection uses ``contexts[-1]`` (append one to play a restarted frps)."""
    ctxs = contexts if contexts is not None else [server_context()]

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(5)
            try:
                with ctxs[-1].wrap_socket(self.request, server_side=True) as tls:
                    while data := tls.recv(4096):
                        tls.sendall(data)
            except (OSError, ssl.SSLError):
                pass

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        request_queue_size = 128

    with serving(Server((HOST, 0), Handler)) as port:
        yield port


@contextmanager
def busy_loop(loop: asyncio.AbstractEventLoop, seconds: float) -> Iterator[None]:
    """Block the loop for ``seconds`` at the end of every iteration, after what the iteration's
    callbacks scheduled, the way a busy pyfrpc does: a peer's reply is readable at the next poll."""
    a, b = socket.socketpair()
    a.send(b"x")  # b stays readable, so its reader fires in every iteration's poll phase
    loop.add_reader(b.fileno(), lambda: loop.call_soon(time.sleep, seconds))
    try:
        yield
    finally:
        loop.remove_reader(b.fileno())
        a.close()
        b.close()


def test_tls_dial_cancelled_at_every_step_reports_nothing_and_leaks_nothing(run: Run) -> None:
    """frpc cancels the work connections it is dialling when it stops or loses its control
    connection. A cancel that reached uvloop's create_connection(ssl=...) in the loop iteration
    that sent the ClientHello, with the reply read before the task resumed, closed the socket
    under a TLS protocol that then wrote to it and logged "Fatal error on SSL protocol" with a
    traceback (on asyncio's loop the socket was closed twice). Cancelling after every number of
    loop turns walks the cancel through every step of the dial."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with tls_server() as port:
            connector = Connector(ClientConfig(server_addr=HOST, server_port=port, tcp_mux=False))
            (await connector._dial()).abort()  # libuv opens a spare fd on first use
            await asyncio.sleep(0.1)
            before = open_fds(os.getpid())
            outcomes: set[str] = set()
            with busy_loop(loop, 0.003):
                for turns in range(25):
                    task = loop.create_task(connector._dial())
                    for _ in range(turns):
                        await asyncio.sleep(0)
                    task.cancel()
                    try:
                        transport = await task
                    except asyncio.CancelledError:
                        outcomes.add("cancelled")
                    else:
                        outcomes.add("connected")
                        transport.abort()
            assert outcomes == {"cancelled", "connected"}  # the sweep went past the handshake
            await until(lambda: open_fds(os.getpid()) <= before)  # closes finish in a few turns

    run(main)


def test_tls_dial_connects_and_carries_bytes(run: Run) -> None:
    async def main() -> None:
        with tls_server() as port:
            connector = Connector(ClientConfig(server_addr=HOST, server_port=port, tcp_mux=False))
            conn = await connector.connect()
            assert conn.transport is not None
            assert conn.transport.get_extra_info("ssl_object") is not None
            conn.send(Ping(privilege_key="k", timestamp=7))
            assert await conn.recv() == Ping(privilege_key="k", timestamp=7)
            conn.close()

    run(main)


def test_tls_dials_resume_the_session(run: Run) -> None:
    """Without tcp_mux every work connection is a TLS handshake. Once the first handshake's
    ticket has come, pyfrpc offers it and the server resumes: no certificate, no signature. A
    server that no longer knows the ticket (frps restarted: new ticket keys) answers with a full
    handshake, and its new ticket is the one offered from then on."""

    async def dial_echo(connector: Connector) -> bool:
        conn = await connector.connect()
        assert conn.transport is not None
        conn.send(Ping(privilege_key="k", timestamp=1))
        assert await conn.recv() == Ping(privilege_key="k", timestamp=1)  # the ticket came first
        resumed = bool(conn.transport.get_extra_info("ssl_object").session_reused)
        conn.close()
        return resumed

    async def main() -> None:
        contexts = [server_context()]
        with tls_server(contexts) as port:
            connector = Connector(ClientConfig(server_addr=HOST, server_port=port, tcp_mux=False))
            ctx = connector._tls
            assert ctx is not None
            ctx.ticket_wait = 0.2  # 1 s by default
            # A session is read ticket_wait after its handshake: its ticket has come by then.
            assert [await dial_echo(connector) for _ in range(2)] == [False, False]
            await asyncio.sleep(0.25)
            assert [await dial_echo(connector) for _ in range(3)] == [True, True, True]
            ctx.ticket_wait = 0.0  # the echo in dial_echo has brought each ticket
            contexts.append(server_context())
            assert [await dial_echo(connector) for _ in range(3)] == [False, True, True]
            ticketless = server_context()
            ticketless.num_tickets = 0  # a server that issues none: pyfrpc stops looking
            contexts.append(ticketless)
            assert [await dial_echo(connector) for _ in range(6)] == [False] * 6
            # Each look, and each offer, copies a session: neither goes on.
            assert ctx.resume is None
            assert ctx._fresh is None

    run(main)
