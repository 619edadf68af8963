"""What frps counts for its dashboard and Prometheus (pkg/metrics/mem, server/registry): clients,
proxies by type, connections, and traffic per proxy per day for the last 7 days.

Like frp, a connection's bytes are added when it ends (``libio.Join`` returns the counts), a
closed proxy keeps its figures until ``DELETE /api/proxies?status=offline`` or a week offline,
and "in" is what users sent towards frpc, "out" what came back.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

RESERVE_DAYS = 7
OFFLINE_KEPT = dt.timedelta(days=7)


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()


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
