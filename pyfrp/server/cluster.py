"""A pyfrps worker's side of the cluster (``pyfrp.workers`` > 1; server/supervisor.py starts
the workers and brokers between them).

Every worker accepts on its own socket of each shared port (SO_REUSEPORT). A client belongs to
the worker that took its login: its control, its proxies and their listeners live there, and
with tcp_mux every stream of it too. What arrives elsewhere is handed to the owner: a work or
visitor connection that lands on another worker (tcp_mux off), a vhost request for another
worker's route. A bare TCP socket goes whole, with the bytes already read from it (SCM_RIGHTS);
a connection that cannot leave its process (TLS state, a yamux stream) is bridged: a
socketpair's far end goes to the owner and this worker copies between the two, so the TLS work
stays where it was.

Names that must be unique across the relay (run ids, proxy names, remote ports, vhost routes)
are claimed from the supervisor, which holds the one table.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pyfrp.net.fdlink import FdLink
from pyfrp.net.handover import hand_over
from pyfrp.proto.msg import Message, NatHoleReport, NatHoleResp, NatHoleVisitor
from pyfrp.server.nathole import NatHoleController
from pyfrp.server.ports import PortError
from pyfrp.vhost.router import canonical_domain

log = logging.getLogger(__name__)

Adopt = Callable[[str, dict[str, Any], socket.socket, bytes, bool], Awaitable[None]]


def route_key(kind: str, domain: str, location: str, user: str) -> str:
    """How a vhost route (http, https or tcpmux) is named in the supervisor's table."""
    return "\n".join((kind, canonical_domain(domain), location, user))


def parse_route_key(key: str) -> tuple[str, str, str, str]:
    kind, domain, location, user = key.split("\n", 3)
    return kind, domain, location, user


class NatHoleRelay:
    """xtcp across workers: a visitor's NatHoleVisitor that arrives on a worker without the
    proxy goes to the worker that has it, whose controller runs the session (the proxy's frpc
    sends its NatHoleClient there) and whose answers come back to the visitor's control; the
    visitor's NatHoleReport follows its session."""

    ANSWER_WAIT = 30.0  # seconds a relayed request waits for its answer (frps's own wait is 10)
    SID_KEPT = 120.0  # seconds a session's worker is remembered for its report

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._answers: dict[str, tuple[Callable[[Message], None], asyncio.Future[None]]] = {}
        self._sids: dict[str, tuple[int, float]] = {}  # sid -> (worker, until)
        self._tokens = itertools.count(1)

    async def visitor(self, m: NatHoleVisitor, send: Callable[[Message], None], user: str) -> bool:
        try:
            owner = await self.cluster.owner("proxy", m.proxy_name)
        except ClusterError as exc:  # answered here: "doesn't exist"
            log.warning("xtcp visitor for [%s]: %s", m.proxy_name, exc)
            return False
        if owner is None or owner == self.cluster.index:
            return False
        token = f"{self.cluster.index}.{next(self._tokens)}"
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answers[token] = (send, done)
        try:
            self.cluster.relay(owner, "xtcp_visitor", token=token, user=user, msg=m.to_json())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ANSWER_WAIT):
                    await done
        finally:
            self._answers.pop(token, None)
        return True

    def report(self, m: NatHoleReport) -> bool:
        held = self._sids.get(m.sid)
        if held is None:
            return False
        self.cluster.relay(held[0], "xtcp_report", msg=m.to_json())
        return True

    def received(self, msg: dict[str, Any], controller: NatHoleController) -> None:
        """A relayed xtcp message: a request to answer here, or an answer to pass on."""
        kind = msg.get("kind")
        if kind == "xtcp_visitor":
            back, token = int(msg["from"]), str(msg["token"])

            def answer(resp: Message) -> None:
                self.cluster.relay(back, "xtcp_answer", token=token, msg=resp.to_json())

            request = NatHoleVisitor.from_json(msg["msg"])
            task = controller.handle_visitor(request, answer, str(msg["user"]), relayed=True)
            self.cluster.spawn(task)
        elif kind == "xtcp_answer":
            resp = NatHoleResp.from_json(msg["msg"])
            waiting = self._answers.get(str(msg["token"]))
            if resp.sid:
                now = time.monotonic()
                self._sids = {k: v for k, v in self._sids.items() if v[1] > now}
                self._sids[resp.sid] = (int(msg["from"]), now + self.SID_KEPT)
            if waiting is not None:
                send, done = waiting
                try:
                    send(resp)
                except (ConnectionError, OSError) as exc:
                    log.debug("send NatHoleResp error: %s", exc)
                if not done.done():
                    done.set_result(None)
        elif kind == "xtcp_report":
            controller.handle_report(NatHoleReport.from_json(msg["msg"]))
        else:
            log.warning("worker %d: unexpected relayed message %s", self.cluster.index, kind)


class ClusterError(Exception):
    """The supervisor is gone or did not answer."""


class Cluster:
    """One worker's link to the supervisor: claims, look-ups and hand-overs."""

    def __init__(self, index: int, count: int, sock: socket.socket) -> None:
        self.index = index
        self.count = count
        self._sock = sock
        self._link: FdLink | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # set by the server: what to do with a connection handed to us, a run id another worker
        # took over, a reload asked of every worker
        self.adopt: Adopt | None = None
        self.drop_run: Callable[[str], Awaitable[None]] | None = None
        self.reload: Callable[[], object] | None = None
        self.on_route: Callable[[dict[str, Any]], None] | None = None
        self.on_relay: Callable[[dict[str, Any], bytes], None] | None = None
        # once the worker serves: how it stops when the supervisor is gone (before: the loop)
        self.on_lost: Callable[[], None] | None = None
        self.lost = False

    def start(self) -> None:
        self._link = FdLink(self._sock, self._received, self._lost)

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
        for t in list(self._tasks):
            t.cancel()

    def _lost(self) -> None:
        self.lost = True
        log.error("worker %d: lost the supervisor, exiting", self.index)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ClusterError("supervisor gone"))
        if self.on_lost is not None:
            self.on_lost()
        else:
            asyncio.get_running_loop().stop()

    # -- requests to the supervisor
    def send(self, msg: dict[str, Any], data: bytes = b"", fds: tuple[int, ...] = ()) -> None:
        if self._link is None:
            raise ClusterError("cluster link not started")
        self._link.send(msg, data, fds)

    def relay(self, to: int, kind: str, data: bytes = b"", **fields: Any) -> None:
        """A message of ``kind`` for worker ``to`` (the supervisor passes it on), signed with
        this worker's index."""
        self.send({"op": "relay", "to": to, "kind": kind, "from": self.index, **fields}, data)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            self.send({"op": op, "id": rid, **fields})
            async with asyncio.timeout(30):
                return await fut
        except TimeoutError:
            raise ClusterError(f"the supervisor did not answer {op}") from None
        finally:
            self._waiting.pop(rid, None)

    async def claim_run(self, run_id: str, user: str) -> None:
        """Own ``run_id`` from now on; another worker's control with it is closed first."""
        await self.request("claim_run", run_id=run_id, user=user)

    def release_run(self, run_id: str) -> None:
        self.send({"op": "release_run", "run_id": run_id})

    async def run_owner(self, run_id: str) -> tuple[int, str] | None:
        """The worker holding ``run_id``'s control and its user, or None."""
        answer = await self.request("whois", kind="run", key=run_id)
        owner = answer.get("owner")
        return None if owner is None else (int(owner), str(answer.get("user", "")))

    async def claim(self, kind: str, key: str) -> int | None:
        """Claim a unique ``key`` of ``kind`` (a proxy name, a vhost route) for this worker;
        returns None, or the worker that already holds it (this one, too)."""
        answer = await self.request("claim", kind=kind, key=key)
        holder = answer.get("holder")
        return None if holder is None else int(holder)

    def release(self, kind: str, key: str) -> None:
        self.send({"op": "release", "kind": kind, "key": key})

    async def owner(self, kind: str, key: str) -> int | None:
        answer = await self.request("whois", kind=kind, key=key)
        owner = answer.get("owner")
        return None if owner is None else int(owner)

    async def group_join(
        self, where: str, name: str, key: str, params: int | None, claim: tuple[str, str]
    ) -> int:
        """Add a member to a load-balancing group shared across workers (``claim``: the port or
        route it keeps from others, "" while unknown). Returns the group's port as far as
        known (tcp; 0: this member picks it); raises PortError with frp's text."""
        for _ in range(250):  # while the first member binds a random port: at most ~5 s
            answer = await self.request(
                "group_join", where=where, name=name, key=key, params=params,
                claim_kind=claim[0], claim_key=claim[1],
            )  # fmt: skip
            if not answer.get("retry"):
                if answer.get("error"):
                    raise PortError(str(answer["error"]))
                return int(answer.get("port") or 0)
            await asyncio.sleep(0.02)
        raise ClusterError(f"group {name} got no port from its first member")

    def group_port(self, where: str, port: int) -> None:
        """The first member of group ``where`` bound ``port``: the others share it."""
        self.send({"op": "group_port", "where": where, "port": port})

    def group_leave(self, where: str) -> None:
        self.send({"op": "group_leave", "where": where})

    def reload_all(self) -> None:
        """Ask every other worker to reload too (this one already has)."""
        self.send({"op": "reload_others"})

    # -- hand-overs
    def hand_over(
        self,
        to: int,
        kind: str,
        meta: dict[str, Any],
        transport: asyncio.Transport,
        pending: bytes,
        ended: bool,
    ) -> None:
        """Give a connection (and the bytes already read from it) to worker ``to``."""
        fd, pending, ended = hand_over(transport, pending, ended)
        msg = {"op": "conn", "to": to, "kind": kind, "meta": meta, "ended": ended}
        self.send(msg, pending, (fd,))

    def _received(self, msg: dict[str, Any], data: bytes, fds: list[int]) -> None:
        op = msg["op"]
        if op == "reply":
            fut = self._waiting.get(int(msg.get("id", 0)))
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if op == "conn" and fds and self.adopt is not None:
            sock = socket.socket(fileno=fds[0])
            coro = self.adopt(
                str(msg.get("kind")), dict(msg.get("meta") or {}), sock, data, bool(msg["ended"])
            )
            self.spawn(coro)
            return
        for fd in fds:  # nothing else carries descriptors
            socket.socket(fileno=fd).close()
        if op == "drop_run" and self.drop_run is not None:
            self.spawn(self._drop(msg))
        elif op == "reload" and self.reload is not None:
            self.reload()
        elif op in ("route_add", "route_del", "group_route") and self.on_route is not None:
            self.on_route(msg)
        elif op == "relay" and self.on_relay is not None:
            self.on_relay(msg, data)
        else:
            log.warning("worker %d: unexpected cluster message %s", self.index, op)

    async def _drop(self, msg: dict[str, Any]) -> None:
        assert self.drop_run is not None
        await self.drop_run(str(msg["run_id"]))
        self.send({"op": "reply", "id": msg["id"]})

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
