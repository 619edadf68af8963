"""TCP tunnels end to end: real pyfrps and pyfrpc processes, the seed's INI configs."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.harness import FirstByteTap, Pyfrp, assert_echo, free_ports, wait_echo

SEED_FRPS = """\
[common]
bind_port = {bind}
"""

SEED_FRPC = """\
[common]
server_addr = 127.0.0.1
server_port = {bind}
[ssh-C]
type = tcp
local_ip =127.0.0.1
local_port = {local}
remote_port = {remote}
"""


def test_seed_configs_unchanged_carry_traffic(pyfrp: Pyfrp, echo: int) -> None:
    """The guide's frps.ini/frpc.ini, only addresses and ports changed, tunnel a TCP service."""
    bind, remote = free_ports(2)
    frps = pyfrp.frps(SEED_FRPS.format(bind=bind))
    frps.wait_port(bind)
    frpc = pyfrp.frpc(SEED_FRPC.format(bind=bind, local=echo, remote=remote))
    frpc.wait_log(r"\[ssh-C\] start proxy success")
    wait_echo(remote, proc=frpc)
    assert_echo(remote, os.urandom(1))
    assert_echo(remote, os.urandom(1_000_000))
    log = frps.wait_log(rf"\[ssh-C\] tcp proxy listen port \[{remote}\]")
    assert "client login info: ip [127.0.0.1:" in log
    assert f"hostname [{socket.gethostname()}]" in log  # as Go frpc reports it


@pytest.mark.parametrize(
    ("tls", "mux", "enc", "comp"),
    [
        (True, True, False, False),
        (False, True, False, False),
        (True, False, False, False),
        (False, False, False, False),
        (True, True, True, True),
        (False, False, True, False),
        (False, False, False, True),
    ],
    ids=["tls-mux", "mux", "tls", "plain", "tls-mux-enc-comp", "enc", "comp"],
)
def test_transport_variants(
    pyfrp: Pyfrp, echo: int, tls: bool, mux: bool, enc: bool, comp: bool
) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(
        f"[common]\nbind_addr = 127.0.0.1\nbind_port = {bind}\ntoken = s3cret\ntcp_mux = {mux}\n"
    )
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"""[common]
server_addr = 127.0.0.1
server_port = {bind}
token = s3cret
user = lab
tcp_mux = {mux}
tls_enable = {tls}
[echo]
type = tcp
local_port = {echo}
remote_port = {remote}
use_encryption = {enc}
use_compression = {comp}
"""
    )
    frpc.wait_log(r"\[echo\] start proxy success")
    frps.wait_log(r"\[lab\.echo\] tcp proxy listen port")
    wait_echo(remote, proc=frpc)
    assert_echo(remote, os.urandom(1))
    assert_echo(remote, os.urandom(8_000_000))
    assert_echo(remote, b"compressible " * 500_000)


def test_custom_tls_first_byte(pyfrp: Pyfrp, echo: int) -> None:
    """An old-style client sends 0x17 before its ClientHello; a tls_only server accepts it."""
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\ntls_only = true\n")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_port = {bind}\nserver_addr = 127.0.0.1\n"
        f"disable_custom_tls_first_byte = false\n"
        f"[e]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
    )
    frpc.wait_log(r"\[e\] start proxy success")
    assert_echo(remote, os.urandom(100_000))


@pytest.mark.parametrize("first_byte", [False, True], ids=["tls", "0x17-tls"])
def test_work_connections_resume_the_tls_session(pyfrp: Pyfrp, echo: int, first_byte: bool) -> None:
    """Without tcp_mux each work connection is a TLS handshake; after the control connection's,
    pyfrpc resumes the session and pyfrps accepts it (seen in each ServerHello on the wire).
    One worker: a session ticket is good only on the worker that issued it."""
    bind, remote = free_ports(2)
    frps = pyfrp.frps(
        f"[common]\nbind_addr = 127.0.0.1\nbind_port = {bind}\ntcp_mux = false\npyfrp_workers = 1\n"
    )
    frps.wait_port(bind)
    tap = FirstByteTap(bind)
    try:
        frpc = pyfrp.frpc(
            f"[common]\nserver_addr = 127.0.0.1\nserver_port = {tap.port}\ntcp_mux = false\n"
            f"disable_custom_tls_first_byte = {str(not first_byte).lower()}\n"
            f"[e]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
        )
        frpc.wait_log(r"\[e\] start proxy success")
        wait_echo(remote, proc=frpc)
        deadline = time.monotonic() + 10
        while True not in tap.resumed:  # a session is read a second after its handshake
            assert time.monotonic() < deadline, tap.resumed
            assert_echo(remote, os.urandom(10_000))
        since = len(tap.resumed)
        for _ in range(5):
            assert_echo(remote, os.urandom(10_000))
        while len(tap.resumed) < since + 5:  # the last refills may still be dialing
            assert time.monotonic() < deadline + 10, tap.resumed
            time.sleep(0.05)
        resumed = list(tap.resumed)
    finally:
        tap.close()
    assert resumed[0] is False  # the control connection had nothing to resume
    assert len(resumed) >= since + 5, resumed  # a work connection per echo
    assert all(resumed[since:]), resumed


def test_tls_only_server_rejects_plain_client(pyfrp: Pyfrp, echo: int) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\ntls_only = true\n")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_port = {bind}\nserver_addr = 127.0.0.1\ntls_enable = false\n"
        f"[e]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
    )
    frps.wait_log(r"non-TLS connection received on a TlsOnly server")
    assert frpc.p.wait(20) == 1


def test_concurrent_connections(pyfrp: Pyfrp, echo: int) -> None:
    import concurrent.futures

    bind, remote = free_ports(2)
    pyfrp.frps(f"[common]\nbind_port = {bind}\n").wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_port = {bind}\nserver_addr = 127.0.0.1\npool_count = 5\n"
        f"[e]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
    )
    frpc.wait_log(r"\[e\] start proxy success")
    payloads = [os.urandom(64_000) for _ in range(50)]
    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        list(ex.map(lambda p: assert_echo(remote, p), payloads))
