"""Proxy types pyfrpc does not implement are reported and skipped, never run as something else."""

from __future__ import annotations

import os

from tests.harness import Pyfrp, assert_echo, free_ports


def test_unsupported_proxy_type_is_reported_and_skipped(pyfrp: Pyfrp, echo: int) -> None:
    bind, remote, udp_port = free_ports(3)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
        f"[dns]\ntype = udp\nlocal_port = 53\nremote_port = {udp_port}\n"
        f"[e]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
    )
    frpc.wait_log(r"\[e\] start proxy success")
    assert_echo(remote, os.urandom(1000))
    log = frpc.log()
    assert "[dns] proxy type [udp] is not supported yet, not started" in log
    assert "new proxy [dns]" not in frps.log()
