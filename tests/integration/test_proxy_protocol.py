"""``transport.proxyProtocolVersion``: the local service learns the user's real address from a
PROXY header before the user's bytes (tcp, http, udp), as behind Go frpc."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.harness import HOST, Pyfrp, free_ports

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


@contextmanager
def recording_server(kind: int) -> Iterator[tuple[int, list[bytes]]]:
    """A local TCP or UDP service that keeps the first bytes of each connection/datagram and
    answers HTTP-ish requests with a 200."""
    seen: list[bytes] = []
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind((HOST, 0))
    stop = threading.Event()

    def tcp() -> None:
        sock.listen()
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data.split(SIG, 1)[-1][-4096:] and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                seen.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def udp() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65536)
            except OSError:
                continue
            seen.append(data)
            sock.sendto(b"ok", peer)

    t = threading.Thread(target=tcp if kind == socket.SOCK_STREAM else udp, daemon=True)
    t.start()
    try:
        yield sock.getsockname()[1], seen
    finally:
        stop.set()
        t.join(2)
        sock.close()


def _v2_source(data: bytes, family: int = 0x11) -> tuple[str, int]:
    assert data.startswith(SIG), data[:32]
    assert data[12] == 0x21  # version 2, PROXY
    assert data[13] == family
    src, _dst, sport, _dport = struct.unpack("!4s4sHH", data[16:28])
    return socket.inet_ntoa(src), sport


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tcp_user_address_reaches_local_service(pyfrp: Pyfrp, version: str) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    with recording_server(socket.SOCK_STREAM) as (local, seen):
        frpc = pyfrp.frpc(
            f'serverPort = {bind}\n[[proxies]]\nname = "t"\ntype = "tcp"\nlocalPort = {local}\n'
            f'remotePort = {remote}\ntransport.proxyProtocolVersion = "{version}"\n',
            suffix=".toml",
        )
        frpc.wait_log(r"\[t\] start proxy success")
        with socket.create_connection((HOST, remote), 10) as user:
            user.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert user.recv(64).startswith(b"HTTP/1.1 200")
            port = user.getsockname()[1]
    if version == "v1":
        line = seen[0].split(b"\r\n", 1)[0].decode()
        assert line == f"PROXY TCP4 127.0.0.1 127.0.0.1 {port} {remote}"
    else:
        assert _v2_source(seen[0]) == ("127.0.0.1", port)
    assert seen[0].endswith(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_http_and_udp_user_address(pyfrp: Pyfrp) -> None:
    bind, vhost, remote = free_ports(3)
    frps = pyfrp.frps(f"bindPort = {bind}\nvhostHTTPPort = {vhost}\n", suffix=".toml")
    frps.wait_port(bind)
    with (
        recording_server(socket.SOCK_STREAM) as (web, seen_web),
        recording_server(socket.SOCK_DGRAM) as (dns, seen_udp),
    ):
        frpc = pyfrp.frpc(
            f'serverPort = {bind}\n[[proxies]]\nname = "w"\ntype = "http"\nlocalPort = {web}\n'
            'customDomains = ["pp.example"]\ntransport.proxyProtocolVersion = "v2"\n'
            f'[[proxies]]\nname = "u"\ntype = "udp"\nlocalPort = {dns}\nremotePort = {remote}\n'
            'transport.proxyProtocolVersion = "v2"\n',
            suffix=".toml",
        )
        frpc.wait_log(r"\[u\] start proxy success")
        frpc.wait_log(r"\[w\] start proxy success")
        conn = http.client.HTTPConnection(HOST, vhost, timeout=10)
        conn.request("GET", "/", headers={"Host": "pp.example"})
        assert conn.getresponse().status == 200
        conn.close()
        assert _v2_source(seen_web[0])[0] == "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as user:
            user.settimeout(1)
            user.bind((HOST, 0))
            for _ in range(20):  # the first datagrams may arrive before the work connection
                user.sendto(b"q1", (HOST, remote))
                try:
                    assert user.recv(16) == b"ok"
                    break
                except TimeoutError:
                    continue
            user.sendto(b"q2", (HOST, remote))
            assert user.recv(16) == b"ok"
            port = user.getsockname()[1]
    first = next(d for d in seen_udp if d.startswith(SIG))
    assert _v2_source(first, family=0x12) == ("127.0.0.1", port)
    assert first.endswith(b"q1")
    assert b"q2" in seen_udp  # later datagrams of that user carry no header
