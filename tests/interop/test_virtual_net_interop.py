"""virtual_net between pyfrpc and native Go frpc 0.70.1, each end either (and frps either): the
visitor side's namespace reaches a tcp echo on the proxy side's virtual address through the
stcp tunnel, with encryption and compression on, so both framing and routing agree with Go's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.test_virtual_net import (
    ECHO_PORT,
    SERVER_VIP,
    VISITOR_VIP,
    frps_config,
    proxy_side,
    visitor_side,
)
from tests.netns import ADDR_A, lab

pytestmark = pytest.mark.interop

FLAGS = "transport.useEncryption = true\ntransport.useCompression = true\n"
CASES = [
    ("pyfrps", "frpc-native", "pyfrpc"),
    ("pyfrps", "pyfrpc", "frpc-native"),
    ("frps-native", "frpc-native", "pyfrpc"),
    ("frps-native", "pyfrpc", "frpc-native"),
    ("frps-native", "pyfrpc", "pyfrpc"),
]


@pytest.mark.parametrize(("server", "proxy", "visitor"), CASES, ids=["-".join(c) for c in CASES])
def test_visitor_reaches_the_proxy_sides_virtual_address(
    tmp_path: Path, server: str, proxy: str, visitor: str
) -> None:
    with lab(tmp_path) as la:
        frps = la.start(la.a, server, "frps", frps_config())
        frps.wait_log("frps started successfully")
        srv = la.start(la.a, proxy, "proxy-side", proxy_side(extra=FLAGS))
        srv.wait_log(r"\[vnet-server\] start proxy success")
        echo = la.echo(la.a, SERVER_VIP, ECHO_PORT)
        echo.wait_log("listening")
        vis = la.start(la.b, visitor, "visitor-side", visitor_side(extra=FLAGS))
        vis.wait_log("successfully registered client route for visitor")
        payload = os.urandom(300_000)
        assert la.exchange(la.b, SERVER_VIP, ECHO_PORT, payload, timeout=20) == payload
        assert f"peer {VISITOR_VIP}" in echo.log()


XTCP_CASES = [("pyfrps", "frpc-native", "pyfrpc"), ("frps-native", "pyfrpc", "frpc-native")]


@pytest.mark.parametrize(
    ("server", "proxy", "visitor"), XTCP_CASES, ids=["-".join(c) for c in XTCP_CASES]
)
def test_xtcp_carries_the_virtual_network(
    tmp_path: Path, server: str, proxy: str, visitor: str
) -> None:
    with lab(tmp_path) as la:
        _, stun = la.stun(la.a, ADDR_A)
        nat = f'natHoleStunServer = "{ADDR_A}:{stun}"\n'
        no_assisted = "natTraversal.disableAssistedAddrs = true\n"
        frps = la.start(la.a, server, "frps", frps_config())
        frps.wait_log("frps started successfully")
        srv = la.start(la.a, proxy, "proxy-side", nat + proxy_side("xtcp", FLAGS))
        srv.wait_log(r"\[vnet-server\] start proxy success")
        echo = la.echo(la.a, SERVER_VIP, ECHO_PORT)
        echo.wait_log("listening")
        vis = la.start(
            la.b, visitor, "visitor-side", nat + visitor_side("xtcp", FLAGS + no_assisted)
        )
        vis.wait_log("successfully registered client route for visitor")
        payload = os.urandom(100_000)
        assert la.exchange(la.b, SERVER_VIP, ECHO_PORT, payload, timeout=20) == payload
        assert f"peer {VISITOR_VIP}" in echo.log()
