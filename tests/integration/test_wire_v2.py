"""Wire protocol v2 (frp 0.69+): v1 and v2 pyfrpc on one pyfrps, tcp/udp/stcp/sudp, tcp_mux on
and off, and what the dashboard reports."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.harness import (
    Pyfrp,
    assert_echo,
    assert_udp_echoes,
    free_ports,
    udp_echo_server,
    wait_echo,
    wait_udp_echo,
)


def _client(bind: int, wire: str, mux: bool, extra: str = "") -> str:
    return (
        f'serverPort = {bind}\ntransport.wireProtocol = "{wire}"\n'
        f"transport.tcpMux = {str(mux).lower()}\n{extra}"
    )


@pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
def test_v1_and_v2_clients_share_one_server(pyfrp: Pyfrp, echo: int, mux: bool) -> None:
    bind, web, t1, t2, u2 = free_ports(5)
    frps = pyfrp.frps(
        f"bindPort = {bind}\ntransport.tcpMux = {str(mux).lower()}\nwebServer.port = {web}\n",
        suffix=".toml",
    )
    frps.wait_port(bind)
    with udp_echo_server() as uecho:
        pyfrp.frpc(
            _client(bind, "v1", mux, 'clientID = "old"\n')
            + f'[[proxies]]\nname = "t1"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {t1}\n',
            suffix=".toml",
        )
        pyfrp.frpc(
            _client(bind, "v2", mux, 'clientID = "new"\n')
            + f'[[proxies]]\nname = "t2"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {t2}\n'
            f"transport.useEncryption = true\n"
            f'[[proxies]]\nname = "u2"\ntype = "udp"\nlocalPort = {uecho}\nremotePort = {u2}\n',
            suffix=".toml",
        )
        wait_echo(t1)
        wait_echo(t2)
        assert_echo(t2, b"v2" * 50000)
        wait_udp_echo(u2)
        assert_udp_echoes(u2, (1000, 1400))
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/clients") as resp:
        clients = {c["clientID"]: c["wireProtocol"] for c in json.load(resp)}
    assert clients == {"old": "v1", "new": "v2"}


@pytest.mark.parametrize(("proxy_wire", "visitor_wire"), [("v2", "v2"), ("v1", "v2"), ("v2", "v1")])
def test_stcp_and_sudp_visitors_across_wire_protocols(
    pyfrp: Pyfrp, echo: int, proxy_wire: str, visitor_wire: str
) -> None:
    bind, sv, uv = free_ports(3)
    pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml").wait_port(bind)
    with udp_echo_server() as uecho:
        pyfrp.frpc(
            _client(bind, proxy_wire, True, 'user = "u"\n')
            + f'[[proxies]]\nname = "s"\ntype = "stcp"\nsecretKey = "k"\nlocalPort = {echo}\n'
            f'[[proxies]]\nname = "d"\ntype = "sudp"\nsecretKey = "k"\nlocalPort = {uecho}\n',
            suffix=".toml",
        ).wait_log(r"\[d\] start proxy success")
        pyfrp.frpc(
            _client(bind, visitor_wire, True, 'user = "u"\n')
            + f'[[visitors]]\nname = "sv"\ntype = "stcp"\nserverName = "s"\nsecretKey = "k"\n'
            f"bindPort = {sv}\n"
            f'[[visitors]]\nname = "dv"\ntype = "sudp"\nserverName = "d"\nsecretKey = "k"\n'
            f"bindPort = {uv}\n",
            suffix=".toml",
        )
        wait_echo(sv)
        wait_udp_echo(uv)
        assert_udp_echoes(uv, (500, 900))
