"""frpc's other transports to frps (``transport.protocol``): websocket and kcp under frp's usual
stream (0x17 + TLS, yamux), quic with a stream per connection, wss through a TLS terminator;
real pyfrps and pyfrpc processes carrying a tunnel end to end."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.harness import Pyfrp, assert_echo, free_ports, http_service, wait_echo
from tests.integration.test_tls_certs import _pki

UDP_PORTS = {"kcp": "kcpBindPort", "quic": "quicBindPort"}


def _frps(bind: int, protocol: str, extra: str = "") -> str:
    port = UDP_PORTS.get(protocol)
    # kcp and quic listen on UDP, here on bind_port's number as frp's own tests do.
    return (
        f'bindAddr = "127.0.0.1"\nbindPort = {bind}\n'
        + (f"{port} = {bind}\n" if port else "")
        + extra
    )


def _frpc(
    bind: int, protocol: str, echo: int, remote: int, extra: str = "", name: str = "e"
) -> str:
    return (
        f'serverAddr = "127.0.0.1"\nserverPort = {bind}\nloginFailExit = false\n'
        f'transport.protocol = "{protocol}"\n{extra}'
        f'[[proxies]]\nname = "{name}"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n'
    )


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
@pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
@pytest.mark.parametrize("protocol", ["websocket", "kcp", "quic"])
def test_protocol_carries_a_tunnel(
    pyfrp: Pyfrp, echo: int, protocol: str, tls: bool, mux: bool
) -> None:
    bind, remote = free_ports(2)
    m = str(mux).lower()
    frps = pyfrp.frps(_frps(bind, protocol, f"transport.tcpMux = {m}\n"), suffix=".toml")
    frps.wait_port(bind)
    if protocol in UDP_PORTS:
        frps.wait_log(rf"frps {protocol} listen on (udp )?127\.0\.0\.1:{bind}")
    extra = f"transport.tcpMux = {m}\ntransport.tls.enable = {str(tls).lower()}\n"
    frpc = pyfrp.frpc(_frpc(bind, protocol, echo, remote, extra), suffix=".toml")
    frpc.wait_log(r"\[e\] start proxy success")
    wait_echo(remote, proc=frpc)
    assert_echo(remote, os.urandom(2_000_000))
    for _ in range(3):  # a work connection per user connection: without tcp_mux, new dials
        assert_echo(remote, os.urandom(1000))
    assert "client login info" in frps.log()
    # Both stop at once (SIGTERM), having logged no error on the way (a websocket closed by
    # the peer once raised from its own close, and kept pyfrps from stopping).
    for proc in (frpc, frps):
        started = time.monotonic()
        assert proc.stop() == 0
        assert time.monotonic() - started < 5
        assert "Traceback" not in proc.log()


def test_websocket_shares_bind_port_with_frp_and_http(pyfrp: Pyfrp, echo: int) -> None:
    """One bind port: a websocket client, a plain frpc, and a stranger's HTTP request for another
    path (refused with 404) that leaves both tunnels working."""
    bind, r1, r2 = free_ports(3)
    frps = pyfrp.frps(_frps(bind, "websocket"), suffix=".toml")
    frps.wait_port(bind)
    ws = pyfrp.frpc(_frpc(bind, "websocket", echo, r1), suffix=".toml")
    tcp = pyfrp.frpc(_frpc(bind, "tcp", echo, r2, name="t"), suffix=".toml")
    ws.wait_log(r"start proxy success")
    tcp.wait_log(r"start proxy success")
    with socket.create_connection(("127.0.0.1", bind), timeout=10) as s:
        s.sendall(
            b"GET /~!frpx HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert s.recv(100).startswith(b"HTTP/1.1 ")  # frp's mux: not a websocket, not frp
    for port in (r1, r2):
        wait_echo(port)
        assert_echo(port, os.urandom(100_000))


def test_wss_through_a_tls_terminator(pyfrp: Pyfrp, echo: int) -> None:
    """frps speaks ws only; wss is ended in front of it (here by another frpc's https2http
    plugin, as in frp's e2e suite), and the websocket's Host is the TLS server name."""
    bind, wss, remote = free_ports(3)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    terminator = pyfrp.frpc(
        f'serverAddr = "127.0.0.1"\nserverPort = {bind}\n'
        f'[[proxies]]\nname = "wss2ws"\ntype = "tcp"\nremotePort = {wss}\n'
        f'[proxies.plugin]\ntype = "https2http"\nlocalAddr = "127.0.0.1:{bind}"\n',
        suffix=".toml",
    )
    terminator.wait_log(r"start proxy success")
    frpc = pyfrp.frpc(
        f'serverAddr = "127.0.0.1"\nserverPort = {wss}\nloginFailExit = false\n'
        f'transport.protocol = "wss"\n'
        f'[[proxies]]\nname = "e"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {remote}\n',
        suffix=".toml",
    )
    frpc.wait_log(r"\[e\] start proxy success", timeout=30)
    wait_echo(remote, proc=frpc)
    assert_echo(remote, os.urandom(500_000))


def test_quic_verifies_frps_certificate(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    """With a trusted CA, pyfrpc logs in over QUIC only to an frps whose chain it verifies."""
    pki = _pki(tmp_path)
    bind, remote = free_ports(2)
    frps = pyfrp.frps(
        _frps(
            bind,
            "quic",
            f'transport.tls.certFile = "{pki / "server.crt"}"\n'
            f'transport.tls.keyFile = "{pki / "server.key"}"\n',
        ),
        suffix=".toml",
    )
    frps.wait_log("frps quic listen on")
    tls = 'transport.tls.serverName = "frps.example.com"\n'
    stranger = pyfrp.frpc(
        _frpc(bind, "quic", echo, remote, f'{tls}transport.tls.trustedCaFile = "'
              f'{pki / "other-ca.crt"}"\n'),
        suffix=".toml",
    )  # fmt: skip
    stranger.wait_log(r"connect to server error: .*certificate verify failed")
    stranger.stop()
    good = pyfrp.frpc(
        _frpc(
            bind, "quic", echo, remote, f'{tls}transport.tls.trustedCaFile = "{pki / "ca.crt"}"\n'
        ),
        suffix=".toml",
    )
    good.wait_log(r"\[e\] start proxy success")
    wait_echo(remote, proc=good)


def test_quic_frps_checks_client_certificates(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    """frps with a trusted CA on quicBindPort lets in only frpc showing a certificate it signed,
    as it does on bind_port; a refused frpc is told so and the good one's tunnel works."""
    pki = _pki(tmp_path)
    bind, remote = free_ports(2)
    frps = pyfrp.frps(
        _frps(bind, "quic", f'transport.tls.trustedCaFile = "{pki / "ca.crt"}"\n'),
        suffix=".toml",
    )
    frps.wait_log("frps quic listen on")
    for who in ("", "stranger"):
        extra = (
            f'transport.tls.certFile = "{pki / who}.crt"\n'
            f'transport.tls.keyFile = "{pki / who}.key"\n'
            if who
            else ""
        )
        refused = pyfrp.frpc(_frpc(bind, "quic", echo, remote, extra), suffix=".toml")
        refused.wait_log("connect to server error")
        refused.stop()
        assert "start proxy success" not in refused.log()
    assert "frpc showed no certificate" in frps.log()
    assert "certificate verify failed" in frps.log()
    good = pyfrp.frpc(
        _frpc(
            bind,
            "quic",
            echo,
            remote,
            f'transport.tls.certFile = "{pki / "client.crt"}"\n'
            f'transport.tls.keyFile = "{pki / "client.key"}"\n',
        ),
        suffix=".toml",
    )
    good.wait_log(r"\[e\] start proxy success")
    wait_echo(remote, proc=good)
    assert_echo(remote, os.urandom(200_000))


def test_websocket_refused_by_a_plain_web_server(pyfrp: Pyfrp) -> None:
    """serverPort pointing at some web server: a clear login error, no traceback."""
    with http_service(lambda path: 404) as port:
        frpc = pyfrp.frpc(
            f'serverAddr = "127.0.0.1"\nserverPort = {port}\ntransport.protocol = "websocket"\n',
            suffix=".toml",
        )
        assert frpc.p.wait(20) == 1
    log = frpc.log()
    assert "connect to server error: websocket handshake: " in log
    assert "404" in log
    assert "Traceback" not in log
