"""How pyfrpc reaches frps and names: through an HTTP or SOCKS5 proxy (``transport.proxyURL``,
INI ``http_proxy``, the ``http_proxy`` environment variable), from a chosen local address
(``transport.connectServerLocalIP``), with names resolved by a given DNS server (``dnsServer``)."""

from __future__ import annotations

import base64
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.harness import HOST, Pyfrp, assert_echo, free_ports, wait_echo


def _frpc(bind: int, echo: int, remote: int, extra: str, server: str = "127.0.0.1") -> str:
    return (
        f'serverAddr = "{server}"\nserverPort = {bind}\nloginFailExit = false\n{extra}'
        f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n'
    )


@dataclass
class ConnectProxy:
    port: int
    requests: list[str] = field(default_factory=list)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def connect_proxy(
    user: str = "", password: str = "", hosts: dict[str, str] | None = None
) -> Iterator[ConnectProxy]:
    """An HTTP proxy on loopback that answers CONNECT (basic auth if given) and pipes bytes;
    ``hosts`` names the addresses of names only it knows."""
    lsock = socket.create_server((HOST, 0))
    proxy = ConnectProxy(lsock.getsockname()[1])
    want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def handle(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                conn.close()
                return
            head += chunk
        text = head.split(b"\r\n\r\n", 1)[0].decode()
        proxy.requests.append(text)
        lines = text.split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        if user and headers.get("proxy-authorization") != want:
            with conn:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            return
        target_host, _, target_port = lines[0].split()[1].rpartition(":")
        target_host = (hosts or {}).get(target_host, target_host)
        try:
            upstream = socket.create_connection((target_host, int(target_port)), timeout=5)
        except OSError:
            with conn:
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            return
        upstream.settimeout(None)
        with conn, upstream:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            there = threading.Thread(target=_pipe, args=(conn, upstream), daemon=True)
            there.start()
            _pipe(upstream, conn)
            there.join()

    def serve() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield proxy
    finally:
        lsock.close()


@contextmanager
def dns_server(records: dict[str, str]) -> Iterator[tuple[int, list[str]]]:
    """A DNS server on UDP loopback answering A queries from ``records`` (others: NXDOMAIN for
    unknown names, empty for known ones). Yields its port and the names asked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(0.2)
    asked: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True)
            asked.append(name)
            if name not in records:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:
                reply.answer.append(
                    dns.rrset.from_text(question.name, 60, "IN", "A", records[name])
                )
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], asked
    finally:
        stop.set()
        thread.join()
        sock.close()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_http_proxy_carries_the_connection_to_frps(pyfrp: Pyfrp, echo: int, tls: bool) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"bindPort = {bind}\ntransport.tcpMux = {str(tls).lower()}\n", suffix=".toml")
    frps.wait_port(bind)
    with connect_proxy("lab", "p@ss") as proxy:
        wrong = pyfrp.frpc(
            _frpc(bind, echo, remote, f'transport.proxyURL = "http://lab:x@{HOST}:{proxy.port}"\n'),
            suffix=".toml",
        )  # fmt: skip
        wrong.wait_log(r"connect to server error: .*407")
        wrong.stop()
        on = str(tls).lower()
        frpc = pyfrp.frpc(
            _frpc(
                bind, echo, remote,
                f'transport.proxyURL = "http://lab:p%40ss@127.0.0.1:{proxy.port}"\n'
                f"transport.tls.enable = {on}\ntransport.tcpMux = {on}\n",
            ),
            suffix=".toml",
        )  # fmt: skip
        frpc.wait_log(r"\[e\] start proxy success")
        wait_echo(remote, proc=frpc)
        assert_echo(remote, os.urandom(300_000))
        assert_echo(remote, os.urandom(1000))  # without tcp_mux: a new CONNECT per work conn
        assert proxy.requests[-1].startswith(f"CONNECT 127.0.0.1:{bind} HTTP/1.1")
        assert len(proxy.requests) >= (2 if tls else 3)


def test_http_proxy_environment_variable(
    pyfrp: Pyfrp, echo: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like frp, an INI file with no http_proxy uses $http_proxy."""
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n")
    frps.wait_port(bind)
    with connect_proxy() as proxy:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        frpc = pyfrp.frpc(
            f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
            f"[e]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
        )
        frpc.wait_log(r"\[e\] start proxy success")
        assert_echo(remote, os.urandom(10_000))
        assert proxy.requests
        assert proxy.requests[0].startswith(f"CONNECT 127.0.0.1:{bind} ")


def test_socks5_proxy_with_password(pyfrp: Pyfrp, echo: int) -> None:
    """Through another frpc's socks5 plugin: a wrong password is refused, the right one works."""
    bind, socks, remote = free_ports(3)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    gateway = pyfrp.frpc(
        f'serverAddr = "127.0.0.1"\nserverPort = {bind}\n'
        f'[[proxies]]\nname = "socks"\ntype = "tcp"\nremotePort = {socks}\n'
        f'[proxies.plugin]\ntype = "socks5"\nusername = "lab"\npassword = "s3cret"\n',
        suffix=".toml",
    )
    gateway.wait_log(r"\[socks\] start proxy success")
    wrong = pyfrp.frpc(
        _frpc(bind, echo, remote, f'transport.proxyURL = "socks5://lab:nope@127.0.0.1:{socks}"\n'),
        suffix=".toml",
    )
    wrong.wait_log("connect to server error")
    wrong.stop()
    assert "start proxy success" not in wrong.log()
    frpc = pyfrp.frpc(
        _frpc(
            bind, echo, remote, f'transport.proxyURL = "socks5://lab:s3cret@127.0.0.1:{socks}"\n'
        ),
        suffix=".toml",
    )
    frpc.wait_log(r"\[e\] start proxy success")
    assert_echo(remote, os.urandom(300_000))


def test_unsupported_proxy_kinds_are_refused_at_start(pyfrp: Pyfrp) -> None:
    frpc = pyfrp.frpc(
        'serverAddr = "127.0.0.1"\ntransport.proxyURL = "ntlm://u:p@127.0.0.1:3128"\n',
        suffix=".toml",
    )
    assert frpc.p.wait(20) == 1
    assert "transport.proxyURL: not supported yet by pyfrp" in frpc.log()


def test_connect_server_local_ip(pyfrp: Pyfrp, echo: int) -> None:
    """frps sees the login (and, without tcp_mux, each work connection) from 127.0.0.2."""
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"bindPort = {bind}\ntransport.tcpMux = false\n", suffix=".toml")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        _frpc(
            bind, echo, remote,
            'transport.connectServerLocalIP = "127.0.0.2"\ntransport.tcpMux = false\n',
        ),
        suffix=".toml",
    )  # fmt: skip
    frpc.wait_log(r"\[e\] start proxy success")
    assert_echo(remote, os.urandom(10_000))
    frps.wait_log(r"client login info: ip \[127\.0\.0\.2:\d+\]")


def test_dns_server_resolves_frps_and_local_names(pyfrp: Pyfrp, echo: int) -> None:
    """Names only the given DNS server knows: frps's address and the local service's."""
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    records = {"frps.pyfrp.test": "127.0.0.1", "echo.pyfrp.test": "127.0.0.1"}
    with dns_server(records) as (dns_port, asked):
        frpc = pyfrp.frpc(
            f'serverAddr = "frps.pyfrp.test"\nserverPort = {bind}\n'
            f'dnsServer = "127.0.0.1:{dns_port}"\n'
            f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalIP = "echo.pyfrp.test"\n'
            f"localPort = {echo}\nremotePort = {remote}\n",
            suffix=".toml",
        )
        frpc.wait_log(r"\[e\] start proxy success")
        assert_echo(remote, os.urandom(10_000))
        assert "frps.pyfrp.test" in asked
        assert "echo.pyfrp.test" in asked
        # A name the server does not know: a login error naming it, not a crash.
        stray = pyfrp.frpc(
            _frpc(bind, echo, remote, f'dnsServer = "127.0.0.1:{dns_port}"\n', "nowhere.test"),
            suffix=".toml",
        )
        stray.wait_log(r"connect to server error: .*nowhere\.test")
        assert stray.alive()
