"""The black hole of tests/integration/test_netfaults.py with native Go frp 0.70.1 on one side
(and Go on both as the reference): frpc notices a silent frps as fast as Go frpc does, then
re-registers every proxy (tcp, udp, http) once the path heals, whichever frps it talks to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.harness import Pyfrp
from tests.integration.test_netfaults import (
    YAMUX_PING_TIMEOUT,
    Side,
    blackhole_then_heal,
    short_timeouts,
)
from tests.netns import NetPair, skip_reason

_why = skip_reason()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(_why is not None, reason=_why or "")]

PAIRS = [
    ("frps-native", "pyfrpc"),
    ("pyfrps", "frpc-native"),
    ("frps-native", "frpc-native"),  # the reference figures
]
CASES = {
    # (tcp_mux, frpc settings, give-up bound, the cause frpc logs)
    "mux-keepalive": (True, short_timeouts(True), 1 + YAMUX_PING_TIMEOUT, None),
    "nomux-heartbeat": (False, short_timeouts(False), 3 + 1, "heartbeat timeout"),
    "mux-heartbeat": (
        True,
        "heartbeat_interval = 1\nheartbeat_timeout = 3\ndial_server_timeout = 3\n",
        3 + 1,
        "heartbeat timeout",
    ),
}


@pytest.fixture
def net() -> Iterator[NetPair]:
    pair = NetPair()
    yield pair
    pair.close()


@pytest.fixture
def side(net: NetPair) -> Iterator[Side]:
    with ExitStack() as stack:
        yield Side(stack, net.cli)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(("server", "client"), PAIRS, ids=["+".join(p) for p in PAIRS])
def test_blackhole_with_go_peer(
    pyfrp: Pyfrp, net: NetPair, side: Side, case: str, server: str, client: str
) -> None:
    mux, extra, bound, cause = CASES[case]
    blackhole_then_heal(pyfrp, net, side, mux, extra, bound, cause, server, client)
