"""The HTTP vhost on ``vhost_http_port`` (frp pkg/util/vhost/http.go), asyncio side.

Each client connection is one ``_ClientConn`` protocol plus one task that walks its requests in
order: read a bounded head, route it (``router.Router``), check Basic auth, take an upstream (an
idle pooled work connection of that route, or a new one), send the rewritten head, and then let
callbacks move the bytes. Bodies never pass through the task: ``data_received`` on either side
writes each received chunk straight into the other transport, and each side's
``pause_writing``/``resume_writing`` pauses and resumes the other side's reading, so a 1 GB body
in either direction costs no more memory than the write buffers (``WRITE_HIGH_WATER``).

Upstreams are pooled per route, as frp's http.Transport does (60 s idle timeout), so one work
connection can carry requests of different clients; a request without a
body that finds its reused upstream already dead is retried once on a new one. A 101 answer to
an Upgrade request, and a CONNECT, turn the pair into a plain splice with no timers at all.

Timeouts: a client has ``head_timeout`` (Go's ReadHeaderTimeout, 60 s) to send a complete head,
counted from the connection for its first request and from the first byte for later ones; an
idle keep-alive connection has none, as in Go. ``response_timeout`` (vhost_http_timeout) runs
from the end of the request body to the response head and answers 504.

Answers frps makes itself: 404 with frp's page (or custom_404_page) when no route matches, 401 or
407 with ``Basic realm="Restricted"``, 400/431/501/505 for bad heads, 404 with that page too
when the work connection or the local service fails before a response head (frp's
ErrorHandler), and 504.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import cast

from pyfrp.net.listen import serve_tcp
from pyfrp.net.splice import WRITE_HIGH_WATER, splice
from pyfrp.proto.auth import same_secret
from pyfrp.version import FRP_VERSION
from pyfrp.vhost.conn import HandOver, WorkConnOpener, peer_of
from pyfrp.vhost.http1 import (
    MAX_HEAD,
    MAX_RESPONSE_HEAD,
    REASONS,
    BodyFramer,
    Framing,
    HttpError,
    Request,
    Response,
    client_response_head,
    find_head_end,
    parse_request_head,
    parse_response_head,
    simple_response,
    upstream_request_head,
    wire_text,
)
from pyfrp.vhost.notfound import not_found_page
from pyfrp.vhost.router import Elsewhere, Route, Router, canonical_host

log = logging.getLogger(__name__)

# Go's http.Server ReadHeaderTimeout as frps sets it.
HEAD_TIMEOUT = 60.0
# Idle upstreams kept per route. frp's http.Transport keeps 5 (MaxIdleConnsPerHost): with more
# concurrent requests than that, each release beyond 5 closes a work connection (and frpc's
# connection to the local service) that the next request then opens again, about one in four
# requests with 8 busy keep-alive clients. 32 idle cost a few KiB each and close after
# IDLE_TIMEOUT; the number in use was never limited.
MAX_IDLE_PER_ROUTE = 32
# frp's http.Transport: IdleConnTimeout.
IDLE_TIMEOUT = 60.0
# Response pieces up to this size are joined into one write.
_JOIN_AT = 64 * 1024
# Go's rstAvoidanceDelay: how long a connection closed after an error keeps discarding input.
LINGER = 0.5
# Heads up to this size are remembered with what was made of them (parse results, rewritten
# heads): parsing and rewriting are pure functions of the bytes, and clients and backends
# repeat the same heads (keep-alive polling, API calls, a backend's fixed response head).
# Each cache is emptied when it reaches _CACHE_ENTRIES.
_CACHE_HEAD = 4096
_CACHE_ENTRIES = 256
# Go's Transport retries a replayable request that failed on a reused connection.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(eq=False, slots=True)
class HttpRoute:
    """The payload of one (domain, location, route user) registration of an http proxy."""

    opener: WorkConnOpener
    rewrite_host: str = ""
    username: str = ""
    password: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    idle: list[_Upstream] = field(default_factory=list)
    closed: bool = False
    # A group's route: each request goes to the next member, so no upstream is kept for reuse
    # (it would tie the next request to this one's member).
    pooled: bool = True
    # Add X-Forwarded-For/-Host/-Proto (frps); frpc's http2http plugins pass them unchanged.
    forwarded: bool = True
    # (request head, client IP) -> the head sent upstream; (response head, HEAD request?) ->
    # the parsed response and the heads sent to clients, by (chunked to client, close).
    upstream_heads: dict[tuple[bytes, str | None], bytes] = field(default_factory=dict)
    responses: dict[tuple[bytes, bool], tuple[Response, dict[tuple[bool, bool], bytes]]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        self.rewrite_host = wire_text(self.rewrite_host)
        self.headers = {wire_text(k): wire_text(v) for k, v in self.headers.items()}
        self.response_headers = {
            wire_text(k): wire_text(v) for k, v in self.response_headers.items()
        }


def parse_basic(value: str | None) -> tuple[str, str] | None:
    """Go's ParseBasicAuth: ``Basic <base64(user:password)>``, scheme case-insensitive."""
    if value is None or len(value) < 6 or value[:6].lower() != "basic ":
        return None
    try:
        raw = base64.b64decode(value[6:].encode("latin-1"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    user, colon, password = raw.partition(b":")
    if not colon:
        return None
    return user.decode("utf-8", "surrogateescape"), password.decode("utf-8", "surrogateescape")


def route_user(req: Request) -> str:
    """The user a request is routed by (frp getRequestRouteUser)."""
    auth = req.get("authorization")
    if req.url_host:
        proxy_auth = req.get("proxy-authorization")
        if proxy_auth is not None:
            auth = proxy_auth
    creds = parse_basic(auth)
    return creds[0] if creds else ""


def auth_ok(req: Request, route: HttpRoute) -> bool:
    """frp checkRouteAuthByRequest: exact user and password, when the route has either."""
    if not route.username and not route.password:
        return True
    creds = parse_basic(req.get("proxy-authorization" if req.url_host else "authorization"))
    if creds is None:
        return False
    user_ok = same_secret(creds[0], route.username)
    pwd_ok = same_secret(creds[1], route.password)
    return user_ok and pwd_ok


class _Outcome(Enum):
    DONE = "done"  # the response went out completely
    UPGRADE = "upgrade"  # 101: splice from here on
    FAILED = "failed"  # upstream gone or unreadable before a final response head
    TIMEOUT = "timeout"  # no response head within vhost_http_timeout
    ABORT = "abort"  # broken mid-response, or the client went away


class _Step(Enum):
    HEAD = "head"  # a 1xx went by: another response head follows
    BODY = "body"  # the final head went out: the body follows
    STOP = "stop"  # the exchange ended (error) or left HTTP (101)


class VhostHttpServer:
    """The listener on vhost_http_port, its routing table and its upstream pools."""

    def __init__(
        self,
        *,
        response_timeout: float = 60.0,
        head_timeout: float = HEAD_TIMEOUT,
        not_found_page: str = "",
    ) -> None:
        self.router: Router[HttpRoute | Elsewhere] = Router()
        self.hand_over: HandOver | None = None  # set in a pyfrps worker
        self.response_timeout = response_timeout
        self.head_timeout = head_timeout
        self.not_found_path = not_found_page
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[_ClientConn] = set()
        self.requests: dict[bytes, Request] = {}  # request head -> its parse (_CACHE_HEAD)

    async def listen(self, host: str, port: int, sock: socket.socket | None = None) -> int:
        self._server, self.port = await serve_tcp(self.protocol_factory, host, port, sock)
        return self.port

    def protocol_factory(self) -> asyncio.Protocol:
        """A protocol for one user connection (also those frps's bind_port hands over)."""
        return _ClientConn(self)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.abort()
        for task in [c.task for c in self._conns if c.task is not None]:
            task.cancel()
        for found in self.router.routes():
            while isinstance(found.payload, HttpRoute) and found.payload.idle:
                found.payload.idle.pop().close()

    # -- routes
    def add_route(
        self, domain: str, location: str, user: str, route: HttpRoute
    ) -> Route[HttpRoute | Elsewhere]:
        return self.router.add(domain, location, user, route)

    def remove_route(self, domain: str, location: str, user: str, route: HttpRoute) -> None:
        self.router.remove(domain, location, user)
        route.closed = True
        while route.idle:
            route.idle.pop().close()

    def not_found_page(self) -> bytes:
        return not_found_page(self.not_found_path)

    # -- upstream pool
    async def acquire(self, route: HttpRoute, src: tuple[str, int]) -> _Upstream | None:
        while route.idle:
            up = route.idle.pop()
            up.idle_timer.stop()
            if not up.closed and not up.transport.is_closing():
                up.reused = True
                return up
        opened = await route.opener.open_work_conn(src)
        if opened is None:
            return None
        up = _Upstream(opened.transport, route)
        if opened.pending:
            up.early = opened.pending
        if opened.ended:
            up.closed = True
        return up

    def release(self, up: _Upstream) -> None:
        route = up.route
        up.client = None
        if up.closed or route.closed or not route.pooled or len(route.idle) >= MAX_IDLE_PER_ROUTE:
            up.close()
            return
        up.reused = False
        up.transport.resume_reading()
        up.idle_timer.start(IDLE_TIMEOUT)
        route.idle.append(up)


class _Upstream(asyncio.Protocol):
    """One work connection used as an HTTP/1.1 connection to the local service."""

    __slots__ = (
        "client", "closed", "counted", "early", "idle_timer", "received", "reused", "route",
        "sent", "transport",
    )  # fmt: skip

    def __init__(self, transport: asyncio.Transport, route: HttpRoute) -> None:
        self.transport = transport
        self.route = route
        self.sent = self.received = 0  # for the proxy's traffic figures
        self.counted = True
        route.opener.conn_opened()
        self.client: _ClientConn | None = None
        self.closed = False
        self.reused = False
        self.early = b""
        self.idle_timer = _Deadline(self.close)
        transport.set_protocol(self)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        transport.resume_reading()  # whoever held it may have paused it

    def write(self, data: bytes | memoryview) -> None:
        self.sent += len(data)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        client = self.client
        if client is not None:
            client.upstream_data(self, data)
        else:  # an idle connection must stay silent
            self.close()

    def eof_received(self) -> bool:
        self._gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause("upstream")

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume("upstream")

    def _uncount(self) -> None:
        """Report the connection's traffic once (closed, or handed to a splice that ended)."""
        if self.counted:
            self.counted = False
            self.route.opener.conn_closed(self.sent, self.received)

    def _gone(self) -> None:
        self._uncount()
        if self.closed:
            return
        self.closed = True
        self.idle_timer.close()
        if self.client is not None:
            self.client.upstream_closed(self)
        elif self in self.route.idle:
            self.route.idle.remove(self)

    def close(self) -> None:
        self._uncount()
        self.closed = True
        self.idle_timer.close()
        self.transport.close()


class _Deadline:
    """A timeout restarted and stopped once per request, without a timer each time.

    ``start`` sets the deadline and arms a timer only when none is armed for an earlier time;
    ``stop`` only clears the deadline. A timer that fires before the current deadline (it was
    armed for an earlier one) re-arms itself for it, so a keep-alive connection arms about one
    timer per timeout period rather than one per request (call_later and cancel were ~3 % of
    frps's time under load)."""

    __slots__ = ("_callback", "_due", "_handle", "_loop")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._callback = callback
        self._due: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._due is not None

    def start(self, delay: float) -> None:
        self._due = due = self._loop.time() + delay
        handle = self._handle
        if handle is not None:
            if handle.when() <= due:
                return
            handle.cancel()  # armed for later: the timeout was shortened (a reload)
        self._handle = self._loop.call_at(due, self._fire)

    def stop(self) -> None:
        self._due = None

    def close(self) -> None:
        self._due = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        due = self._due
        if due is None:
            return
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._fire)
            return
        self._due = None
        self._callback()


class _ClientConn(asyncio.Protocol):
    """One connection from an HTTP client on vhost_http_port."""

    def __init__(self, server: VhostHttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = ("", 0)
        self.task: asyncio.Task[None] | None = None
        self.buf = bytearray()  # bytes read and not yet consumed (head, pipelined data)
        self.scan = 0
        self.eof = False
        self.lost = False
        self.waiter: asyncio.Future[None] | None = None
        self.head_timer = _Deadline(self._head_timeout)
        self.pauses: set[str] = set()
        self.write_paused = False
        # the current exchange
        self.req: Request | None = None
        self.req_raw = b""  # its head as it came
        self.up: _Upstream | None = None
        self.body: BodyFramer | None = None  # the request body, while it is forwarded
        self.resp_buf = bytearray()
        self.resp_scan = 0
        self.resp: Response | None = None
        self.resp_body: BodyFramer | None = None
        self.resp_timer = _Deadline(self._response_timeout)
        self.got_bytes = False
        self.close_after = False
        self.reusable = False
        self.upgrade_pending = b""
        self.exchange: asyncio.Future[_Outcome] | None = None
        self.lingering = False
        # Writes to the client made while one upstream chunk is handled, sent together.
        self.corked: list[bytes | memoryview] | None = None

    # -- asyncio.Protocol (client side)
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = t
        self.peer = peer_of(t)
        t.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.server._conns.add(self)
        self.head_timer.start(self.server.head_timeout)
        self.task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        body = self.body
        if body is not None and not body.done:
            self._forward_body(data)
            return
        self.buf += data
        if self.req is not None or len(self.buf) > MAX_HEAD:
            self.pause("busy")  # bounded: at most one read beyond what we asked for
        if self.req is None and not self.head_timer.running:
            self.head_timer.start(self.server.head_timeout)
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        body = self.body
        if body is not None and not body.done:
            self._finish(_Outcome.ABORT)  # the request was cut short
        self._wake()
        return True  # keep writing: a half-closed client may still read its response

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.eof = True
        self._finish(_Outcome.ABORT)
        self._wake()
        self.server._conns.discard(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.up is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.up is not None:
            self.up.transport.resume_reading()

    # -- helpers
    def pause(self, reason: str) -> None:
        if not self.pauses and self.transport is not None and not self.lost:
            self.transport.pause_reading()
        self.pauses.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self.pauses:
            return
        self.pauses.discard(reason)
        if not self.pauses and self.transport is not None and not self.lost:
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _head_timeout(self) -> None:
        log.debug("client %s:%d sent no complete request head in time, closing", *self.peer)
        if self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes | memoryview) -> None:
        if self.corked is not None:
            self.corked.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    # -- the request loop
    async def _run(self) -> None:
        try:
            while not self.lost:
                got = await self._read_head()
                if got is None:
                    break
                if not await self._serve(*got):
                    break
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("http vhost connection from %s:%d failed", *self.peer)
        finally:
            self.head_timer.close()
            if self.up is not None:
                self.up.close()
                self._detach()
            self.resp_timer.close()
            if self.transport is not None and not self.lingering:
                self.transport.close()

    async def _read_head(self) -> tuple[bytes, Request] | None:
        buf = self.buf
        while True:
            if buf and buf[0] in (13, 10):  # RFC 9112 2.2: ignore blank lines before a request
                i = 0
                while i < len(buf) and buf[i] in (13, 10):
                    i += 1
                del buf[:i]
                self.scan = 0
            if buf:
                end = find_head_end(buf, self.scan)
                if end > MAX_HEAD:  # arrived whole, but over Go's limit all the same
                    self._reply_error(431, "")
                    return None
                if end >= 0:
                    self.head_timer.stop()
                    raw = bytes(buf[:end])
                    del buf[:end]
                    self.scan = 0
                    cache = self.server.requests
                    got = cache.get(raw)
                    if got is not None:
                        req = got
                    else:
                        try:
                            req = parse_request_head(raw)
                        except HttpError as exc:
                            log.debug("bad request from %s:%d: %s", *self.peer, exc)
                            self._reply_error(exc.status, str(exc))
                            return None
                        if len(raw) <= _CACHE_HEAD:
                            if len(cache) >= _CACHE_ENTRIES:
                                cache.clear()
                            cache[raw] = req
                    # Reading goes on: data_received pauses it if more comes during the
                    # exchange (a pause and resume per request cost two epoll_ctl calls).
                    self.req = req
                    self.req_raw = raw
                    return raw, req
                if len(buf) > MAX_HEAD:
                    self._reply_error(431, "")
                    return None
                self.scan = max(0, len(buf) - 3)
                if not self.head_timer.running:
                    self.head_timer.start(self.server.head_timeout)
            if self.eof or self.lost:
                return None
            self.resume("busy")
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def _reply_error(self, status: int, detail: str) -> None:
        """Answer a request we cannot read, then close the way Go's closeWriteAndWait does.

        A plain close with unread bytes in the kernel buffer would send RST and could destroy
        the answer before the client reads it: send FIN, discard input briefly, then close.
        """
        body = f"{status} {REASONS.get(status, '')}" + (f": {detail}" if detail else "")
        self._write(simple_response(status, body.encode("latin-1", "replace"), close=True))
        t = self.transport
        if t is None or self.lost:
            return
        self.lingering = True
        self.buf.clear()
        self.pauses.clear()
        t.resume_reading()
        if t.can_write_eof():
            t.write_eof()
        asyncio.get_running_loop().call_later(LINGER, t.close)

    def _reply(self, req: Request, data: bytes, *, close: bool) -> bool:
        """Send a response frps made; returns whether the connection stays open."""
        if req.method == "HEAD":
            data = data[: data.index(b"\r\n\r\n") + 4]
        self._write(data)
        return not close

    def _can_keep(self, req: Request) -> bool:
        """Whether the connection can carry another request after a response frps made."""
        return req.keep_alive and req.minor >= 1 and req.framing is Framing.NONE and not self.eof

    async def _serve(self, raw: bytes, req: Request) -> bool:
        try:
            return await self._serve_one(raw, req)
        finally:
            self.req = None

    async def _serve_one(self, raw: bytes, req: Request) -> bool:
        host = canonical_host(req.host)
        user = route_user(req)
        found = self.server.router.lookup(host, req.path, user)
        route = found.payload if found is not None else None
        if isinstance(route, Elsewhere):
            self._send_to_worker(route.pick(), raw)
            return False
        if route is not None and not auth_ok(req, route):
            keep = self._can_keep(req)
            if req.url_host:
                challenge = [("Proxy-Authenticate", 'Basic realm="Restricted"')]
                resp = simple_response(
                    407, b"Proxy Authentication Required\n", headers=challenge, close=not keep
                )
            else:
                challenge = [("Www-Authenticate", 'Basic realm="Restricted"')]
                resp = simple_response(401, b"Unauthorized\n", headers=challenge, close=not keep)
            return self._reply(req, resp, close=not keep)
        if route is None:
            log.warning(
                "do http proxy request [host: %s] error: no route found: %s %s %s",
                req.host, host, req.path, user,
            )  # fmt: skip
            if req.method == "CONNECT":
                page = simple_response(
                    404,
                    self.server.not_found_page(),
                    content_type="text/html",
                    headers=[("Server", f"frp/{FRP_VERSION}")],
                    close=True,
                )
                return self._reply(req, page, close=True)
            keep = self._can_keep(req)
            page = simple_response(
                404,
                self.server.not_found_page(),
                content_type="text/html; charset=utf-8",
                close=not keep,
            )
            return self._reply(req, page, close=not keep)
        assert found is not None
        log.debug(
            "get new http request host [%s] path [%s] httpuser [%s] -> [%s]",
            host, req.path, user, route.opener.name,
        )  # fmt: skip
        if req.method == "CONNECT":
            await self._connect(raw, route)
            return False
        return await self._proxy(req, route)

    def _send_to_worker(self, worker: int, raw: bytes) -> None:
        """The route is another worker's: the connection goes there, this request first."""
        transport, self.transport = self.transport, None
        self.server._conns.discard(self)
        hand_over = self.server.hand_over
        if transport is None or hand_over is None or self.lost:
            return
        self.lost = True  # this protocol is done with it
        hand_over(worker, transport, raw + bytes(self.buf))

    async def _connect(self, raw: bytes, route: HttpRoute) -> None:
        """CONNECT: the request goes to a fresh work connection as it is, then a plain splice."""
        opened = await route.opener.open_work_conn(self.peer)
        if opened is None or self.lost or self.transport is None:
            if opened is not None:
                opened.transport.close()
            self._reply_error(502, "")
            return
        self.head_timer.stop()
        up = opened.transport
        up.write(raw)
        rest = bytes(self.buf)
        self.buf.clear()
        self.pauses.clear()
        route.opener.conn_opened()
        counts = (0, 0)
        try:
            counts = await splice(
                self.transport, up, a_pending=rest, b_pending=opened.pending, b_ended=opened.ended
            )
        finally:
            route.opener.conn_closed(len(raw) + counts[0], counts[1])

    async def _proxy(self, req: Request, route: HttpRoute) -> bool:
        replayable = req.framing is Framing.NONE and (
            req.method in _IDEMPOTENT
            or req.get("idempotency-key") is not None
            or req.get("x-idempotency-key") is not None
        )
        for attempt in range(2):
            up = await self.server.acquire(route, self.peer)
            if self.lost:
                if up is not None:
                    self.server.release(up)
                return False
            if up is None:
                log.warning(
                    "do http proxy request [host: %s] error: no work connection for [%s]",
                    req.host, route.opener.name,
                )  # fmt: skip
                keep = self._can_keep(req)
                return self._reply(req, self._gateway_error(502, close=not keep), close=not keep)
            reused = up.reused
            outcome = await self._exchange(req, up)
            if (
                outcome is _Outcome.FAILED
                and reused
                and replayable
                and not self.got_bytes
                and attempt == 0
                and not self.lost
            ):
                self._detach()
                up.close()
                log.debug("reused upstream of [%s] was closed, retrying", route.opener.name)
                continue
            return await self._after(req, up, outcome)
        raise AssertionError("unreachable")

    def _gateway_error(self, status: int, *, close: bool) -> bytes:
        if status == 504:  # frp writes the bare status
            return simple_response(504, close=close)
        # frp's ErrorHandler: any other failure of the upstream is its 404 page.
        page = self.server.not_found_page()
        return simple_response(404, page, content_type="text/html; charset=utf-8", close=close)

    async def _after(self, req: Request, up: _Upstream, outcome: _Outcome) -> bool:
        body_done = self.body is None or self.body.done
        self._detach()
        if outcome is _Outcome.DONE:
            if self.reusable and body_done:
                self.server.release(up)
            else:
                up.close()
            return not (self.close_after or self.eof or not body_done)
        if outcome is _Outcome.UPGRADE:
            assert self.transport is not None
            rest = bytes(self.buf)
            self.buf.clear()
            self.pauses.clear()
            try:
                sent, received = await splice(
                    self.transport,
                    up.transport,
                    a_pending=rest,
                    b_pending=self.upgrade_pending,
                    a_ended=self.eof,
                )
                up.sent += sent
                up.received += received
            finally:
                up._uncount()
            return False
        up.close()
        if outcome is _Outcome.ABORT or self.resp is not None or self.lost:
            return False
        status = 504 if outcome is _Outcome.TIMEOUT else 502
        what = "timeout awaiting response headers" if status == 504 else "upstream failed"
        log.warning(
            "do http proxy request [host: %s] error: %s ([%s])",
            req.host,
            what,
            up.route.opener.name,
        )
        keep = body_done and req.keep_alive and req.minor >= 1 and not self.eof
        return self._reply(req, self._gateway_error(status, close=not keep), close=not keep)

    async def _exchange(self, req: Request, up: _Upstream) -> _Outcome:
        loop = asyncio.get_running_loop()
        self.up = up
        up.client = self
        self.resp_buf.clear()
        self.resp_scan = 0
        self.resp = None
        self.resp_body = None
        self.got_bytes = False
        self.close_after = False
        self.reusable = False
        self.upgrade_pending = b""
        exchange: asyncio.Future[_Outcome] = loop.create_future()
        self.exchange = exchange
        if self.write_paused:
            up.transport.pause_reading()
        route = up.route
        ip = self.peer[0] if route.forwarded else None
        raw = self.req_raw
        heads = route.upstream_heads
        head = heads.get((raw, ip))
        if head is None:
            head = upstream_request_head(
                req, ip, rewrite_host=route.rewrite_host, set_headers=route.headers
            )
            if len(raw) <= _CACHE_HEAD:
                if len(heads) >= _CACHE_ENTRIES:
                    heads.clear()
                heads[(raw, ip)] = head
        up.write(head)
        if req.framing is Framing.NONE:
            self.body = None
            self._request_sent()
        else:
            self.body = BodyFramer(req.framing, req.length)
            pending = bytes(self.buf)
            self.buf.clear()
            if pending:
                self._forward_body(pending)
            if self.body is not None and not self.body.done and not exchange.done():
                if self.eof:
                    self._finish(_Outcome.ABORT)
                else:
                    self.resume("busy")
        if up.early and not exchange.done():
            early, up.early = up.early, b""
            self.upstream_data(up, early)
        if up.closed and not exchange.done():
            self.upstream_closed(up)
        return await exchange

    def _detach(self) -> None:
        self.resp_timer.stop()
        if self.up is not None:
            self.up.client = None
            if self.write_paused:
                self.up.transport.resume_reading()
        self.up = None
        self.resume("upstream")
        self.exchange = None

    def _finish(self, outcome: _Outcome) -> None:
        ex = self.exchange
        if ex is not None and not ex.done():
            ex.set_result(outcome)

    # -- request body: client -> upstream
    def _forward_body(self, data: bytes) -> None:
        body, up = self.body, self.up
        if body is None or up is None or self.exchange is None:
            return  # the exchange already ended; the connection is closing
        try:
            n = body.feed(data)
        except HttpError as exc:
            log.debug("bad request body from %s:%d: %s", *self.peer, exc)
            self._finish(_Outcome.ABORT)
            return
        if n == len(data):
            up.write(data)
        elif n:
            up.write(memoryview(data)[:n])
        if body.done:
            if n < len(data):
                self.buf += memoryview(data)[n:]
                self.pause("busy")
            self._request_sent()

    def _request_sent(self) -> None:
        if self.resp is None and not self.resp_timer.running:
            self.resp_timer.start(self.server.response_timeout)
        if self.resp_body is not None and self.resp_body.done:
            self._response_done()

    def _response_timeout(self) -> None:
        if self.resp is None:
            self._finish(_Outcome.TIMEOUT)

    # -- response: upstream -> client
    def upstream_data(self, up: _Upstream, data: bytes) -> None:
        if up is not self.up or self.exchange is None or self.exchange.done():
            up.close()
            return
        # A small response is usually one chunk: its rewritten head and its body leave in one
        # send rather than two.
        self.corked = []
        try:
            self._upstream_data(up, data)
        finally:
            out, self.corked = self.corked, None
            if out and self.transport is not None:
                if len(out) == 1:
                    self.transport.write(out[0])
                elif sum(map(len, out)) <= _JOIN_AT:
                    self.transport.write(b"".join(out))
                else:  # not writelines: uvloop defers it to the next loop pass
                    for chunk in out:
                        self.transport.write(chunk)

    def _upstream_data(self, up: _Upstream, data: bytes) -> None:
        self.got_bytes = True
        if self.resp_body is not None:
            self._response_body(data)
            return
        rb = self.resp_buf
        rb += data
        while True:
            end = find_head_end(rb, self.resp_scan)
            if end < 0:
                if len(rb) > MAX_RESPONSE_HEAD:
                    log.warning("response head from [%s] too large", up.route.opener.name)
                    self._finish(_Outcome.FAILED)
                else:
                    self.resp_scan = max(0, len(rb) - 3)
                return
            raw = bytes(rb[:end])
            del rb[:end]
            self.resp_scan = 0
            step = self._response_head(up, raw)
            if step is _Step.STOP:
                return
            if step is _Step.BODY:
                break
        if rb:
            rest = bytes(rb)
            rb.clear()
            self._response_body(rest)

    def _response_head(self, up: _Upstream, raw: bytes) -> _Step:
        """Handle one response head: another head follows (1xx), the body, or nothing."""
        req = self.req
        assert req is not None
        route = up.route
        key = (raw, req.method == "HEAD")  # the one way the request changes the parse
        cached = route.responses.get(key)
        if cached is not None:
            resp, client_heads = cached
        else:
            try:
                resp = parse_response_head(raw, req.method)
            except HttpError as exc:
                log.warning("bad response from [%s]: %s", route.opener.name, exc)
                self._finish(_Outcome.FAILED)
                return _Step.STOP
            client_heads = {}
            if len(raw) <= _CACHE_HEAD:
                if len(route.responses) >= _CACHE_ENTRIES:
                    route.responses.clear()
                route.responses[key] = (resp, client_heads)
        self.resp_timer.stop()
        if resp.status == 101:
            if not req.upgrade or resp.upgrade.lower() != req.upgrade.lower():
                log.warning(
                    "backend [%s] tried to switch protocol %r when %r was requested",
                    up.route.opener.name, resp.upgrade, req.upgrade,
                )  # fmt: skip
                self._finish(_Outcome.FAILED)
                return _Step.STOP
            self.resp = resp
            self._write(client_response_head(resp, chunked_to_client=False, close=False))
            self.upgrade_pending = bytes(self.resp_buf)
            self.resp_buf.clear()
            self._finish(_Outcome.UPGRADE)
            return _Step.STOP
        if resp.status < 200:  # 1xx: forward (not to HTTP/1.0 clients) and wait for more
            if req.minor >= 1:
                self._write(client_response_head(resp, chunked_to_client=False, close=False))
            if self.body is None or self.body.done:
                self.resp_timer.start(self.server.response_timeout)
            return _Step.HEAD
        self.resp = resp
        http10 = req.minor == 0
        decode = http10 and resp.framing is Framing.CHUNKED
        self.close_after = (
            http10
            or not req.keep_alive
            or resp.framing is Framing.UNTIL_CLOSE
            or self.eof
            or (self.body is not None and not self.body.done)
        )
        self.reusable = resp.keep_alive and resp.framing is not Framing.UNTIL_CLOSE
        variant = (not decode, self.close_after)
        head = client_heads.get(variant)
        if head is None:
            head = client_heads[variant] = client_response_head(
                resp,
                chunked_to_client=not decode,
                close=self.close_after,
                set_headers=route.response_headers,
            )
        self._write(head)
        self.resp_body = BodyFramer(resp.framing, resp.length, sink=self._write if decode else None)
        if self.resp_body.done:
            self._response_done()
        return _Step.BODY

    def _response_body(self, data: bytes) -> None:
        rb = self.resp_body
        assert rb is not None
        try:
            n = rb.feed(data)
        except HttpError as exc:
            log.warning("bad response body: %s", exc)
            self._finish(_Outcome.ABORT)
            return
        if not rb.decoding:
            if n == len(data):
                self._write(data)
            elif n:
                self._write(memoryview(data)[:n])
        if n < len(data):
            self.reusable = False  # bytes after the response: the upstream is confused
        if rb.done:
            self._response_done()

    def _response_done(self) -> None:
        rb = self.resp_body
        if rb is not None and rb.decoding:  # decoded for HTTP/1.0: end by closing
            self.close_after = True
        self._finish(_Outcome.DONE)

    def upstream_closed(self, up: _Upstream) -> None:
        if up is not self.up:
            return
        self.reusable = False
        rb = self.resp_body
        if rb is not None and rb.done:
            return  # the response was complete: its upstream going away is no reason to close
        if rb is None:
            self._finish(_Outcome.FAILED)
        elif rb.eof():
            self.close_after = True
            self._response_done()
        else:
            self._finish(_Outcome.ABORT)
