"""udp proxies end to end: pyfrps + pyfrpc on loopback, with a UDP echo as the local service."""

from __future__ import annotations

import os
import socket

import pytest

from tests.harness import (
    HOST,
    Pyfrp,
    assert_udp_echoes,
    free_ports,
    udp_ask,
    udp_echo_server,
    wait_udp_echo,
)


@pytest.mark.parametrize(
    "extra",
    ["", "use_encryption = true\nuse_compression = true\n"],
    ids=["plain", "encrypted-compressed"],
)
@pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
def test_udp_echo(pyfrp: Pyfrp, mux: bool, extra: str) -> None:
    bind, remote = free_ports(2)
    common = "" if mux else "tcp_mux = false\n"
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n{common}")
    frps.wait_port(bind)
    with udp_echo_server() as echo:
        frpc = pyfrp.frpc(
            f"[common]\nserver_port = {bind}\n{common}"
            f"[dns]\ntype = udp\nlocal_port = {echo}\nremote_port = {remote}\n{extra}"
        )
        wait_udp_echo(remote, proc=frpc)
        # Each user address gets its own replies.
        assert_udp_echoes(remote, (1000, 1400))
    frps.wait_log(rf"udp proxy listen port \[{remote}\]")
    frpc.wait_log(r"\[dns\] start proxy success")


def test_udp_datagrams_are_cut_to_udp_packet_size(pyfrp: Pyfrp) -> None:
    """frp reads datagrams into a udpPacketSize buffer (1500 by default): the rest is lost."""
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n")
    frps.wait_port(bind)
    with udp_echo_server() as echo:
        frpc = pyfrp.frpc(
            f"[common]\nserver_port = {bind}\n"
            f"[u]\ntype = udp\nlocal_port = {echo}\nremote_port = {remote}\n"
        )
        wait_udp_echo(remote, proc=frpc)
        big = os.urandom(4000)
        assert udp_ask(remote, big) == big[:1500]


def test_udp_and_tcp_share_a_port_number(pyfrp: Pyfrp, echo: int) -> None:
    """frps keeps tcp and udp ports apart: one number may serve both (frp's e2e does this)."""
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n")
    frps.wait_port(bind)
    with udp_echo_server() as uecho:
        frpc = pyfrp.frpc(
            f"[common]\nserver_port = {bind}\n"
            f"[t]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
            f"[u]\ntype = udp\nlocal_port = {uecho}\nremote_port = {remote}\n"
        )
        wait_udp_echo(remote, proc=frpc)
        with socket.create_connection((HOST, remote), 5) as c:
            c.sendall(b"tcp!")
            assert c.recv(16) == b"tcp!"


def test_udp_port_taken_by_another_client(pyfrp: Pyfrp) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n")
    frps.wait_port(bind)
    cfg = (
        f"[common]\nserver_port = {bind}\n[u]\ntype = udp\nlocal_port = 9\nremote_port = {remote}\n"
    )
    first = pyfrp.frpc(cfg)
    first.wait_log(r"\[u\] start proxy success")
    second = pyfrp.frpc(cfg.replace("[u]", "[u2]"))
    second.wait_log(rf"\[u2\] start error: acquire port {remote} error: port already used")
