"""udp proxies between pyfrp and real Go frp: native 0.70.1 in both directions, and the older
0.65.0 client and 0.51.2 server. Datagrams from two user sockets, interleaved, each answered to
its own sender by a UDP echo behind the client; with and without encryption + compression."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import peer_exe, start_any
from tests.harness import (
    Pyfrp,
    assert_udp_echoes,
    free_ports,
    udp_echo_server,
    wait_udp_echo,
)

pytestmark = pytest.mark.interop

STARTUP = 30.0
TOPOLOGIES = [
    ("pyfrpc", "frps-native"),
    ("frpc-native", "pyfrps"),
    ("pyfrpc", "frps-go"),
    ("frpc-go-new", "pyfrps"),
]


@pytest.mark.parametrize("enc", [False, True], ids=["plain", "enc-comp"])
@pytest.mark.parametrize(("client", "server"), TOPOLOGIES, ids=[f"{c}>{s}" for c, s in TOPOLOGIES])
def test_udp_echo(pyfrp: Pyfrp, tmp_path: Path, client: str, server: str, enc: bool) -> None:
    peer_exe(client if server == "pyfrps" else server)
    bind, remote = free_ports(2)
    extra = "api_enable = false\n" if server == "frps-go" else ""
    procs = [start_any(pyfrp, tmp_path, server, f"[common]\nbind_port = {bind}\n{extra}")]
    try:
        procs[0].wait_port(bind, STARTUP)
        with udp_echo_server() as echo:
            flags = "use_encryption = true\nuse_compression = true\n" if enc else ""
            procs.append(
                start_any(
                    pyfrp,
                    tmp_path,
                    client,
                    f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
                    f"[dns]\ntype = udp\nlocal_ip = 127.0.0.1\nlocal_port = {echo}\n"
                    f"remote_port = {remote}\n{flags}",
                )
            )
            wait_udp_echo(remote, STARTUP, procs[1])
            assert_udp_echoes(remote, (1200, 300))
        for p in procs:
            assert p.alive(), p.log()[-2000:]
    finally:
        for p in reversed(procs):
            p.stop()
