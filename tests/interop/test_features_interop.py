"""Load-balancing groups, health checks, server plugins, bandwidth limits, the PROXY protocol and
token scopes with native Go frp 0.70.1 on the other side, both ways: pyfrps with Go frpc, and Go
frps with pyfrpc."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import start_any
from tests.harness import HOST, Pyfrp, echo_roundtrip, free_ports, wait_echo
from tests.integration.test_groups import _ask_tcp, named_tcp
from tests.integration.test_proxy_protocol import _v2_source, recording_server
from tests.integration.test_server_plugins import plugin_server

pytestmark = pytest.mark.interop

PAIRS = [("pyfrps", "frpc-native"), ("frps-native", "pyfrpc")]
IDS = [f"{c}->{s}" for s, c in PAIRS]
GROUP = 'loadBalancer.group = "g"\nloadBalancer.groupKey = "k"\n'


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=IDS)
def test_tcp_group_with_health_check(
    pyfrp: Pyfrp, tmp_path: Path, server: str, client: str
) -> None:
    bind, remote, down = free_ports(3)
    frps = start_any(pyfrp, tmp_path, server, f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    with named_tcp(b"foo") as foo:
        frpc = start_any(
            pyfrp, tmp_path, client,
            f'serverPort = {bind}\n[[proxies]]\nname = "foo"\ntype = "tcp"\nlocalPort = {foo}\n'
            f'remotePort = {remote}\n{GROUP}healthCheck.type = "tcp"\n'
            'healthCheck.intervalSeconds = 1\n'
            f'[[proxies]]\nname = "bar"\ntype = "tcp"\nlocalPort = {down}\n'
            f'remotePort = {remote}\n{GROUP}healthCheck.type = "tcp"\n'
            "healthCheck.intervalSeconds = 1\n",
            tag="grp", suffix=".toml",
        )  # fmt: skip
        try:
            frpc.wait_log(r"\[foo\] start proxy success")
            # bar's local service is down: it never joins, every user reaches foo
            assert [_ask_tcp(remote) for _ in range(6)] == [b"foo"] * 6
            assert "[bar] start proxy success" not in frpc.log()
        finally:
            frpc.stop()
            frps.stop()


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=IDS)
def test_server_plugin_rewrites_and_scopes(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, server: str, client: str
) -> None:
    bind, asked, moved = free_ports(3)
    seen_ops: list[str] = []

    def decide(op: str, content: dict[str, object]) -> dict[str, object]:
        seen_ops.append(op)
        if op == "NewProxy":
            return {"unchange": False, "content": {**content, "remote_port": moved}}
        return {"unchange": True}

    scopes = 'auth.additionalScopes = ["HeartBeats", "NewWorkConns"]\n'
    with plugin_server(decide) as (port, _):
        frps = start_any(
            pyfrp, tmp_path, server,
            f'bindPort = {bind}\nauth.token = "tk"\n{scopes}[[httpPlugins]]\nname = "p"\n'
            f'addr = "127.0.0.1:{port}"\npath = "/handler"\nops = ["Login", "NewProxy"]\n',
            tag="plg", suffix=".toml",
        )  # fmt: skip
        frps.wait_port(bind)
        frpc = start_any(
            pyfrp, tmp_path, client,
            f'serverPort = {bind}\nauth.token = "tk"\n{scopes}transport.heartbeatInterval = 1\n'
            f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {asked}\n',
            tag="plg", suffix=".toml",
        )  # fmt: skip
        try:
            wait_echo(moved, proc=frpc)
            time.sleep(2.5)  # a few authenticated heartbeats go by
            wait_echo(moved, proc=frpc)
            assert "invalid" not in frps.log()
            assert seen_ops[:2] == ["Login", "NewProxy"]
        finally:
            frpc.stop()
            frps.stop()


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=IDS)
def test_server_side_bandwidth_limit(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, server: str, client: str
) -> None:
    bind, remote = free_ports(2)
    frps = start_any(pyfrp, tmp_path, server, f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    frpc = start_any(
        pyfrp, tmp_path, client,
        f'serverPort = {bind}\n[[proxies]]\nname = "slow"\ntype = "tcp"\nlocalPort = {echo}\n'
        f'remotePort = {remote}\ntransport.bandwidthLimit = "32KB"\n'
        'transport.bandwidthLimitMode = "server"\n',
        tag="bw", suffix=".toml",
    )  # fmt: skip
    try:
        wait_echo(remote, proc=frpc)
        time.sleep(1.1)
        payload = os.urandom(64 * 1024)
        start = time.monotonic()
        assert echo_roundtrip(remote, payload) == payload
        assert 2.5 < time.monotonic() - start < 8  # the frps side meters it
    finally:
        frpc.stop()
        frps.stop()


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=IDS)
def test_proxy_protocol_reaches_local_service(
    pyfrp: Pyfrp, tmp_path: Path, server: str, client: str
) -> None:
    bind, remote = free_ports(2)
    frps = start_any(pyfrp, tmp_path, server, f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    with recording_server(socket.SOCK_STREAM) as (local, seen):
        frpc = start_any(
            pyfrp, tmp_path, client,
            f'serverPort = {bind}\n[[proxies]]\nname = "pp"\ntype = "tcp"\nlocalPort = {local}\n'
            f'remotePort = {remote}\ntransport.proxyProtocolVersion = "v2"\n',
            tag="pp", suffix=".toml",
        )  # fmt: skip
        try:
            frpc.wait_log(r"\[pp\] start proxy success")
            deadline = time.monotonic() + 10
            while True:  # the listener may lag the log line by a moment
                try:
                    user = socket.create_connection((HOST, remote), 5)
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            with user:
                user.sendall(b"GET / HTTP/1.1\r\n\r\n")
                user.settimeout(5)
                assert user.recv(64).startswith(b"HTTP/1.1 200")
                port = user.getsockname()[1]
            assert _v2_source(seen[0]) == ("127.0.0.1", port)
        finally:
            frpc.stop()
            frps.stop()
