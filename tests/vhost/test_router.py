"""The vhost routing table: frp's lookup order and tie-breaks (pkg/util/vhost/router.go)."""

from __future__ import annotations

import pytest

from pyfrp.vhost.router import RouteConflict, Router, canonical_host


def table() -> Router[str]:
    r: Router[str] = Router()
    r.add("app.example.com", "", "", "exact")
    r.add("*.example.com", "", "", "wild")
    r.add("*.b.example.com", "", "", "wild2")
    r.add("loc.example.com", "/", "", "root")
    r.add("loc.example.com", "/api", "", "api")
    r.add("loc.example.com", "/api/v2", "", "apiv2")
    r.add("users.example.com", "", "alice", "alice")
    r.add("users.example.com", "", "", "any")
    r.add("*", "/only", "carol", "carol")
    return r


@pytest.mark.parametrize(
    ("host", "path", "user", "want"),
    [
        ("app.example.com", "/", "", "exact"),
        ("x.example.com", "/", "", "wild"),
        ("a.b.example.com", "/", "", "wild2"),
        ("c.a.b.example.com", "/", "", "wild2"),
        ("deep.x.example.com", "/", "", "wild"),
        ("example.com", "/", "", None),  # two labels never try *.com
        ("loc.example.com", "/", "", "root"),
        ("loc.example.com", "/apix", "", "api"),  # a plain prefix, no segment boundary
        ("loc.example.com", "/api/v2/x", "", "apiv2"),
        ("loc.example.com", "/API", "", "root"),
        ("loc.example.com", "", "", "wild"),  # no location matches "": next candidate domain
        ("users.example.com", "/", "alice", "alice"),
        ("users.example.com", "/", "bob", "any"),
        ("users.example.com", "/", "", "any"),
        ("other.org", "/only/x", "carol", "carol"),
        ("other.org", "/only/x", "", None),
        ("other.org", "/x", "carol", None),
    ],
)
def test_lookup_order(host: str, path: str, user: str, want: str | None) -> None:
    route = table().lookup(host, path, user)
    assert (route.payload if route else None) == want


def test_conflict_and_remove() -> None:
    r = table()
    with pytest.raises(RouteConflict, match="router config conflict"):
        r.add("LOC.example.com", "/api", "", "again")
    r.add("loc.example.com", "/api", "someone", "ok: another route user")
    r.remove("loc.example.com", "/api", "")
    route = r.lookup("loc.example.com", "/api/x", "")
    assert route is not None
    assert route.payload == "root"
    r.remove("nothing.example.com", "", "")  # no-op


def test_registered_trailing_dot_still_matches() -> None:
    r: Router[str] = Router()
    r.add("jupyter.web.example.com.", "", "", "j")  # the seed's subdomain_host = web.domain.
    route = r.lookup(canonical_host("jupyter.web.example.com.:8080"), "/", "")
    assert route is not None
    assert route.payload == "j"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Jupyter.Web.Example.COM:8080", "jupyter.web.example.com"),
        ("example.com.", "example.com"),
        ("example.com", "example.com"),
        ("[::1]:80", "::1"),
        ("[::1]", "[::1]"),
        ("a:b:c", "a:b:c"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[bad:80", ""),
        ("", ""),
    ],
)
def test_canonical_host(raw: str, want: str) -> None:
    assert canonical_host(raw) == want
