"""HTTP and HTTPS vhosts end to end: real pyfrps and pyfrpc processes, local backends.

One pair serves the whole module: the routing scenario of tests/vhost/scenario.py plus a
WebSocket echo, two TLS backends behind https proxies, and an encrypted+compressed http proxy.
``vhost_http_timeout = 2`` so that the 504 test is quick, which also shows that the timeout
does not cover the upload of a long request body.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import HOST, Proc, Pyfrp, free_port, free_ports, process_tree
from tests.vhost.backends import (
    BLOCK,
    MiB,
    expected_sha256,
    http_backend,
    pattern,
    request,
    tls_ask,
    tls_backend,
    ws_echo_backend,
)
from tests.vhost.scenario import PROXIES, SUBDOMAIN_HOST, expected, frpc_proxies_ini, run_cases

TIMEOUT = 2  # vhost_http_timeout


@dataclass
class Env:
    vhttp: int
    vhttps: int
    frps: Proc
    frpc: Proc


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("vhost")
    h = Pyfrp(tmp)
    bind, vhttp, vhttps, down = free_ports(4)
    with (
        http_backend() as backend,
        ws_echo_backend() as ws,
        tls_backend(tmp, "A") as tls_a,
        tls_backend(tmp, "B") as tls_b,
    ):
        try:
            frps = h.frps(
                f"""[common]
bind_addr = 127.0.0.1
bind_port = {bind}
vhost_http_port = {vhttp}
vhost_https_port = {vhttps}
subdomain_host = {SUBDOMAIN_HOST}
vhost_http_timeout = {TIMEOUT}
"""
            )
            frps.wait_port(bind)
            frpc = h.frpc(
                f"""[common]
server_addr = 127.0.0.1
server_port = {bind}
pool_count = 2

{frpc_proxies_ini(backend, down)}
[ws]
type = http
local_port = {ws}
subdomain = ws

[enc]
type = http
local_port = {backend}
custom_domains = enc.example.com
use_encryption = true
use_compression = true
header_X-Route = enc

[dup]
type = http
local_port = {backend}
custom_domains = app.example.com

[bad-sub]
type = http
local_port = {backend}
subdomain = a.b

[secure]
type = https
local_port = {tls_a}
custom_domains = secure.example.com

[secure-wild]
type = https
local_port = {tls_b}
subdomain = tls
custom_domains = *.tls.example.com
"""
            )
            frpc.wait_log(r"start proxy success", count=len(PROXIES) + 4)
            frpc.wait_log(r"\[dup\] start error: router config conflict")
            frpc.wait_log(r"\[bad-sub\] start error: '\.' and '\*' are not supported in subdomain")
            yield Env(vhttp, vhttps, frps, frpc)
        finally:
            h.stop_all()


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """``field`` of /proc/PID/status, summed over ``pid`` and its descendants."""
    total = 0
    for p in process_tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                total += int(line.split()[1])
                break
        else:
            raise AssertionError(f"no {field} for {p}")
    return total


# ----------------------------------------------------------------------------- routing


def test_routing_rules(env: Env) -> None:
    assert run_cases(env.vhttp) == expected()


def test_not_found_page(env: Env) -> None:
    a = request(env.vhttp, "nobody.org")
    assert a.status == 404
    assert a.header("Content-Type") == "text/html; charset=utf-8"
    assert b"<h1>The page you requested was not found.</h1>" in a.body
    assert b"Faithfully yours, frp." in a.body


def test_auth_challenge(env: Env) -> None:
    a = request(env.vhttp, "secret.example.com")
    assert a.status == 401
    assert a.header("WWW-Authenticate") == 'Basic realm="Restricted"'
    assert a.body == b"Unauthorized\n"
    ok = request(env.vhttp, "secret.example.com", auth=("u", "p"))
    assert ok.sent("Authorization")  # frp forwards the credentials


def test_forwarded_headers(env: Env) -> None:
    host = f"jupyter.web.example.com:{env.vhttp}"
    a = request(
        env.vhttp,
        host,
        "/api/status?x=1",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=198.51.100.1",
            "Connection": "X-Hop",
            "X-Hop": "1",
            "Keep-Alive": "timeout=5",
            "X-Route": "spoofed",
        },
    )
    assert a.status == 200
    assert a.json["path"] == "/api/status?x=1"
    assert a.sent("Host") == [host]
    assert a.sent("X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"]
    assert a.sent("X-Forwarded-Host") == [host]
    assert a.sent("X-Forwarded-Proto") == ["http"]
    assert a.sent("X-Route") == ["jupyter"]  # header_X-Route overrides the client's value
    for gone in ("Forwarded", "X-Hop", "Keep-Alive", "Connection"):
        assert a.sent(gone) == [], gone
    plain = request(env.vhttp, host)
    assert plain.sent("X-Forwarded-For") == ["127.0.0.1"]


def test_host_header_rewrite(env: Env) -> None:
    a = request(env.vhttp, "rw.example.com")
    assert a.sent("Host") == ["backend.internal"]
    assert a.sent("X-Forwarded-Host") == ["rw.example.com"]


def test_keep_alive_reroutes_and_reuses_work_connections(env: Env) -> None:
    conn = http.client.HTTPConnection(HOST, env.vhttp, timeout=20)
    try:
        seen: dict[str, set[int]] = {}
        for i in range(30):
            host = ["jupyter.web.example.com", "tb.web.example.com", "app.example.com"][i % 3]
            a = request(env.vhttp, host, f"/n/{i}", conn=conn)
            assert a.status == 200
            seen.setdefault(a.sent("X-Route")[0], set()).add(a.json["peer_port"])
        assert set(seen) == {"jupyter", "tb", "exact"}
        # Each route kept using a small pool of upstream connections, not one per request.
        assert all(len(ports) <= 2 for ports in seen.values()), seen
        assert request(env.vhttp, "nobody.org", conn=conn).status == 404  # still open
        assert request(env.vhttp, "app.example.com", conn=conn).status == 200
    finally:
        conn.close()


def test_gateway_timeout_and_keep_alive(env: Env) -> None:
    conn = http.client.HTTPConnection(HOST, env.vhttp, timeout=20)
    try:
        t0 = time.monotonic()
        a = request(env.vhttp, "jupyter.web.example.com", f"/slow/{TIMEOUT + 2}", conn=conn)
        took = time.monotonic() - t0
        assert a.status == 504
        assert TIMEOUT - 0.1 <= took < TIMEOUT + 1.5
        assert request(env.vhttp, "jupyter.web.example.com", "/after", conn=conn).status == 200
        fast = request(env.vhttp, "jupyter.web.example.com", f"/slow/{TIMEOUT / 4}", conn=conn)
        assert fast.status == 200
    finally:
        conn.close()


def test_bad_gateway_keeps_connection(env: Env) -> None:
    """A local service that is down: frp's 404 page (its ErrorHandler), keep-alive kept."""
    conn = http.client.HTTPConnection(HOST, env.vhttp, timeout=20)
    try:
        assert request(env.vhttp, "down.example.com", conn=conn).status == 404
        assert request(env.vhttp, "app.example.com", conn=conn).status == 200
    finally:
        conn.close()


def test_encrypted_compressed_proxy(env: Env) -> None:
    a = request(env.vhttp, "enc.example.com", f"/download/{8 * MiB}")
    assert a.status == 200
    assert hashlib.sha256(a.body).hexdigest() == expected_sha256(8 * MiB)
    body = os.urandom(3 * MiB)
    up = request(env.vhttp, "enc.example.com", "/upload", method="POST", body=body)
    assert up.json["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert up.sent("X-Route") == ["enc"]


# ----------------------------------------------------------------------------- HTTP/1.1 details


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``data`` and read until the server closes (or the timeout)."""
    with socket.create_connection((HOST, port), timeout) as s:
        s.sendall(data)
        out = bytearray()
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return bytes(out)


def test_expect_100_continue(env: Env) -> None:
    body = b"x" * 1000
    with socket.create_connection((HOST, env.vhttp), 10) as s:
        s.sendall(
            b"PUT /upload HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 1000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        s.sendall(body)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        assert resp.status == 200
        assert json.loads(resp.read())["body_len"] == 1000


def test_pipelined_requests(env: Env) -> None:
    one = b"GET /one HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
    two = b"GET /two HTTP/1.1\r\nHost: tb.web.example.com\r\nConnection: close\r\n\r\n"
    out = raw_exchange(env.vhttp, one + two)
    assert out.count(b"HTTP/1.1 200 OK") == 2
    assert out.index(b'"path": "/one"') < out.index(b'"path": "/two"')


def test_chunked_both_ways(env: Env) -> None:
    a = request(env.vhttp, "app.example.com", f"/chunked/{5 * MiB + 17}")
    assert a.header("Transfer-Encoding") == "chunked"
    assert hashlib.sha256(a.body).hexdigest() == expected_sha256(5 * MiB + 17)
    up = request(
        env.vhttp,
        "app.example.com",
        "/upload",
        method="POST",
        body=(b for b in pattern(3 * MiB + 5)),
        headers={"Transfer-Encoding": "chunked"},
        chunked=True,
    )
    assert up.sent("Transfer-Encoding") == ["chunked"]
    assert up.json["body_sha256"] == expected_sha256(3 * MiB + 5)


def test_http10_client_gets_a_decoded_body(env: Env) -> None:
    out = raw_exchange(env.vhttp, b"GET /chunked/1000 HTTP/1.0\r\nHost: app.example.com\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"chunked" not in head.lower()
    assert body == BLOCK[:1000]


def test_response_until_close(env: Env) -> None:
    a = request(env.vhttp, "app.example.com", "/close/100000")
    assert a.status == 200
    assert a.body == BLOCK[:100000]


def test_bad_requests_do_not_disturb_others(env: Env) -> None:
    # A client that never finishes its head holds only its own connection.
    slow = socket.create_connection((HOST, env.vhttp), 10)
    slow.sendall(b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Slow: ")
    try:
        out = raw_exchange(env.vhttp, b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out[:200]
        out = raw_exchange(env.vhttp, b"GET / HTTP/1.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400 "), out[:200]
        assert b"missing required Host header" in out
        out = raw_exchange(env.vhttp, b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400 "), out[:200]
        big = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * (1 << 21)
        out = raw_exchange(env.vhttp, big)
        assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), out[:200]
        out = raw_exchange(
            env.vhttp, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"
        )
        assert out.startswith(b"HTTP/1.1 501 "), out[:200]
        assert request(env.vhttp, "app.example.com").status == 200
    finally:
        slow.close()


def test_request_head_limit_is_gos(env: Env) -> None:
    """Go's net/http limit (1 MiB + 4 KiB): a head within it reaches the backend, one beyond it
    gets 431 from frps even when it arrives whole in one read."""

    def head(size: int) -> bytes:
        start = b"GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n"
        lines, i = b"", 0
        while len(start) + len(lines) < size - 4:
            lines += b"X-H%d: " % i + b"b" * 16000 + b"\r\n"
            i += 1
        return (start + lines)[: size - 6] + b"\r\n\r\n"

    under = raw_exchange(env.vhttp, head(1 << 20))
    assert under.startswith(b"HTTP/1.1 200 "), under[:200]
    over = raw_exchange(env.vhttp, head((1 << 20) + 4096 + 200))
    assert over.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), over[:200]
    assert request(env.vhttp, "app.example.com").status == 200


# ----------------------------------------------------------------------------- streaming


# The 1 GB, scaled down for the default suite: PYFRP_HTTP_BIG_MIB=1024 runs it in full.
BIG = int(os.environ.get("PYFRP_HTTP_BIG_MIB", "200")) * MiB


def test_large_bodies_stream_with_flat_memory(env: Env) -> None:
    """BIG bytes up and down; the peak RSS of pyfrps and pyfrpc grows by less than 64 MiB."""
    pids = (env.frps.pid, env.frpc.pid)
    before = {pid: rss_kib(pid) for pid in pids}
    t0 = time.monotonic()
    up = request(
        env.vhttp,
        "app.example.com",
        "/upload",
        method="PUT",
        body=(b for b in pattern(BIG)),
        headers={"Content-Length": str(BIG)},
        timeout=120,
    )
    t_up = time.monotonic() - t0
    assert up.status == 200
    assert up.json["body_len"] == BIG
    assert up.json["body_sha256"] == expected_sha256(BIG)
    assert t_up > 0  # longer than vhost_http_timeout on slow machines, and no 504

    t0 = time.monotonic()
    conn = http.client.HTTPConnection(HOST, env.vhttp, timeout=120)
    try:
        conn.request("GET", f"/download/{BIG}", headers={"Host": "app.example.com"})
        resp = conn.getresponse()
        h = hashlib.sha256()
        n = 0
        while chunk := resp.read(MiB):
            h.update(chunk)
            n += len(chunk)
    finally:
        conn.close()
    t_down = time.monotonic() - t0
    assert n == BIG
    assert h.hexdigest() == expected_sha256(BIG)
    grew = {pid: rss_kib(pid, "VmHWM") - before[pid] for pid in pids}
    for pid, kib in grew.items():
        assert kib < 64 * 1024, f"pid {pid}: peak RSS grew by {kib} KiB"
    print(f"{BIG // MiB} MiB up {BIG / t_up / MiB:.0f} MiB/s, down {BIG / t_down / MiB:.0f} MiB/s,")
    print(f"peak RSS growth KiB (pyfrps, pyfrpc): {grew[pids[0]]}, {grew[pids[1]]}")


# ----------------------------------------------------------------------------- WebSocket


def ws_connect(port: int, host: str, path: str) -> object:
    from websockets.sync.client import connect

    sock = socket.create_connection((HOST, port), 10)
    return connect(f"ws://{host}{path}", sock=sock, max_size=None, compression=None)


def test_websocket_echo(env: Env) -> None:
    from websockets.sync.client import ClientConnection

    ws = ws_connect(env.vhttp, f"ws.web.example.com:{env.vhttp}", "/echo")
    assert isinstance(ws, ClientConnection)
    with ws:
        rng = random.Random(7)
        for i in range(1000):
            if i % 100 == 0:
                msg: bytes | str = os.urandom(1_000_000)
            elif i % 2:
                msg = os.urandom(rng.randint(0, 70_000))
            else:
                msg = f"text {i} " * rng.randint(1, 50)
            ws.send(msg)
            assert ws.recv(timeout=20) == msg, i
        # Idle longer than vhost_http_timeout: the upgraded connection has no timers.
        time.sleep(TIMEOUT + 1)
        ws.send("still there")
        assert ws.recv(timeout=10) == "still there"


def test_websocket_many_in_parallel(env: Env) -> None:
    from websockets.sync.client import ClientConnection

    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            ws = ws_connect(env.vhttp, "ws.web.example.com", f"/p{i}")
            assert isinstance(ws, ClientConnection)
            with ws:
                for j in range(50):
                    ws.send(f"{i}:{j}")
                    assert ws.recv(timeout=20) == f"{i}:{j}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


# ----------------------------------------------------------------------------- HTTPS


def test_https_sni_routing(env: Env) -> None:
    assert tls_ask(env.vhttps, "secure.example.com") == "A secure.example.com hello"
    assert tls_ask(env.vhttps, "SECURE.Example.com").startswith("A ")
    assert tls_ask(env.vhttps, "x.tls.example.com") == "B x.tls.example.com hello"
    assert tls_ask(env.vhttps, "tls.web.example.com") == "B tls.web.example.com hello"
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        tls_ask(env.vhttps, "unknown.example.org")
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        tls_ask(env.vhttps, None)


def test_https_not_tls_is_closed(env: Env) -> None:
    out = raw_exchange(env.vhttps, b"GET / HTTP/1.1\r\nHost: secure.example.com\r\n\r\n")
    assert out == b""


# ----------------------------------------------------------------------------- server options


def test_custom_404_page(pyfrp: Pyfrp, tmp_path: Path) -> None:
    page = tmp_path / "404.html"
    page.write_text("<p>nothing here</p>\n")
    bind, vhttp = free_ports(2)
    frps = pyfrp.frps(
        f"[common]\nbind_addr = 127.0.0.1\nbind_port = {bind}\nvhost_http_port = {vhttp}\n"
        f"custom_404_page = {page}\n"
    )
    frps.wait_port(vhttp)
    a = request(vhttp, "anything.example.com")
    assert a.status == 404
    assert a.body == b"<p>nothing here</p>\n"


def test_http_proxy_without_vhost_port(pyfrp: Pyfrp) -> None:
    bind = free_port()
    pyfrp.frps(f"[common]\nbind_addr = 127.0.0.1\nbind_port = {bind}\n").wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
        f"[w]\ntype = http\nlocal_port = 1\ncustom_domains = a.example.com\n"
        f"[s]\ntype = https\nlocal_port = 1\nsubdomain = s\n"
    )
    frpc.wait_log(r"\[w\] start error: type \[http\] not supported when vhost http port is not set")
    frpc.wait_log(
        r"\[s\] start error: type \[https\] not supported when vhost https port is not set"
    )
