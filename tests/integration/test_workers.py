"""pyfrps with ``pyfrp.workers = 2``: a supervisor and two worker processes sharing bind_port and
the vhost port. Whichever worker accepts a connection, it reaches the worker that owns its frpc's
session or its route (handed over with SCM_RIGHTS or a bridge), names and routes stay unique
across workers, a killed worker comes back, and SIGHUP reloads every worker."""

from __future__ import annotations

import http.client
import itertools
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.harness import (
    HOST,
    Proc,
    Pyfrp,
    echo_roundtrip,
    free_ports,
    http_service,
    serving,
    stun_server,
    wait_echo,
)
from tests.integration import test_xtcp as xtcp
from tests.webclient import http_call, wait_json

CLIENTS = 4


def _frps(pyfrp: Pyfrp, bind: int, extra: str = "") -> Proc:
    frps = pyfrp.frps(f"bindPort = {bind}\npyfrp.workers = 2\n{extra}", suffix=".toml")
    frps.wait_log("frps supervisor: 2 workers started")
    frps.wait_log("frps started successfully", count=2)
    return frps


_HOSTS = itertools.count()


def _source() -> str:
    """A client setting to dial frps from the next loopback address: pyfrps gives all the
    connections of one address to one worker (net/steer.py), so clients of distinct addresses
    spread over the workers."""
    return f'transport.connectServerLocalIP = "127.0.0.{2 + next(_HOSTS) % 250}"\n'


def _frpc(pyfrp: Pyfrp, bind: int, proxy: str, mux: bool = True) -> Proc:
    return pyfrp.frpc(
        f'serverAddr = "{HOST}"\nserverPort = {bind}\ntransport.tcpMux = {str(mux).lower()}\n'
        f"{_source()}[[proxies]]\n{proxy}",
        suffix=".toml",
    )


def _workers(frps: Proc) -> dict[int, int]:
    """Worker index -> pid of its latest start, from the supervisor's log."""
    found = re.findall(r"frps worker (\d+) started, pid (\d+)", frps.log())
    return {int(i): int(pid) for i, pid in found}


def _session_holder(bind: int, frpc: Proc) -> int:
    """The pid of the frps process holding ``frpc``'s control connection (ss -p)."""
    return _holders(bind, frpc)[0]


def _holders(bind: int, frpc: Proc) -> list[int]:
    """The pids of the frps processes holding each of ``frpc``'s connections, oldest first."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{bind} )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    ours = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{bind} )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    local = [line.split()[2] for line in ours.splitlines() if f"pid={frpc.p.pid}," in line]
    assert local, f"no connection of pid {frpc.p.pid} to {bind}"
    held = {line.split()[3]: int(re.findall(r"pid=(\d+),", line)[0]) for line in out.splitlines()}
    return [held[addr] for addr in local if addr in held]


@pytest.mark.parametrize("mux", [True, False], ids=["tcp_mux", "no-mux"])
def test_tcp_proxies_of_many_clients_work_on_either_worker(
    pyfrp: Pyfrp, echo: int, mux: bool
) -> None:
    bind, *remotes = free_ports(1 + CLIENTS)
    _frps(pyfrp, bind, f"transport.tcpMux = {str(mux).lower()}\n")
    clients = [
        _frpc(
            pyfrp,
            bind,
            f'name = "t{n}"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n',
            mux,
        )
        for n, remote in enumerate(remotes)
    ]
    for remote in remotes:
        wait_echo(remote)
        for i in range(10):  # without tcp_mux each is a new work connection
            payload = os.urandom(4096 + i * 7000)
            assert echo_roundtrip(remote, payload) == payload
    holders = [_holders(bind, c) for c in clients]
    # every connection of a client (its control, its pooled work connections) meets its
    # session on one worker: none is handed over
    assert all(len(set(h)) == 1 for h in holders), holders
    assert len({h[0] for h in holders}) == 2, holders  # and the clients are spread


def test_http_routes_are_served_whichever_worker_accepts(pyfrp: Pyfrp) -> None:
    bind, vhost = free_ports(2)
    _frps(pyfrp, bind, f'vhostHTTPPort = {vhost}\nsubdomainHost = "example.com"\n')
    with http_service(lambda path: 200, lambda path: path.encode()) as local:
        for n in range(CLIENTS):
            frpc = _frpc(pyfrp, bind, f'name = "w{n}"\ntype = "http"\nlocalPort = {local}\n'
                         f'subdomain = "s{n}"\n')  # fmt: skip
            frpc.wait_log(rf"\[w{n}\] start proxy success")
        for round_ in range(5):
            for n in range(CLIENTS):
                # a new connection each time lands on either worker; its second request, on the
                # same keep-alive connection, is for another client's host
                conn = http.client.HTTPConnection(HOST, vhost, timeout=10)
                try:
                    other = (n + 1) % CLIENTS
                    for host, path in ((n, f"/a{round_}"), (other, f"/b{round_}")):
                        conn.request("GET", path, headers={"Host": f"s{host}.example.com"})
                        resp = conn.getresponse()
                        assert (resp.status, resp.read()) == (200, path.encode())
                finally:
                    conn.close()
        conn = http.client.HTTPConnection(HOST, vhost, timeout=10)
        conn.request("GET", "/", headers={"Host": "nobody.example.com"})
        assert conn.getresponse().status == 404
        conn.close()


def test_names_and_routes_stay_unique_across_workers(pyfrp: Pyfrp, echo: int) -> None:
    bind, vhost, remote, other = free_ports(4)
    _frps(pyfrp, bind, f'vhostHTTPPort = {vhost}\nsubdomainHost = "example.com"\n')
    first = _frpc(pyfrp, bind, f'name = "ssh"\ntype = "tcp"\nlocalPort = {echo}\n'
                  f'remotePort = {remote}\n[[proxies]]\nname = "web"\ntype = "http"\n'
                  f'localPort = {echo}\nsubdomain = "lab"\n')  # fmt: skip
    first.wait_log(r"\[ssh\] start proxy success")
    first.wait_log(r"\[web\] start proxy success")
    # Several clients, so that some log in on the other worker: each is refused all the same.
    for _ in range(3):
        dup = _frpc(pyfrp, bind, f'name = "ssh"\ntype = "tcp"\nlocalPort = {echo}\n'
                    f'remotePort = {other}\n[[proxies]]\nname = "web2"\ntype = "http"\n'
                    f'localPort = {echo}\nsubdomain = "lab"\n[[proxies]]\nname = "ssh2"\n'
                    f'type = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n')  # fmt: skip
        dup.wait_log(r"\[ssh\] start error: proxy \[ssh\] already exists")
        dup.wait_log(r"\[web2\] start error: .*router config conflict")
        dup.wait_log(r"\[ssh2\] start error: port already used")
        dup.stop()
    wait_echo(remote)


class _Named(socketserver.BaseRequestHandler):
    """Answers every connection with its server's name, then closes it."""

    def handle(self) -> None:
        self.request.sendall(self.server.name)  # type: ignore[attr-defined]


@contextmanager
def _named_services(n: int) -> Iterator[list[int]]:
    """``n`` local TCP services; service i answers ``member<i>``."""
    with ExitStack() as stack:
        ports = []
        for i in range(n):
            srv = socketserver.ThreadingTCPServer((HOST, 0), _Named)
            srv.daemon_threads = True
            srv.name = f"member{i}".encode()  # type: ignore[attr-defined]
            ports.append(stack.enter_context(serving(srv)))
        yield ports


def _says(body: bytes) -> Callable[[str], bytes]:
    return lambda path: body


def _ask(port: int) -> bytes:
    with socket.create_connection((HOST, port), timeout=10) as s:
        data = b""
        while chunk := s.recv(100):
            data += chunk
        return data


def _members_on_both_workers(
    pyfrp: Pyfrp, bind: int, proxy: Callable[[int], str], started: str
) -> list[Proc]:
    """Start clients whose proxy is ``proxy(n)`` until members sit on both workers (a login
    lands on either; each ends when its ``started`` line names it)."""
    clients: list[Proc] = []
    holders: set[int] = set()
    while len(holders) < 2 or len(clients) < 3:
        assert len(clients) < 16, "every login landed on one worker"
        frpc = _frpc(pyfrp, bind, proxy(len(clients)))
        frpc.wait_log(started.format(n=len(clients)))
        clients.append(frpc)
        holders.add(_session_holder(bind, frpc))
    return clients


def test_a_tcp_group_spans_workers(pyfrp: Pyfrp, echo: int) -> None:
    bind, remote, other = free_ports(3)
    _frps(pyfrp, bind)
    with _named_services(16) as services:

        def member(n: int) -> str:
            return (
                f'name = "g{n}"\ntype = "tcp"\nlocalPort = {services[n]}\nremotePort = {remote}\n'
                'loadBalancer.group = "web"\nloadBalancer.groupKey = "k"\n'
            )

        clients = _members_on_both_workers(pyfrp, bind, member, r"\[g{n}\] start proxy success")
        names = {f"member{n}".encode() for n in range(len(clients))}
        seen: set[bytes] = set()
        for _ in range(40 * len(clients)):  # each new connection: either worker, next member
            seen.add(_ask(remote))
            if seen == names:
                break
        assert seen == names
        # frp's refusals hold whichever worker the newcomer's login lands on
        for _ in range(3):
            bad = _frpc(pyfrp, bind, f'name = "bad"\ntype = "tcp"\nlocalPort = {echo}\n'
                        f'remotePort = {remote}\nloadBalancer.group = "web"\n'
                        'loadBalancer.groupKey = "wrong"\n[[proxies]]\nname = "moved"\n'
                        f'type = "tcp"\nlocalPort = {echo}\nremotePort = {other}\n'
                        'loadBalancer.group = "web"\nloadBalancer.groupKey = "k"\n'
                        '[[proxies]]\nname = "plain"\ntype = "tcp"\n'
                        f"localPort = {echo}\nremotePort = {remote}\n")  # fmt: skip
            bad.wait_log(r"\[bad\] start error: group auth failed")
            bad.wait_log(r"\[moved\] start error: group should have same remote port")
            bad.wait_log(r"\[plain\] start error: port already used")
            bad.stop()
        # the members leave one by one: the others keep the port; the last one frees it
        for n, frpc in enumerate(clients[:-1]):
            frpc.stop()
            for _ in range(10):
                assert _ask(remote) in names - {f"member{i}".encode() for i in range(n + 1)}
        clients[-1].stop()
        plain = _frpc(pyfrp, bind, f'name = "plain"\ntype = "tcp"\nlocalPort = {echo}\n'
                      f"remotePort = {remote}\n")  # fmt: skip
        plain.wait_log(r"\[plain\] start proxy success")
        wait_echo(remote)


def test_a_tcp_group_on_a_random_port_shares_one_port(pyfrp: Pyfrp) -> None:
    bind = free_ports(1)[0]
    frps = _frps(pyfrp, bind)
    with _named_services(16) as services:

        def member(n: int) -> str:
            return (
                f'name = "r{n}"\ntype = "tcp"\nlocalPort = {services[n]}\nremotePort = 0\n'
                'loadBalancer.group = "rnd"\n'
            )

        clients = _members_on_both_workers(pyfrp, bind, member, r"\[r{n}\] start proxy success")
        # every worker listens on the one port the first member drew
        pids = set(_workers(frps).values())
        listening = subprocess.run(
            ["ss", "-Htlnp"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        ports = {
            (int(line.split()[3].rpartition(":")[2]), int(pid))
            for line in listening
            for pid in re.findall(r"pid=(\d+),", line)
            if int(pid) in pids
        }
        assert {p for p, _ in ports} - {bind} != set(), listening
        (port,) = {p for p, _ in ports} - {bind}
        assert {pid for p, pid in ports if p == port} == pids
        names = {f"member{n}".encode() for n in range(len(clients))}
        seen = {_ask(port) for _ in range(40 * len(clients))}
        assert seen == names


def test_an_http_group_spans_workers(pyfrp: Pyfrp) -> None:
    bind, vhost = free_ports(2)
    _frps(pyfrp, bind, f'vhostHTTPPort = {vhost}\nsubdomainHost = "example.com"\n')
    with ExitStack() as stack:
        locals_ = [
            stack.enter_context(http_service(lambda path: 200, _says(f"m{n}".encode())))
            for n in range(16)
        ]

        def member(n: int) -> str:
            return (
                f'name = "h{n}"\ntype = "http"\nlocalPort = {locals_[n]}\nsubdomain = "lab"\n'
                'loadBalancer.group = "web"\nloadBalancer.groupKey = "k"\n'
            )

        clients = _members_on_both_workers(pyfrp, bind, member, r"\[h{n}\] start proxy success")
        names = {f"m{n}".encode() for n in range(len(clients))}

        def get() -> tuple[int, bytes]:
            conn = http.client.HTTPConnection(HOST, vhost, timeout=10)
            try:
                conn.request("GET", "/", headers={"Host": "lab.example.com"})
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()

        seen = {get() for _ in range(40 * len(clients))}
        assert seen == {(200, name) for name in names}
        bad = _frpc(pyfrp, bind, f'name = "x"\ntype = "http"\nlocalPort = {locals_[0]}\n'
                    'subdomain = "lab"\nloadBalancer.group = "web"\n'
                    'loadBalancer.groupKey = "wrong"\n[[proxies]]\nname = "y"\n'
                    f'type = "http"\nlocalPort = {locals_[0]}\nsubdomain = "lab"\n')  # fmt: skip
        bad.wait_log(r"\[x\] start error: .*group auth failed")
        bad.wait_log(r"\[y\] start error: .*router config conflict")
        for frpc in clients:
            frpc.stop()
        end = time.monotonic() + 10
        while get()[0] != 404:
            assert time.monotonic() < end, "the group's route outlived its members"
            time.sleep(0.1)


def test_a_killed_worker_is_restarted_and_its_clients_come_back(pyfrp: Pyfrp, echo: int) -> None:
    bind, *remotes = free_ports(1 + CLIENTS)
    frps = _frps(pyfrp, bind)
    clients = []
    for n, remote in enumerate(remotes):
        clients.append(_frpc(pyfrp, bind, f'name = "k{n}"\ntype = "tcp"\nlocalPort = {echo}\n'
                             f"remotePort = {remote}\n"))  # fmt: skip
    for remote in remotes:
        wait_echo(remote)
    workers = _workers(frps)
    holders = [_session_holder(bind, c) for c in clients]
    assert set(holders) <= set(workers.values())
    victim = holders[0]
    os.kill(victim, signal.SIGKILL)
    frps.wait_log(r"frps worker \d exited with code -9; starting it again")
    end = time.monotonic() + 30
    while victim in _workers(frps).values() or len(_workers(frps)) < 2:
        assert time.monotonic() < end, "the worker was not started again"
        time.sleep(0.1)
    for c, remote in zip(clients, remotes, strict=True):
        wait_echo(remote, timeout=40, proc=c)  # frpc logs in again after its session died
    for c, holder in zip(clients, holders, strict=True):
        logins = c.log().count("login to server success")
        assert logins == (2 if holder == victim else 1), c.log()[-2000:]


def test_workers_exit_cleanly_when_the_supervisor_is_killed(pyfrp: Pyfrp) -> None:
    bind = free_ports(1)[0]
    frps = _frps(pyfrp, bind)
    workers = list(_workers(frps).values())
    os.kill(frps.pid, signal.SIGKILL)
    frps.wait_log("lost the supervisor, exiting", count=2)
    end = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < end, "a worker outlived its supervisor"
        time.sleep(0.05)
    assert "Traceback" not in frps.log()


def test_sighup_reloads_every_worker(pyfrp: Pyfrp) -> None:
    bind, vhost = free_ports(2)
    page = pyfrp.tmp / "404.html"
    page.write_text("<h1>old page</h1>")
    frps = _frps(pyfrp, bind, f'vhostHTTPPort = {vhost}\ncustom404Page = "{page}"\n')
    assert frps.config is not None
    page2 = pyfrp.tmp / "404-new.html"
    page2.write_text("<h1>new page</h1>")
    frps.config.write_text(frps.config.read_text().replace(str(page), str(page2)))
    frps.signal(signal.SIGHUP)
    frps.wait_log("success reload conf", count=2)
    for _ in range(8):  # new connections, accepted by either worker
        conn = http.client.HTTPConnection(HOST, vhost, timeout=10)
        conn.request("GET", "/", headers={"Host": "nobody.example.com", "Connection": "close"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (404, b"<h1>new page</h1>")
        conn.close()
    # `pyfrps reload` signals the supervisor only: each worker reloads once, not twice
    out = subprocess.run(
        [sys.executable, "-m", "pyfrp.server", "reload", "-c", str(frps.config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.findall(r"sent SIGHUP to pyfrps \(pid (\d+)\)", out.stdout) == [str(frps.p.pid)]
    frps.wait_log("success reload conf", count=4)


def test_a_second_frps_on_the_same_port_is_refused(pyfrp: Pyfrp) -> None:
    # The workers' sockets share the port (SO_REUSEPORT); another frps must not join them.
    bind = free_ports(1)[0]
    _frps(pyfrp, bind)
    second = pyfrp.frps(f"bindPort = {bind}\npyfrp.workers = 2\n", suffix=".toml")
    assert second.p.wait(20) != 0
    assert "create server listener error" in second.log()
    assert "address already in use" in second.log().lower()


def test_xtcp_visitor_and_proxy_on_different_workers(pyfrp: Pyfrp, echo: int) -> None:
    """The visitor's request goes to the proxy's worker, which runs the session; the answer
    and the visitor's report travel between the two."""
    bind = free_ports(1)[0]
    frps = _frps(pyfrp, bind)
    with stun_server() as stun:
        owner = pyfrp.frpc(
            xtcp.CLIENT.format(bind=bind, user="lab", stun=stun)
            + _source()
            + xtcp.proxy("ssh", echo, 'allowUsers = ["alice"]\n'),
            suffix=".toml",
        )
        owner.wait_log(r"\[ssh\] start proxy success")
        holder = _session_holder(bind, owner)
        for user in ("alice", "eve"):
            for _ in range(16):  # until a login lands on the other worker
                visit = free_ports(1)[0]
                visiting = pyfrp.frpc(
                    xtcp.CLIENT.format(bind=bind, user=user, stun=stun)
                    + _source()
                    + xtcp.visitor("v", "ssh", visit, "keepTunnelOpen = true\n"),
                    suffix=".toml",
                )
                visiting.wait_log("login to server success")
                if _session_holder(bind, visiting) != holder:
                    break
                visiting.stop()
            else:
                raise AssertionError("every login landed on the proxy's worker")
            if user == "eve":
                refused = r"xtcp visitor user \[eve\] not allowed for \[lab\.ssh\]"
                visiting.wait_log(f"nathole precheck error: {refused}")
                continue
            wait_echo(visit, 30, visiting)
            visiting.wait_log(r"\[v\] establishing nat hole connection successful")
            frps.wait_log(r"report make hole success: true")
            assert echo_roundtrip(visit, b"x" * 100_000) == b"x" * 100_000
            visiting.stop()


def test_the_dashboard_shows_every_worker(pyfrp: Pyfrp, echo: int) -> None:
    """Worker 0 serves the dashboard; its API and /metrics count the clients, proxies and
    traffic of both workers, and a clear of offline proxies reaches both."""
    bind, web = free_ports(2)
    frps = _frps(pyfrp, bind, f'enablePrometheus = true\nwebServer.addr = "{HOST}"\n'
                 f"webServer.port = {web}\n")  # fmt: skip
    frps.wait_log("dashboard listen on")
    url = f"http://{HOST}:{web}"
    remotes: list[int] = []

    def member(n: int) -> str:
        remotes.append(free_ports(1)[0])
        return f'name = "d{n}"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remotes[-1]}\n'

    clients = _members_on_both_workers(pyfrp, bind, member, r"\[d{n}\] start proxy success")
    count = len(clients)
    sent = 0
    for remote in remotes:
        payload = os.urandom(50_000)
        assert echo_roundtrip(remote, payload) == payload
        sent += len(payload)
    info = wait_json(f"{url}/api/serverinfo", None, lambda j: j["totalTrafficIn"] >= sent)
    assert info["clientCounts"] == count
    assert info["proxyTypeCount"] == {"tcp": count}
    listed = http_call("GET", f"{url}/api/proxy/tcp", None).json()["proxies"]
    assert sorted(p["name"] for p in listed) == [f"d{n}" for n in range(count)]
    assert {p["status"] for p in listed} == {"online"}
    assert {p["conf"]["remotePort"] for p in listed} == set(remotes)
    assert len(http_call("GET", f"{url}/api/clients", None).json()) == count
    v2 = http_call("GET", f"{url}/api/v2/proxies", None).json()["data"]
    assert v2["total"] == count, v2
    metrics = http_call("GET", f"{url}/metrics", None).text
    assert f"frp_server_client_counts {float(count)}" in metrics
    assert f'frp_server_proxy_counts{{type="tcp"}} {float(count)}' in metrics
    # the clients of the other worker too go offline, and are cleared
    for frpc in clients:
        frpc.stop()
    wait_json(f"{url}/api/serverinfo", None, lambda j: j["clientCounts"] == 0)
    listed = http_call("GET", f"{url}/api/proxy/tcp", None).json()["proxies"]
    assert {p["status"] for p in listed} == {"offline"}
    assert http_call("DELETE", f"{url}/api/proxies?status=offline", None).status == 200
    wait_json(f"{url}/api/proxy/tcp", None, lambda j: j["proxies"] == [])
