"""Faults on a hostile network: pyfrps and pyfrpc in two network namespaces of their own, joined
by a veth pair (or the delaying wire of tests/netns.py), with the kernel dropping packets.

- A black-holed frps (every packet dropped, no RST): pyfrpc notices through yamux keepalives
  (tcp_mux) or heartbeats (without), logs it as frp does, keeps retrying, and once the path
  heals logs in again with its run id and re-registers every proxy (tcp, udp, http).
- The other way round: frps's heartbeat timeout / yamux keepalive drop a silent frpc and free
  its remote ports; after the heal frpc registers everything again.
- A partition shorter than the timeouts: nothing is torn down, a transfer across it completes
  byte for byte.
- 100 ms RTT with 1 % loss: a transfer through tcp (tcp_mux on and off) is sha256-equal.

The default suite uses short intervals (seconds). ``PYFRP_NETFAULTS_LONG=1`` also runs the
black hole with frp's default timeouts (30 s yamux keepalive + 10 s ping timeout; 30 s
heartbeat + 90 s timeout without tcp_mux), which takes minutes.
Every test skips, saying why, without root, ``ip`` or nftables.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.conftest import peer_exe  # skips a test when its Go peer is not built
from tests.harness import (
    Proc,
    Pyfrp,
    assert_echo,
    assert_udp_echoes,
    echo_roundtrip,
    echo_server,
    http_service,
    udp_echo_server,
    wait_echo,
    wait_port_closed,
    wait_udp_echo,
)
from tests.netns import CLI_IP, SRV_IP, NetPair, in_netns, skip_reason, wire_skip_reason

_why = skip_reason()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

TOKEN = "netfault-token"
BIND, VHOST, TCP_PORT, UDP_PORT = 7000, 8080, 6000, 6001  # inside our namespaces: no clashes
MUX = pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])
LONG = os.environ.get("PYFRP_NETFAULTS_LONG") == "1"
# frp's yamux ping timeout (hashicorp/yamux ConnectionWriteTimeout, not configurable in frp).
YAMUX_PING_TIMEOUT = 10.0


@pytest.fixture
def net() -> Iterator[NetPair]:
    pair = NetPair()
    yield pair
    pair.close()


class Side:
    """The local services behind frpc, living in frpc's namespace."""

    def __init__(self, stack: ExitStack, ns: str) -> None:
        with in_netns(ns):
            tcp = echo_server()
            udp = udp_echo_server()
            web = http_service(lambda path: 200, lambda path: b"web:" + path.encode())
        self.tcp = stack.enter_context(tcp)
        self.udp = stack.enter_context(udp)
        self.web = stack.enter_context(web)


@pytest.fixture
def side(net: NetPair) -> Iterator[Side]:
    with ExitStack() as stack:
        yield Side(stack, net.cli)


def frps_ini(mux: bool, extra: str = "") -> str:
    return (
        f"[common]\nbind_addr = 0.0.0.0\nbind_port = {BIND}\nvhost_http_port = {VHOST}\n"
        f"token = {TOKEN}\ntcp_mux = {mux}\n{extra}"
    )


def frpc_ini(mux: bool, side: Side, extra: str = "") -> str:
    return (
        f"[common]\nserver_addr = {SRV_IP}\nserver_port = {BIND}\ntoken = {TOKEN}\n"
        f"tcp_mux = {mux}\n{extra}"
        f"[t]\ntype = tcp\nlocal_port = {side.tcp}\nremote_port = {TCP_PORT}\n"
        f"[u]\ntype = udp\nlocal_port = {side.udp}\nremote_port = {UDP_PORT}\n"
        f"[h]\ntype = http\nlocal_port = {side.web}\n"
        "custom_domains = web.example.test\n"
    )


def short_timeouts(mux: bool) -> str:
    """Seconds instead of frp's minutes: a yamux ping every second (mux), or a heartbeat every
    second with a 3 s timeout (no mux); login attempts give up after 3 s."""
    if mux:
        return "tcp_mux_keepalive_interval = 1\ndial_server_timeout = 3\n"
    return "heartbeat_interval = 1\nheartbeat_timeout = 3\ndial_server_timeout = 3\n"


def http_get(port: int, host: str, path: str, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def wait_http(port: int, host: str, path: str, timeout: float = 20.0) -> bytes:
    end = time.monotonic() + timeout
    last = b""
    while time.monotonic() < end:
        try:
            last = http_get(port, host, path)
            if last.startswith(b"HTTP/1.1 200"):
                return last
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"http through {port} not 200 after {timeout}s: {last[:200]!r}")


def all_proxies_work(net: NetPair, frpc: Proc, timeout: float = 20.0) -> None:
    """tcp, udp and http all carry traffic end to end, seen from frps's host."""
    with in_netns(net.srv):
        wait_echo(TCP_PORT, timeout, proc=frpc)
        assert_echo(TCP_PORT, os.urandom(200_000))
        wait_udp_echo(UDP_PORT, timeout, proc=frpc)
        assert_udp_echoes(UDP_PORT)
        body = wait_http(VHOST, "web.example.test", "/hello", timeout)
        assert body.endswith(b"web:/hello"), body[-100:]


def start_pair(
    pyfrp: Pyfrp,
    net: NetPair,
    mux: bool,
    side: Side,
    client_extra: str = "",
    server: str = "pyfrps",
    client: str = "pyfrpc",
    server_extra: str = "",
) -> tuple[Proc, Proc]:
    """frps in its namespace (listening before frpc starts), frpc in its own. ``server`` and
    ``client``: pyfrps/pyfrpc, or a Go peer's name from tests/conftest.py (frps-native...)."""
    frps = _start(pyfrp, net.srv, net, server, frps_ini(mux, server_extra))
    with in_netns(net.srv):
        frps.wait_port(BIND)
    frpc = _start(pyfrp, net.cli, net, client, frpc_ini(mux, side, client_extra))
    return frps, frpc


def _start(pyfrp: Pyfrp, ns: str, net: NetPair, kind: str, config: str) -> Proc:
    if kind == "pyfrps":
        return pyfrp.frps(config, prefix=net.exec_argv(ns))
    if kind == "pyfrpc":
        return pyfrp.frpc(config, prefix=net.exec_argv(ns))
    cfg = pyfrp.tmp / f"{kind}.ini"
    cfg.write_text(config)
    proc = Proc(
        kind, [*net.exec_argv(ns), peer_exe(kind), "-c", cfg], pyfrp.tmp / f"{kind}.log", pyfrp.tmp
    )
    pyfrp.procs.append(proc)
    return proc


def started(frpc: Proc, count: int, timeout: float) -> None:
    for name in ("t", "u", "h"):
        frpc.wait_log(rf"\[{name}\] start proxy success", timeout=timeout, count=count)


def blackhole_then_heal(
    pyfrp: Pyfrp,
    net: NetPair,
    side: Side,
    mux: bool,
    client_extra: str,
    detect_within: float,
    cause: str | None = None,
    server: str = "pyfrps",
    client: str = "pyfrpc",
) -> tuple[float, float]:
    """Black-hole frps, wait for frpc to notice, heal, wait for every proxy to be back.
    Returns (detection seconds, seconds from heal to all proxies re-registered)."""
    frps, frpc = start_pair(pyfrp, net, mux, side, client_extra, server, client)
    started(frpc, 1, 20)
    all_proxies_work(net, frpc)
    run_id = re.findall(r"get run id \[(\w+)\]", frpc.log())[0]

    net.blackhole_srv()
    t0 = time.monotonic()
    # Noticed: frpc (Go or pyfrp) starts logging in again.
    frpc.wait_log(r"try to connect to server", timeout=detect_within + 5, count=2)
    detected = time.monotonic() - t0
    if client == "pyfrpc":  # and says why: yamux's keepalive failure or "heartbeat timeout"
        cause = cause or (r"yamux keepalive timeout" if mux else r"heartbeat timeout")
        assert re.search(cause, frpc.log()), frpc.log()[-2000:]
        assert "control connection to server lost" in frpc.log()
    elif cause:  # Go frpc logs only "heartbeat timeout"; yamux's failure it does not log
        assert re.search(cause, frpc.log()), frpc.log()[-2000:]
    assert detected <= detect_within + 1.5, f"noticed after {detected:.1f}s"
    # Still black: frpc keeps trying (and failing) to log in, it does not exit.
    frpc.wait_log(r"connect to server error", timeout=15)
    assert frpc.alive()

    net.heal()
    t1 = time.monotonic()
    started(frpc, 2, 40)
    back = time.monotonic() - t1
    assert re.findall(r"get run id \[(\w+)\]", frpc.log()) == [run_id, run_id]
    if server == "pyfrps":
        frps.wait_log(rf"\[{run_id}\] client login success", count=2)
    all_proxies_work(net, frpc)
    assert "start error" not in frpc.log()
    print(
        f"\n{server}+{client} mux={mux}: black hole noticed in {detected:.1f}s, "
        f"every proxy back {back:.1f}s after heal"
    )
    return detected, back


@MUX
def test_blackholed_frps_noticed_and_every_proxy_reregistered(
    pyfrp: Pyfrp, net: NetPair, side: Side, mux: bool
) -> None:
    """Short intervals: with tcp_mux a ping every 1 s and frp's 10 s ping timeout; without, a
    heartbeat every 1 s and a 3 s timeout. frpc notices within that, then comes back."""
    limit = 1 + YAMUX_PING_TIMEOUT if mux else 3 + 1
    blackhole_then_heal(pyfrp, net, side, mux, short_timeouts(mux), limit)


def test_blackhole_explicit_heartbeat_timeout_counts_with_tcp_mux(
    pyfrp: Pyfrp, net: NetPair, side: Side
) -> None:
    """An explicit heartbeat_timeout is enforced with tcp_mux too, as frpc does (it checks
    whenever interval and timeout are > 0): noticed in ~3 s, not after the 30 s yamux
    keepalive + 10 s. pyfrpc used to ignore it with tcp_mux and took 39 s here."""
    extra = "heartbeat_interval = 1\nheartbeat_timeout = 3\ndial_server_timeout = 3\n"
    blackhole_then_heal(pyfrp, net, side, True, extra, 3 + 1, cause="heartbeat timeout")


@pytest.mark.skipif(not LONG, reason="frp's default timeouts take minutes: PYFRP_NETFAULTS_LONG=1")
@pytest.mark.timeout(300)
@MUX
def test_blackholed_frps_with_frps_default_timeouts(
    pyfrp: Pyfrp, net: NetPair, side: Side, mux: bool
) -> None:
    """frp's defaults: yamux pings every 30 s (+10 s timeout) with tcp_mux; heartbeats every
    30 s with a 90 s timeout without it."""
    limit = 30 + YAMUX_PING_TIMEOUT if mux else 90 + 30
    blackhole_then_heal(pyfrp, net, side, mux, "", limit)


@pytest.mark.parametrize(
    "mux",
    [
        pytest.param(
            True,
            id="mux",
            marks=pytest.mark.skipif(not LONG, reason="~25 s: PYFRP_NETFAULTS_LONG=1"),
        ),
        pytest.param(False, id="nomux"),
    ],
)
def test_frps_notices_silent_frpc_and_frees_its_ports(
    pyfrp: Pyfrp, net: NetPair, side: Side, mux: bool
) -> None:
    """The other end: frps's own checks (a yamux ping every 1 s with tcp_mux, a 3 s heartbeat
    timeout without) drop a control that went silent and close its remote ports; once the path
    heals, frpc finds its control dead and registers everything again."""
    if mux:  # frpc pings less often, so frps is the first to give up
        server, client = "tcp_mux_keepalive_interval = 1\n", "tcp_mux_keepalive_interval = 5\n"
        limit = 1 + YAMUX_PING_TIMEOUT
    else:
        server, client = (
            "heartbeat_timeout = 3\n",
            "heartbeat_interval = 1\nheartbeat_timeout = 60\n",
        )
        limit = 3 + 1
    frps, frpc = start_pair(pyfrp, net, mux, side, client, server_extra=server)
    started(frpc, 1, 20)
    all_proxies_work(net, frpc)
    net.blackhole_srv()
    t0 = time.monotonic()
    with in_netns(net.srv):
        wait_port_closed(TCP_PORT, limit + 3)
    took = time.monotonic() - t0
    assert took <= limit + 1.5, took
    frps.wait_log(r"yamux keepalive timeout" if mux else r"heartbeat timeout", timeout=2)
    assert "control connection to server lost" not in frpc.log()  # frpc has not noticed yet
    net.heal()
    started(frpc, 2, 20)
    all_proxies_work(net, frpc)
    print(f"\nmux={mux}: frps dropped the silent control in {took:.1f}s")


@MUX
def test_partition_shorter_than_timeouts_heals_without_loss(
    pyfrp: Pyfrp, net: NetPair, side: Side, mux: bool
) -> None:
    """A 3 s partition in the middle of a transfer: TCP retransmits, no keepalive or heartbeat
    gives up (5 s / 10 s), nobody reconnects, and the bytes come back whole."""
    extra = (
        "tcp_mux_keepalive_interval = 1\n"
        if mux
        else "heartbeat_interval = 1\nheartbeat_timeout = 6\n"
    )
    frps, frpc = start_pair(pyfrp, net, mux, side, extra)
    started(frpc, 1, 20)
    with in_netns(net.srv):
        wait_echo(TCP_PORT, proc=frpc)
    payload = os.urandom(8 << 20)
    result: list[bytes] = []

    def transfer() -> None:
        with in_netns(net.srv):
            result.append(echo_roundtrip(TCP_PORT, payload, 60))

    t = threading.Thread(target=transfer)
    t.start()
    time.sleep(0.3)
    net.partition()
    time.sleep(3)
    net.heal()
    t.join(60)
    assert result, "transfer did not finish"
    got = result[0]
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert frpc.log().count("get run id") == 1, frpc.log()[-2000:]
    assert "control connection to server lost" not in frpc.log()
    all_proxies_work(net, frpc)
    assert frps.alive()


@MUX
def test_delay_and_loss_keep_every_byte(pyfrp: Pyfrp, mux: bool) -> None:
    """100 ms RTT (50 ms each way on the wire) and 1 % of packets dropped on both sides:
    a 4 MiB round trip through a tcp proxy comes back sha256-equal."""
    if why := wire_skip_reason():
        pytest.skip(why)
    net = NetPair(delay_ms=50)
    try:
        with ExitStack() as stack:
            side = Side(stack, net.cli)
            net.loss(1.0)
            _, frpc = start_pair(pyfrp, net, mux, side)
            started(frpc, 1, 30)
            with in_netns(net.srv):
                wait_echo(TCP_PORT, 30, proc=frpc)
                t0 = time.monotonic()
                assert echo_roundtrip(TCP_PORT, b"ping", 10) == b"ping"
                assert time.monotonic() - t0 >= 0.1  # at least one 100 ms round trip
                t0 = time.monotonic()
                assert_echo(TCP_PORT, os.urandom(4 << 20), timeout=60)
                took = time.monotonic() - t0
            assert net.dropped() > 0  # the kernel did drop packets on the way
            print(f"\nmux={mux}: 4 MiB echoed at 100 ms RTT + 1 % loss in {took:.1f}s")
    finally:
        net.close()


def test_netns_link_joins_our_two_namespaces(net: NetPair) -> None:
    """The helpers' own contract: each side reaches the other over the link, and the black hole
    silences it (a connect times out: no RST, no ICMP) until healed."""
    with in_netns(net.cli), socket.create_server((CLI_IP, 0)) as srv:
        port = srv.getsockname()[1]
        with in_netns(net.srv):
            socket.create_connection((CLI_IP, port), 2).close()
            net.blackhole_srv()
            with pytest.raises(TimeoutError):
                socket.create_connection((CLI_IP, port), 1)
            net.heal()
            socket.create_connection((CLI_IP, port), 2).close()
