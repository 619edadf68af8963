"""frpc's ways to frps across implementations: pyfrpc through an HTTP proxy and from
connectServerLocalIP to native Go frps; native Go frpc through a SOCKS5
proxy that is pyfrpc's socks5 plugin, to pyfrps (the same settings read the same way)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import peer_exe, start_any
from tests.harness import Pyfrp, assert_echo, free_ports, wait_echo
from tests.integration.test_client_dial import connect_proxy

pytestmark = pytest.mark.interop

STARTUP = 30.0


def test_pyfrpc_through_http_proxy_to_go_frps(pyfrp: Pyfrp, tmp_path: Path, echo: int) -> None:
    peer_exe("frps-native")
    bind, remote = free_ports(2)
    frps = start_any(pyfrp, tmp_path, "frps-native", f"bindPort = {bind}\n", suffix=".toml")
    try:
        frps.wait_port(bind, STARTUP)
        # frps's name goes to the proxy unresolved (only the proxy knows it), as Go sends it
        with connect_proxy("lab", "pw", {"frps.test": "127.0.0.1"}) as proxy:
            frpc = pyfrp.frpc(
                f'serverAddr = "frps.test"\nserverPort = {bind}\n'
                f'transport.proxyURL = "http://lab:pw@127.0.0.1:{proxy.port}"\n'
                f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\n'
                f"remotePort = {remote}\n",
                suffix=".toml",
            )
            frpc.wait_log(r"\[e\] start proxy success", STARTUP)
            assert_echo(remote, os.urandom(500_000))
            assert proxy.requests[0].startswith(f"CONNECT frps.test:{bind} HTTP/1.1")
    finally:
        frps.stop()


def test_pyfrpc_from_local_ip_to_go_frps(pyfrp: Pyfrp, tmp_path: Path, echo: int) -> None:
    peer_exe("frps-native")
    bind, remote = free_ports(2)
    frps = start_any(pyfrp, tmp_path, "frps-native", f"bindPort = {bind}\n", suffix=".toml")
    try:
        frps.wait_port(bind, STARTUP)
        frpc = pyfrp.frpc(
            f'serverAddr = "127.0.0.1"\nserverPort = {bind}\n'
            'transport.connectServerLocalIP = "127.0.0.3"\n'
            f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n',
            suffix=".toml",
        )
        frpc.wait_log(r"\[e\] start proxy success", STARTUP)
        frps.wait_log(r"client login info: ip \[127\.0\.0\.3:\d+\]")
        assert_echo(remote, os.urandom(10_000))
    finally:
        frps.stop()


def test_go_frpc_through_pyfrpc_socks5_plugin(pyfrp: Pyfrp, tmp_path: Path, echo: int) -> None:
    peer_exe("frpc-native")
    bind, socks, remote = free_ports(3)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    gateway = pyfrp.frpc(
        f'serverAddr = "127.0.0.1"\nserverPort = {bind}\n'
        f'[[proxies]]\nname = "socks"\ntype = "tcp"\nremotePort = {socks}\n'
        f'[proxies.plugin]\ntype = "socks5"\nusername = "lab"\npassword = "pw"\n',
        suffix=".toml",
    )
    gateway.wait_log(r"\[socks\] start proxy success")
    go = start_any(
        pyfrp, tmp_path, "frpc-native",
        f'serverAddr = "127.0.0.1"\nserverPort = {bind}\nloginFailExit = false\n'
        f'transport.proxyURL = "socks5://lab:pw@127.0.0.1:{socks}"\n'
        f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n',
        suffix=".toml",
    )  # fmt: skip
    try:
        wait_echo(remote, STARTUP, proc=go)
        assert_echo(remote, os.urandom(500_000))
    finally:
        go.stop()
