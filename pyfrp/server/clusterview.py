"""The dashboard's view of a relay of several workers (``pyfrp.workers``): worker 0 serves the
dashboard, its API and ``/metrics``; at each request it asks every other worker for its figures
(``Stats.dump``) and shows them merged with its own, so the page and the API read as from one
frps. A clear of offline proxies reaches every worker. A dump travels in parts through the
supervisor's relay (one datagram is bounded); a worker that does not answer in time (it is
restarting) is left out of that one answer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyfrp.proto.msg import NewProxy
from pyfrp.server.cluster import Cluster
from pyfrp.server.stats import Stats

log = logging.getLogger(__name__)

PART = 128 * 1024  # bytes of a compressed dump per datagram
WAIT = 3.0  # seconds the dashboard waits for the other workers' figures


@dataclass
class _Gathering:
    """One request's answers: parts by worker and part number, and who still owes its whole
    dump."""

    owed: set[int]
    parts: dict[int, dict[int, bytes]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ClusterView:
    def __init__(
        self, cluster: Cluster, stats: Stats, online: Callable[[], Mapping[str, NewProxy]]
    ) -> None:
        self.cluster = cluster
        self.stats = stats
        self.online = online
        self._tokens = itertools.count(1)
        self._gatherings: dict[str, _Gathering] = {}  # by token

    def _others(self) -> list[int]:
        return [i for i in range(self.cluster.count) if i != self.cluster.index]

    async def gather(self) -> tuple[Stats, dict[str, NewProxy]]:
        """Every worker's figures, merged with this one's."""
        token = f"{self.cluster.index}.{next(self._tokens)}"
        others = self._others()
        g = self._gatherings[token] = _Gathering(set(others))
        try:
            for k in others:
                self.cluster.relay(k, "stats_dump", token=token)
            if others:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(WAIT):
                        await g.done.wait()
            if g.owed:
                log.warning("dashboard: no figures from worker(s) %s in time", sorted(g.owed))
            dumps = [self.stats.dump(self.online())]
            for worker, parts in g.parts.items():
                if worker not in g.owed:
                    raw = zlib.decompress(b"".join(parts[i] for i in range(len(parts))))
                    dumps.append(json.loads(raw))
        finally:
            del self._gatherings[token]
        return Stats.merged(dumps)

    def clear_offline(self) -> None:
        """Forget offline proxies on every worker."""
        self.stats.clear_offline()
        for k in self._others():
            self.cluster.relay(k, "stats_clear")

    def received(self, msg: dict[str, Any], data: bytes) -> None:
        kind = msg.get("kind")
        if kind == "stats_dump":
            blob = zlib.compress(json.dumps(self.stats.dump(self.online())).encode())
            chunks = [blob[i : i + PART] for i in range(0, len(blob), PART)] or [b""]
            for n, chunk in enumerate(chunks):
                self.cluster.relay(
                    int(msg["from"]), "stats_part", chunk,
                    token=msg["token"], part=n, parts=len(chunks),
                )  # fmt: skip
        elif kind == "stats_part":
            g = self._gatherings.get(str(msg["token"]))
            if g is None:
                return  # too late: that answer went without it
            worker = int(msg["from"])
            mine = g.parts.setdefault(worker, {})
            mine[int(msg["part"])] = data
            if len(mine) == int(msg["parts"]):
                g.owed.discard(worker)
                if not g.owed:
                    g.done.set()
        elif kind == "stats_clear":
            self.stats.clear_offline()
