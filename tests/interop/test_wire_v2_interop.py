"""Wire protocol v2 between pyfrp and native Go frp 0.70.1: a v2 pyfrpc on Go frps and a v2 Go
frpc on pyfrps (tcp with encryption, udp; tcp_mux on and off; a token, so the AEAD control keys
depend on it), each server's /api/clients naming the client's protocol; and sudp/stcp visitors
whose frpc speaks the other protocol than the proxy's, through either frps."""

from __future__ import annotations

import json
import urllib.request
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
PAIRS = [("pyfrpc", "frps-native"), ("frpc-native", "pyfrps")]


@pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
@pytest.mark.parametrize(("client", "server"), PAIRS, ids=[f"{c}>{s}" for c, s in PAIRS])
def test_v2_client_on_other_server(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, client: str, server: str, mux: bool
) -> None:
    peer_exe(client if server == "pyfrps" else server)
    bind, web, tport, uport = free_ports(4)
    m = str(mux).lower()
    procs = [
        start_any(
            pyfrp, tmp_path, server,
            f'bindPort = {bind}\nauth.token = "t0k"\ntransport.tcpMux = {m}\n'
            f"webServer.port = {web}\n",
            suffix=".toml",
        )
    ]  # fmt: skip
    try:
        procs[0].wait_port(bind, STARTUP)
        with udp_echo_server() as uecho:
            procs.append(
                start_any(
                    pyfrp, tmp_path, client,
                    f'serverAddr = "127.0.0.1"\nserverPort = {bind}\nauth.token = "t0k"\n'
                    f'clientID = "c2"\ntransport.wireProtocol = "v2"\ntransport.tcpMux = {m}\n'
                    f'[[proxies]]\nname = "t"\ntype = "tcp"\nlocalIP = "127.0.0.1"\n'
                    f"localPort = {echo}\nremotePort = {tport}\n"
                    "transport.useEncryption = true\ntransport.useCompression = true\n"
                    f'[[proxies]]\nname = "u"\ntype = "udp"\nlocalIP = "127.0.0.1"\n'
                    f"localPort = {uecho}\nremotePort = {uport}\n",
                    suffix=".toml",
                )
            )  # fmt: skip
            wait_echo(tport, STARTUP, procs[1])
            assert_echo(tport, b"v2!" * 40000)
            wait_udp_echo(uport, STARTUP, procs[1])
            assert_udp_echoes(uport, (1200, 300))
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/clients") as resp:
            clients = {c["clientID"]: c.get("wireProtocol") for c in json.load(resp)}
        assert clients == {"c2": "v2"}
        for p in procs:
            assert p.alive(), p.log()[-2000:]
    finally:
        for p in reversed(procs):
            p.stop()


@pytest.mark.parametrize("kind", ["stcp", "sudp"])
@pytest.mark.parametrize(
    ("server", "proxy", "visitor"), TRIPLES, ids=["-".join(t) for t in TRIPLES]
)
def test_visitor_on_the_other_wire_protocol(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, kind: str, server: str, proxy: str, visitor: str
) -> None:
    for who in (server, proxy, visitor):
        if who.endswith("-native"):
            peer_exe(who)
    bind, visit = free_ports(2)
    common = f'serverAddr = "127.0.0.1"\nserverPort = {bind}\nuser = "lab"\n'
    procs = [start_any(pyfrp, tmp_path, server, f"bindPort = {bind}\n", "s", ".toml")]
    try:
        procs[0].wait_port(bind, STARTUP)
        with udp_echo_server() as uecho:
            local = echo if kind == "stcp" else uecho
            procs.append(
                start_any(
                    pyfrp, tmp_path, proxy,
                    common + 'transport.wireProtocol = "v2"\n'
                    f'[[proxies]]\nname = "svc"\ntype = "{kind}"\nsecretKey = "s3"\n'
                    f'localIP = "127.0.0.1"\nlocalPort = {local}\n',
                    "p", ".toml",
                )
            )  # fmt: skip
            procs.append(
                start_any(
                    pyfrp, tmp_path, visitor,
                    common + 'transport.wireProtocol = "v1"\n'
                    f'[[visitors]]\nname = "vis"\ntype = "{kind}"\nserverName = "svc"\n'
                    f'secretKey = "s3"\nbindAddr = "127.0.0.1"\nbindPort = {visit}\n',
                    "v", ".toml",
                )
            )  # fmt: skip
            if kind == "stcp":
                wait_echo(visit, STARTUP, procs[2])
            else:
                wait_udp_echo(visit, STARTUP, procs[2])
                assert_udp_echoes(visit, (1000, 200))
        for p in procs:
            assert p.alive(), p.log()[-2000:]
    finally:
        for p in reversed(procs):
            p.stop()
