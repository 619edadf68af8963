"""frps's side of xtcp (pkg/nathole/controller.go): xtcp proxies listen here by name; a visitor's
NatHoleVisitor starts a session, the proxy's frpc is told the sid over a work connection and
answers with NatHoleClient, and both get a NatHoleResp saying how to punch. frps never carries
the tunnel's bytes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pyfrp.proto import nathole
from pyfrp.proto.auth import verify_privilege_key
from pyfrp.proto.msg import (
    Message,
    NatHoleClient,
    NatHoleReport,
    NatHoleResp,
    NatHoleVisitor,
)

log = logging.getLogger("pyfrp.server.nathole")

Send = Callable[[Message], None]

NAT_HOLE_TIMEOUT = 10.0  # seconds a visitor's session waits for the proxy's NatHoleClient
SENDER_DELAY = 1.0  # the receiver's detect messages go first


class NatHoleError(Exception):
    pass


class Elsewhere(Protocol):
    """pyfrp.workers > 1: the xtcp proxies of other workers (server/cluster.py)."""

    async def visitor(self, m: NatHoleVisitor, send: Send, user: str) -> bool:
        """Hand a visitor's request to the worker that has its proxy, whose answers reach
        ``send``; False when no other worker has a proxy of that name."""
        ...

    def report(self, m: NatHoleReport) -> bool:
        """Pass a report on to the worker that has its session; False if none has."""
        ...


@dataclass(slots=True)
class _Listener:
    sk: str
    allow_users: list[str]
    on_sid: Callable[[str], None]


@dataclass(slots=True)
class _Session:
    sid: str
    visitor: NatHoleVisitor
    visitor_send: Send
    client: NatHoleClient | None = None
    client_send: Send | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    key: str = ""
    mode: int = 0
    index: int = 0


def _send(send: Send, msg: Message) -> None:
    try:
        send(msg)
    except (ConnectionError, OSError) as exc:  # that control is gone; nothing to tell it
        log.debug("send %s error: %s", type(msg).__name__, exc)


class NatHoleController:
    def __init__(self, reserve_hours: float) -> None:
        self.analyzer = nathole.Analyzer(reserve_hours * 3600)
        self.listeners: dict[str, _Listener] = {}
        self.sessions: dict[str, _Session] = {}
        self.elsewhere: Elsewhere | None = None

    def listen_client(
        self, name: str, sk: str, allow_users: list[str], on_sid: Callable[[str], None]
    ) -> None:
        if name in self.listeners:
            raise NatHoleError(f"proxy [{name}] is repeated")
        self.listeners[name] = _Listener(sk, allow_users, on_sid)

    def close_client(self, name: str) -> None:
        self.listeners.pop(name, None)

    def _allowed(self, lst: _Listener, user: str) -> bool:
        return user in lst.allow_users or "*" in lst.allow_users

    async def handle_visitor(
        self, m: NatHoleVisitor, send: Send, user: str, relayed: bool = False
    ) -> None:
        """``relayed``: another worker passed it on; it is answered here, whatever the answer."""
        lst = self.listeners.get(m.proxy_name)
        elsewhere = self.elsewhere if lst is None and not relayed else None
        if elsewhere is not None and await elsewhere.visitor(m, send, user):
            return
        if m.pre_check:
            if lst is None:
                err = f"xtcp server for [{m.proxy_name}] doesn't exist"
            elif not self._allowed(lst, user):
                err = f"xtcp visitor user [{user}] not allowed for [{m.proxy_name}]"
            else:
                err = ""
            _send(send, NatHoleResp(transaction_id=m.transaction_id, error=err))
            return
        if lst is None:
            err = f"xtcp server for [{m.proxy_name}] doesn't exist"
        elif not verify_privilege_key(lst.sk, m.timestamp, m.sign_key):
            err = f"xtcp connection of [{m.proxy_name}] auth failed"
        else:
            err = ""
        if lst is None or err:
            log.warning("handle visitorMsg error: %s", err)
            _send(send, NatHoleResp(transaction_id=m.transaction_id, error=err))
            return
        sid = nathole.new_id()
        session = _Session(sid, m, send)
        self.sessions[sid] = session
        log.debug("handle visitor message, sid [%s], server name: %s", sid, m.proxy_name)
        try:
            lst.on_sid(sid)
            try:
                async with asyncio.timeout(NAT_HOLE_TIMEOUT):
                    await session.arrived.wait()
            except TimeoutError:
                log.debug("wait for NatHoleClient message timeout, sid [%s]", sid)
                return
            assert session.client is not None
            assert session.client_send is not None
            try:
                v_resp, c_resp = self._analysis(session)
            except ValueError as exc:
                log.debug("sid [%s] analysis error: %s", sid, exc)
                v_resp = NatHoleResp(transaction_id=m.transaction_id, error=str(exc))
                c_resp = NatHoleResp(transaction_id=session.client.transaction_id, error=str(exc))
            await asyncio.gather(
                self._respond(session.visitor_send, v_resp),
                self._respond(session.client_send, c_resp),
            )
            # Reports of the punch arrive within the read timeout; keep the session for them.
            await asyncio.sleep(c_resp.detect_behavior.read_timeout / 1000 + 30)
        finally:
            self.sessions.pop(sid, None)

    @staticmethod
    async def _respond(send: Send, resp: NatHoleResp) -> None:
        if resp.detect_behavior.role == nathole.SENDER:
            await asyncio.sleep(SENDER_DELAY)
        _send(send, resp)

    def handle_client(self, m: NatHoleClient, send: Send) -> None:
        session = self.sessions.get(m.sid)
        if session is None:
            return
        log.debug("handle client message, sid [%s], server name: %s", m.sid, m.proxy_name)
        session.client = m
        session.client_send = send
        session.arrived.set()

    def handle_report(self, m: NatHoleReport) -> None:
        session = self.sessions.get(m.sid)
        if session is None:
            if self.elsewhere is not None and self.elsewhere.report(m):
                return
            log.debug(
                "sid [%s] report make hole success: %s, but session not found", m.sid, m.success
            )
            return
        if m.success:
            self.analyzer.report_success(session.key, session.mode, session.index)
        log.info(
            "sid [%s] report make hole success: %s, mode %d, index %d",
            m.sid, str(m.success).lower(), session.mode, session.index,
        )  # fmt: skip

    def _analysis(self, s: _Session) -> tuple[NatHoleResp, NatHoleResp]:
        cm, vm = s.client, s.visitor
        assert cm is not None
        try:
            cf = nathole.classify(cm.mapped_addrs, nathole.ips_of(cm.assisted_addrs))
        except ValueError as exc:
            raise ValueError(f"classify client nat feature error: {exc}") from exc
        try:
            vf = nathole.classify(vm.mapped_addrs, nathole.ips_of(vm.assisted_addrs))
        except ValueError as exc:
            raise ValueError(f"classify visitor nat feature error: {exc}") from exc
        s.key = nathole.analysis_key(vm.mapped_addrs, vf, cm.mapped_addrs, cf)
        s.mode, s.index, cb, vb = self.analyzer.recommend(s.key, cf, vf)
        timeout_ms = max(cb.send_delay_ms, vb.send_delay_ms) + 5000
        if cb.listen_random_ports > 0 or vb.listen_random_ports > 0:
            timeout_ms += 30000
        v_resp = nathole.new_response(
            vm.transaction_id, s.sid, vm.protocol, s.mode, cm.mapped_addrs, cm.assisted_addrs,
            vb, timeout_ms - vb.send_delay_ms, cf.ports_difference,
        )  # fmt: skip
        c_resp = nathole.new_response(
            cm.transaction_id, s.sid, vm.protocol, s.mode, vm.mapped_addrs, vm.assisted_addrs,
            cb, timeout_ms - cb.send_delay_ms, vf.ports_difference,
        )  # fmt: skip
        log.debug(
            "sid [%s] visitor nat: %s, candidateAddrs: %s; client nat: %s, candidateAddrs: %s, "
            "protocol: %s", s.sid, vf, vm.mapped_addrs, cf, cm.mapped_addrs, vm.protocol,
        )  # fmt: skip
        return v_resp, c_resp

    def clean(self) -> None:
        count, total = self.analyzer.clean()
        log.debug("clean %d/%d nathole analysis data", count, total)
