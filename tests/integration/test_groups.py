"""Load-balancing groups: proxies of one group (from one frpc or several) share a tcp port or an
http route and take users in turn; a member leaving leaves the others serving; a wrong group key
is refused with frp's text."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from socketserver import BaseRequestHandler, ThreadingTCPServer

from tests.harness import HOST, Pyfrp, free_ports, http_service, wait_port

GROUP = 'loadBalancer.group = "g"\nloadBalancer.groupKey = "k"\n'


@contextmanager
def named_tcp(name: bytes) -> Iterator[int]:
    class H(BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(name)

    srv = ThreadingTCPServer((HOST, 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


def named_http(name: bytes) -> AbstractContextManager[int]:
    return http_service(lambda path: 200, lambda path: name)


def _ask_tcp(port: int) -> bytes:
    import socket

    with socket.create_connection((HOST, port), 5) as s:
        s.settimeout(5)
        return s.recv(16)


def test_tcp_group_across_two_clients(pyfrp: Pyfrp) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    with named_tcp(b"foo") as foo, named_tcp(b"bar") as bar:
        a = pyfrp.frpc(
            f'serverPort = {bind}\n[[proxies]]\nname = "foo"\ntype = "tcp"\n'
            f"localPort = {foo}\nremotePort = {remote}\n{GROUP}",
            suffix=".toml",
        )
        a.wait_log(r"\[foo\] start proxy success")
        b = pyfrp.frpc(
            f'serverPort = {bind}\n[[proxies]]\nname = "bar"\ntype = "tcp"\n'
            f"localPort = {bar}\nremotePort = {remote}\n{GROUP}",
            suffix=".toml",
        )
        b.wait_log(r"\[bar\] start proxy success")
        wrong = pyfrp.frpc(
            f'serverPort = {bind}\n[[proxies]]\nname = "baz"\ntype = "tcp"\n'
            f'localPort = {bar}\nremotePort = {remote}\nloadBalancer.group = "g"\n'
            'loadBalancer.groupKey = "nope"\n',
            suffix=".toml",
        )
        wrong.wait_log(r"\[baz\] start error: group auth failed")
        wait_port(remote)
        answers = [_ask_tcp(remote) for _ in range(10)]
        assert answers.count(b"foo") == 5
        assert answers.count(b"bar") == 5
        a.stop()  # foo leaves; the port stays, bar takes everyone
        frps.wait_log(r"close proxy \[foo\] success")
        assert [_ask_tcp(remote) for _ in range(4)] == [b"bar"] * 4
        assert f"tcp proxy listen port [{remote}] in group [g]" in frps.log()


def test_http_group_takes_requests_in_turn(pyfrp: Pyfrp) -> None:
    bind, vhost = free_ports(2)
    frps = pyfrp.frps(f"bindPort = {bind}\nvhostHTTPPort = {vhost}\n", suffix=".toml")
    frps.wait_port(bind)
    with named_http(b"foo") as foo, named_http(b"bar") as bar:
        frpc = pyfrp.frpc(
            f'serverPort = {bind}\n[[proxies]]\nname = "foo"\ntype = "http"\nlocalPort = {foo}\n'
            f'customDomains = ["lb.example"]\n{GROUP}'
            f'[[proxies]]\nname = "bar"\ntype = "http"\nlocalPort = {bar}\n'
            f'customDomains = ["lb.example"]\n{GROUP}',
            suffix=".toml",
        )
        frpc.wait_log(r"\[bar\] start proxy success")
        frpc.wait_log(r"\[foo\] start proxy success")
        conn = http.client.HTTPConnection(HOST, vhost, timeout=10)  # one keep-alive client
        seen = []
        for _ in range(6):
            conn.request("GET", "/", headers={"Host": "lb.example"})
            seen.append(conn.getresponse().read())
        conn.close()
        assert sorted(seen) == [b"bar"] * 3 + [b"foo"] * 3
