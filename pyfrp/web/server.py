"""The HTTP server under frps's dashboard and frpc's admin API (pkg/util/http/server.go), on
aiohttp: basic auth as frp checks it, ``/healthz`` without auth, frp's request log lines and
its JSON error body.

frp's rules kept here: with neither user nor password set, everything is open; otherwise a wrong
or missing ``Authorization`` gets 401 with ``WWW-Authenticate: Basic realm="Restricted"`` after
a 200 ms delay (``SetAuthFailDelay``). Credentials are compared in constant time and never
logged. The address defaults to 127.0.0.1 (``WebServerConfig.Complete``).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pyfrp.config.model import WebServerConfig
from pyfrp.net.bind import bind_socket
from pyfrp.proto.auth import same_secret
from pyfrp.vhost.http import parse_basic

log = logging.getLogger("pyfrp.web")

AUTH_FAIL_DELAY = 0.2
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HTTPError(Exception):
    """An API error: frp answers ``{"Code": code, "Msg": text}`` with that status."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


def json_response(value: Any, status: int = 200) -> web.Response:
    # Go's json.Encoder: compact, a trailing newline.
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n"
    return web.Response(text=body, status=status, content_type="application/json")


def api(fn: Callable[[web.Request], Awaitable[Any]]) -> Handler:
    """frp's MakeHTTPHandlerFunc: None is an empty 200, a str is the body, anything else JSON;
    an HTTPError is ``{"Code", "Msg"}`` with its status and a warning in the log."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            result = await fn(request)
        except HTTPError as exc:
            log.warning("http response [%s]: error: %s", request.path, exc)
            return json_response({"Code": exc.code, "Msg": str(exc)}, exc.code)
        if result is None:
            return web.Response()
        if isinstance(result, str):
            return web.Response(text=result, content_type="text/plain")
        return json_response(result)

    return handler


def api_v2(fn: Callable[[web.Request], Awaitable[Any]]) -> Handler:
    """frp's MakeHTTPHandlerFuncV2: ``{"code", "msg", "data"}`` around the result or error."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            result = await fn(request)
        except HTTPError as exc:
            log.warning("http response [%s]: error: %s", request.path, exc)
            return json_response({"code": exc.code, "msg": str(exc), "data": None}, exc.code)
        return json_response({"code": 200, "msg": "success", "data": result})

    return handler


def serve_assets(app: web.Application, directory: str) -> None:
    """frp's ``assetsDir``: a UI build (frp's own, say) at /static/, / redirecting there."""
    index = os.path.join(directory, "index.html")

    async def to_static(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/static/")

    async def index_page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(index)

    async def favicon(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(os.path.join(directory, "favicon.ico"))

    app.router.add_get("/", to_static)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/static/", index_page)
    app.router.add_static("/static/", directory)


async def _pprof(request: web.Request) -> web.Response:
    """``webServer.pprofEnable``: Go's pprof has no Python counterpart; ``goroutine`` lists the
    running asyncio tasks with their stacks (what a goroutine dump is used for), anything else
    the index."""
    if request.match_info["profile"] != "goroutine":
        return web.Response(text="Types of profiles available:\ngoroutine\n")
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"task {task.get_name()} [{task.get_coro()!r}]:\n")
        task.print_stack(file=out)
        out.write("\n")
    return web.Response(text=out.getvalue())


class WebServer:
    """One listening aiohttp application; ``routes`` registers the handlers behind auth."""

    def __init__(self, cfg: WebServerConfig, routes: Callable[[web.Application], None]) -> None:
        self.cfg = cfg
        self.port = cfg.port
        self._runner: web.AppRunner | None = None
        app = web.Application(middlewares=[self._auth], client_max_size=16 * 1024 * 1024)
        app.router.add_get("/healthz", self._healthz)
        if cfg.pprof_enable:
            app.router.add_get("/debug/pprof/{profile:.*}", _pprof)
        routes(app)
        self.app = app

    @property
    def address(self) -> str:
        return f"{self.cfg.addr}:{self.port}"

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen (on ``sock`` when given: a socket bound already); raises OSError (port
        taken) or ssl.SSLError (bad certificate)."""
        cfg = self.cfg
        tls: ssl.SSLContext | None = None
        if cfg.tls_cert_file or cfg.tls_key_file:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
        if sock is None:
            sock = bind_socket(cfg.addr, cfg.port)
        self.port = sock.getsockname()[1]
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=tls).start()
        self._runner = runner

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response()

    def _authorized(self, request: web.Request) -> bool:
        cfg = self.cfg
        if not cfg.user and not cfg.password:
            return True
        got = parse_basic(request.headers.get("Authorization"))
        if got is None:
            return False
        # Both compared, always: the time taken says nothing about which one was wrong.
        user_ok = same_secret(got[0], cfg.user)
        pass_ok = same_secret(got[1], cfg.password)
        return user_ok and pass_ok

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        if not self._authorized(request):
            await asyncio.sleep(AUTH_FAIL_DELAY)
            return web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="Restricted"'},
            )
        log.info("http request: [%s]", request.path)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            log.info("http response [%s]: code [%d]", request.path, exc.status)
            raise
        log.info("http response [%s]: code [%d]", request.path, response.status)
        return response
