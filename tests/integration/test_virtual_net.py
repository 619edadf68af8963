"""virtual_net (featureGates VirtualNet): a visitor-side pyfrpc reaches a service on the
proxy-side pyfrpc's virtual address (100.86.0.1) through frps, each in its own network
namespace (tests/netns.py), and the bytes echo back."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import ADDR_A, lab, skip_unless_able

SERVER_VIP = "100.86.0.1"
VISITOR_VIP = "100.86.0.2"
ECHO_PORT = 9000
BIND = 7000


def frps_config() -> str:
    return f'bindAddr = "{ADDR_A}"\nbindPort = {BIND}\n'


def proxy_side(proxy_type: str = "stcp", extra: str = "") -> str:
    return (
        f'serverAddr = "{ADDR_A}"\nserverPort = {BIND}\nloginFailExit = false\n'
        "featureGates = { VirtualNet = true }\n"
        f'virtualNet.address = "{SERVER_VIP}/24"\n'
        f'[[proxies]]\nname = "vnet-server"\ntype = "{proxy_type}"\nsecretKey = "vk"\n{extra}'
        '[proxies.plugin]\ntype = "virtual_net"\n'
    )


def visitor_side(visitor_type: str = "stcp", extra: str = "") -> str:
    return (
        f'serverAddr = "{ADDR_A}"\nserverPort = {BIND}\nloginFailExit = false\n'
        "featureGates = { VirtualNet = true }\n"
        f'virtualNet.address = "{VISITOR_VIP}/24"\n'
        f'[[visitors]]\nname = "vnet-visitor"\ntype = "{visitor_type}"\n'
        f'serverName = "vnet-server"\nsecretKey = "vk"\nbindPort = -1\n{extra}'
        f'[visitors.plugin]\ntype = "virtual_net"\ndestinationIP = "{SERVER_VIP}"\n'
    )


@pytest.mark.parametrize("extra", ["", "transport.useEncryption = true\n"], ids=["plain", "enc"])
def test_visitor_reaches_a_service_on_the_proxy_sides_virtual_address(
    tmp_path: Path, extra: str
) -> None:
    with lab(tmp_path) as la:
        frps = la.py(la.a, "pyfrps", "pyfrp.server", frps_config())
        frps.wait_log("frps started successfully")
        server = la.py(la.a, "pyfrpc-server", "pyfrp.client", proxy_side(extra=extra))
        server.wait_log(r"\[vnet-server\] start proxy success")
        assert "virtual network controller start..." in server.log()
        echo = la.echo(la.a, SERVER_VIP, ECHO_PORT)
        echo.wait_log("listening")
        visitor = la.py(la.b, "pyfrpc-visitor", "pyfrp.client", visitor_side(extra=extra))
        visitor.wait_log("successfully registered client route for visitor")
        payload = os.urandom(200_000)
        assert la.exchange(la.b, SERVER_VIP, ECHO_PORT, payload, timeout=15) == payload
        # the service saw the visitor side's virtual address: replies were routed back by it
        assert f"peer {VISITOR_VIP}" in echo.log()
        # an address no visitor routes goes nowhere
        assert not la.connects(la.b, "100.86.0.3", ECHO_PORT, timeout=1)


def test_xtcp_carries_the_virtual_network_too(tmp_path: Path) -> None:
    with lab(tmp_path) as la:
        _, stun = la.stun(la.a, ADDR_A)
        nat = f'natHoleStunServer = "{ADDR_A}:{stun}"\n'
        no_assisted = "natTraversal.disableAssistedAddrs = true\n"
        frps = la.py(la.a, "pyfrps", "pyfrp.server", frps_config())
        frps.wait_log("frps started successfully")
        server = la.py(la.a, "pyfrpc-server", "pyfrp.client", nat + proxy_side("xtcp"))
        server.wait_log(r"\[vnet-server\] start proxy success")
        echo = la.echo(la.a, SERVER_VIP, ECHO_PORT)
        echo.wait_log("listening")
        visitor = la.py(
            la.b, "pyfrpc-visitor", "pyfrp.client", nat + visitor_side("xtcp", no_assisted)
        )
        visitor.wait_log("successfully registered client route for visitor")
        payload = os.urandom(100_000)
        assert la.exchange(la.b, SERVER_VIP, ECHO_PORT, payload, timeout=20) == payload
        assert f"peer {VISITOR_VIP}" in echo.log()


def test_visitor_without_its_proxy_backs_off_as_frp(tmp_path: Path) -> None:
    """No proxy to reach: the visitor reports the error and waits a minute, as frp."""
    with lab(tmp_path) as la:
        frps = la.py(la.a, "pyfrps", "pyfrp.server", frps_config())
        frps.wait_log("frps started successfully")
        visitor = la.py(la.b, "pyfrpc-visitor", "pyfrp.client", visitor_side())
        log = visitor.wait_log(r"waiting 1m0s before attempting reconnection")
        assert (
            "connection closed with error for visitor [vnet-visitor] (consecutive errors: 1): "
            "start new visitor connection error: "
        ) in log


def test_without_net_admin_no_tun_device_is_a_clear_error(tmp_path: Path) -> None:
    """Without CAP_NET_ADMIN the device cannot be made: pyfrpc says so, as frpc, and exits 1."""
    skip_unless_able()
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to drop a capability")
    cfg = tmp_path / "frpc.toml"
    cfg.write_text(
        'serverAddr = "127.0.0.1"\nserverPort = 1\nfeatureGates = { VirtualNet = true }\n'
        f'virtualNet.address = "{VISITOR_VIP}/24"\n'
    )
    out = subprocess.run(
        ["setpriv", "--bounding-set=-net_admin",
         sys.executable, "-m", "pyfrp.client", "-c", str(cfg)],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(
        r"\[E\] .*init virtual network controller error: failed to create TUN device "
        r"'utun\d+': operation not permitted",
        out.stdout + out.stderr,
    ), out.stdout + out.stderr


def test_address_without_the_feature_gate_is_refused(tmp_path: Path) -> None:
    """frpc refuses to start (validateFeatureGates); pyfrpc verify says the same."""
    cfg = tmp_path / "frpc.toml"
    cfg.write_text('serverAddr = "127.0.0.1"\nvirtualNet.address = "100.86.0.1/24"\n')
    for argv in (["-c", str(cfg)], ["verify", "-c", str(cfg)]):
        out = subprocess.run(
            [sys.executable, "-m", "pyfrp.client", *argv], capture_output=True, text=True,
            timeout=30, cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 1
        assert out.stderr == (
            f"{cfg}:2: virtualNet.address: VirtualNet feature is not enabled; "
            "enable it by setting the appropriate feature gate flag\n"
        )
