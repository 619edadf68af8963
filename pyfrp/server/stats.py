"""What frps counts for its dashboard and Prometheus (pkg/metrics/mem, server/registry): clients,
proxies by type, connections, and traffic per proxy per day for the last 7 days.

Like frp, a connection's bytes are added when it ends (``libio.Join`` returns the counts), a
closed proxy keeps its figures until ``DELETE /api/proxies?status=offline`` or a week offline,
and "in" is what users sent towards frpc, "out" what came back.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyfrp.proto.msg import NewProxy

RESERVE_DAYS = 7
OFFLINE_KEPT = dt.timedelta(days=7)


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()


def _iso(t: dt.datetime | None) -> str:
    return t.isoformat() if t is not None else ""


def _parse(raw: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(raw) if raw else None


def _later(a: dt.datetime | None, b: dt.datetime | None) -> bool:
    return b is None or (a is not None and a > b)


class DateCounter:
    """Counts per local day (frp metric.DateCounter)."""

    __slots__ = ("_all", "_days")

    def __init__(self) -> None:
        self._days: dict[dt.date, int] = {}
        self._all = 0

    def add(self, n: int, today: dt.date | None = None) -> None:
        self._all += n
        today = today or dt.date.today()
        self._days[today] = self._days.get(today, 0) + n
        if len(self._days) > RESERVE_DAYS:
            oldest = today - dt.timedelta(days=RESERVE_DAYS)
            self._days = {d: c for d, c in self._days.items() if d > oldest}

    def today(self) -> int:
        return self._days.get(dt.date.today(), 0)

    def last_days(self, n: int = RESERVE_DAYS, today: dt.date | None = None) -> list[int]:
        """Today first, then the days before it."""
        today = today or dt.date.today()
        return [self._days.get(today - dt.timedelta(days=i), 0) for i in range(n)]

    def total(self) -> int:
        """Since the start (Prometheus counters never go down)."""
        return self._all

    def dump(self) -> dict[str, Any]:
        return {"all": self._all, "days": {d.isoformat(): n for d, n in self._days.items()}}

    def merge(self, dumped: dict[str, Any]) -> None:
        """Add another process's counts (pyfrp.workers: the dashboard shows the sum)."""
        self._all += int(dumped["all"])
        for day, n in dumped["days"].items():
            d = dt.date.fromisoformat(day)
            self._days[d] = self._days.get(d, 0) + int(n)


@dataclass(slots=True)
class ProxyStats:
    name: str
    type: str
    user: str = ""
    client_id: str = ""
    cur_conns: int = 0
    traffic_in: DateCounter = field(default_factory=DateCounter)
    traffic_out: DateCounter = field(default_factory=DateCounter)
    last_start: dt.datetime | None = None
    last_close: dt.datetime | None = None

    @property
    def offline(self) -> bool:
        return self.last_close is not None and (
            self.last_start is None or self.last_start < self.last_close
        )


@dataclass(slots=True)
class ClientInfo:
    """One frpc as /api/clients shows it (server/registry)."""

    key: str
    user: str
    client_id: str
    run_id: str
    hostname: str
    ip: str
    version: str
    first_connected: dt.datetime
    last_connected: dt.datetime
    disconnected: dt.datetime | None = None
    online: bool = True
    wire_protocol: str = "v1"


def client_key(user: str, ident: str) -> str:
    if not user:
        return ident
    return f"{user}.{ident}" if ident else user


class Stats:
    """The server's counters; every method is O(1) (called per connection)."""

    def __init__(self) -> None:
        self.cur_conns = 0
        self.traffic_in = DateCounter()
        self.traffic_out = DateCounter()
        self.type_counts: Counter[str] = Counter()
        self.proxies: dict[str, ProxyStats] = {}
        self.clients: dict[str, ClientInfo] = {}
        self._client_by_run: dict[str, str] = {}

    # -- clients
    @property
    def client_count(self) -> int:
        return sum(c.online for c in self.clients.values())

    def client_online(
        self,
        user: str,
        client_id: str,
        run_id: str,
        hostname: str,
        ip: str,
        version: str,
        wire_protocol: str = "v1",
    ) -> None:
        key = client_key(user, client_id or run_id)
        now = _now()
        info = self.clients.get(key)
        if info is None:
            info = ClientInfo(key, user, client_id, run_id, hostname, ip, version, now, now)
            info.wire_protocol = wire_protocol
            self.clients[key] = info
        else:
            self._client_by_run.pop(info.run_id, None)
            info.run_id, info.hostname, info.ip, info.version = run_id, hostname, ip, version
            info.last_connected, info.disconnected, info.online = now, None, True
            info.wire_protocol = wire_protocol
        self._client_by_run[run_id] = key

    def client_offline(self, run_id: str) -> None:
        key = self._client_by_run.pop(run_id, None)
        info = self.clients.get(key) if key is not None else None
        if info is None or info.run_id != run_id:
            return
        if not info.client_id:  # a client without an id is known by its run id: forgotten
            del self.clients[info.key]
            return
        info.run_id, info.online, info.disconnected = "", False, _now()

    # -- proxies
    def proxy_opened(self, name: str, ptype: str, user: str, client_id: str) -> None:
        self.type_counts[ptype] += 1
        ps = self.proxies.get(name)
        if ps is None or ps.type != ptype:
            ps = self.proxies[name] = ProxyStats(name, ptype)
        ps.user, ps.client_id, ps.last_start = user, client_id, _now()

    def proxy_closed(self, name: str, ptype: str) -> None:
        if self.type_counts[ptype] > 0:
            self.type_counts[ptype] -= 1
        ps = self.proxies.get(name)
        if ps is not None:
            ps.last_close = _now()

    def conn_opened(self, name: str) -> None:
        self.cur_conns += 1
        ps = self.proxies.get(name)
        if ps is not None:
            ps.cur_conns += 1

    def conn_closed(self, name: str, bytes_in: int, bytes_out: int) -> None:
        self.cur_conns -= 1
        ps = self.proxies.get(name)
        if ps is not None:
            ps.cur_conns -= 1
        self.add_traffic(name, bytes_in, bytes_out)

    def add_traffic(self, name: str, bytes_in: int, bytes_out: int) -> None:
        today = dt.date.today()  # once: it is most of the cost
        self.traffic_in.add(bytes_in, today)
        self.traffic_out.add(bytes_out, today)
        ps = self.proxies.get(name)
        if ps is not None:
            ps.traffic_in.add(bytes_in, today)
            ps.traffic_out.add(bytes_out, today)

    # -- pyfrp.workers: each worker counts its own; the dashboard shows them merged
    def dump(self, online: Mapping[str, NewProxy]) -> dict[str, Any]:
        """This process's figures and its online proxies' NewProxy, as JSON."""
        return {
            "cur_conns": self.cur_conns,
            "in": self.traffic_in.dump(),
            "out": self.traffic_out.dump(),
            "types": dict(self.type_counts),
            "proxies": [
                {
                    "name": ps.name,
                    "type": ps.type,
                    "user": ps.user,
                    "client_id": ps.client_id,
                    "cur_conns": ps.cur_conns,
                    "in": ps.traffic_in.dump(),
                    "out": ps.traffic_out.dump(),
                    "start": _iso(ps.last_start),
                    "close": _iso(ps.last_close),
                }
                for ps in self.proxies.values()
            ],
            "clients": [
                {
                    "key": c.key,
                    "user": c.user,
                    "client_id": c.client_id,
                    "run_id": c.run_id,
                    "hostname": c.hostname,
                    "ip": c.ip,
                    "version": c.version,
                    "first": _iso(c.first_connected),
                    "last": _iso(c.last_connected),
                    "gone": _iso(c.disconnected),
                    "online": c.online,
                    "wire": c.wire_protocol,
                }
                for c in self.clients.values()
            ],
            "online": {name: msg.to_json() for name, msg in online.items()},
        }

    @classmethod
    def merged(cls, parts: Sequence[dict[str, Any]]) -> tuple[Stats, dict[str, NewProxy]]:
        """The figures of several processes' ``dump`` as one: counts and traffic add up; a
        proxy or client known to several (it moved between workers on a reconnect) shows its
        latest state with its traffic summed."""
        out = cls()
        online: dict[str, NewProxy] = {}
        for part in parts:
            out.cur_conns += int(part["cur_conns"])
            out.traffic_in.merge(part["in"])
            out.traffic_out.merge(part["out"])
            out.type_counts.update({k: int(v) for k, v in part["types"].items()})
            for name, raw in part["online"].items():
                online[name] = NewProxy.from_json(raw)
            for p in part["proxies"]:
                ps = ProxyStats(
                    p["name"], p["type"], p["user"], p["client_id"], int(p["cur_conns"]),
                    last_start=_parse(p["start"]), last_close=_parse(p["close"]),
                )  # fmt: skip
                ps.traffic_in.merge(p["in"])
                ps.traffic_out.merge(p["out"])
                have = out.proxies.get(ps.name)
                if have is None:
                    out.proxies[ps.name] = ps
                    continue
                newer, older = (ps, have) if _later(ps.last_start, have.last_start) else (have, ps)
                newer.cur_conns += older.cur_conns
                newer.traffic_in.merge(older.traffic_in.dump())
                newer.traffic_out.merge(older.traffic_out.dump())
                out.proxies[ps.name] = newer
            for c in part["clients"]:
                info = ClientInfo(
                    c["key"], c["user"], c["client_id"], c["run_id"], c["hostname"], c["ip"],
                    c["version"], _parse(c["first"]) or _now(), _parse(c["last"]) or _now(),
                    _parse(c["gone"]), bool(c["online"]), c["wire"],
                )  # fmt: skip
                known = out.clients.get(info.key)
                if known is not None:
                    first = min(known.first_connected, info.first_connected)
                    if known.online or (
                        not info.online and known.last_connected > info.last_connected
                    ):
                        info = known
                    info.first_connected = first
                out.clients[info.key] = info
        return out, online

    def clear_offline(self, kept: dt.timedelta = dt.timedelta(0)) -> tuple[int, int]:
        """Forget proxies offline for longer than ``kept``: (how many, of how many)."""
        total = len(self.proxies)
        now = _now()
        gone = [
            n
            for n, ps in self.proxies.items()
            if ps.offline and ps.last_close is not None and now - ps.last_close > kept
        ]
        for n in gone:
            del self.proxies[n]
        return len(gone), total
