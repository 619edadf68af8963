"""Proxy settings pyfrpc does not implement are an error at start-up, never skipped or run as
something else."""

from __future__ import annotations

from tests.harness import Pyfrp, free_ports


def test_unsupported_proxy_setting_is_an_error(pyfrp: Pyfrp, echo: int) -> None:
    bind, remote, other = free_ports(3)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
        f"[pp]\ntype = tcp\nlocal_port = 22\nremote_port = {other}\n"
        "plugin = virtual_net\n"
        f"[e]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
    )
    assert frpc.p.wait(30) == 1
    assert '[pp] plugin: plugin "virtual_net" not supported yet by pyfrp' in frpc.log()
    assert "client login" not in frps.log()
