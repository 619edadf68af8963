"""frpc's transports between pyfrp and native Go frp 0.70.1, both ways: pyfrpc on Go frps and
Go frpc on pyfrps over websocket (0x17 + TLS and yamux inside), kcp (kcp-go's framing and FEC)
and quic (quic-go), with and without TLS or tcp_mux, each carrying a tunnel end to end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import peer_exe, start_any
from tests.harness import Pyfrp, assert_echo, free_ports, wait_echo
from tests.integration.test_tls_certs import _pki

pytestmark = pytest.mark.interop

STARTUP = 30.0
PAIRS = [("pyfrpc", "frps-native"), ("frpc-native", "pyfrps")]
UDP_PORTS = {"kcp": "kcpBindPort", "quic": "quicBindPort"}


@pytest.mark.parametrize(("tls", "mux"), [(True, True), (False, False)], ids=["tls-mux", "plain"])
@pytest.mark.parametrize("protocol", ["websocket", "kcp", "quic"])
@pytest.mark.parametrize(("client", "server"), PAIRS, ids=[f"{c}>{s}" for c, s in PAIRS])
def test_transport_with_go_peer(
    pyfrp: Pyfrp,
    tmp_path: Path,
    echo: int,
    client: str,
    server: str,
    protocol: str,
    tls: bool,
    mux: bool,
) -> None:
    peer_exe(client if server == "pyfrps" else server)
    bind, remote = free_ports(2)
    m = str(mux).lower()
    udp = f"{UDP_PORTS[protocol]} = {bind}\n" if protocol in UDP_PORTS else ""
    procs = [
        start_any(
            pyfrp, tmp_path, server,
            f'bindAddr = "127.0.0.1"\nbindPort = {bind}\n{udp}transport.tcpMux = {m}\n',
            suffix=".toml",
        )
    ]  # fmt: skip
    try:
        procs[0].wait_port(bind, STARTUP)
        procs.append(
            start_any(
                pyfrp, tmp_path, client,
                f'serverAddr = "127.0.0.1"\nserverPort = {bind}\nloginFailExit = false\n'
                f'transport.protocol = "{protocol}"\ntransport.tcpMux = {m}\n'
                f"transport.tls.enable = {str(tls).lower()}\n"
                f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalIP = "127.0.0.1"\n'
                f"localPort = {echo}\nremotePort = {remote}\n",
                suffix=".toml",
            )
        )  # fmt: skip
        wait_echo(remote, STARTUP, proc=procs[1])
        assert_echo(remote, os.urandom(1_000_000))
        for _ in range(3):
            assert_echo(remote, os.urandom(1000))
    finally:
        for p in reversed(procs):
            p.stop()


@pytest.mark.parametrize(("client", "server"), PAIRS, ids=[f"{c}>{s}" for c, s in PAIRS])
def test_quic_mutual_tls_with_go_peer(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, client: str, server: str
) -> None:
    """frp's e2e `mutual authentication: quic` across implementations: each side checks the
    other's chain (frps requires frpc's certificate), and a tunnel carries data."""
    peer_exe(client if server == "pyfrps" else server)
    pki = _pki(tmp_path)
    bind, remote = free_ports(2)
    procs = [
        start_any(
            pyfrp, tmp_path, server,
            f'bindAddr = "127.0.0.1"\nbindPort = {bind}\nquicBindPort = {bind}\n'
            f'transport.tls.certFile = "{pki / "server.crt"}"\n'
            f'transport.tls.keyFile = "{pki / "server.key"}"\n'
            f'transport.tls.trustedCaFile = "{pki / "ca.crt"}"\n',
            suffix=".toml",
        )
    ]  # fmt: skip
    try:
        procs[0].wait_port(bind, STARTUP)
        procs.append(
            start_any(
                pyfrp, tmp_path, client,
                f'serverAddr = "127.0.0.1"\nserverPort = {bind}\nloginFailExit = false\n'
                f'transport.protocol = "quic"\n'
                f'transport.tls.certFile = "{pki / "client.crt"}"\n'
                f'transport.tls.keyFile = "{pki / "client.key"}"\n'
                f'transport.tls.trustedCaFile = "{pki / "ca.crt"}"\n'
                f'transport.tls.serverName = "frps.example.com"\n'
                f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalIP = "127.0.0.1"\n'
                f"localPort = {echo}\nremotePort = {remote}\n",
                suffix=".toml",
            )
        )  # fmt: skip
        wait_echo(remote, STARTUP, proc=procs[1])
        assert_echo(remote, os.urandom(300_000))
    finally:
        for p in reversed(procs):
            p.stop()
