"""tcpmux httpconnect: HTTP CONNECT on tcpmux_httpconnect_port routed by host (and by proxy user)
to pyfrpc's tcpmux proxies."""

from __future__ import annotations

import base64
import os
import socket

from tests.harness import HOST, Pyfrp, free_ports, wait_port


def connect(
    port: int, host: str, auth: tuple[str, str] | None = None
) -> tuple[socket.socket, bytes]:
    """Send CONNECT; returns the socket and the response head (up to the blank line)."""
    s = socket.create_connection((HOST, port), 10)
    head = f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n"
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        head += f"Proxy-Authorization: Basic {token}\r\n"
    s.sendall((head + "\r\n").encode())
    s.settimeout(10)
    got = b""
    while b"\r\n\r\n" not in got:
        data = s.recv(4096)
        if not data:
            break
        got += data
    return s, got


def test_connect_routes_by_host_user_and_checks_credentials(pyfrp: Pyfrp, echo: int) -> None:
    bind, mux = free_ports(2)
    pyfrp.frps(f"[common]\nbind_port = {bind}\ntcpmux_httpconnect_port = {mux}\n").wait_port(bind)
    wait_port(mux)
    frpc = pyfrp.frpc(
        f"[common]\nserver_port = {bind}\n"
        f"[a]\ntype = tcpmux\nmultiplexer = httpconnect\nlocal_port = {echo}\n"
        "custom_domains = a.example.com\n"
        f"[secret]\ntype = tcpmux\nmultiplexer = httpconnect\nlocal_port = {echo}\n"
        "custom_domains = s.example.com\nhttp_user = u\nhttp_pwd = p\n"
    )
    frpc.wait_log(r"\[a\] start proxy success")
    frpc.wait_log(r"\[secret\] start proxy success")
    s, head = connect(mux, "a.example.com")
    with s:
        assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        payload = os.urandom(200_000)
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += s.recv(65536)
        assert got == payload
    s, head = connect(mux, "nowhere.example.com")
    with s:
        assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
        assert b"Server: frp/0.70.1\r\n" in head
    s, head = connect(mux, "s.example.com", ("u", "bad"))
    with s:  # frp sends 200 before it checks the credentials, then 407
        while data := s.recv(4096):
            head += data
        assert head.startswith(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 407 Proxy Authentication"
        )
    s, head = connect(mux, "s.example.com", ("u", "p"))
    with s:
        assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        s.sendall(b"hello")
        assert s.recv(16) == b"hello"
