"""stcp and sudp: a proxy on one pyfrpc, a visitor on another, pyfrps between them."""

from __future__ import annotations

import os
import socket

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

SERVER = "[common]\nbind_port = {bind}\n"
CLIENT = "[common]\nserver_port = {bind}\nuser = {user}\n"


@pytest.mark.parametrize(
    "extra",
    ["", "use_encryption = true\nuse_compression = true\n"],
    ids=["plain", "encrypted-compressed"],
)
def test_stcp_visitor_reaches_the_proxy(pyfrp: Pyfrp, echo: int, extra: str) -> None:
    bind, visit = free_ports(2)
    pyfrp.frps(SERVER.format(bind=bind)).wait_port(bind)
    pyfrp.frpc(
        CLIENT.format(bind=bind, user="lab")
        + f"[ssh]\ntype = stcp\nsk = abc\nlocal_port = {echo}\nallow_users = alice\n{extra}"
    ).wait_log(r"\[ssh\] start proxy success")
    visitor = pyfrp.frpc(
        CLIENT.format(bind=bind, user="alice")
        + "[ssh_visitor]\nrole = visitor\ntype = stcp\nserver_user = lab\nserver_name = ssh\n"
        f"sk = abc\nbind_addr = 127.0.0.1\nbind_port = {visit}\n{extra}"
    )
    visitor.wait_log(r"\[ssh_visitor\] start visitor success")
    wait_echo(visit, proc=visitor)
    assert_echo(visit, os.urandom(2_000_000))


def test_stcp_wrong_secret_key_or_user_is_refused(pyfrp: Pyfrp, echo: int) -> None:
    bind, visit, visit2 = free_ports(3)
    frps = pyfrp.frps(SERVER.format(bind=bind))
    frps.wait_port(bind)
    pyfrp.frpc(
        CLIENT.format(bind=bind, user="lab")
        + f"[ssh]\ntype = stcp\nsk = abc\nlocal_port = {echo}\n"
    ).wait_log(r"\[ssh\] start proxy success")
    visitors = pyfrp.frpc(
        CLIENT.format(bind=bind, user="eve")
        + "[bad_sk]\nrole = visitor\ntype = stcp\nserver_user = lab\nserver_name = ssh\n"
        f"sk = wrong\nbind_port = {visit}\n"
        "[not_allowed]\nrole = visitor\ntype = stcp\nserver_user = lab\nserver_name = ssh\n"
        f"sk = abc\nbind_port = {visit2}\n"
    )
    visitors.wait_log(r"\[not_allowed\] start visitor success")
    for port in (visit, visit2):
        with socket.create_connection(("127.0.0.1", port), 5) as c:
            c.settimeout(10)
            assert c.recv(16) == b""  # closed by the visitor, never joined
    visitors.wait_log(r"\[bad_sk\] dialRawVisitorConn error: .*auth failed")
    visitors.wait_log(r"\[not_allowed\] dialRawVisitorConn error: .*user \[eve\] not allowed")
    frps.wait_log(r"register visitor conn error: visitor connection of \[lab\.ssh\] auth failed")
    assert frps.alive()


def test_sudp_visitor_reaches_the_proxy(pyfrp: Pyfrp) -> None:
    bind, visit = free_ports(2)
    pyfrp.frps(SERVER.format(bind=bind)).wait_port(bind)
    with udp_echo_server() as echo:
        pyfrp.frpc(
            CLIENT.format(bind=bind, user="lab")
            + f"[dns]\ntype = sudp\nsk = abc\nlocal_port = {echo}\n"
            "use_encryption = true\nuse_compression = true\n"
        ).wait_log(r"\[dns\] start proxy success")
        visitor = pyfrp.frpc(
            CLIENT.format(bind=bind, user="lab")
            + "[dns_visitor]\nrole = visitor\ntype = sudp\nserver_name = dns\n"
            f"sk = abc\nbind_addr = 127.0.0.1\nbind_port = {visit}\n"
            "use_encryption = true\nuse_compression = true\n"
        )
        visitor.wait_log(r"\[dns_visitor\] sudp start to work")
        wait_udp_echo(visit, proc=visitor)
        assert_udp_echoes(visit, (900, 100))
