"""xtcp between pyfrp and native Go frp 0.70.1: frps, the proxy's frpc and the visitor's frpc
each pyfrp or Go, in every mix but all-Go. frps pairs them, they punch through loopback (a
loopback STUN server), and a tcp echo behind the proxy must answer through the visitor's bind
port over the QUIC (or KCP and yamux) tunnel, with encryption and compression on."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.conftest import TRIPLES, peer_exe, start_any
from tests.harness import (
    Pyfrp,
    assert_echo,
    echo_roundtrip,
    free_ports,
    stun_server,
    wait_echo,
)

pytestmark = pytest.mark.interop

STARTUP = 30.0
TOML = ".toml"
FLAGS = "transport.useEncryption = true\ntransport.useCompression = true\n"
NO_ASSISTED = "natTraversal.disableAssistedAddrs = true\n"  # loopback only


@pytest.mark.parametrize("protocol", ["quic", "kcp"])
@pytest.mark.parametrize(
    ("server", "proxy", "visitor"), TRIPLES, ids=["-".join(t) for t in TRIPLES]
)
def test_visitor_reaches_proxy_through_the_hole(
    pyfrp: Pyfrp,
    tmp_path: Path,
    echo: int,
    server: str,
    proxy: str,
    visitor: str,
    protocol: str,
) -> None:
    for who in (server, proxy, visitor):
        if who.endswith("-native"):
            peer_exe(who)
    bind, visit = free_ports(2)
    with stun_server() as stun:
        common = (
            f'serverAddr = "127.0.0.1"\nserverPort = {bind}\nuser = "lab"\n'
            f'natHoleStunServer = "127.0.0.1:{stun}"\nlog.level = "debug"\n'
        )
        procs = [start_any(pyfrp, tmp_path, server, f"bindPort = {bind}\n", "s", TOML)]
        try:
            procs[0].wait_port(bind, STARTUP)
            procs.append(
                start_any(
                    pyfrp,
                    tmp_path,
                    proxy,
                    common + f'[[proxies]]\nname = "svc"\ntype = "xtcp"\nsecretKey = "s3cret"\n'
                    f"localPort = {echo}\n{NO_ASSISTED}{FLAGS}",
                    "p",
                    TOML,
                )
            )
            # the visitor's first punch needs the proxy registered
            procs[1].wait_log(r"\[svc\] start proxy success", STARTUP)
            procs.append(
                start_any(
                    pyfrp,
                    tmp_path,
                    visitor,
                    common + '[[visitors]]\nname = "svc_visitor"\ntype = "xtcp"\n'
                    f'serverName = "svc"\nsecretKey = "s3cret"\nbindAddr = "127.0.0.1"\n'
                    f'bindPort = {visit}\nprotocol = "{protocol}"\n{NO_ASSISTED}{FLAGS}',
                    "v",
                    TOML,
                )
            )
            wait_echo(visit, STARTUP, procs[2])
            for p in procs[1:]:
                p.wait_log(r"establishing nat hole connection successful")
            assert_echo(visit, os.urandom(1_000_000))
            payloads = [os.urandom(50_000) for _ in range(8)]
            results: list[bytes] = [b""] * len(payloads)

            def one(i: int) -> None:
                results[i] = echo_roundtrip(visit, payloads[i], timeout=20)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payloads))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert results == payloads
            for p in procs:
                assert p.alive(), p.log()[-2000:]
        finally:
            for p in reversed(procs):
                p.stop()
