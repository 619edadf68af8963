"""A pyfrpc helper process (``pyfrp.workers`` > 1; client/workers.py starts it and says why):
it dials the work connections the main process gives it and serves them, or hands them back."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import socket
import sys
from typing import Any

from pyfrp.client.connector import Connector
from pyfrp.client.proxies import PROXY_TYPES
from pyfrp.client.proxies.base import ClientProxy
from pyfrp.client.workconn import dial_work_conn
from pyfrp.client.workers import HELPER_ENV, carried_by_helpers
from pyfrp.config.model import ClientConfig, ProxyConfig
from pyfrp.errors import ProtocolError
from pyfrp.log import PrefixLogger, setup_logging
from pyfrp.net import resolve
from pyfrp.net.fdlink import FdLink
from pyfrp.net.handover import hand_over
from pyfrp.net.msgconn import MessageConn
from pyfrp.proto.msg import Message, NatHoleResp, NewWorkConn, StartWorkConn

log = logging.getLogger("pyfrp.client.service")


class _NoControl:
    """Proxies served here never speak on the control connection (xtcp is handed back)."""

    def send_control(self, msg: Message) -> None:
        raise ProtocolError("a pyfrpc worker has no control connection")

    async def request(self, msg: Message, transaction_id: str, limit: float) -> NatHoleResp:
        raise ProtocolError("a pyfrpc worker has no control connection")


class Helper:
    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.cfg: ClientConfig | None = None
        self.run_id = ""
        self.log = PrefixLogger(log, "")
        self.connector: Connector | None = None
        self._opening: asyncio.Task[Connector] | None = None
        self.configs: dict[str, ProxyConfig] = {}
        self.proxies: dict[str, ClientProxy] = {}
        self.running: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.done = asyncio.Event()
        self.link = FdLink(sock, self._received, self.done.set)

    def _received(self, msg: dict[str, Any], data: bytes, fds: list[int]) -> None:
        for fd in fds:  # the main process sends none
            os.close(fd)
        op = msg["op"]
        if op == "work" and self.cfg is not None:
            self._spawn(self._work(NewWorkConn.from_json(msg["msg"])))
        elif op == "session":
            self._end()
            first = self.cfg is None and not self.run_id
            self.cfg = pickle.loads(data)
            assert self.cfg is not None
            if first:
                lc = self.cfg.log
                setup_logging(lc.to, lc.level, lc.max_days, lc.disable_color)
            resolve.set_dns_server(self.cfg.dns_server)
            self.run_id = str(msg["run_id"])
            self.log = PrefixLogger(log, self.run_id)
            self._spawn(self._warm_up())
        elif op == "end":
            self._end()
            self.cfg = None
        elif op == "proxy":
            p: ProxyConfig = pickle.loads(data)
            self._drop(p.name)
            self.configs[p.name] = p
            if carried_by_helpers(p) and self.cfg is not None:
                self.proxies[p.name] = PROXY_TYPES[p.type](p, self.cfg, self.log, _NoControl())
        elif op == "drop":
            self._drop(str(msg["name"]))
        elif op == "state":
            name = str(msg["name"])
            if msg["running"]:
                self.running.add(name)
            else:
                self.running.discard(name)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop(self, name: str) -> None:
        self.configs.pop(name, None)
        self.running.discard(name)
        proxy = self.proxies.pop(name, None)
        if proxy is not None:
            proxy.close()

    def _end(self) -> None:
        """As the main process's session ends: its work connections go with it."""
        for t in list(self._tasks):
            t.cancel()
        for name in list(self.configs):
            self._drop(name)
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        if self.connector is not None:
            self.connector.close()
            self.connector = None

    async def _connector(self) -> Connector:
        """This helper's way to frps (its own yamux session or QUIC connection), opened at the
        first work connection and again after it is lost."""
        c = self.connector
        if c is not None and not _lost(c):
            return c
        if self._opening is None:
            assert self.cfg is not None
            self._opening = asyncio.get_running_loop().create_task(_open(Connector(self.cfg)))
        opening = self._opening
        try:
            c = await asyncio.shield(opening)
        finally:
            if self._opening is opening and opening.done():
                self._opening = None
        if self.connector is not c:
            if self.connector is not None:
                self.connector.close()
            self.connector = c
        return c

    async def _warm_up(self) -> None:
        """Reach frps now, before the first work connection needs it."""
        try:
            await self._connector()
        except (OSError, ProtocolError, TimeoutError) as exc:
            self.log.debug("connect to server error: %s", exc or "timeout")

    async def _work(self, msg: NewWorkConn) -> None:
        cfg = self.cfg
        assert cfg is not None
        try:
            connector = await self._connector()
        except (OSError, ProtocolError, TimeoutError) as exc:
            self.log.warning("start new work connection error: %s", exc or "timeout")
            return
        got = await dial_work_conn(connector, cfg, msg, self.log)
        if got is None:
            return
        conn, start, name = got
        proxy = self.proxies.get(name)
        if name not in self.configs or (proxy is not None and name not in self.running):
            self.log.debug("[%s] no running proxy for work connection, closing it", name)
            conn.close()
            return
        if proxy is None:  # the main process serves this one
            self._hand_back(conn, start)
            return
        await proxy.handle_work_conn(conn, start)

    def _hand_back(self, conn: MessageConn, start: StartWorkConn) -> None:
        v2, peer = conn.v2, conn.peername
        transport, pending, ended = conn.detach()
        fd, pending, ended = hand_over(transport, pending, ended)
        msg = {"op": "conn", "start": start.to_json(), "ended": ended, "v2": v2, "peer": peer}
        self.link.send(msg, pending, (fd,))

    def close(self) -> None:
        self._end()
        self.link.close()


def _lost(c: Connector) -> bool:
    if c.session is not None:
        return c.session.is_closed
    return c.quic is not None and c.quic.terminated.is_set()


async def _open(c: Connector) -> Connector:
    try:
        await c.open()
    except BaseException:
        c.close()
        raise
    return c


async def main() -> int:
    raw = os.environ.pop(HELPER_ENV, "")
    index, fd = (int(x) for x in raw.split(","))
    helper = Helper(index, socket.socket(fileno=fd))
    helper.link.send({"op": "ready"})
    loop = asyncio.get_running_loop()
    # A terminal's Ctrl-C reaches the whole group: the main process says when to go.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_signal_handler(signal.SIGTERM, helper.done.set)
    await helper.done.wait()
    helper.close()
    return 0


def run() -> int:
    if not os.environ.get(HELPER_ENV):
        print("pyfrp.client.helper is started by pyfrpc (pyfrp.workers), not by hand")
        return 2
    from pyfrp.cli import _run

    return _run(main)


if __name__ == "__main__":
    sys.exit(run())
