"""pyfrps with ``pyfrp.workers = N`` > 1: N worker processes share the relay's listening
sockets, and this process (the supervisor) holds the tables that must be one for the whole
relay and brokers between the workers (a pyfrp extension; server/cluster.py is a worker's side).

The supervisor binds bind_port and the vhost ports, one SO_REUSEPORT socket per worker each (the
kernel spreads new connections over them by their addresses, where one shared socket goes to
whichever worker wakes first: in practice mostly one), then starts each worker as
``python -m pyfrp.server`` with the same command line, its listening sockets and one end of a
SOCK_SEQPACKET pair inherited. The supervisor keeps every socket open, so connections queued for
a worker that died wait for its restart instead of being refused. A worker that dies is started
again; the clients it held reconnect, as they would to a restarted frps. SIGHUP reloads every
worker; SIGINT/SIGTERM stop them all.

The tables: which worker holds each run id (and its user: a visitor's allow list checks it),
each proxy name, remote port and vhost route, and the load-balancing groups with members on
several workers (every worker with members listens on a tcp group's port, SO_REUSEPORT, and
serves a route group's requests; the others hand those to one of them). A claim is answered in
the order the supervisor reads the claims, so two workers never both win a name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyfrp.config.model import ServerConfig
from pyfrp.net.bind import bind_socket
from pyfrp.net.fdlink import FdLink, link_pair
from pyfrp.net.steer import steer_by_source
from pyfrp.server.groups import AUTH_FAILED, DIFFERENT_PORT, PARAMS_INVALID

log = logging.getLogger(__name__)

WORKER_ENV = "PYFRP_WORKER"  # "index,count,link fd[,role=fd...]": set for a worker process
RESTART_PAUSE = 1.0


def listening_roles(cfg: ServerConfig) -> dict[str, int]:
    """The TCP listeners every worker shares, by role, with the port each is bound to."""
    shared = cfg.effective_proxy_bind_addr == cfg.bind_addr
    vhosts = (("http", cfg.vhost_http_port), ("https", cfg.vhost_https_port))
    roles = {"bind": cfg.bind_port}
    roles.update((r, p) for r, p in vhosts if p > 0 and not (shared and p == cfg.bind_port))
    if cfg.tcpmux_httpconnect_port > 0:
        roles["tcpmux"] = cfg.tcpmux_httpconnect_port
    return roles


# (index, count, link to the supervisor, inherited listeners by role)
Worker = tuple[int, int, socket.socket, dict[str, socket.socket]]


def worker_env() -> Worker | None:
    """In a worker: (index, count, link to the supervisor, inherited listeners by role)."""
    raw = os.environ.pop(WORKER_ENV, "")
    if not raw:
        return None
    index, count, link, *roles = raw.split(",")
    listeners = {}
    for item in roles:
        role, fd = item.split("=")
        listeners[role] = socket.socket(fileno=int(fd))
    return int(index), int(count), socket.socket(fileno=int(link)), listeners


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    link: FdLink | None = None
    started: float = 0.0
    ready: bool = False  # has started serving once


GROUP_HELD = -1  # the holder of a port or route a load-balancing group shares


@dataclass
class _Group:
    """A load-balancing group with members on one or more workers: what every member must
    agree on (server/groups.py checks the same within one worker), who has members, and the
    port or route it keeps from proxies outside it."""

    name: str
    key: str
    params: Any  # tcp: the remote port asked for
    claim: tuple[str, str]  # ("port", "tcp:P") or ("route", key)
    members: dict[int, int] = field(default_factory=dict)  # worker -> how many
    port: int = 0  # tcp: the real port, once known (remote_port = 0 picks one)

    def owners(self) -> list[int]:
        return sorted(self.members)


@dataclass
class _Tables:
    runs: dict[str, tuple[int, str]] = field(default_factory=dict)  # run id -> (worker, user)
    names: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, key) -> worker
    groups: dict[str, _Group] = field(default_factory=dict)

    def forget(self, index: int) -> tuple[list[tuple[str, str]], list[_Group]]:
        """Drop what a dead worker held; returns its claims and the groups it was in."""
        self.runs = {k: v for k, v in self.runs.items() if v[0] != index}
        gone = [k for k, v in self.names.items() if v == index]
        for k in gone:
            del self.names[k]
        groups = [g for g in self.groups.values() if index in g.members]
        for g in groups:
            self.leave(g, index, g.members[index])
        return gone, groups

    def join(self, where: str, msg: dict[str, Any], index: int) -> str | None:
        """Worker ``index`` adds a member to group ``where``; frp's error text, or None."""
        name, key, params = str(msg["name"]), str(msg["key"]), msg.get("params")
        group = self.groups.get(where)
        if group is None:
            claim = (str(msg["claim_kind"]), str(msg["claim_key"]))
            if claim[1] and self.names.get(claim) is not None:
                return "port already used" if claim[0] == "port" else "router config conflict"
            group = self.groups[where] = _Group(name, key, params, claim)
            if claim[1]:
                self.names[claim] = GROUP_HELD
            if isinstance(params, int) and params:
                group.port = params
        elif group.name != name:
            return PARAMS_INVALID
        elif group.params != params:
            return DIFFERENT_PORT if isinstance(params, int) else PARAMS_INVALID
        elif group.key != key:
            return AUTH_FAILED
        group.members[index] = group.members.get(index, 0) + 1
        return None

    def leave(self, group: _Group, index: int, count: int = 1) -> None:
        left = group.members.get(index, 0) - count
        if left > 0:
            group.members[index] = left
        else:
            group.members.pop(index, None)
        if not group.members:
            self.groups = {k: g for k, g in self.groups.items() if g is not group}
            if self.names.get(group.claim) == GROUP_HELD:
                del self.names[group.claim]


class Supervisor:
    def __init__(self, cfg: ServerConfig, argv: Sequence[str], count: int) -> None:
        self.cfg = cfg
        self.argv = list(argv)
        self.workers = [_Worker(i) for i in range(count)]
        self.tables = _Tables()
        self.listeners: list[dict[str, socket.socket]] = []  # by worker, by role
        self._stopping = False
        self._stop = asyncio.Event()
        self._failed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seq = 0
        self._pending: dict[int, asyncio.Future[None]] = {}

    async def run(self) -> int:
        addr = self.cfg.effective_proxy_bind_addr
        try:
            roles = {}
            for role, port in listening_roles(self.cfg).items():
                host = self.cfg.bind_addr if role == "bind" else addr
                # A plain bind first: it fails if anything holds the port, even another pyfrps
                # whose SO_REUSEPORT sockets would otherwise share it without a word.
                with bind_socket(host, port) as probe:
                    roles[role] = (host, probe.getsockname()[1])
            for _ in self.workers:
                self.listeners.append(
                    {r: bind_socket(h, p, reuse_port=True) for r, (h, p) in roles.items()}
                )
            if len(self.workers) > 1:
                try:  # a client's connections (control, work, visitor) meet at one worker
                    steer_by_source(self.listeners[0]["bind"], len(self.workers))
                except OSError as exc:
                    log.warning("bind_port connections spread by the kernel's hash: %s", exc)
            if self.cfg.web.port:
                # worker 0's alone; bound here so that it accepts (queues) from the start,
                # as frps's dashboard does, and through a restart of worker 0
                self.listeners[0]["web"] = bind_socket(self.cfg.web.addr, self.cfg.web.port)
        except OSError as exc:
            log.error("create server listener error, %s", exc)
            return 1
        loop = asyncio.get_running_loop()
        stop = self._stop
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_all)
        for w in self.workers:
            await self._start(w)
        log.info("frps supervisor: %d workers started", len(self.workers))
        await stop.wait()
        log.info("frps is stopping")
        self._stopping = True
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            if w.proc is not None:
                try:
                    async with asyncio.timeout(10):
                        await w.proc.wait()
                except TimeoutError:
                    w.proc.kill()
        return 1 if self._failed else 0

    async def _start(self, w: _Worker) -> None:
        ours, theirs = link_pair()
        own = self.listeners[w.index]
        inherited = [theirs.fileno()] + [s.fileno() for s in own.values()]
        roles = ",".join(f"{r}={s.fileno()}" for r, s in own.items())
        env = dict(os.environ)
        env[WORKER_ENV] = f"{w.index},{len(self.workers)},{theirs.fileno()},{roles}"
        w.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pyfrp.server", *self.argv,
            env=env, pass_fds=inherited, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        theirs.close()
        w.started = time.monotonic()
        w.link = FdLink(
            ours,
            lambda msg, data, fds: self._received(w, msg, data, fds),
            lambda: None,  # the process's exit says more; _watch handles it
        )
        for (kind, key), owner in self.tables.names.items():  # a restarted worker catches up
            if kind == "route" and owner != GROUP_HELD:
                w.link.send({"op": "route_add", "key": key, "owner": owner})
        for where, group in self.tables.groups.items():
            if group.claim[0] == "route":
                w.link.send({"op": "group_route", "key": where, "owners": group.owners()})
        task = asyncio.get_running_loop().create_task(self._watch(w))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("frps worker %d started, pid %d", w.index, w.proc.pid)

    async def _watch(self, w: _Worker) -> None:
        assert w.proc is not None
        code = await w.proc.wait()
        if w.link is not None:
            w.link.close()
            w.link = None
        claims, groups = self.tables.forget(w.index)
        for kind, key in claims:
            if kind == "route":
                self._broadcast({"op": "route_del", "key": key}, but=w.index)
        for group in groups:
            self._group_changed(group)
        if self._stopping:
            return
        if not w.ready:
            # it could not start (a port taken, an OIDC issuer unreachable: it said why), as
            # frps could not: the whole relay stops
            log.error("frps worker %d could not start (exit code %s): stopping", w.index, code)
            self._failed = True
            self._stop.set()
            return
        log.warning("frps worker %d exited with code %s; starting it again", w.index, code)
        if time.monotonic() - w.started < RESTART_PAUSE * 5:
            await asyncio.sleep(RESTART_PAUSE)  # a worker that cannot start must not spin
        if not self._stopping:
            await self._start(w)

    def _reload_all(self, but: int = -1) -> None:
        for w in self.workers:
            if w.index != but and w.link is not None:
                w.link.send({"op": "reload"})

    def _broadcast(self, msg: dict[str, Any], but: int) -> None:
        for w in self.workers:
            if w.index != but and w.link is not None:
                w.link.send(msg)

    def _reply(self, w: _Worker, msg: dict[str, Any], **fields: Any) -> None:
        if w.link is not None:
            w.link.send({"op": "reply", "id": msg.get("id", 0), **fields})

    def _received(self, w: _Worker, msg: dict[str, Any], data: bytes, fds: list[int]) -> None:
        op = msg["op"]
        if op in ("conn", "relay"):  # for another worker
            to = msg.get("to")
            target = (
                self.workers[to] if isinstance(to, int) and 0 <= to < len(self.workers) else None
            )
            if target is None or target.link is None:
                log.warning("%s for worker %s: no such worker; dropped", op, to)
                for fd in fds:
                    os.close(fd)
                return
            target.link.send(msg, data, fds)
            return
        for fd in fds:
            os.close(fd)
        if op == "claim_run":
            self._spawn(self._claim_run(w, msg))
        elif op == "release_run":
            held = self.tables.runs.get(str(msg["run_id"]))
            if held is not None and held[0] == w.index:
                del self.tables.runs[str(msg["run_id"])]
        elif op == "claim":
            name = (str(msg["kind"]), str(msg["key"]))
            holder = self.tables.names.get(name)
            self._reply(w, msg, holder=holder)  # the claimer's own earlier claim refuses it too
            if holder is None:
                self.tables.names[name] = w.index
                if name[0] == "route":
                    self._broadcast(
                        {"op": "route_add", "key": name[1], "owner": w.index}, but=w.index
                    )
        elif op == "release":
            name = (str(msg["kind"]), str(msg["key"]))
            if self.tables.names.get(name) == w.index:
                del self.tables.names[name]
                if name[0] == "route":
                    self._broadcast({"op": "route_del", "key": name[1]}, but=w.index)
        elif op == "started":
            w.ready = True
        elif op == "group_join":
            self._group_join(w, msg)
        elif op == "group_port":
            group = self.tables.groups.get(str(msg["where"]))
            claim = ("port", f"tcp:{int(msg['port'])}")
            if group is not None and not group.port:
                group.port = int(msg["port"])
                if self.tables.names.get(claim) is None:
                    group.claim = claim
                    self.tables.names[claim] = GROUP_HELD
        elif op == "group_leave":
            group = self.tables.groups.get(str(msg["where"]))
            if group is not None and w.index in group.members:
                self.tables.leave(group, w.index)
                self._group_changed(group)
        elif op == "whois":
            kind, key = str(msg["kind"]), str(msg["key"])
            if kind == "run":
                run = self.tables.runs.get(key)
                self._reply(w, msg, owner=run[0] if run else None, user=run[1] if run else "")
            else:
                self._reply(w, msg, owner=self.tables.names.get((kind, key)))
        elif op == "reply":
            fut = self._pending.pop(int(msg.get("id", 0)), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif op == "reload_others":
            self._reload_all(but=w.index)
        else:
            log.warning("worker %d sent an unknown cluster message %s", w.index, op)

    def _group_join(self, w: _Worker, msg: dict[str, Any]) -> None:
        where = str(msg["where"])
        group = self.tables.groups.get(where)
        if group is not None and isinstance(group.params, int) and not group.port:
            # its first member is still binding a random port: the others share that one
            self._reply(w, msg, retry=True)
            return
        error = self.tables.join(where, msg, w.index)
        group = self.tables.groups.get(where)
        self._reply(w, msg, error=error, port=group.port if group is not None else 0)
        if error is None and group is not None:
            self._group_changed(group)

    def _group_changed(self, group: _Group) -> None:
        """Every worker learns which workers serve a group's route (none: it is gone)."""
        if group.claim[0] == "route":
            self._broadcast(
                {"op": "group_route", "key": group.claim[1], "owners": group.owners()}, but=-1
            )

    async def _claim_run(self, w: _Worker, msg: dict[str, Any]) -> None:
        """A login with this run id: a control another worker holds under it goes first (frp
        closes the old control of a run id before the new one is answered)."""
        run_id = str(msg["run_id"])
        held = self.tables.runs.get(run_id)
        if held is not None and held[0] != w.index:
            old = self.workers[held[0]]
            if old.link is not None:
                self._seq += 1
                seq = self._seq
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._pending[seq] = fut
                old.link.send({"op": "drop_run", "id": seq, "run_id": run_id})
                try:
                    async with asyncio.timeout(10):
                        await fut
                except TimeoutError:
                    log.warning("worker %d did not close run id [%s] in time", old.index, run_id)
                finally:
                    self._pending.pop(seq, None)
        self.tables.runs[run_id] = (w.index, str(msg.get("user", "")))
        self._reply(w, msg)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
