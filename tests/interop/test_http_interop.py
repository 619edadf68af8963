"""http/https vhosts between pyfrp and the real Go frp peers (../shared/peers).

The routing scenario of tests/vhost/scenario.py (one echo backend, every proxy tags requests with
``X-Route``) runs through five pairs, which must give the same answers: pyfrps + pyfrpc,
pyfrps + frpc-native (0.70.1), pyfrps + frpc-go-new (0.65.0, legacy INI), frps-native (0.70.1)
+ pyfrpc and frps-go (0.51.2) + pyfrpc; a local service that is down gives frp's 404 page from
all of them (frp's ErrorHandler). frpc-native and frpc-go-new also run https proxies
behind pyfrps (SNI passthrough) and, from native TOML, ``responseHeaders``, which the legacy INI
cannot express. A backend sees the same request headers behind pyfrps as behind frps 0.70.1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import peer_exe
from tests.harness import Proc, free_ports
from tests.vhost.backends import http_backend, request, tls_ask, tls_backend
from tests.vhost.scenario import PROXIES, SUBDOMAIN_HOST, expected, frpc_proxies_ini, run_cases

pytestmark = pytest.mark.interop

STARTUP = 30.0


def frps_ini(bind: int, vhttp: int, vhttps: int, go: bool = False) -> str:
    """``go``: for frps-go, whose ChmlFrp fork would ask its web API otherwise."""
    extra = "api_enable = false\n" if go else ""
    return (
        f"[common]\nbind_addr = 127.0.0.1\nbind_port = {bind}\nproxy_bind_addr = 127.0.0.1\n"
        f"vhost_http_port = {vhttp}\nvhost_https_port = {vhttps}\n"
        f"subdomain_host = {SUBDOMAIN_HOST}\n{extra}"
    )


def frpc_ini(bind: int, backend: int, down: int) -> str:
    return f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n\n" + frpc_proxies_ini(
        backend, down
    )


def start(tmp: Path, name: str, config: str, suffix: str = ".ini") -> Proc:
    """Start pyfrps, pyfrpc or the Go peer ``name``."""
    cfg = tmp / f"{name}{suffix}"
    cfg.write_text(config)
    if name in ("pyfrps", "pyfrpc"):
        module = "pyfrp.server" if name == "pyfrps" else "pyfrp.client"
        argv: list[str | Path] = [sys.executable, "-m", module, "-c", cfg]
    else:
        argv = [peer_exe(name), "-c", cfg]
    return Proc(name, argv, tmp / f"{name}.log", tmp)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    out: list[Proc] = []
    yield out
    for p in reversed(out):
        p.stop()


def answers(tmp: Path, procs: list[Proc], server: str, client: str) -> dict[str, str]:
    bind, vhttp, vhttps, down = free_ports(4)
    with http_backend() as backend:
        s = start(tmp, server, frps_ini(bind, vhttp, vhttps, go=server == "frps-go"))
        procs.append(s)
        s.wait_port(bind, STARTUP)
        s.wait_port(vhttp, STARTUP)
        c = start(tmp, client, frpc_ini(bind, backend, down))
        procs.append(c)
        if client == "pyfrpc":
            c.wait_log(r"start proxy success", STARTUP, count=len(PROXIES))
        else:
            s.wait_log(r"new proxy \[[^]]+\] type \[http\] success", STARTUP, count=len(PROXIES))
        return run_cases(vhttp)


PAIRS = [
    ("pyfrps", "frpc-native"),
    ("frps-native", "pyfrpc"),
    ("pyfrps", "frpc-go-new"),
    ("frps-go", "pyfrpc"),
]


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=[f"{c}->{s}" for s, c in PAIRS])
def test_same_routing_answers(tmp_path: Path, procs: list[Proc], server: str, client: str) -> None:
    peer_exe(client if server == "pyfrps" else server)  # skip before any work without the peer
    (tmp_path / "py").mkdir()
    python_pair = answers(tmp_path / "py", procs, "pyfrps", "pyfrpc")
    assert python_pair == expected()
    (tmp_path / "go").mkdir()
    mixed = answers(tmp_path / "go", procs, server, client)
    want = dict(python_pair)
    assert mixed == want


@pytest.mark.parametrize("client", ["frpc-native", "frpc-go-new"])
def test_go_frpc_https_and_response_headers(tmp_path: Path, procs: list[Proc], client: str) -> None:
    peer_exe(client)
    bind, vhttp, vhttps = free_ports(3)
    with http_backend() as backend, tls_backend(tmp_path, "A") as tls_a:
        s = start(tmp_path, "pyfrps", frps_ini(bind, vhttp, vhttps))
        procs.append(s)
        s.wait_port(bind, STARTUP)
        toml = f"""serverAddr = "127.0.0.1"
serverPort = {bind}
log.disablePrintColor = true

[[proxies]]
name = "web"
type = "http"
localPort = {backend}
subdomain = "jupyter"
locations = ["/api"]
requestHeaders.set.X-Route = "web"
responseHeaders.set.X-Frame-Options = "DENY"

[[proxies]]
name = "secure"
type = "https"
localPort = {tls_a}
customDomains = ["secure.example.com"]
"""
        c = start(tmp_path, client, toml, ".toml")
        procs.append(c)
        c.wait_log(r"\[secure\] start proxy success", STARTUP)
        c.wait_log(r"\[web\] start proxy success", STARTUP)
        a = request(vhttp, "jupyter.web.example.com", "/api/kernels")
        assert a.status == 200
        assert a.header("X-Frame-Options") == "DENY"
        assert a.sent("X-Route") == ["web"]
        assert request(vhttp, "jupyter.web.example.com", "/tree").status == 404
        assert tls_ask(vhttps, "secure.example.com") == "A secure.example.com hello"
        s.wait_log(r"\[secure\] https proxy listen for host \[secure.example.com\]")


def test_pyfrpc_behind_frps_go_headers(tmp_path: Path, procs: list[Proc]) -> None:
    """frps 0.51.2 predates v0.55: it appends X-Forwarded-For but sets no X-Forwarded-Host/Proto."""
    bind, vhttp, vhttps = free_ports(3)
    with http_backend() as backend:
        s = start(tmp_path, "frps-go", frps_ini(bind, vhttp, vhttps, go=True))
        procs.append(s)
        s.wait_port(bind, STARTUP)
        s.wait_port(vhttp, STARTUP)
        c = start(
            tmp_path,
            "pyfrpc",
            f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
            f"[web]\ntype = http\nlocal_port = {backend}\nsubdomain = jupyter\n"
            "host_header_rewrite = inner\nheader_X-Route = web\n",
        )
        procs.append(c)
        c.wait_log(r"\[web\] start proxy success", STARTUP)
        a = request(
            vhttp,
            "jupyter.web.example.com",
            "/",
            headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        )
        assert a.status == 200
        assert a.sent("Host") == ["inner"]
        assert a.sent("X-Route") == ["web"]
        assert a.sent("X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"]
        assert a.sent("X-Forwarded-Proto") == ["https"]  # passed through before v0.55
        assert a.sent("X-Forwarded-Host") == []


def _headers_behind(tmp: Path, procs: list[Proc], server: str, ask: dict[str, str]) -> list[str]:
    """The request headers the backend sees through ``server`` + pyfrpc, as "name: value" (Go
    canonicalizes the case of header names and sorts them; neither is a difference in HTTP)."""
    tmp.mkdir()
    bind, vhttp, vhttps = free_ports(3)
    with http_backend() as backend:
        s = start(tmp, server, frps_ini(bind, vhttp, vhttps))
        procs.append(s)
        s.wait_port(bind, STARTUP)
        s.wait_port(vhttp, STARTUP)
        c = start(
            tmp,
            "pyfrpc",
            f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
            f"[web]\ntype = http\nlocal_port = {backend}\nsubdomain = jupyter\n"
            "host_header_rewrite = inner\nheader_X-Route = web\n",
        )
        procs.append(c)
        c.wait_log(r"\[web\] start proxy success", STARTUP)
        a = request(vhttp, "jupyter.web.example.com", "/x?y=1", headers=ask)
        assert a.status == 200
        return sorted(f"{k.lower()}: {v}" for k, v in a.json["headers"])


@pytest.mark.parametrize(
    "ask",
    [{}, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Real-IP": "1.2.3.4"}],
    ids=["plain", "forwarded"],
)
def test_backend_sees_the_headers_frps_native_sends(
    tmp_path: Path, procs: list[Proc], ask: dict[str, str]
) -> None:
    peer_exe("frps-native")
    go = _headers_behind(tmp_path / "go", procs, "frps-native", ask)
    py = _headers_behind(tmp_path / "py", procs, "pyfrps", ask)
    assert py == go
