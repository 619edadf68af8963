"""Native Go frpc 0.70.1 against pyfrps with two workers: tcp proxies with and without
tcp_mux (work connections land on either worker and are handed to the session's owner) and http
routes whichever worker accepts the request."""

from __future__ import annotations

import http.client
import os
from pathlib import Path

import pytest

from tests.conftest import start_any
from tests.harness import HOST, Pyfrp, echo_roundtrip, free_ports, http_service, wait_echo

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("mux", [True, False], ids=["tcp_mux", "no-mux"])
def test_go_frpc_through_pyfrps_workers(pyfrp: Pyfrp, tmp_path: Path, echo: int, mux: bool) -> None:
    bind, vhost, *remotes = free_ports(5)
    tcp_mux = f"transport.tcpMux = {str(mux).lower()}\n"
    frps = pyfrp.frps(
        f'bindPort = {bind}\nvhostHTTPPort = {vhost}\nsubdomainHost = "example.com"\n'
        f"pyfrp.workers = 2\n{tcp_mux}",
        suffix=".toml",
    )
    frps.wait_log("frps started successfully", count=2)
    with http_service(lambda path: 200, lambda path: path.encode()) as web:
        clients = [
            start_any(
                pyfrp,
                tmp_path,
                "frpc-native",
                f"serverPort = {bind}\n{tcp_mux}"
                f'[[proxies]]\nname = "t{n}"\ntype = "tcp"\nlocalPort = {echo}\n'
                f"remotePort = {remote}\n"
                f'[[proxies]]\nname = "h{n}"\ntype = "http"\nlocalPort = {web}\n'
                f'subdomain = "s{n}"\n',
                str(n),
                ".toml",
            )
            for n, remote in enumerate(remotes)
        ]
        try:
            for c, remote in zip(clients, remotes, strict=True):
                wait_echo(remote, proc=c)
                for i in range(5):
                    payload = os.urandom(1000 + 30000 * i)
                    assert echo_roundtrip(remote, payload) == payload
            for n in range(len(clients)):
                for i in range(6):
                    conn = http.client.HTTPConnection(HOST, vhost, timeout=10)
                    conn.request("GET", f"/{i}", headers={"Host": f"s{n}.example.com"})
                    resp = conn.getresponse()
                    assert (resp.status, resp.read()) == (200, f"/{i}".encode())
                    conn.close()
        finally:
            for c in clients:
                c.stop()
