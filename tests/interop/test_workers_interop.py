"""Native Go frpc 0.70.1 against pyfrps with two workers: tcp proxies with and without
tcp_mux (work connections land on either worker and are handed to the session's owner), http
routes whichever worker accepts the request, load-balancing groups with members on both, and
xtcp with the proxy and the visitor on different workers."""

from __future__ import annotations

import http.client
import os
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import start_any
from tests.harness import (
    HOST,
    Proc,
    Pyfrp,
    echo_roundtrip,
    free_ports,
    http_service,
    stun_server,
    wait_echo,
)
from tests.integration.test_workers import (
    _ask,
    _named_services,
    _says,
    _session_holder,
    _source,
)

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("mux", [True, False], ids=["tcp_mux", "no-mux"])
def test_go_frpc_through_pyfrps_workers(pyfrp: Pyfrp, tmp_path: Path, echo: int, mux: bool) -> None:
    bind, vhost, *remotes = free_ports(5)
    tcp_mux = f"transport.tcpMux = {str(mux).lower()}\n"
    frps = pyfrp.frps(
        f'bindPort = {bind}\nvhostHTTPPort = {vhost}\nsubdomainHost = "example.com"\n'
        f"pyfrp.workers = 2\n{tcp_mux}",
        suffix=".toml",
    )
    frps.wait_log("frps started successfully", count=2)
    with http_service(lambda path: 200, lambda path: path.encode()) as web:
        clients = [
            start_any(
                pyfrp,
                tmp_path,
                "frpc-native",
                f"serverPort = {bind}\n{tcp_mux}{_source()}"
                f'[[proxies]]\nname = "t{n}"\ntype = "tcp"\nlocalPort = {echo}\n'
                f"remotePort = {remote}\n"
                f'[[proxies]]\nname = "h{n}"\ntype = "http"\nlocalPort = {web}\n'
                f'subdomain = "s{n}"\n',
                str(n),
                ".toml",
            )
            for n, remote in enumerate(remotes)
        ]
        try:
            for c, remote in zip(clients, remotes, strict=True):
                wait_echo(remote, proc=c)
                for i in range(5):
                    payload = os.urandom(1000 + 30000 * i)
                    assert echo_roundtrip(remote, payload) == payload
            for n in range(len(clients)):
                for i in range(6):
                    conn = http.client.HTTPConnection(HOST, vhost, timeout=10)
                    conn.request("GET", f"/{i}", headers={"Host": f"s{n}.example.com"})
                    resp = conn.getresponse()
                    assert (resp.status, resp.read()) == (200, f"/{i}".encode())
                    conn.close()
        finally:
            for c in clients:
                c.stop()


def test_go_frpc_groups_span_pyfrps_workers(pyfrp: Pyfrp, tmp_path: Path) -> None:
    """Go frpc members of a tcp and an http load-balancing group, logged in on both workers:
    every member takes users, whichever worker accepts them."""
    bind, vhost, remote = free_ports(3)
    frps = pyfrp.frps(
        f'bindPort = {bind}\nvhostHTTPPort = {vhost}\nsubdomainHost = "example.com"\n'
        "pyfrp.workers = 2\n",
        suffix=".toml",
    )
    frps.wait_log("frps started successfully", count=2)
    with _named_services(16) as services, ExitStack() as stack:
        webs = [
            stack.enter_context(http_service(lambda path: 200, _says(f"m{n}".encode())))
            for n in range(16)
        ]
        clients: list[Proc] = []
        holders: set[int] = set()
        while len(holders) < 2 or len(clients) < 3:
            assert len(clients) < 16, "every login landed on one worker"
            n = len(clients)
            frpc = start_any(
                pyfrp, tmp_path, "frpc-native",
                f"serverPort = {bind}\n{_source()}"
                f'[[proxies]]\nname = "t{n}"\ntype = "tcp"\nlocalPort = {services[n]}\n'
                f'remotePort = {remote}\nloadBalancer.group = "g"\nloadBalancer.groupKey = "k"\n'
                f'[[proxies]]\nname = "h{n}"\ntype = "http"\nlocalPort = {webs[n]}\n'
                'subdomain = "lab"\nloadBalancer.group = "g"\nloadBalancer.groupKey = "k"\n',
                str(n), ".toml",
            )  # fmt: skip
            stack.callback(frpc.stop)
            frpc.wait_log(rf"\[h{n}\] start proxy success")
            frpc.wait_log(rf"\[t{n}\] start proxy success")
            clients.append(frpc)
            holders.add(_session_holder(bind, frpc))
        count = len(clients)
        assert {_ask(remote) for _ in range(40 * count)} == {
            f"member{n}".encode() for n in range(count)
        }
        seen = set()
        for _ in range(40 * count):
            conn = http.client.HTTPConnection(HOST, vhost, timeout=10)
            conn.request("GET", "/", headers={"Host": "lab.example.com"})
            resp = conn.getresponse()
            seen.add((resp.status, resp.read()))
            conn.close()
        assert seen == {(200, f"m{n}".encode()) for n in range(count)}


def test_go_frpc_xtcp_across_pyfrps_workers(pyfrp: Pyfrp, tmp_path: Path, echo: int) -> None:
    """A Go frpc's xtcp proxy and a Go frpc visitor logged in on different workers punch
    through all the same."""
    bind = free_ports(1)[0]
    frps = pyfrp.frps(f"bindPort = {bind}\npyfrp.workers = 2\n", suffix=".toml")
    frps.wait_log("frps started successfully", count=2)
    no_assisted = "natTraversal.disableAssistedAddrs = true\n"  # loopback only
    with stun_server() as stun, ExitStack() as stack:
        common = (
            f'serverAddr = "127.0.0.1"\nserverPort = {bind}\nuser = "lab"\n'
            f'natHoleStunServer = "127.0.0.1:{stun}"\n'
        )
        owner = start_any(
            pyfrp, tmp_path, "frpc-native",
            common + _source() + f'[[proxies]]\nname = "svc"\ntype = "xtcp"\nsecretKey = "s"\n'
            f"localPort = {echo}\n{no_assisted}", "p", ".toml",
        )  # fmt: skip
        stack.callback(owner.stop)
        owner.wait_log(r"\[svc\] start proxy success")
        for n in range(16):  # until the visitor's login lands on the other worker
            visit = free_ports(1)[0]
            visiting = start_any(
                pyfrp, tmp_path, "frpc-native",
                common + _source() + '[[visitors]]\nname = "v"\ntype = "xtcp"\n'
                f'serverName = "svc"\nsecretKey = "s"\nbindAddr = "127.0.0.1"\n'
                f"bindPort = {visit}\n{no_assisted}",
                f"v{n}", ".toml",
            )  # fmt: skip
            stack.callback(visiting.stop)
            visiting.wait_log("login to server success")
            if _session_holder(bind, visiting) != _session_holder(bind, owner):
                break
            visiting.stop()
        else:
            raise AssertionError("every login landed on the proxy's worker")
        wait_echo(visit, 30, visiting)
        frps.wait_log(r"report make hole success: true")
        payload = os.urandom(500_000)
        assert echo_roundtrip(visit, payload) == payload
