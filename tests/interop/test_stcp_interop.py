"""stcp and sudp between pyfrp and native Go frp 0.70.1: the proxy's frpc, the visitor's frpc and
frps each pyfrp or Go, in every mix but all-Go. A tcp echo (stcp) or udp echo (sudp) sits behind
the proxy; the visitor's bind port must reach it, with encryption and compression on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import TRIPLES, peer_exe, start_any
from tests.harness import (
    Pyfrp,
    assert_echo,
    assert_udp_echoes,
    free_ports,
    udp_echo_server,
    wait_echo,
    wait_udp_echo,
)

pytestmark = pytest.mark.interop

STARTUP = 30.0
FLAGS = "use_encryption = true\nuse_compression = true\n"


@pytest.mark.parametrize("kind", ["stcp", "sudp"])
@pytest.mark.parametrize(
    ("server", "proxy", "visitor"), TRIPLES, ids=["-".join(t) for t in TRIPLES]
)
def test_visitor_reaches_proxy(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, kind: str, server: str, proxy: str, visitor: str
) -> None:
    for who in (server, proxy, visitor):
        if who.endswith("-native"):
            peer_exe(who)
    bind, visit = free_ports(2)
    common = f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\nuser = lab\n"
    procs = [start_any(pyfrp, tmp_path, server, f"[common]\nbind_port = {bind}\n", "s")]
    try:
        procs[0].wait_port(bind, STARTUP)
        with udp_echo_server() as uecho:
            local = echo if kind == "stcp" else uecho
            procs.append(
                start_any(
                    pyfrp,
                    tmp_path,
                    proxy,
                    common + f"[svc]\ntype = {kind}\nsk = s3cret\nlocal_port = {local}\n{FLAGS}",
                    "p",
                )
            )
            procs.append(
                start_any(
                    pyfrp,
                    tmp_path,
                    visitor,
                    common + f"[svc_visitor]\nrole = visitor\ntype = {kind}\nserver_name = svc\n"
                    f"sk = s3cret\nbind_addr = 127.0.0.1\nbind_port = {visit}\n{FLAGS}",
                    "v",
                )
            )
            if kind == "stcp":
                wait_echo(visit, STARTUP, procs[2])
                assert_echo(visit, os.urandom(1_000_000))
            else:
                wait_udp_echo(visit, STARTUP, procs[2])
                assert_udp_echoes(visit)
        for p in procs:
            assert p.alive(), p.log()[-2000:]
    finally:
        for p in reversed(procs):
            p.stop()
