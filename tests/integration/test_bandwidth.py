"""``transport.bandwidthLimit``: a proxy's traffic, both directions together, stays at the limit
(frp: one token bucket per proxy, a second's worth of burst), metered by frpc or, with
``bandwidthLimitMode = "server"``, by frps."""

from __future__ import annotations

import os
import time

import pytest

from tests.harness import Pyfrp, echo_roundtrip, free_ports, wait_echo

LIMIT = 32 * 1024


@pytest.mark.parametrize("mode", ["client", "server"])
def test_echo_takes_as_long_as_the_limit_says(pyfrp: Pyfrp, echo: int, mode: str) -> None:
    bind, remote, fast = free_ports(3)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f'serverPort = {bind}\n[[proxies]]\nname = "slow"\ntype = "tcp"\nlocalPort = {echo}\n'
        f'remotePort = {remote}\ntransport.bandwidthLimit = "32KB"\n'
        f'transport.bandwidthLimitMode = "{mode}"\n'
        f'[[proxies]]\nname = "fast"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {fast}\n',
        suffix=".toml",
    )
    wait_echo(remote, proc=frpc)
    wait_echo(fast, proc=frpc)
    time.sleep(1.1)  # let the probes' debt be paid and the burst fill up again
    payload = os.urandom(2 * LIMIT)
    start = time.monotonic()
    assert echo_roundtrip(remote, payload) == payload
    took = time.monotonic() - start
    # 128 KiB through the bucket (64 up, 64 down), 32 KiB of burst: at least 3 s.
    assert 2.7 < took < 8, took
    start = time.monotonic()
    assert echo_roundtrip(fast, payload) == payload
    assert time.monotonic() - start < 1  # another proxy of that frpc is not slowed
