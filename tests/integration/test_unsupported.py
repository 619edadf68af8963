"""Settings pyfrpc does not implement are an error at start-up, never skipped or run as
something else."""

from __future__ import annotations

from tests.harness import Pyfrp, free_ports


def test_unsupported_setting_is_an_error(pyfrp: Pyfrp, echo: int) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\nhttp_proxy = https://127.0.0.1:3128\n"
        f"[e]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
    )
    assert frpc.p.wait(30) == 1
    assert "[common] http_proxy: not supported yet by pyfrp" in frpc.log()
    assert "client login" not in frps.log()
