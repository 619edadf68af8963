"""The HTTP vhost front end in-process, with short timeouts and scripted backends.

The opener dials the backend directly: what a work connection carries is the same bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pyfrp.net.splice import HoldProtocol
from pyfrp.vhost.conn import WorkConn
from pyfrp.vhost.http import HttpRoute, VhostHttpServer

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class DirectOpener:
    name = "direct"

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened = 0
        self.in_use = 0
        self.traffic = (0, 0)

    async def open_work_conn(
        self, src: tuple[str, int], dst: tuple[str, int] = ("", 0)
    ) -> WorkConn | None:
        loop = asyncio.get_running_loop()
        t, held = await loop.create_connection(HoldProtocol, "127.0.0.1", self.port)
        self.opened += 1
        return WorkConn(t, held.take(), held.ended)

    def conn_opened(self) -> None:
        self.in_use += 1

    def conn_closed(self, bytes_in: int, bytes_out: int) -> None:
        self.in_use -= 1
        self.traffic = (self.traffic[0] + bytes_in, self.traffic[1] + bytes_out)


async def start(
    handler: Handler, **route_kw: object
) -> tuple[VhostHttpServer, DirectOpener, asyncio.Server]:
    async def quiet(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await handler(r, w)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    backend = await asyncio.start_server(quiet, "127.0.0.1", 0)
    opener = DirectOpener(backend.sockets[0].getsockname()[1])
    vhost = VhostHttpServer(response_timeout=0.3, head_timeout=0.3)
    await vhost.listen("127.0.0.1", 0)
    vhost.add_route("app.example.com", "", "", HttpRoute(opener=opener, **route_kw))  # type: ignore[arg-type]
    return vhost, opener, backend


async def read_response(r: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await r.readexactly(length)


async def one_request_per_connection(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """Answers the first request; closes silently when a second one arrives (a stale pool)."""
    await r.readuntil(b"\r\n\r\n")
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Frame-Options: SAMEORIGIN\r\n\r\nok")
    await r.readuntil(b"\r\n\r\n")
    w.close()


async def test_retry_on_stale_pooled_connection_and_response_headers() -> None:
    vhost, opener, backend = await start(
        one_request_per_connection, response_headers={"x-frame-options": "DENY"}
    )
    try:
        r, w = await asyncio.open_connection("127.0.0.1", vhost.port)
        for _ in range(3):
            w.write(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            head, body = await asyncio.wait_for(read_response(r), 5)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"\r\nX-Frame-Options: DENY\r\n" in head
            assert b"SAMEORIGIN" not in head
            assert body == b"ok"
        assert opener.opened == 3  # each reuse failed and was retried on a new connection
        # The dashboard's figures: the two closed upstreams carried a request head (in) and
        # the 2-byte response with its head (out) each; the third is still in use.
        assert opener.in_use == 1
        sent, received = opener.traffic
        assert sent > 2 * len(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        assert received == 2 * len(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Frame-Options: SAMEORIGIN\r\n\r\nok"
        )
        w.close()
    finally:
        await vhost.close()
        backend.close()


async def test_head_timeout_closes_only_that_client() -> None:
    async def ok(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    vhost, _, backend = await start(ok)
    try:
        r1, w1 = await asyncio.open_connection("127.0.0.1", vhost.port)
        w1.write(b"GET / HTTP/1.1\r\nHost: app.exa")
        r2, w2 = await asyncio.open_connection("127.0.0.1", vhost.port)
        for _ in range(3):
            w2.write(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            assert (await asyncio.wait_for(read_response(r2), 5))[1] == b"ok"
        assert await asyncio.wait_for(r1.read(), 5) == b""  # closed without an answer
        # An idle keep-alive connection has no timeout (as in Go): r2 still works.
        await asyncio.sleep(0.5)
        w2.write(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        assert (await asyncio.wait_for(read_response(r2), 5))[1] == b"ok"
        w1.close()
        w2.close()
    finally:
        await vhost.close()
        backend.close()


async def test_upgraded_connection_has_no_timeouts() -> None:
    async def upgrade_then_echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        while data := await r.read(65536):
            w.write(data)

    vhost, _, backend = await start(upgrade_then_echo)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", vhost.port)
        w.write(
            b"GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\n"
            b"Upgrade: echo\r\n\r\n"
        )
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 ")
        await asyncio.sleep(1.0)  # > head_timeout and > response_timeout
        w.write(b"ping")
        assert await asyncio.wait_for(r.readexactly(4), 5) == b"ping"
        w.close()
    finally:
        await vhost.close()
        backend.close()


async def test_gateway_timeout_then_keep_alive() -> None:
    async def silent_first(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        line = await r.readuntil(b"\r\n\r\n")
        if line.startswith(b"GET /slow"):
            await asyncio.sleep(2)
            return
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    vhost, _, backend = await start(silent_first)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", vhost.port)
        w.write(b"GET /slow HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        head, _ = await asyncio.wait_for(read_response(r), 5)
        assert head.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
        w.write(b"GET /fast HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        assert (await asyncio.wait_for(read_response(r), 5))[1] == b"ok"
        w.close()
    finally:
        await vhost.close()
        backend.close()


async def test_upstream_closing_after_a_complete_response_keeps_the_client() -> None:
    """A local service that answers and closes at once (Content-Length given): the client's
    keep-alive connection carries on. (Through a real tunnel the FIN could be handled before the
    exchange ended and closed the client too; tests/integration/test_groups.py caught that.)"""

    async def answer_and_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        w.close()  # the FIN right behind the response, in the same read on the other side

    vhost, _, backend = await start(answer_and_close)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", vhost.port)
        for _ in range(20):
            w.write(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            head, body = await asyncio.wait_for(read_response(r), 5)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Connection: close" not in head
            assert body == b"ok"
        w.close()
    finally:
        await vhost.close()
        backend.close()


async def test_timeouts_still_fire_after_many_quick_requests() -> None:
    """The head and response timeouts are restarted by every request without a timer each:
    after many quick requests on one connection, both still fire on time."""

    async def slow_on_demand(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /slow"):
                await asyncio.sleep(2)
                return
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    vhost, _, backend = await start(slow_on_demand)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", vhost.port)
        for _ in range(50):
            w.write(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            assert (await asyncio.wait_for(read_response(r), 5))[1] == b"ok"
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        w.write(b"GET /slow HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        head, _ = await asyncio.wait_for(read_response(r), 5)
        assert head.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
        assert 0.25 < loop.time() - t0 < 1.5  # response_timeout is 0.3 s
        for _ in range(20):
            w.write(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            assert (await asyncio.wait_for(read_response(r), 5))[1] == b"ok"
        t0 = loop.time()
        w.write(b"GET / HTTP/1.1\r\nHost: app.exa")  # a head that never ends
        assert await asyncio.wait_for(r.read(), 5) == b""
        assert 0.25 < loop.time() - t0 < 1.5  # head_timeout is 0.3 s
        w.close()
    finally:
        await vhost.close()
        backend.close()


async def test_repeated_heads_keep_their_per_request_rewriting() -> None:
    """The same bytes again get the same treatment; what differs (HEAD or GET, keep-alive or
    close) still changes the answer, even when the response head is byte for byte the same."""
    seen: list[bytes] = []

    async def fixed_head(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            seen.append(head)
            body = b"" if head.startswith(b"HEAD ") else b"hello"
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: 1\r\n\r\n" + body)

    vhost, _, backend = await start(fixed_head, rewrite_host="inner.local")
    try:
        r, w = await asyncio.open_connection("127.0.0.1", vhost.port)
        get = b"GET /a HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
        for _ in range(3):
            w.write(get)
            head, body = await asyncio.wait_for(read_response(r), 5)
            assert body == b"hello"
            assert b"\r\nX-App: 1\r\n" in head
            assert b"Connection: close" not in head
        w.write(b"HEAD /a HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
        assert b"\r\nContent-Length: 5\r\n" in head
        w.write(get)  # no body came after the HEAD's head: the GET's answer is next
        head, body = await asyncio.wait_for(read_response(r), 5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body == b"hello"
        w.write(get.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        head, body = await asyncio.wait_for(read_response(r), 5)
        assert b"\r\nConnection: close\r\n" in head
        assert body == b"hello"
        assert await asyncio.wait_for(r.read(), 5) == b""
        w.close()
        gets = [h for h in seen if h.startswith(b"GET /a ")]
        assert len(gets) == 5
        for h in gets:
            assert b"\r\nHost: inner.local\r\n" in h
            assert b"\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n" in h
            assert b"\r\nX-Forwarded-Host: app.example.com\r\n" in h
    finally:
        await vhost.close()
        backend.close()


async def test_more_than_five_concurrent_clients_keep_their_upstreams() -> None:
    """frp closes every idle work connection beyond 5 per host, so 8 busy keep-alive clients
    make it open new ones all the time; pyfrps keeps them (up to 32 idle per route)."""

    async def slow_ok(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await r.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.05)  # all 8 requests are in flight at once
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    vhost, opener, backend = await start(slow_ok)
    try:
        clients = [await asyncio.open_connection("127.0.0.1", vhost.port) for _ in range(8)]

        async def one(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            assert (await asyncio.wait_for(read_response(r), 5))[1] == b"ok"

        for _ in range(5):
            await asyncio.gather(*(one(r, w) for r, w in clients))
        assert opener.opened == 8
        for _, w in clients:
            w.close()
    finally:
        await vhost.close()
        backend.close()
