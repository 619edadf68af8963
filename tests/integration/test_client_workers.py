"""pyfrpc with ``pyfrp.workers = 2``: a helper process dials and serves work connections beside
the main one, each over its own connection to frps; what a helper cannot serve alone (udp, a
client-side bandwidth limit) is handed to the main process; a killed helper comes back; a
reload reaches the helpers."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import start_any
from tests.harness import (
    HOST,
    Proc,
    Pyfrp,
    assert_udp_echoes,
    echo_server,
    free_ports,
    process_tree,
    udp_echo_server,
    wait_echo,
    wait_udp_echo,
)

CONNS = 8


def owners(port: int) -> set[int]:
    """The pids holding established TCP connections to ``port`` (the dialling ends)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{port} )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


def wait_connected(bind: int, frpc: Proc) -> set[int]:
    """With tcp_mux: poll until every pyfrpc process holds its session to frps; their pids."""
    end = time.monotonic() + 20
    while True:
        every = set(process_tree(frpc.pid))
        if len(every) > 1 and owners(bind) == every:
            return every
        assert time.monotonic() < end, f"not every pyfrpc process reached frps: {every}"
        time.sleep(0.05)


def echo_many(remote: int, n: int = CONNS) -> list[socket.socket]:
    """``n`` connections through a proxy, each answered once; kept open for ``owners``."""
    socks = []
    for i in range(n):
        s = socket.create_connection((HOST, remote), timeout=10)
        socks.append(s)
        s.sendall(b"hello %d" % i)
        assert s.recv(64) == b"hello %d" % i
    return socks


def frpc_workers(pyfrp: Pyfrp, bind: int, proxies: str, extra: str = "") -> Proc:
    frpc = pyfrp.frpc(
        f'serverAddr = "{HOST}"\nserverPort = {bind}\npyfrp.workers = 2\n{extra}{proxies}',
        suffix=".toml",
    )
    frpc.wait_log(r"pyfrpc worker 1 started, pid \d+")
    return frpc


def tcp_proxy(name: str, local: int, remote: int, extra: str = "") -> str:
    return (
        f'[[proxies]]\nname = "{name}"\ntype = "tcp"\nlocalIP = "{HOST}"\nlocalPort = {local}\n'
        f"remotePort = {remote}\n{extra}"
    )


def check_spread(
    pyfrp: Pyfrp, tmp: Path, echo: int, server: str, mux: bool, frps_workers: int = 1
) -> None:
    """Work connections through ``server`` (pyfrps or Go frps) are served by both pyfrpc
    processes, each over its own connection to frps."""
    bind, remote = free_ports(2)
    tcp_mux = f"transport.tcpMux = {str(mux).lower()}\n"
    own = f"pyfrp.workers = {frps_workers}\n" if server == "pyfrps" else ""
    frps = start_any(pyfrp, tmp, server, f"bindPort = {bind}\n{own}{tcp_mux}", suffix=".toml")
    if frps not in pyfrp.procs:  # a Go peer: stopped with the rest
        pyfrp.procs.append(frps)
    frps.wait_port(bind)
    frpc = frpc_workers(pyfrp, bind, tcp_proxy("t", echo, remote), tcp_mux)
    wait_echo(remote, proc=frpc)
    both = wait_connected(bind, frpc) if mux else set(process_tree(frpc.pid))
    assert len(both) == 2
    with ExitStack() as stack:
        for s in echo_many(remote):
            stack.callback(s.close)
        assert owners(echo) == both  # the local service is dialled by both processes


@pytest.mark.parametrize(
    ("mux", "frps_workers"),
    [(True, 1), (False, 1), (True, 2)],
    ids=["tcp_mux", "no-mux", "tcp_mux-pyfrps-2-workers"],
)
def test_work_connections_spread_over_client_workers(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, mux: bool, frps_workers: int
) -> None:
    """With pyfrps workers too, the helper's work connections reach the client's session."""
    check_spread(pyfrp, tmp_path, echo, "pyfrps", mux, frps_workers)


def one_process_frps(pyfrp: Pyfrp, bind: int) -> None:
    pyfrp.frps(f"bindPort = {bind}\npyfrp.workers = 1\n", suffix=".toml").wait_port(bind)


def test_client_workers_hand_back_what_only_the_main_process_serves(
    pyfrp: Pyfrp, echo: int
) -> None:
    bind, fast, slow, udp = free_ports(4)
    one_process_frps(pyfrp, bind)
    with echo_server() as slow_local, udp_echo_server() as udp_local:
        frpc = frpc_workers(
            pyfrp,
            bind,
            tcp_proxy("fast", echo, fast)
            + tcp_proxy("slow", slow_local, slow, 'transport.bandwidthLimit = "1MB"\n')
            + f'[[proxies]]\nname = "u"\ntype = "udp"\nlocalIP = "{HOST}"\n'
            f"localPort = {udp_local}\nremotePort = {udp}\n",
        )
        wait_echo(fast, proc=frpc)
        wait_echo(slow, proc=frpc)
        wait_udp_echo(udp, proc=frpc)
        assert_udp_echoes(udp)
        with ExitStack() as stack:
            for remote in (fast, slow):
                for s in echo_many(remote):
                    stack.callback(s.close)
            assert len(owners(echo)) == 2
            # one token bucket for the limited proxy: all of its connections in one process
            assert owners(slow_local) == {frpc.pid}
        # the udp proxy's work connection, dialled by whichever process, forwards from here
        frpc.wait_log(r"\[u\] incoming a new work connection for udp proxy, 127\.0\.0\.1:\d+")


def test_a_killed_client_worker_comes_back_and_reloads_reach_it(pyfrp: Pyfrp, echo: int) -> None:
    bind, admin, first, second = free_ports(4)
    one_process_frps(pyfrp, bind)
    head = f'webServer.addr = "{HOST}"\nwebServer.port = {admin}\n'
    frpc = frpc_workers(pyfrp, bind, tcp_proxy("a", echo, first), head)
    wait_echo(first, proc=frpc)
    [helper] = set(process_tree(frpc.pid)) - {frpc.pid}
    subprocess.run(["kill", "-KILL", str(helper)], check=True)
    frpc.wait_log(r"pyfrpc worker 1 exited with code -9; starting it again")
    frpc.wait_log(r"pyfrpc worker 1 started, pid \d+", count=2)
    [again] = wait_connected(bind, frpc) - {frpc.pid}
    assert again != helper
    # a proxy added by a reload is served by the new helper too
    assert frpc.config is not None
    frpc.config.write_text(
        frpc.config.read_text() + tcp_proxy("b", echo, second)
    )  # fmt: skip
    reload = subprocess.run(
        [sys.executable, "-m", "pyfrp.client", "reload", "-c", str(frpc.config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert reload.returncode == 0, reload.stdout + reload.stderr
    wait_echo(second, proc=frpc)
    with ExitStack() as stack:
        for remote in (first, second):
            for s in echo_many(remote):
                stack.callback(s.close)
        assert owners(echo) == {frpc.pid, again}
    frpc.signal(signal.SIGTERM)
    assert frpc.p.wait(10) == 0
    assert not Path(f"/proc/{again}").exists() or _zombie(again)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
