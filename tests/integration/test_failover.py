"""pyfrpc's failover between several frps (``serverAddrs``, a pyfrp extension): it logs in to the
first that answers, moves every proxy to the next when its frps dies, and back on reload."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.harness import HOST, Pyfrp, assert_echo, free_ports, wait_echo

TOKEN = "failover"


def _frps(bind: int) -> str:
    return f'bindAddr = "{HOST}"\nbindPort = {bind}\nauth.token = "{TOKEN}"\n'


def _frpc(binds: list[int], admin: int, echo: int, remote: int) -> str:
    addrs = ", ".join(f'"{HOST}:{b}"' for b in binds)
    return (
        f'serverAddrs = [{addrs}]\nauth.token = "{TOKEN}"\nloginFailExit = false\n'
        f'webServer.addr = "{HOST}"\nwebServer.port = {admin}\n'
        f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n'
    )


def test_fails_over_and_back(pyfrp: Pyfrp, echo: int) -> None:
    a, b, admin, remote = free_ports(4)
    frps_b = pyfrp.frps(_frps(b), suffix=".toml")
    frps_b.wait_port(b)
    # A is down at start: pyfrpc goes on down the list at once
    frpc = pyfrp.frpc(_frpc([a, b], admin, echo, remote), suffix=".toml")
    frpc.wait_log(rf"try to connect to server \[127\.0\.0\.1:{b}\]")
    frpc.wait_log(r"\[e\] start proxy success")
    assert_echo(remote, os.urandom(10_000))  # remotePort on B (the same number on every frps)
    frps_a = pyfrp.frps(_frps(a), suffix=".toml")
    frps_a.wait_port(a)
    # back to the first when asked
    out = subprocess.run(
        [sys.executable, "-m", "pyfrp.client", "reload", "-c", str(frpc.config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    frpc.wait_log(rf"moving back to server \[127\.0\.0\.1:{a}\]")
    frps_a.wait_log(r"\[e\] tcp proxy listen port")
    wait_echo(remote, proc=frpc)
    # A dies: every proxy moves to B within seconds
    died = time.monotonic()
    frps_a.kill()
    frps_b.wait_log(r"\[e\] tcp proxy listen port", count=2)
    wait_echo(remote, proc=frpc)
    assert time.monotonic() - died < 10
    assert_echo(remote, os.urandom(100_000))


def test_malformed_server_addrs_are_refused(pyfrp: Pyfrp) -> None:
    frpc = pyfrp.frpc('serverAddrs = ["127.0.0.1:7000", "nowhere"]\n', suffix=".toml")
    assert frpc.p.wait(20) == 1
    assert 'serverAddrs: "nowhere" is not a host:port address' in frpc.log()
