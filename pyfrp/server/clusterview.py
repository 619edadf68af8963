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
from typing import Any

from pyfrp.proto.msg import NewProxy
from pyfrp.server.cluster import Cluster
from pyfrp.server.stats import Stats

log = logging.getLogger(__name__)

PART = 128 * 1024  # bytes of a compressed dump per datagram
WAIT = 3.0  # seconds the dashboard waits for the other workers' figures


class ClusterView:
    def __init__(
        self, cluster: Cluster, stats: Stats, online: Callable[[], Mapping[str, NewProxy]]
    ) -> None:
        self.cluster = cluster
        self.stats = stats
        self.online = online
        self._tokens = itertools.count(1)
        # token -> worker -> parts received; and who still owes a whole dump
        self._parts: dict[str, dict[int, dict[int, bytes]]] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._owed: dict[str, set[int]] = {}

    def _others(self) -> list[int]:
        return [i for i in range(self.cluster.count) if i != self.cluster.index]

    async def gather(self) -> tuple[Stats, dict[str, NewProxy]]:
        """Every worker's figures, merged with this one's."""
        token = f"{self.cluster.index}.{next(self._tokens)}"
        others = self._others()
        self._parts[token] = {}
        self._owed[token] = set(others)
        done = self._done[token] = asyncio.Event()
        try:
            for k in others:
                self.cluster.send(
                    {"op": "relay", "to": k, "kind": "stats_dump", "from": self.cluster.index,
                     "token": token}
                )  # fmt: skip
            if others:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(WAIT):
                        await done.wait()
            missing = self._owed[token]
            if missing:
                log.warning("dashboard: no figures from worker(s) %s in time", sorted(missing))
            dumps = [self.stats.dump(self.online())]
            for worker, parts in self._parts[token].items():
                if worker not in missing:
                    raw = zlib.decompress(b"".join(parts[i] for i in range(len(parts))))
                    dumps.append(json.loads(raw))
        finally:
            self._parts.pop(token, None)
            self._owed.pop(token, None)
            self._done.pop(token, None)
        return Stats.merged(dumps)

    def clear_offline(self) -> None:
        """Forget offline proxies on every worker."""
        self.stats.clear_offline()
        for k in self._others():
            self.cluster.send({"op": "relay", "to": k, "kind": "stats_clear"})

    def received(self, msg: dict[str, Any], data: bytes) -> None:
        kind = msg.get("kind")
        if kind == "stats_dump":
            blob = zlib.compress(json.dumps(self.stats.dump(self.online())).encode())
            chunks = [blob[i : i + PART] for i in range(0, len(blob), PART)] or [b""]
            for n, chunk in enumerate(chunks):
                self.cluster.send(
                    {"op": "relay", "to": int(msg["from"]), "kind": "stats_part",
                     "token": msg["token"], "from": self.cluster.index, "part": n,
                     "parts": len(chunks)},
                    chunk,
                )  # fmt: skip
        elif kind == "stats_part":
            token, worker = str(msg["token"]), int(msg["from"])
            parts = self._parts.get(token)
            if parts is None:
                return  # too late: that answer went without it
            mine = parts.setdefault(worker, {})
            mine[int(msg["part"])] = data
            if len(mine) == int(msg["parts"]):
                owed = self._owed[token]
                owed.discard(worker)
                if not owed:
                    self._done[token].set()
        elif kind == "stats_clear":
            self.stats.clear_offline()
