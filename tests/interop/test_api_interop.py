"""The Python API's client (pyfrp.expose, pyfrp.Client) against native Go frps 0.70.1, and
failover (serverAddrs) between two Go frps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pyfrp as api
from tests.conftest import peer_exe, start_any
from tests.harness import HOST, Pyfrp, assert_echo, free_ports, wait_echo

pytestmark = pytest.mark.interop

STARTUP = 30.0


def test_expose_against_go_frps(pyfrp: Pyfrp, tmp_path: Path, echo: int) -> None:
    peer_exe("frps-native")
    bind, vhost = free_ports(2)
    frps = start_any(
        pyfrp, tmp_path, "frps-native",
        f'bindPort = {bind}\nauth.token = "t"\nvhostHTTPPort = {vhost}\nsubDomainHost = "x.test"\n',
        suffix=".toml",
    )  # fmt: skip
    try:
        frps.wait_port(bind, STARTUP)
        tcp = api.expose(echo, "tcp", server_port=bind, token="t")
        try:
            assert tcp.remote_port is not None
            assert_echo(tcp.remote_port, os.urandom(100_000))
        finally:
            tcp.close()
        with pytest.raises(api.AuthError, match="token in login doesn't match"):
            api.expose(echo, "tcp", server_port=bind, token="wrong")
    finally:
        frps.stop()


def test_failover_between_go_frps(pyfrp: Pyfrp, tmp_path: Path, echo: int) -> None:
    peer_exe("frps-native")
    a, b, remote = free_ports(3)
    servers = [
        start_any(pyfrp, tmp_path, "frps-native", f"bindPort = {port}\n", tag, ".toml")
        for port, tag in ((a, "a"), (b, "b"))
    ]
    try:
        for port, proc in zip((a, b), servers, strict=True):
            proc.wait_port(port, STARTUP)
        frpc = pyfrp.frpc(
            f'serverAddrs = ["{HOST}:{a}", "{HOST}:{b}"]\nloginFailExit = false\n'
            f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n',
            suffix=".toml",
        )
        frpc.wait_log(r"\[e\] start proxy success", STARTUP)
        wait_echo(remote, proc=frpc)
        servers[0].kill()
        frpc.wait_log(r"\[e\] start proxy success", STARTUP, count=2)
        wait_echo(remote, proc=frpc)
        assert_echo(remote, os.urandom(100_000))
    finally:
        for proc in servers:
            proc.stop()
