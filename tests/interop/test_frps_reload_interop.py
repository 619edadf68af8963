"""Live reload of pyfrps (a pyfrp extension) with native Go frpc 0.70.1 as the client: a token
change refuses a Go frpc with the old token, the Go frpc already logged in keeps its encrypted
tunnel, and one with the new token logs in."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import start_any
from tests.harness import Pyfrp, free_ports, wait_echo

pytestmark = pytest.mark.interop


def _frpc(bind: int, token: str, name: str, local: int, remote: int) -> str:
    return (
        f'serverPort = {bind}\nauth.token = "{token}"\n'
        f'[[proxies]]\nname = "{name}"\ntype = "tcp"\nlocalPort = {local}\n'
        f"remotePort = {remote}\ntransport.useEncryption = true\n"
    )


def test_go_frpc_across_a_token_reload(pyfrp: Pyfrp, tmp_path: Path, echo: int) -> None:
    bind, first, second = free_ports(3)
    frps = pyfrp.frps(f'bindPort = {bind}\nauth.token = "old"\n', suffix=".toml")
    frps.wait_port(bind)
    frps.wait_log("frps started successfully")
    running = start_any(
        pyfrp, tmp_path, "frpc-native", _frpc(bind, "old", "a", echo, first), "a", ".toml"
    )
    try:
        wait_echo(first, proc=running)
        assert frps.config is not None
        frps.config.write_text(f'bindPort = {bind}\nauth.token = "new"\n')
        frps.signal(signal.SIGHUP)
        frps.wait_log("success reload conf")
        wait_echo(first, proc=running)  # encrypted with the token it logged in with

        late = start_any(
            pyfrp, tmp_path, "frpc-native", _frpc(bind, "old", "b", echo, second), "b", ".toml"
        )
        try:
            late.wait_log("token in login doesn't match token from configuration")
        finally:
            late.stop()
        fresh = start_any(
            pyfrp, tmp_path, "frpc-native", _frpc(bind, "new", "c", echo, second), "c", ".toml"
        )
        try:
            wait_echo(second, proc=fresh)
        finally:
            fresh.stop()
        wait_echo(first, proc=running)
    finally:
        running.stop()
