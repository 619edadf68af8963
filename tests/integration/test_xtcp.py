"""xtcp: a proxy on one pyfrpc, a visitor on another, pyfrps introducing them; the bytes go
through the hole the two punch (on loopback, with a loopback STUN server), not through frps."""

from __future__ import annotations

import os
import threading

import pytest

from tests.harness import (
    Proc,
    Pyfrp,
    assert_echo,
    echo_roundtrip,
    free_ports,
    stun_server,
    wait_echo,
)

SERVER = 'bindPort = {bind}\nlog.level = "debug"\n'
CLIENT = (
    'serverAddr = "127.0.0.1"\nserverPort = {bind}\nuser = "{user}"\n'
    'natHoleStunServer = "127.0.0.1:{stun}"\nlog.level = "debug"\n'
)
# Only loopback is ever a target: no local interface addresses offered to the peer.
NO_ASSISTED = "natTraversal.disableAssistedAddrs = true\n"


def proxy(name: str, port: int, extra: str = "") -> str:
    return (
        f'[[proxies]]\nname = "{name}"\ntype = "xtcp"\nsecretKey = "abc"\nlocalPort = {port}\n'
        + NO_ASSISTED
        + extra
    )


def visitor(name: str, server_name: str, port: int, extra: str = "", sk: str = "abc") -> str:
    return (
        f'[[visitors]]\nname = "{name}"\ntype = "xtcp"\nserverUser = "lab"\n'
        f'serverName = "{server_name}"\nsecretKey = "{sk}"\nbindAddr = "127.0.0.1"\n'
        f"bindPort = {port}\n" + NO_ASSISTED + extra
    )


def start(
    pyfrp: Pyfrp, stun: int, echo: int, proxy_extra: str, visitors: str
) -> tuple[int, Proc, Proc, Proc]:
    """frps, the proxy's frpc (user lab, allowing alice), the visitors' frpc (alice)."""
    bind = free_ports(1)[0]
    frps = pyfrp.frps(SERVER.format(bind=bind), suffix=".toml")
    frps.wait_port(bind)
    owner = pyfrp.frpc(
        CLIENT.format(bind=bind, user="lab", stun=stun)
        + proxy("ssh", echo, 'allowUsers = ["alice"]\n' + proxy_extra),
        suffix=".toml",
    )
    owner.wait_log(r"\[ssh\] start proxy success")
    visiting = pyfrp.frpc(
        CLIENT.format(bind=bind, user="alice", stun=stun) + visitors, suffix=".toml"
    )
    return bind, frps, owner, visiting


@pytest.mark.parametrize(
    ("extra", "protocol"),
    [
        ("", "quic"),
        ("transport.useEncryption = true\ntransport.useCompression = true\n", "quic"),
        ("", "kcp"),  # KCP and yamux in the hole instead of QUIC
    ],
    ids=["plain", "encrypted-compressed", "kcp"],
)
def test_visitor_reaches_the_proxy_through_the_hole(
    pyfrp: Pyfrp, echo: int, extra: str, protocol: str
) -> None:
    visit = free_ports(1)[0]
    with stun_server() as stun:
        _, frps, owner, visiting = start(
            pyfrp,
            stun,
            echo,
            extra,
            visitor("v", "ssh", visit, f'{extra}protocol = "{protocol}"\n'),
        )
        wait_echo(visit, 30, visiting)
        visiting.wait_log(r"\[v\] establishing nat hole connection successful, sid \[\d+\w+\]")
        owner.wait_log(r"\[ssh\] establishing nat hole connection successful")
        frps.wait_log(r"report make hole success: true, mode 0, index 0")
        frps.wait_log(rf"protocol: {protocol}")
        assert_echo(visit, os.urandom(2_000_000))
        # many users share the one tunnel, each on its own stream
        payloads = [os.urandom(100_000) for _ in range(10)]
        results: list[bytes] = [b""] * 10

        def one(i: int) -> None:
            results[i] = echo_roundtrip(visit, payloads[i])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == payloads
        assert len(visiting.log().split("establishing nat hole connection successful")) == 2
        for p in (frps, owner, visiting):
            assert p.alive()


def test_keep_tunnel_open_punches_before_any_user(pyfrp: Pyfrp, echo: int) -> None:
    visit = free_ports(1)[0]
    with stun_server() as stun:
        _, _, _, visiting = start(
            pyfrp, stun, echo, "", visitor("v", "ssh", visit, "keepTunnelOpen = true\n")
        )
        visiting.wait_log(r"\[v\] establishing nat hole connection successful", timeout=30)
        assert "get a new xtcp user connection" not in visiting.log()
        assert_echo(visit, os.urandom(100_000))


def test_wrong_key_falls_back_to_stcp(pyfrp: Pyfrp, echo: int) -> None:
    """A visitor with the wrong secret key is refused by frps; its user goes to the fallback
    (an stcp visitor with the right key, reached only through this one)."""
    visit = free_ports(1)[0]
    stcp = (
        '[[proxies]]\nname = "ssh-stcp"\ntype = "stcp"\nsecretKey = "abc"\n'
        f'localPort = {echo}\nallowUsers = ["alice"]\n'
    )
    fallback = (
        '[[visitors]]\nname = "fb"\ntype = "stcp"\nserverUser = "lab"\nserverName = "ssh-stcp"\n'
        'secretKey = "abc"\nbindPort = -1\n'
    )
    with stun_server() as stun:
        bind, frps, _, visiting = start(
            pyfrp,
            stun,
            echo,
            "",
            visitor("v", "ssh", visit, 'fallbackTo = "fb"\nfallbackTimeoutMs = 500\n', sk="bad")
            + fallback,
        )
        # the stcp proxy rides on a second frpc of the same user
        visiting.wait_log(r"\[v\] start visitor success")
        pyfrp.frpc(CLIENT.format(bind=bind, user="lab", stun=stun) + stcp, suffix=".toml").wait_log(
            r"\[ssh-stcp\] start proxy success"
        )
        wait_echo(visit, 30, visiting)
        assert_echo(visit, os.urandom(200_000))
        visiting.wait_log(r"\[v\] open tunnel error: open tunnel timeout")
        visiting.wait_log(
            r"\[v\] nathole exchange info error: natHoleRespMsg get error info: "
            r"xtcp connection of \[lab\.ssh\] auth failed"
        )
        frps.wait_log(r"handle visitorMsg error: xtcp connection of \[lab\.ssh\] auth failed")
        assert frps.alive()


def test_user_not_allowed_is_refused_at_precheck(pyfrp: Pyfrp, echo: int) -> None:
    visit = free_ports(1)[0]
    with stun_server() as stun:
        bind = free_ports(1)[0]
        frps = pyfrp.frps(SERVER.format(bind=bind), suffix=".toml")
        frps.wait_port(bind)
        pyfrp.frpc(
            CLIENT.format(bind=bind, user="lab", stun=stun) + proxy("ssh", echo),
            suffix=".toml",
        ).wait_log(r"\[ssh\] start proxy success")
        eve = pyfrp.frpc(
            CLIENT.format(bind=bind, user="eve", stun=stun)
            + visitor("v", "ssh", visit, "keepTunnelOpen = true\n"),
            suffix=".toml",
        )
        eve.wait_log(
            r"nathole precheck error: xtcp visitor user \[eve\] not allowed for \[lab\.ssh\]"
        )
        assert "nathole prepare success" not in eve.log()
