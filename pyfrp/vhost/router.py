"""The vhost routing table (frp pkg/util/vhost/router.go), pure: no IO, no clocks.

A route is the triple (domain, location, route user) and carries one payload. A lookup for
(host, path, user) tries candidate domains in frp's order and, for each, the routes of that user
before the routes of no user; within one list the longest location that is a plain string prefix
of the path wins:

1. the exact host (lower-cased; the caller strips the port, see ``canonical_host``);
2. only for hosts of three or more labels: the leftmost label replaced by ``*``, repeated while
   three or more labels remain (``a.b.example.com`` -> ``*.b.example.com`` -> ``*.example.com``;
   ``example.com`` never tries ``*.com``);
3. the catch-all domain ``*``.

Locations are kept sorted in descending order, so the first prefix match is the longest. ``"/a"``
matches ``/ab``: frp has no segment boundaries, and neither do we. Adding the same triple twice
raises ``RouteConflict`` (frp's "router config conflict").

One deliberate difference from frp >= 0.38: a registered domain loses a trailing dot, as the
looked-up host does. frp strips the dot only from the request's host, which silently disables
a ``subdomain_host = web.example.com.`` setting (the seed guide's work-around); here it keeps
working, and every other registration behaves as in frp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from pyfrp.errors import ProxyError

T = TypeVar("T")


class Elsewhere:
    """The payload of a route other pyfrps workers serve (``pyfrp.workers``): a connection
    routed to it is handed whole to one of them, in turn (several: a load-balancing group with
    members on each). A route of this process's own replaces it."""

    __slots__ = ("_turn", "workers")

    def __init__(self, *workers: int) -> None:
        if not workers:
            raise ValueError("Elsewhere needs a worker")
        self.workers = workers
        self._turn = 0

    def pick(self) -> int:
        self._turn += 1
        return self.workers[self._turn % len(self.workers)]


class RouteConflict(ProxyError):
    def __init__(self) -> None:
        super().__init__("router config conflict")


def canonical_domain(domain: str) -> str:
    """How a registered domain is stored: lower case, no trailing dot."""
    return domain.lower().removesuffix(".")


def canonical_host(host: str) -> str:
    """frp's CanonicalHost: lower case, ``:port`` stripped (``[v6]:port`` too), no trailing dot.

    A malformed ``host:port`` (Go's SplitHostPort fails) gives ``""``, which only ``*`` matches.
    """
    host = host.lower()
    colons = host.count(":")
    if colons == 1 or (colons > 1 and host.startswith("[") and "]:" in host):
        name, _, port = host.rpartition(":")
        if name.startswith("["):
            if not name.endswith("]") or "[" in name[1:] or "]" in name[:-1]:
                return ""
            name = name[1:-1]
        elif "[" in name or "]" in name:
            return ""
        del port  # any port text is accepted, as by Go's SplitHostPort
        host = name
    return host.removesuffix(".")


@dataclass(frozen=True, slots=True)
class Route(Generic[T]):
    domain: str
    location: str
    route_user: str
    payload: T


class Router(Generic[T]):
    """domain -> route user -> routes sorted by location, descending."""

    def __init__(self) -> None:
        self._index: dict[str, dict[str, list[Route[T]]]] = {}

    def add(self, domain: str, location: str, route_user: str, payload: T) -> Route[T]:
        domain = canonical_domain(domain)
        by_user = self._index.setdefault(domain, {})
        routes = by_user.setdefault(route_user, [])
        for i, r in enumerate(routes):
            if r.location == location:
                if not isinstance(r.payload, Elsewhere):
                    raise RouteConflict()
                del routes[i]
                break
        route = Route(domain, location, route_user, payload)
        routes.append(route)
        routes.sort(key=lambda r: r.location, reverse=True)
        return route

    def get(self, domain: str, location: str, route_user: str) -> Route[T] | None:
        """The route registered for exactly this triple."""
        routes = self._index.get(canonical_domain(domain), {}).get(route_user, [])
        return next((r for r in routes if r.location == location), None)

    def remove(self, domain: str, location: str, route_user: str) -> None:
        domain = canonical_domain(domain)
        by_user = self._index.get(domain)
        if by_user is None:
            return
        routes = by_user.get(route_user)
        if routes is None:
            return
        routes[:] = [r for r in routes if r.location != location]
        if not routes:
            del by_user[route_user]
            if not by_user:
                del self._index[domain]

    def lookup(self, host: str, path: str, route_user: str = "") -> Route[T] | None:
        """The route for a request; ``host`` must already be canonical (``canonical_host``)."""
        host = host.lower()
        route = self._exact_or_any_user(host, path, route_user)
        if route is not None:
            return route
        labels = host.split(".")
        while len(labels) >= 3:
            labels[0] = "*"
            route = self._exact_or_any_user(".".join(labels), path, route_user)
            if route is not None:
                return route
            labels = labels[1:]
        return self._exact_or_any_user("*", path, route_user)

    def _exact_or_any_user(self, domain: str, path: str, route_user: str) -> Route[T] | None:
        by_user = self._index.get(domain)
        if by_user is None:
            return None
        route = _first_prefix(by_user.get(route_user), path)
        if route is None and route_user:
            route = _first_prefix(by_user.get(""), path)
        return route

    def routes(self) -> list[Route[T]]:
        return [r for by_user in self._index.values() for rs in by_user.values() for r in rs]

    def __len__(self) -> int:
        return sum(len(rs) for by_user in self._index.values() for rs in by_user.values())


def _first_prefix(routes: list[Route[T]] | None, path: str) -> Route[T] | None:
    if routes:
        for r in routes:
            if path.startswith(r.location):
                return r
    return None
