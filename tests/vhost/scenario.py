"""One routing scenario, run against every server/client pair (pyfrp, frps-go, frpc-go-new).

Every proxy points at the same echo backend and sets ``X-Route: <its name>`` on the requests it
carries, so the answer to each request names the proxy frps routed it to (or the status code).
The frpc configuration is legacy INI, which every client reads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.vhost.backends import request, route_of

SUBDOMAIN_HOST = "web.example.com"

# name -> INI keys (besides type, local_port and header_X-Route)
PROXIES: dict[str, dict[str, str]] = {
    "jupyter": {"subdomain": "jupyter"},
    "tb": {"subdomain": "tb"},
    "exact": {"custom_domains": "app.example.com"},
    "wild": {"custom_domains": "*.example.com"},
    "wild2": {"custom_domains": "*.b.example.com"},
    "loc-root": {"custom_domains": "loc.example.com", "locations": "/"},
    "loc-api": {"custom_domains": "loc.example.com", "locations": "/api"},
    "loc-apiv2": {"custom_domains": "loc.example.com", "locations": "/api/v2"},
    "user-alice": {
        "custom_domains": "users.example.com",
        "route_by_http_user": "alice",
        "http_user": "alice",
        "http_pwd": "pa",
    },
    "user-any": {"custom_domains": "users.example.com"},
    "auth": {"custom_domains": "secret.example.com", "http_user": "u", "http_pwd": "p"},
    "carol-any": {"custom_domains": "*", "route_by_http_user": "carol"},
    "rewrite": {"custom_domains": "rw.example.com", "host_header_rewrite": "backend.internal"},
    "down": {"custom_domains": "down.example.com"},
}

# id -> (host, path, basic auth, answer from pyfrps)
CASES: dict[str, tuple[str, str, tuple[str, str] | None, str]] = {
    "subdomain": ("jupyter.web.example.com:{port}", "/", None, "jupyter"),
    "subdomain-case": ("JUPYTER.Web.Example.COM", "/lab", None, "jupyter"),
    "subdomain-dot": ("jupyter.web.example.com.:{port}", "/", None, "jupyter"),
    "subdomain-tb": ("tb.web.example.com", "/data/plugin/scalars", None, "tb"),
    "wildcard-deep": ("nope.web.example.com", "/", None, "wild"),
    "exact-first": ("app.example.com", "/", None, "exact"),
    "wildcard": ("x.example.com", "/", None, "wild"),
    "wildcard-longest": ("a.b.example.com", "/", None, "wild2"),
    "two-labels": ("example.com", "/", None, "404"),
    "location-root": ("loc.example.com", "/", None, "loc-root"),
    "location": ("loc.example.com", "/api", None, "loc-api"),
    "location-plain-prefix": ("loc.example.com", "/apix", None, "loc-api"),
    "location-longest": ("loc.example.com", "/api/v2/x?q=1", None, "loc-apiv2"),
    "location-case": ("loc.example.com", "/API", None, "loc-root"),
    "location-escaped": ("loc.example.com", "/%61pi/v2", None, "loc-apiv2"),
    "route-user-none": ("users.example.com", "/", None, "user-any"),
    "route-user": ("users.example.com", "/", ("alice", "pa"), "user-alice"),
    "route-user-bad-password": ("users.example.com", "/", ("alice", "x"), "401"),
    "route-user-other": ("users.example.com", "/", ("bob", "x"), "user-any"),
    "auth-missing": ("secret.example.com", "/", None, "401"),
    "auth-wrong": ("secret.example.com", "/", ("u", "x"), "401"),
    "auth-ok": ("secret.example.com", "/", ("u", "p"), "auth"),
    "unknown-host": ("unknown.org", "/", None, "404"),
    "catch-all-for-user": ("unknown.org", "/", ("carol", "c"), "carol-any"),
    "host-rewrite": ("rw.example.com", "/", None, "rewrite"),
    "local-service-down": ("down.example.com", "/", None, "404"),  # frp's ErrorHandler
}


def frpc_proxies_ini(backend: int, down: int) -> str:
    out = []
    for name, keys in PROXIES.items():
        port = down if name == "down" else backend
        lines = [f"[{name}]", "type = http", f"local_port = {port}", f"header_X-Route = {name}"]
        lines += [f"{k} = {v}" for k, v in keys.items()]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def expected() -> dict[str, str]:
    """The answers per case (the same from every frps)."""
    return {k: v[3] for k, v in CASES.items()}


def run_cases(port: int) -> dict[str, str]:
    def one(item: tuple[str, tuple[str, str, tuple[str, str] | None, str]]) -> tuple[str, str]:
        case, (host, path, auth, _) = item
        return case, route_of(request(port, host.format(port=port), path, auth=auth))

    with ThreadPoolExecutor(8) as ex:
        return dict(ex.map(one, CASES.items()))
