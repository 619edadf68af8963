"""frpc's client plugins end to end: a unix socket service, a socks5 and an HTTP proxy with
credentials, and a static file server, each reached through frps."""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import ssl
import struct
import threading
from pathlib import Path

import pytest

from tests.harness import HOST, Pyfrp, free_ports, wait_port
from tests.vhost.backends import self_signed
from tests.webclient import basic, http_call


def _start(pyfrp: Pyfrp, plugin: str, remote: int) -> None:
    (bind,) = free_ports(1)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f'serverPort = {bind}\n[[proxies]]\nname = "p"\ntype = "tcp"\nremotePort = {remote}\n'
        f"[proxies.plugin]\n{plugin}",
        suffix=".toml",
    )
    frpc.wait_log(r"\[p\] start proxy success")
    wait_port(remote)


def test_unix_domain_socket(pyfrp: Pyfrp, tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen()

    def echo() -> None:
        while True:  # the readiness probe is a connection too
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    (remote,) = free_ports(1)
    _start(pyfrp, f'type = "unix_domain_socket"\nunixPath = "{path}"\n', remote)
    with socket.create_connection((HOST, remote), 5) as user:
        payload = os.urandom(100_000)
        user.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += user.recv(65536)
        assert got == payload
    srv.close()


def _socks5(port: int, target: int, creds: tuple[bytes, bytes] | None) -> socket.socket:
    s = socket.create_connection((HOST, port), 5)
    s.settimeout(5)
    s.sendall(b"\x05\x01" + (b"\x02" if creds else b"\x00"))
    assert s.recv(2) == (b"\x05\x02" if creds else b"\x05\x00")
    if creds:
        u, p = creds
        s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        if s.recv(2) != b"\x01\x00":
            s.close()
            raise PermissionError("refused")
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(HOST) + struct.pack("!H", target))
    reply = s.recv(10)
    assert reply[:2] == b"\x05\x00", reply
    return s


def test_socks5_with_credentials(pyfrp: Pyfrp, echo: int) -> None:
    (remote,) = free_ports(1)
    _start(pyfrp, 'type = "socks5"\nusername = "abc"\npassword = "123"\n', remote)
    with _socks5(remote, echo, (b"abc", b"123")) as s:
        s.sendall(b"hello")
        assert s.recv(16) == b"hello"
    with pytest.raises(PermissionError):
        _socks5(remote, echo, (b"abc", b"bad"))
    no_auth = socket.create_connection((HOST, remote), 5)
    no_auth.sendall(b"\x05\x01\x00")  # offers only "no authentication": refused
    assert no_auth.recv(2) == b"\x05\xff"
    no_auth.close()


def test_http_proxy_connect_and_forward(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    (remote,) = free_ports(1)
    _start(pyfrp, 'type = "http_proxy"\nhttpUser = "abc"\nhttpPassword = "123"\n', remote)
    conn = http.client.HTTPConnection(HOST, remote, timeout=5)
    conn.request("GET", f"http://{HOST}:{remote}/x")
    resp = conn.getresponse()
    assert resp.status == 407
    assert resp.getheader("Proxy-Authenticate") == 'Basic realm="Restricted"'
    conn.close()
    with socket.create_connection((HOST, remote), 5) as s:
        s.settimeout(5)
        s.sendall(
            f"CONNECT {HOST}:{echo} HTTP/1.1\r\nHost: {HOST}:{echo}\r\n"
            f"Proxy-Authorization: {basic('abc', '123')}\r\n\r\n".encode()
        )
        assert s.recv(64) == b"HTTP/1.1 200 Connection established\r\n\r\n"
        s.sendall(b"through")
        assert s.recv(16) == b"through"


def test_static_file_with_auth_and_prefix(pyfrp: Pyfrp, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.txt").write_text("file a")
    (tmp_path / "secret.txt").write_text("outside")
    (remote,) = free_ports(1)
    _start(
        pyfrp,
        f'type = "static_file"\nlocalPath = "{tmp_path / "site"}"\nstripPrefix = "static"\n'
        'httpUser = "u"\nhttpPassword = "p"\n',
        remote,
    )
    url = f"http://{HOST}:{remote}"
    assert http_call("GET", f"{url}/static/a.txt").status == 401
    ok = http_call("GET", f"{url}/static/a.txt", basic("u", "p"))
    assert (ok.status, ok.text) == (200, "file a")
    assert http_call("GET", f"{url}/a.txt", basic("u", "p")).status == 404  # no prefix
    assert http_call("GET", f"{url}/static/../secret.txt", basic("u", "p")).status == 404
    listing = http_call("GET", f"{url}/static/", basic("u", "p"))
    assert '<a href="a.txt">a.txt</a>' in listing.text


def _tls_client(port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((HOST, port), 5)
    return ctx.wrap_socket(raw, server_hostname="example.com")


def test_tls2raw_ends_tls_and_passes_raw_bytes(pyfrp: Pyfrp, echo: int) -> None:
    (remote,) = free_ports(1)
    _start(pyfrp, f'type = "tls2raw"\nlocalAddr = "127.0.0.1:{echo}"\n', remote)
    with _tls_client(remote) as tls:
        payload = os.urandom(300_000)
        tls.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += tls.recv(65536)
        assert got == payload


@pytest.mark.parametrize("kind", ["http2http", "https2http", "http2https", "https2https"])
def test_http_relays_rewrite_host_and_set_headers(pyfrp: Pyfrp, kind: str, tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b"from " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    if kind.endswith("2https"):
        crt, key = self_signed(tmp_path, "localhost")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    (remote,) = free_ports(1)
    _start(
        pyfrp,
        f'type = "{kind}"\nlocalAddr = "127.0.0.1:{srv.server_address[1]}"\n'
        'hostHeaderRewrite = "inner.example"\nrequestHeaders.set.x-from-frp = "yes"\n',
        remote,
    )
    try:
        for i in range(3):  # one keep-alive connection, three requests
            if kind.startswith("https2"):
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    HOST, remote, timeout=10, context=ssl._create_unverified_context()
                )
            else:
                conn = http.client.HTTPConnection(HOST, remote, timeout=10)
            conn.request("GET", f"/p{i}", headers={"Host": "outer.example"})
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, f"from /p{i}".encode())
            conn.close()
        assert seen[-1]["host"] == "inner.example"
        assert seen[-1]["x-from-frp"] == "yes"
    finally:
        srv.shutdown()
        srv.server_close()
