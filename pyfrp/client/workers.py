"""pyfrpc with ``pyfrp.workers = N`` > 1: N-1 helper processes carry work connections beside
this one (a pyfrp extension; Go frpc is one process).

The control connection stays here: login, proxies, heartbeats, health checks, visitors and the
admin API. Each ReqWorkConn frps sends is answered in turn by a helper or by this process. A
helper dials frps itself, over its own connection (with tcp_mux, its own yamux session: frps
takes a NewWorkConn on any connection of any session, by run id), sends the NewWorkConn this
process filled (its auth), and splices what frps starts on it with the local service. So a
client carrying many streams spreads their copying, TLS and yamux work over the cores. On the
wire a helper's work connections are like any of frpc's.

A work connection a helper cannot serve alone is handed here (net/handover.py): one for a proxy
whose state is this process's (udp and sudp keep one forwarder per proxy, xtcp punches holes
through the control, virtual_net owns the TUN device, a client-side bandwidth limit is one bucket
for all of a proxy's connections, an https2* plugin without a certificate file shows every user
the one self-signed certificate made here). frps names the proxy only in StartWorkConn, after
the helper has dialled.

This process tells the helpers, over a SOCK_SEQPACKET link each (proto/cluster.py), what they
need: the session (run id, and the client config to reach frps), each proxy's config, and which
proxies frps has accepted. A helper that dies is started again with all of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from pyfrp.config.model import ClientConfig, ProxyConfig
from pyfrp.net.fdlink import FdLink, link_pair
from pyfrp.proto.msg import NewWorkConn, StartWorkConn

log = logging.getLogger(__name__)

HELPER_ENV = "PYFRPC_HELPER"  # "index,link fd": set for a helper process
RESTART_PAUSE = 1.0
READY_WAIT = 20.0  # seconds a starting helper has to say it is ready
HELPER_TYPES = frozenset({"tcp", "http", "https", "tcpmux", "stcp"})

# A work connection a helper handed over: StartWorkConn, the socket, the bytes read, whether
# it ended, wire v2, and frps's address as the helper saw it.
OnConn = Callable[
    [StartWorkConn, socket.socket, bytes, bool, bool, tuple[str, int] | None],
    Coroutine[Any, Any, None],
]


def carried_by_helpers(p: ProxyConfig) -> bool:
    """Whether a helper serves this proxy's work connections itself (else it hands them here)."""
    if p.type not in HELPER_TYPES:
        return False
    plugin = str(p.plugin.get("type", "")) if p.plugin else ""
    if plugin == "virtual_net":
        return False
    if plugin.startswith("https2") and not p.plugin.get("crtPath"):
        return False  # its self-signed certificate is made per process: one for all users
    return not (p.bandwidth_limit and p.bandwidth_limit_mode != "server")


def session_config(cfg: ClientConfig) -> bytes:
    """What a helper needs of the client config (the endpoint in use), without the proxies."""
    return pickle.dumps(dataclasses.replace(cfg, proxies=[], visitors=[]))


class _Helper:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.link: FdLink | None = None
        self.ready: asyncio.Future[None] | None = None  # its loop runs: it takes work


class Workers:
    """The helper processes of one client, and what they have been told."""

    def __init__(self, count: int, on_conn: OnConn) -> None:
        self.helpers = [_Helper(i) for i in range(1, count)]
        self.on_conn = on_conn
        self._turn = 0  # round robin over [this process, *helpers]
        self._session: tuple[bytes, str] | None = None  # (session_config, run id)
        self._proxies: dict[str, bytes] = {}  # name -> pickled ProxyConfig
        self._running: set[str] = set()
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Start every helper; OSError when one cannot be."""
        for h in self.helpers:
            await self._spawn(h)
        await asyncio.gather(*(self._ready(h) for h in self.helpers))

    async def _ready(self, h: _Helper) -> None:
        """Wait for a started helper to say it takes work; OSError if it does not in time."""
        assert h.ready is not None
        assert h.proc is not None
        try:
            async with asyncio.timeout(READY_WAIT):
                await asyncio.shield(h.ready)
        except TimeoutError:
            raise OSError(f"pyfrpc worker {h.index} not ready in {READY_WAIT:.0f} s") from None
        log.info("pyfrpc worker %d started, pid %d", h.index, h.proc.pid)

    async def _spawn(self, h: _Helper) -> None:
        mine, theirs = link_pair()
        env = dict(os.environ)
        env[HELPER_ENV] = f"{h.index},{theirs.fileno()}"
        try:
            h.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pyfrp.client.helper",
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=env,
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        h.ready = asyncio.get_running_loop().create_future()
        h.link = FdLink(
            mine,
            lambda msg, data, fds: self._received(h, msg, data, fds),
            lambda: self._lost(h),
        )
        if self._session is not None:  # a restart: tell it everything
            self._send(h, {"op": "session", "run_id": self._session[1]}, self._session[0])
            for data in self._proxies.values():
                self._send(h, {"op": "proxy"}, data)
            for name in self._running:
                self._send(h, {"op": "state", "name": name, "running": True})

    def _send(self, h: _Helper, msg: dict[str, Any], data: bytes = b"") -> None:
        if h.link is not None:
            h.link.send(msg, data)

    def _all(self, msg: dict[str, Any], data: bytes = b"") -> None:
        for h in self.helpers:
            self._send(h, msg, data)

    def pick(self) -> _Helper | None:
        """Who answers the next ReqWorkConn: a helper, or None for this process."""
        for _ in range(len(self.helpers) + 1):
            self._turn = (self._turn + 1) % (len(self.helpers) + 1)
            if self._turn == 0:
                return None
            h = self.helpers[self._turn - 1]
            if h.link is not None and h.ready is not None and h.ready.done():
                return h
        return None

    def work(self, h: _Helper, msg: NewWorkConn) -> None:
        self._send(h, {"op": "work", "msg": msg.to_json()})

    def session(self, cfg: ClientConfig, run_id: str, proxies: list[ProxyConfig]) -> None:
        """A login succeeded: helpers reach frps as ``cfg`` says, for ``run_id``."""
        self._session = (session_config(cfg), run_id)
        self._running.clear()
        self._proxies = {}
        self._all({"op": "session", "run_id": run_id}, self._session[0])
        for p in proxies:
            self.proxy(p)

    def end(self) -> None:
        """The session ended: helpers drop its work connections, as this process does."""
        self._session = None
        self._proxies.clear()
        self._running.clear()
        self._all({"op": "end"})

    def proxy(self, p: ProxyConfig) -> None:
        data = pickle.dumps(p)
        self._proxies[p.name] = data
        self._running.discard(p.name)
        self._all({"op": "proxy"}, data)

    def drop(self, name: str) -> None:
        self._proxies.pop(name, None)
        self._running.discard(name)
        self._all({"op": "drop", "name": name})

    def state(self, name: str, running: bool) -> None:
        if running:
            self._running.add(name)
        else:
            self._running.discard(name)
        self._all({"op": "state", "name": name, "running": running})

    def _received(self, h: _Helper, msg: dict[str, Any], data: bytes, fds: list[int]) -> None:
        socks = [socket.socket(fileno=fd) for fd in fds]
        if msg.get("op") == "ready" and not socks and h.ready is not None:
            if not h.ready.done():
                h.ready.set_result(None)
            return
        if msg.get("op") != "conn" or len(socks) != 1:
            log.warning("pyfrpc worker %d: unexpected message %s", h.index, msg.get("op"))
            for s in socks:
                s.close()
            return
        start = StartWorkConn.from_json(msg["start"])
        peer = msg.get("peer")
        remote = (str(peer[0]), int(peer[1])) if peer else None
        coro = self.on_conn(start, socks[0], data, bool(msg["ended"]), bool(msg["v2"]), remote)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lost(self, h: _Helper) -> None:
        h.link = None
        if h.ready is not None and not h.ready.done():
            h.ready.set_exception(OSError(f"pyfrpc worker {h.index} exited while starting"))
            h.ready.exception()  # start() may be waiting for it; a restart's is not awaited
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._restart(h))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart(self, h: _Helper) -> None:
        code = await h.proc.wait() if h.proc is not None else None
        log.warning("pyfrpc worker %d exited with code %s; starting it again", h.index, code)
        await asyncio.sleep(RESTART_PAUSE)
        if self._closing:
            return
        try:
            await self._spawn(h)
            await self._ready(h)
        except OSError as exc:
            log.error("pyfrpc worker %d cannot start: %s", h.index, exc)
            if h.proc is not None and h.proc.returncode is None:
                h.proc.kill()  # its link ends: it is started again

    async def close(self) -> None:
        """Stop the helpers: a helper ends when its link does."""
        self._closing = True
        for t in list(self._tasks):
            t.cancel()
        for h in self.helpers:
            if h.link is not None:
                h.link.close()
                h.link = None
        for h in self.helpers:
            if h.proc is None or h.proc.returncode is not None:
                continue
            try:
                await asyncio.wait_for(h.proc.wait(), 5)
            except TimeoutError:
                h.proc.kill()
                await h.proc.wait()
