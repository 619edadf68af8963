"""http/https vhosts between pyfrp and the real Go frp peers (../shared/peers).

The routing scenario of tests/vhost/scenario.py (one echo backend, every proxy tags requests with
``X-Route``) runs through three pairs, which must give the same answers:
pyfrps + pyfrpc, pyfrps + frpc-go-new (0.65.0, legacy INI) and frps-go (0.51.2) + pyfrpc.
The one documented difference: a local service that is down gives 502 from pyfrps and 404 from
frps. frpc-go-new also runs https proxies behind pyfrps (SNI passthrough) and, from native
TOML, ``responseHeaders``, which the legacy INI cannot express.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Proc, free_ports
from tests.vhost.backends import http_backend, request, tls_ask, tls_backend
from tests.vhost.scenario import PROXIES, SUBDOMAIN_HOST, expected, frpc_proxies_ini, run_cases

pytestmark = pytest.mark.interop

STARTUP = 30.0


def frps_ini(bind: int, vhttp: int, vhttps: int, go: bool) -> str:
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


def start(peers: Path | None, tmp: Path, name: str, config: str, suffix: str = ".ini") -> Proc:
    cfg = tmp / f"{name}{suffix}"
    cfg.write_text(config)
    if peers is None:
        module = "pyfrp.server" if name == "pyfrps" else "pyfrp.client"
        argv: list[str | Path] = [sys.executable, "-m", module, "-c", cfg]
    else:
        argv = [peers / name, "-c", cfg]
    return Proc(name, argv, tmp / f"{name}.log", tmp)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    out: list[Proc] = []
    yield out
    for p in reversed(out):
        p.stop()


def answers(peers: Path, tmp: Path, procs: list[Proc], server: str, client: str) -> dict[str, str]:
    bind, vhttp, vhttps, down = free_ports(4)
    with http_backend() as backend:
        go = server == "frps-go"
        s = start(peers if go else None, tmp, server, frps_ini(bind, vhttp, vhttps, go))
        procs.append(s)
        s.wait_port(bind, STARTUP)
        s.wait_port(vhttp, STARTUP)
        c = start(peers if "-go" in client else None, tmp, client, frpc_ini(bind, backend, down))
        procs.append(c)
        if client == "pyfrpc":
            c.wait_log(r"start proxy success", STARTUP, count=len(PROXIES))
        else:
            s.wait_log(r"new proxy \[[^]]+\] type \[http\] success", STARTUP, count=len(PROXIES))
        return run_cases(vhttp)


@pytest.mark.parametrize(
    ("server", "client"),
    [("pyfrps", "frpc-go-new"), ("frps-go", "pyfrpc")],
    ids=["frpc-go-new->pyfrps", "pyfrpc->frps-go"],
)
def test_same_routing_answers(
    peers: Path, tmp_path: Path, procs: list[Proc], server: str, client: str
) -> None:
    (tmp_path / "py").mkdir()
    python_pair = answers(peers, tmp_path / "py", procs, "pyfrps", "pyfrpc")
    assert python_pair == expected("pyfrps")
    (tmp_path / "go").mkdir()
    mixed = answers(peers, tmp_path / "go", procs, server, client)
    want = dict(python_pair)
    if server == "frps-go":
        want["local-service-down"] = "404"  # frps answers every proxy error with its 404 page
    assert mixed == want


def test_frpc_go_new_https_and_response_headers(
    peers: Path, tmp_path: Path, procs: list[Proc]
) -> None:
    bind, vhttp, vhttps = free_ports(3)
    with http_backend() as backend, tls_backend(tmp_path, "A") as tls_a:
        s = start(None, tmp_path, "pyfrps", frps_ini(bind, vhttp, vhttps, go=False))
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
        c = start(peers, tmp_path, "frpc-go-new", toml, ".toml")
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


def test_pyfrpc_behind_frps_go_headers(peers: Path, tmp_path: Path, procs: list[Proc]) -> None:
    """frps 0.51.2 predates v0.55: it appends X-Forwarded-For but sets no X-Forwarded-Host/Proto."""
    bind, vhttp, vhttps = free_ports(3)
    with http_backend() as backend:
        s = start(peers, tmp_path, "frps-go", frps_ini(bind, vhttp, vhttps, go=True))
        procs.append(s)
        s.wait_port(bind, STARTUP)
        s.wait_port(vhttp, STARTUP)
        c = start(
            None,
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
