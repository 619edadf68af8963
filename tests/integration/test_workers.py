"""pyfrps with ``pyfrp.workers = 2``: a supervisor and two worker processes sharing bind_port and
the vhost port. Whichever worker accepts a connection, it reaches the worker that owns its frpc's
session or its route (handed over with SCM_RIGHTS or a bridge), names and routes stay unique
across workers, a killed worker comes back, and SIGHUP reloads every worker."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.harness import HOST, Proc, Pyfrp, echo_roundtrip, free_ports, http_service, wait_echo

CLIENTS = 4


def _frps(pyfrp: Pyfrp, bind: int, extra: str = "") -> Proc:
    frps = pyfrp.frps(f"bindPort = {bind}\npyfrp.workers = 2\n{extra}", suffix=".toml")
    frps.wait_log("frps supervisor: 2 workers started")
    frps.wait_log("frps started successfully", count=2)
    return frps


def _frpc(pyfrp: Pyfrp, bind: int, proxy: str, mux: bool = True) -> Proc:
    return pyfrp.frpc(
        f'serverAddr = "{HOST}"\nserverPort = {bind}\ntransport.tcpMux = {str(mux).lower()}\n'
        f"[[proxies]]\n{proxy}",
        suffix=".toml",
    )


def _workers(frps: Proc) -> dict[int, int]:
    """Worker index -> pid of its latest start, from the supervisor's log."""
    found = re.findall(r"frps worker (\d+) started, pid (\d+)", frps.log())
    return {int(i): int(pid) for i, pid in found}


def _session_holder(bind: int, frpc: Proc) -> int:
    """The pid of the frps process holding ``frpc``'s control connection (ss -p)."""
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
    for line in out.splitlines():
        if line.split()[3] == local[0]:
            return int(re.findall(r"pid=(\d+),", line)[0])
    raise AssertionError(f"no frps side for {local[0]}")


@pytest.mark.parametrize("mux", [True, False], ids=["tcp_mux", "no-mux"])
def test_tcp_proxies_of_many_clients_work_on_either_worker(
    pyfrp: Pyfrp, echo: int, mux: bool
) -> None:
    bind, *remotes = free_ports(1 + CLIENTS)
    _frps(pyfrp, bind, f"transport.tcpMux = {str(mux).lower()}\n")
    for n, remote in enumerate(remotes):
        _frpc(pyfrp, bind, f'name = "t{n}"\ntype = "tcp"\nlocalPort = {echo}\n'
              f"remotePort = {remote}\n", mux)  # fmt: skip
    for remote in remotes:
        wait_echo(remote)
        for i in range(10):  # without tcp_mux each is a new work connection, on any worker
            payload = os.urandom(4096 + i * 7000)
            assert echo_roundtrip(remote, payload) == payload


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


def test_groups_are_refused_with_a_clear_error(pyfrp: Pyfrp, echo: int) -> None:
    bind, remote = free_ports(2)
    _frps(pyfrp, bind)
    frpc = _frpc(pyfrp, bind, f'name = "g"\ntype = "tcp"\nlocalPort = {echo}\n'
                 f'remotePort = {remote}\nloadBalancer.group = "web"\n')  # fmt: skip
    frpc.wait_log(r"\[g\] start error: group \[web\] is not supported with pyfrp.workers > 1")


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
