"""Connections that never log in, and logins from another time: pyfrps's own limits (pyfrp.*
settings; Go frps has neither)."""

from __future__ import annotations

import os
import socket
import time

from pyfrp.proto.auth import privilege_key
from pyfrp.proto.msg import Login, LoginResp
from tests.harness import HOST, Pyfrp, assert_echo, free_ports, open_fds
from tests.integration.test_hostile import RawConn

LIMIT = 50
TOKEN = "prelogin-token"


def _frpc(bind: int, echo: int, remote: int) -> str:
    return (
        f'serverAddr = "{HOST}"\nserverPort = {bind}\nauth.token = "{TOKEN}"\n'
        f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n'
    )


def _closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_a_flood_of_silent_connections_does_not_starve_real_clients(
    pyfrp: Pyfrp, echo: int
) -> None:
    bind, remote = free_ports(2)
    # one worker: the limit is each worker's, and its fds are counted here
    frps = pyfrp.frps(
        f'bindPort = {bind}\nauth.token = "{TOKEN}"\npyfrp.preLoginLimit = {LIMIT}\n'
        "pyfrp.workers = 1\n",
        suffix=".toml",
    )
    frps.wait_port(bind)
    base = open_fds(frps.pid)
    flood: list[socket.socket] = []
    try:
        flood.extend(socket.create_connection((HOST, bind)) for _ in range(6 * LIMIT))
        # past twice the limit the oldest are closed at once, whatever their age
        deadline = time.monotonic() + 10
        while open_fds(frps.pid) > base + 2 * LIMIT + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_fds(frps.pid) <= base + 2 * LIMIT + 5
        frps.wait_log(r"connections pending login over the limit of 50: closed \d+")
        start = time.monotonic()
        frpc = pyfrp.frpc(_frpc(bind, echo, remote), suffix=".toml")
        frpc.wait_log(r"\[e\] start proxy success")
        took = time.monotonic() - start
        # more silent connections push out older silent ones, never the logged-in client
        flood.extend(socket.create_connection((HOST, bind)) for _ in range(4 * LIMIT))
        assert_echo(remote, os.urandom(200_000))
        # frps closes the oldest as it accepts the new ones: give its accept loop time
        want = len(flood) - 2 * LIMIT - 5
        closed: set[int] = set()
        deadline = time.monotonic() + 10
        while len(closed) < want and time.monotonic() < deadline:
            closed |= {i for i, s in enumerate(flood) if i not in closed and _closed_by_peer(s)}
            time.sleep(0.05)
        assert len(closed) >= want, len(closed)
        assert frpc.alive()
        assert took < 10, took
    finally:
        for s in flood:
            s.close()


def test_stale_logins_refused_when_configured(pyfrp: Pyfrp, echo: int) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(
        f'bindPort = {bind}\nauth.token = "{TOKEN}"\npyfrp.loginMaxClockSkew = 60\n',
        suffix=".toml",
    )
    frps.wait_port(bind)
    old = int(time.time()) - 3600  # a login captured an hour ago, replayed
    with RawConn(bind, mux=True) as raw:
        raw.send(Login(version="0.70.1", privilege_key=privilege_key(TOKEN, old), timestamp=old))
        resp = raw.recv()
        assert isinstance(resp, LoginResp)
        assert "more than 60 s away from frps's clock" in resp.error
    frpc = pyfrp.frpc(_frpc(bind, echo, remote), suffix=".toml")
    frpc.wait_log(r"\[e\] start proxy success")
    assert_echo(remote, os.urandom(10_000))


def test_secrets_never_reach_the_logs(pyfrp: Pyfrp, echo: int) -> None:
    """At trace level, through a login, a refused login, an stcp visitor and both web servers:
    no token, secret key or password is ever written out."""
    secrets = ["tok-5ecret-A", "sk-5ecret-B", "dash-5ecret-C", "admin-5ecret-D"]
    bind, remote, dash, admin, visit = free_ports(5)
    frps = pyfrp.frps(
        f'bindPort = {bind}\nauth.token = "{secrets[0]}"\nlog.level = "trace"\n'
        f'webServer.port = {dash}\nwebServer.user = "u"\nwebServer.password = "{secrets[2]}"\n',
        suffix=".toml",
    )
    frps.wait_port(bind)
    common = f'serverAddr = "{HOST}"\nserverPort = {bind}\nlog.level = "trace"\n'
    frpc = pyfrp.frpc(
        common + f'auth.token = "{secrets[0]}"\n'
        f'webServer.port = {admin}\nwebServer.user = "u"\nwebServer.password = "{secrets[3]}"\n'
        f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n'
        f'[[proxies]]\nname = "s"\ntype = "stcp"\nsecretKey = "{secrets[1]}"\nlocalPort = {echo}\n'
        f'[[visitors]]\nname = "v"\ntype = "stcp"\nserverName = "s"\nsecretKey = "{secrets[1]}"\n'
        f"bindPort = {visit}\n",
        suffix=".toml",
    )
    frpc.wait_log(r"\[s\] start proxy success")
    assert_echo(remote, os.urandom(1000))
    assert_echo(visit, os.urandom(1000))
    wrong = pyfrp.frpc(common + 'auth.token = "wrong-5ecret-E"\n', suffix=".toml")
    assert wrong.p.wait(20) == 1
    for proc in (frps, frpc, wrong):
        text = proc.log()
        assert "[D]" in text or "[T]" in text or proc is wrong
        for secret in [*secrets, "wrong-5ecret-E"]:
            assert secret not in text, (proc.name, secret)
