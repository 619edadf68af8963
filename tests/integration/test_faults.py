"""Faults around real pyfrps/pyfrpc processes: crashes, restarts, signals, leaks, dead local
services, port conflicts and run-id takeover. Everything on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import socketserver
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pyfrp.proto.msg import NewProxy, NewProxyResp, NewWorkConn, ReqWorkConn, StartWorkConn
from tests.harness import (
    HOST,
    Proc,
    Pyfrp,
    assert_echo,
    free_port,
    free_ports,
    open_fds,
    serving,
    wait_echo,
    wait_port,
    wait_port_closed,
)
from tests.integration.test_hostile import RawConn

TOKEN = "fault-test-token"
MUX = pytest.mark.parametrize("mux", [True, False], ids=["mux", "nomux"])


def frps_ini(bind: int, mux: bool, extra: str = "") -> str:
    return (
        f"[common]\nbind_addr = {HOST}\nbind_port = {bind}\ntoken = {TOKEN}\n"
        f"tcp_mux = {mux}\n{extra}"
    )


def frpc_ini(bind: int, mux: bool, proxies: dict[str, tuple[int, int]], extra: str = "") -> str:
    """``proxies``: name -> (local_port, remote_port). TLS stays at its default (on)."""
    text = (
        f"[common]\nserver_addr = {HOST}\nserver_port = {bind}\ntoken = {TOKEN}\n"
        f"tcp_mux = {mux}\n{extra}"
    )
    for name, (local, remote) in proxies.items():
        text += f"[{name}]\ntype = tcp\nlocal_ip = {HOST}\nlocal_port = {local}\n"
        text += f"remote_port = {remote}\n"
    return text


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


@contextmanager
def echo_on(port: int) -> Iterator[None]:
    """An echo server on a given port (a local service that comes up late)."""
    with serving(_Server((HOST, port), _Echo)):
        yield


def quick_echo(port: int, payload: bytes = b"0123456789abcdef") -> None:
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            assert chunk, f"EOF after {len(got)} of {len(payload)} echoed bytes"
            got += chunk
        assert got == payload


def proxy_started(frpc: Proc, name: str, count: int = 1, timeout: float = 20.0) -> None:
    frpc.wait_log(rf"\[{re.escape(name)}\] start proxy success", timeout=timeout, count=count)


# ---------------------------------------------------------------------------- crashes


@MUX
def test_frps_killed_and_restarted(pyfrp: Pyfrp, echo: int, mux: bool) -> None:
    """SIGKILL frps; a new frps on the same port: frpc notices, logs in again with its run id,
    re-registers every proxy within a few seconds, and new connections flow."""
    bind, ra, rb = free_ports(3)
    conf = frps_ini(bind, mux)
    frps = pyfrp.frps(conf)
    frps.wait_port(bind)
    frpc = pyfrp.frpc(frpc_ini(bind, mux, {"a": (echo, ra), "b": (echo, rb)}))
    proxy_started(frpc, "a")
    proxy_started(frpc, "b")
    wait_echo(ra, proc=frpc)
    wait_echo(rb, proc=frpc)
    run_id = re.findall(r"get run id \[(\w+)\]", frpc.log())[0]

    frps.kill()
    frpc.wait_log(r"control connection to server lost", timeout=5)
    wait_port_closed(ra, 5)

    t0 = time.monotonic()
    frps2 = pyfrp.frps(conf)
    proxy_started(frpc, "a", count=2, timeout=10)
    proxy_started(frpc, "b", count=2, timeout=10)
    took = time.monotonic() - t0
    assert took < 10, took
    assert frpc.alive()
    # frpc resent its run id and frps took it as given (frp's reconnect).
    assert re.findall(r"get run id \[(\w+)\]", frpc.log()) == [run_id, run_id]
    frps2.wait_log(rf"\[{run_id}\] client login success")
    wait_echo(ra, timeout=5, proc=frpc)
    assert_echo(ra, os.urandom(300_000))
    assert_echo(rb, os.urandom(300_000))


@MUX
def test_frpc_killed_releases_ports(pyfrp: Pyfrp, echo: int, mux: bool) -> None:
    """SIGKILL frpc: frps drops its control and closes its remote port; another frpc can then
    register the same name and remote_port and carry traffic."""
    bind, remote = free_ports(2)
    frps = pyfrp.frps(frps_ini(bind, mux))
    frps.wait_port(bind)
    frpc1 = pyfrp.frpc(frpc_ini(bind, mux, {"svc": (echo, remote)}))
    proxy_started(frpc1, "svc")
    wait_echo(remote, proc=frpc1)

    frpc1.kill()
    t0 = time.monotonic()
    wait_port_closed(remote, 5)
    assert time.monotonic() - t0 < 5
    frps.wait_log(r"client exit success", timeout=5)

    frpc2 = pyfrp.frpc(frpc_ini(bind, mux, {"svc": (echo, remote)}))
    proxy_started(frpc2, "svc")
    wait_echo(remote, proc=frpc2)
    assert_echo(remote, os.urandom(300_000))
    assert "start error" not in frpc2.log()


# ---------------------------------------------------------------------------- leaks


@MUX
@pytest.mark.timeout(90)
def test_no_fd_growth_over_1000_connections(pyfrp: Pyfrp, echo: int, mux: bool) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(frps_ini(bind, mux))
    frps.wait_port(bind)
    frpc = pyfrp.frpc(frpc_ini(bind, mux, {"e": (echo, remote)}))
    proxy_started(frpc, "e")
    wait_echo(remote, proc=frpc)

    def counts() -> tuple[int, int]:
        return open_fds(frps.pid), open_fds(frpc.pid)

    def settled(limit: tuple[int, int] | None, timeout: float) -> tuple[int, int]:
        """fd counts once they stop dropping (or fall to ``limit``)."""
        end = time.monotonic() + timeout
        last = counts()
        while time.monotonic() < end:
            time.sleep(0.2)
            now = counts()
            if limit is not None and now[0] <= limit[0] and now[1] <= limit[1]:
                return now
            if limit is None and now == last:
                return now
            last = now
        return last

    for _ in range(50):  # warm-up: pools, lazily created objects
        quick_echo(remote)
    base = settled(None, 5)
    for _ in range(1000):
        quick_echo(remote)
    slack = 8
    after = settled((base[0] + slack, base[1] + slack), 10)
    assert after[0] <= base[0] + slack, f"pyfrps fds {base[0]} -> {after[0]}"
    assert after[1] <= base[1] + slack, f"pyfrpc fds {base[1]} -> {after[1]}"
    assert frps.alive()
    assert frpc.alive()


@pytest.mark.timeout(120)
def test_no_fd_growth_over_spliced_bulk_connections(pyfrp: Pyfrp, echo: int) -> None:
    """Without TLS and tcp_mux, bulk connections move to the kernel (splice): finished cleanly
    or reset by the user halfway, none may leave a socket or pipe behind in either process."""
    import struct

    bind, remote = free_ports(2)
    frps = pyfrp.frps(frps_ini(bind, False))
    frps.wait_port(bind)
    frpc = pyfrp.frpc(frpc_ini(bind, False, {"e": (echo, remote)}, "tls_enable = false\n"))
    proxy_started(frpc, "e")
    wait_echo(remote, proc=frpc)
    payload = os.urandom(3 << 20)  # past pyfrp.net.pipesplice.SPLICE_AFTER

    def reset_halfway() -> None:
        with socket.create_connection((HOST, remote), timeout=10) as s:
            s.sendall(payload[: 2 << 20])
            got = 0
            while got < 1 << 20:
                chunk = s.recv(65536)
                assert chunk
                got += len(chunk)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def counts() -> tuple[int, int]:
        return open_fds(frps.pid), open_fds(frpc.pid)

    assert_echo(remote, payload)  # warm-up: the pipe pools fill
    reset_halfway()
    time.sleep(0.5)
    base = counts()
    for i in range(20):
        if i % 2:
            reset_halfway()
        else:
            assert_echo(remote, payload)
    # One join at a time holds at most a pipe per direction; emptied ones go back to the pool.
    slack = 4
    end = time.monotonic() + 10
    after = counts()
    while time.monotonic() < end and max(after[0] - base[0], after[1] - base[1]) > slack:
        time.sleep(0.1)  # closes may still be under way
        after = counts()
    assert after[0] <= base[0] + slack, f"pyfrps fds {base[0]} -> {after[0]}"
    assert after[1] <= base[1] + slack, f"pyfrpc fds {base[1]} -> {after[1]}"
    assert_echo(remote, payload)  # and the tunnel still works
    assert "Traceback" not in frps.log() + frpc.log()


# ---------------------------------------------------------------------------- signals


@MUX
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_frpc_signal_exits_cleanly(pyfrp: Pyfrp, echo: int, mux: bool, sig: int) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(frps_ini(bind, mux))
    frps.wait_port(bind)
    frpc = pyfrp.frpc(frpc_ini(bind, mux, {"e": (echo, remote)}))
    proxy_started(frpc, "e")
    wait_echo(remote, proc=frpc)

    t0 = time.monotonic()
    frpc.signal(sig)
    assert frpc.p.wait(10) == 0, frpc.log()[-3000:]
    wait_port_closed(remote, 3)
    assert time.monotonic() - t0 < 3
    frps.wait_log(r"\[e\] .*close|client exit success", timeout=3)
    assert "Traceback" not in frpc.log(), frpc.log()


@MUX
def test_frps_sigterm_exits_cleanly(pyfrp: Pyfrp, echo: int, mux: bool) -> None:
    bind, remote = free_ports(2)
    frps = pyfrp.frps(frps_ini(bind, mux))
    frps.wait_port(bind)
    frpc = pyfrp.frpc(frpc_ini(bind, mux, {"e": (echo, remote)}))
    proxy_started(frpc, "e")
    wait_echo(remote, proc=frpc)
    with socket.create_connection((HOST, remote), timeout=10) as user:  # a live user connection
        frps.signal(signal.SIGTERM)
        assert frps.p.wait(10) == 0, frps.log()[-3000:]
        user.settimeout(5)
        try:
            assert user.recv(1) == b""
        except ConnectionResetError:
            pass
    wait_port_closed(bind, 1)
    wait_port_closed(remote, 1)
    frpc.wait_log(r"control connection to server lost", timeout=5)
    assert "Traceback" not in frps.log(), frps.log()


# ---------------------------------------------------------------------------- local service down


@MUX
def test_local_service_down(pyfrp: Pyfrp, mux: bool) -> None:
    """No local service: the user connection is closed cleanly at once and frpc names the local
    address; once the service comes up, the same tunnel works."""
    bind, remote = free_ports(2)
    dead = free_port()
    frps = pyfrp.frps(frps_ini(bind, mux))
    frps.wait_port(bind)
    frpc = pyfrp.frpc(frpc_ini(bind, mux, {"down": (dead, remote)}))
    proxy_started(frpc, "down")
    wait_port(remote)
    for i in range(3):
        with socket.create_connection((HOST, remote), timeout=10) as user:
            user.settimeout(5)
            t0 = time.monotonic()
            assert user.recv(1024) == b"", "expected EOF from a tunnel whose service is down"
            assert time.monotonic() - t0 < 3
        frpc.wait_log(
            rf"connect to local service \[127\.0\.0\.1:{dead}\] error", count=i + 1, timeout=5
        )
    with echo_on(dead):
        assert_echo(remote, os.urandom(100_000))
    assert frpc.alive()
    assert frps.alive()


# ---------------------------------------------------------------------------- port conflicts


def test_port_conflicts(pyfrp: Pyfrp, echo: int) -> None:
    """Each failing proxy is reported as "[name] start error: <frp's text>"; the others work."""
    bind, good, busy, over, dup2, other = free_ports(6)
    frps = pyfrp.frps(frps_ini(bind, True, "allow_ports = 1024-65535\nmax_ports_per_client = 2\n"))
    frps.wait_port(bind)
    with socket.socket() as holder:  # remote_port already taken by another program
        holder.bind((HOST, busy))
        holder.listen()
        frpc1 = pyfrp.frpc(
            frpc_ini(
                bind,
                True,
                {
                    "good": (echo, good),
                    "busy": (echo, busy),
                    "denied": (echo, 80),  # outside allow_ports
                    "zero": (echo, 0),  # frps picks
                    "over": (echo, over),  # the third port for this client
                },
                "user = u\n",
            )
        )
        proxy_started(frpc1, "good")
        proxy_started(frpc1, "zero")
        frpc1.wait_log(r"\[busy\] start error: port unavailable")
        frpc1.wait_log(r"\[denied\] start error: port not allowed")
        log = frpc1.wait_log(r"\[over\] start error: exceed the max_ports_per_client")
        assert "[good] start error" not in log
        assert "[zero] start error" not in log

    text = frps.wait_log(r"\[u\.zero\] tcp proxy listen port \[\d+\]")
    m = re.search(r"\[u\.zero\] tcp proxy listen port \[(\d+)\]", text)
    assert m is not None
    zero = int(m.group(1))
    assert zero not in (0, good)
    assert_echo(good, os.urandom(100_000))
    assert_echo(zero, os.urandom(100_000))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, over), timeout=2).close()

    # A second client of the same user: same proxy name, and a port the first one holds.
    frpc2 = pyfrp.frpc(
        frpc_ini(
            bind,
            True,
            {"good": (echo, dup2), "taken": (echo, good), "other": (echo, other)},
            "user = u\n",
        )
    )
    proxy_started(frpc2, "other")
    frpc2.wait_log(r"\[good\] start error: proxy \[u\.good\] already exists")
    frpc2.wait_log(r"\[taken\] start error: port already used")
    assert_echo(other, os.urandom(100_000))
    assert_echo(good, os.urandom(100_000))  # still frpc1's
    assert frpc1.alive()
    assert frpc2.alive()


# ---------------------------------------------------------------------------- run id takeover


@MUX
def test_login_with_same_run_id_replaces_control(pyfrp: Pyfrp, mux: bool) -> None:
    """Two hand-made controls logging in with the same run id: frps closes the first (and its
    proxies) and serves the second, work connections included."""
    bind, port1, port2 = free_ports(3)
    frps = pyfrp.frps(frps_ini(bind, mux))
    frps.wait_port(bind)

    with RawConn(bind, mux=mux) as first:
        resp = first.login(TOKEN)
        assert not resp.error
        run_id = resp.run_id
        assert re.fullmatch(r"[0-9a-f]{16}", run_id)
        first.start_crypto(TOKEN)
        first.send(NewProxy(proxy_name="p", proxy_type="tcp", remote_port=port1))
        r1 = first.recv_as(NewProxyResp)
        assert isinstance(r1, NewProxyResp)
        assert not r1.error, r1
        wait_port(port1)

        with RawConn(bind, mux=mux) as second:
            resp2 = second.login(TOKEN, run_id=run_id)
            assert not resp2.error
            assert resp2.run_id == run_id
            assert first.wait_closed(5) < 3  # the old control is gone...
            wait_port_closed(port1, 3)  # ...with its proxies
            frps.wait_log(r"replaced by a new control with the same run id")

            second.start_crypto(TOKEN)
            second.send(NewProxy(proxy_name="p", proxy_type="tcp", remote_port=port2))
            r2 = second.recv_as(NewProxyResp)
            assert isinstance(r2, NewProxyResp)
            assert not r2.error
            assert r2.remote_addr == f":{port2}"

            # A work connection for that run id now belongs to the second control.
            with RawConn(bind, mux=mux) as work, socket.create_connection((HOST, port2)) as user:
                user.settimeout(10)
                work.send(NewWorkConn(run_id=run_id))
                user.sendall(b"through the new control")
                start = work.recv()
                assert isinstance(start, StartWorkConn)
                assert not start.error, start
                assert start.proxy_name == "p"
                assert start.src_port == user.getsockname()[1]
                data = work.recv_raw(len(b"through the new control"))
                assert data == b"through the new control"
                work.send_raw(data.upper())
                got = b""
                while len(got) < len(data):
                    chunk = user.recv(1024)
                    assert chunk
                    got += chunk
                assert got == b"THROUGH THE NEW CONTROL"
            assert isinstance(second.recv(), ReqWorkConn)  # frps asks to refill its pool


def test_heartbeat_timeout_drops_silent_control(pyfrp: Pyfrp, echo: int) -> None:
    """Without tcp_mux frps enforces heartbeat_timeout: a control that never pings is dropped
    with its proxies, while a pyfrpc pinging in time keeps its tunnel."""
    bind, silent_port, live_port = free_ports(3)
    frps = pyfrp.frps(frps_ini(bind, False, "heartbeat_timeout = 3\n"))
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        frpc_ini(bind, False, {"live": (echo, live_port)}, "heartbeat_interval = 1\n")
    )
    frpc.wait_log(r"\[live\] start proxy success")
    with RawConn(bind) as silent:
        assert not silent.login(TOKEN).error
        silent.start_crypto(TOKEN)
        silent.send(NewProxy(proxy_name="silent", proxy_type="tcp", remote_port=silent_port))
        resp = silent.recv_as(NewProxyResp)
        assert isinstance(resp, NewProxyResp)
        assert not resp.error
        wait_port(silent_port)
        t0 = time.monotonic()
        assert silent.wait_closed(10) < 6
        assert time.monotonic() - t0 > 1.5  # not before the timeout
        wait_port_closed(silent_port, 3)
    frps.wait_log(r"heartbeat timeout")
    assert_echo(live_port, os.urandom(10_000))  # the pinging client is untouched
    assert "heartbeat timeout" not in frpc.log()
