"""tcp proxies between pyfrp and the real Go frp peers (../shared/peers).

Topologies: pyfrpc -> frps-native and frpc-native -> pyfrps (native Go frp 0.70.1, built by
../shared/peers/native), pyfrpc -> frps-go (0.51.2 fork, wine), frpc-go-new (0.65.0, qemu) -> pyfrps
and frpc-go (0.51.2 fork, wine) -> pyfrps. Each runs in seven transport setups: TLS and tcp_mux in
all four combinations, use_encryption + use_compression (with TLS and tcp_mux at their defaults,
and again in the clear without tcp_mux) and TLS with the custom 0x17 first byte (not frpc-go:
that build never sends it). The client reaches the server through a relay (FirstByteTap) that
records the first byte of every connection and counts the bytes, so each setup also proves what
it put on the wire: 0x16 TLS, 0x17 + TLS, 0x00 yamux, or plain 'o' Login / 'w' NewWorkConn, and
snappy-sized traffic exactly when use_compression is on; and that the Go frps resumes the TLS
sessions of pyfrpc's work connections.

One tunnel per (topology, setup), module-scoped, shared by the tests that use it: SHA-256 checked
echoes of 1 byte, 1 MiB and 64 MiB (every setup: the module takes ~2-3 min), 50 concurrent
64 KiB echoes, the log lines, and finally no [W]/[E]/traceback from either side. A wrong token
fails the login, and the client exits non-zero, in all three topologies.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import peer_exe
from tests.harness import (
    HOST,
    TLS_HANDSHAKE,
    FirstByteTap,
    Proc,
    Pyfrp,
    echo_roundtrip,
    echo_server,
    free_ports,
    wait_echo,
)

pytestmark = pytest.mark.interop

USER = "alice"
NAME = "echo"
TOKEN = "interop-token-42"
STARTUP = 30.0  # wine / qemu peers: usually < 1 s, outliers ~2.5 s

MiB = 1 << 20
CONCURRENT = 50
CONCURRENT_SIZE = 64 * 1024

FRP_TLS_HEAD_BYTE = 0x17
YAMUX_VERSION = 0x00
LOGIN_TYPE = ord("o")
NEW_WORK_CONN_TYPE = ord("w")


# ----------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Setup:
    id: str
    tls: bool = True
    mux: bool = True
    enc_comp: bool = False
    custom_first_byte: bool = False  # TLS with the 0x17 byte before the ClientHello

    @property
    def first_byte(self) -> int:
        """The first byte of the client's first (control) connection."""
        if self.tls:
            return FRP_TLS_HEAD_BYTE if self.custom_first_byte else TLS_HANDSHAKE
        return YAMUX_VERSION if self.mux else LOGIN_TYPE

    @property
    def later_first_byte(self) -> int:
        """The first byte of later (work) connections: only without tcp_mux."""
        return NEW_WORK_CONN_TYPE if not (self.tls or self.mux) else self.first_byte


SETUPS = [
    Setup("tls-mux"),  # both defaults: no key written to any config
    Setup("plain-mux", tls=False),
    Setup("tls-nomux", mux=False),
    Setup("plain-nomux", tls=False, mux=False),
    Setup("enc-comp", enc_comp=True),
    # In the clear, so the tap can see that the snappy stream is encrypted on the wire.
    Setup("enc-comp-plain-nomux", tls=False, mux=False, enc_comp=True),
    Setup("tls0x17-mux", custom_first_byte=True),
]

# (client, server)
TOPOLOGIES = [
    ("pyfrpc", "frps-native"),
    ("frpc-native", "pyfrps"),
    ("pyfrpc", "frps-go"),
    ("frpc-go-new", "pyfrps"),
    ("frpc-go", "pyfrps"),
]

# What pyfrps logs about each Go client's Login.
CLIENT_IDENTITY = {
    "frpc-native": ("0.70.1", "linux", "amd64"),
    "frpc-go-new": ("0.65.0", "linux", "arm64"),
    "frpc-go": ("ChmlFrp-0.51.2_240715", "windows", "amd64"),
}


def _b(v: bool) -> str:
    return "true" if v else "false"


# ----------------------------------------------------------------------------- config text


def frps_ini(bind_port: int, token: str, s: Setup, go: bool) -> str:
    lines = ["[common]", f"bind_addr = {HOST}", f"bind_port = {bind_port}", f"token = {token}"]
    if go:
        lines.append("api_enable = false")  # the ChmlFrp fork would ask its web API otherwise
    if not s.mux:
        lines.append("tcp_mux = false")
    return "\n".join(lines) + "\n"


def frpc_ini(server_port: int, token: str, s: Setup, local_port: int, remote_port: int) -> str:
    """pyfrpc and frpc-go (0.51.2) share the legacy INI keys. Defaults are left unwritten."""
    lines = [
        "[common]",
        f"server_addr = {HOST}",
        f"server_port = {server_port}",
        f"user = {USER}",
        f"token = {token}",
    ]
    if not s.tls:
        lines.append("tls_enable = false")
    if s.custom_first_byte:
        lines += ["tls_enable = true", "disable_custom_tls_first_byte = false"]
    if not s.mux:
        lines.append("tcp_mux = false")
    lines += [
        f"[{NAME}]",
        "type = tcp",
        f"local_ip = {HOST}",
        f"local_port = {local_port}",
        f"remote_port = {remote_port}",
    ]
    if s.enc_comp:
        lines += ["use_encryption = true", "use_compression = true"]
    return "\n".join(lines) + "\n"


def frpc_toml(server_port: int, token: str, s: Setup, local_port: int, remote_port: int) -> str:
    """frpc-native (0.70.1) and frpc-go-new (0.65.0) in their native v1 TOML."""
    lines = [
        f'serverAddr = "{HOST}"',
        f"serverPort = {server_port}",
        f'user = "{USER}"',
        f'auth.token = "{token}"',
        "log.disablePrintColor = true",
    ]
    if not s.tls:
        lines.append("transport.tls.enable = false")
    if s.custom_first_byte:
        lines += ["transport.tls.enable = true", "transport.tls.disableCustomTLSFirstByte = false"]
    if not s.mux:
        lines.append("transport.tcpMux = false")
    lines += [
        "",
        "[[proxies]]",
        f'name = "{NAME}"',
        'type = "tcp"',
        f'localIP = "{HOST}"',
        f"localPort = {local_port}",
        f"remotePort = {remote_port}",
    ]
    if s.enc_comp:
        lines += ["transport.useEncryption = true", "transport.useCompression = true"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- processes


def start_peer(tmp: Path, name: str, config: str, suffix: str) -> Proc:
    cfg = tmp / f"{name}{suffix}"
    cfg.write_text(config)
    return Proc(name, [peer_exe(name), "-c", cfg], tmp / f"{name}.log", tmp)


def start_server(
    kind: str,
    tmp: Path,
    h: Pyfrp,
    bind_port: int,
    token: str,
    s: Setup,
    procs: list[Proc],
) -> Proc:
    """Start a Go frps or pyfrps, add it to ``procs`` (for the caller's cleanup), wait for it."""
    if kind != "pyfrps":
        proc = start_peer(tmp, kind, frps_ini(bind_port, token, s, go=kind == "frps-go"), ".ini")
    else:
        proc = h.frps(frps_ini(bind_port, token, s, go=False))
    procs.append(proc)
    proc.wait_port(bind_port, STARTUP)
    return proc


def start_client(
    kind: str,
    tmp: Path,
    h: Pyfrp,
    server_port: int,
    token: str,
    s: Setup,
    local_port: int,
    remote_port: int,
    procs: list[Proc],
) -> Proc:
    if kind in ("frpc-native", "frpc-go-new"):
        text = frpc_toml(server_port, token, s, local_port, remote_port)
        proc = start_peer(tmp, kind, text, ".toml")
    elif kind == "frpc-go":
        proc = start_peer(
            tmp, kind, frpc_ini(server_port, token, s, local_port, remote_port), ".ini"
        )
    else:
        proc = h.frpc(frpc_ini(server_port, token, s, local_port, remote_port))
    procs.append(proc)
    return proc


@dataclass
class Tunnel:
    client_kind: str
    server_kind: str
    setup: Setup
    client: Proc
    server: Proc
    tap: FirstByteTap
    remote_port: int

    def check_alive(self) -> None:
        for p in (self.client, self.server):
            assert p.alive(), f"{p.name} exited ({p.p.returncode}):\n{p.log()[-3000:]}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-3000:]}" for p in (self.client, self.server))


def _param_id(p: tuple[tuple[str, str], Setup]) -> str:
    (client, server), s = p
    return f"{client}>{server}-{s.id}"


# The ChmlFrp build of frpc-go never writes the 0x17 byte over tcp: with tls_enable = true and
# disable_custom_tls_first_byte = false its connections still begin with a bare 0x16 ClientHello
# (seen through the tap), so that setup would only repeat tls-mux. frpc-go-new and pyfrpc cover it.
TUNNEL_PARAMS = [
    (t, s) for t in TOPOLOGIES for s in SETUPS if not (t[0] == "frpc-go" and s.custom_first_byte)
]


@pytest.fixture(scope="module", params=TUNNEL_PARAMS, ids=[_param_id(p) for p in TUNNEL_PARAMS])
def tunnel(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tunnel]:
    (client_kind, server_kind), s = request.param
    tmp = tmp_path_factory.mktemp(_param_id(request.param).replace(">", "-to-"))
    h = Pyfrp(tmp)
    procs: list[Proc] = []
    tap: FirstByteTap | None = None
    bind_port, remote_port = free_ports(2)
    with echo_server() as echo:
        try:
            server = start_server(server_kind, tmp, h, bind_port, TOKEN, s, procs)
            tap = FirstByteTap(bind_port)
            client = start_client(client_kind, tmp, h, tap.port, TOKEN, s, echo, remote_port, procs)
            t = Tunnel(client_kind, server_kind, s, client, server, tap, remote_port)
            wait_echo(remote_port, STARTUP, client)
            t.check_alive()
            yield t
        finally:
            for p in reversed(procs):
                p.stop()
            if tap is not None:
                tap.close()


# ----------------------------------------------------------------------------- tests


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _echo_check(port: int, payload: bytes, timeout: float) -> None:
    got = echo_roundtrip(port, payload, timeout)
    assert len(got) == len(payload), f"got {len(got)} of {len(payload)} bytes back"
    assert _sha(got) == _sha(payload)


@pytest.mark.parametrize("size", [1, MiB, 64 * MiB], ids=["1B", "1MiB", "64MiB"])
def test_echo_sha256(tunnel: Tunnel, size: int) -> None:
    tunnel.check_alive()
    payload = os.urandom(size)
    try:
        _echo_check(tunnel.remote_port, payload, timeout=90)
    except (AssertionError, OSError) as exc:
        raise AssertionError(f"{exc!r}\n{tunnel.logs()}") from exc
    tunnel.check_alive()


def test_concurrent_connections(tunnel: Tunnel) -> None:
    tunnel.check_alive()
    payloads = [os.urandom(CONCURRENT_SIZE) for _ in range(CONCURRENT)]
    barrier = threading.Barrier(CONCURRENT)

    def one(payload: bytes) -> tuple[int, str]:
        barrier.wait(30)
        got = echo_roundtrip(tunnel.remote_port, payload, 60)
        return len(got), _sha(got)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(one, payloads))
    bad = [
        (i, n)
        for i, ((n, digest), p) in enumerate(zip(results, payloads, strict=True))
        if n != len(p) or digest != _sha(p)
    ]
    assert not bad, (
        f"{len(bad)} of {CONCURRENT} echoes wrong (index, bytes): {bad}\n{tunnel.logs()}"
    )
    tunnel.check_alive()


def test_transport_on_the_wire(tunnel: Tunnel) -> None:
    """Every connection the client opened started with the setup's byte (and pyfrpc's TLS work
    connections resumed a session)."""
    seen = list(tunnel.tap.first_bytes)
    assert seen, "the client opened no connection through the tap"
    s = tunnel.setup
    assert seen[0] == s.first_byte, (
        f"control connection began {seen[0]:#04x}, not {s.first_byte:#04x}"
    )
    later = set(seen[1:])
    assert later <= {s.later_first_byte}, (
        f"work connections began {sorted(later)}, want only {s.later_first_byte:#04x}"
    )
    if tunnel.setup.mux:
        # One yamux session carries the control and every work connection.
        assert len(seen) == 1, f"{len(seen)} connections with tcp_mux on"
    else:
        assert len(seen) > 1, "tcp_mux off: work connections should be separate connections"
    if tunnel.client_kind == "pyfrpc" and s.tls and not s.mux:
        # Each work connection is a TLS handshake: pyfrpc offers the ticket of an earlier one
        # (read a second after its handshake) and the Go frps resumes it from then on (Go frpc
        # never resumes).
        # A fast peer can serve every test above within the second pyfrpc waits before it reads
        # a ticket, and dials in flight then are full handshakes: dial on until five in a row
        # resumed (each echo takes a pooled connection and dials a new one).
        end = time.monotonic() + 10
        while not all(tunnel.tap.resumed[-5:]) and time.monotonic() < end:
            _echo_check(tunnel.remote_port, b"resume?", timeout=10)
            time.sleep(0.1)
        resumed = list(tunnel.tap.resumed)
        assert resumed[0] is False, "the control connection had no session to resume"
        assert True in resumed, f"no ServerHello resumed a session: {resumed}"
        assert all(resumed[-5:]), f"ServerHello resumed the session: {resumed}"


def test_compression_on_the_wire(tunnel: Tunnel) -> None:
    """4 MiB of zeros each way: snappy shrinks them on the wire only when use_compression is on
    (so both sides did compress); with use_encryption the snappy identifier never shows."""
    tunnel.check_alive()
    payload = bytes(4 * MiB)
    before = tunnel.tap.bytes_moved
    _echo_check(tunnel.remote_port, payload, timeout=60)
    moved = tunnel.tap.bytes_moved - before
    if tunnel.setup.enc_comp:
        assert moved < len(payload) // 2, f"{moved} bytes on the wire for 2 x {len(payload)}"
    else:
        assert moved >= 2 * len(payload), f"{moved} bytes on the wire for 2 x {len(payload)}"
    if not tunnel.setup.tls:
        # Plain transport: the snappy identifier is visible unless the encryption layer hides it.
        assert tunnel.tap.saw_snappy_magic is False, "snappy stream identifier seen in the clear"


def test_logs(tunnel: Tunnel) -> None:
    wire = re.escape(f"{USER}.{NAME}")
    if tunnel.server_kind == "pyfrps":
        version, goos, arch = CLIENT_IDENTITY[tunnel.client_kind]
        tunnel.server.wait_log(
            rf"client login info: ip \[127\.0\.0\.1:\d+\] version \[{re.escape(version)}\] "
            rf"hostname \[[^\]]*\] os \[{goos}\] arch \[{arch}\]",
            timeout=5,
        )
        tunnel.server.wait_log(
            rf"\[{wire}\] tcp proxy listen port \[{tunnel.remote_port}\]", timeout=5
        )
    else:
        tunnel.client.wait_log(rf"\[{NAME}\] start proxy success", timeout=5)
        tunnel.server.wait_log(rf"new proxy \[{wire}\] type \[tcp\] success", timeout=5)


def test_no_warnings(tunnel: Tunnel) -> None:
    """After all the traffic above, neither side logged a warning, an error or a traceback.

    A Go peer that dislikes what pyfrp sent says so at [W]/[E] (e.g. "recv window exceeded").
    Runs last for each tunnel (pytest keeps definition order within a parameter group).
    """
    tunnel.check_alive()
    bad = re.compile(r"\[[WE]\]|Traceback|panic:")
    # frps 0.70 asks for two work connections per user connection when its pool is empty and
    # refuses the surplus beyond pool_count + 10 with this error (Go frpc logs it too).
    surplus = "StartWorkConn contains error: work connection pool is full, discarding"
    for p in (tunnel.client, tunnel.server):
        lines = [ln for ln in p.log().splitlines() if bad.search(ln) and surplus not in ln]
        assert not lines, f"{p.name} logged:\n" + "\n".join(lines[:20])


# ----------------------------------------------------------------------------- wrong token


@pytest.mark.parametrize(
    ("client_kind", "server_kind"), TOPOLOGIES, ids=[f"{c}>{s}" for c, s in TOPOLOGIES]
)
def test_wrong_token(client_kind: str, server_kind: str, tmp_path: Path, pyfrp: Pyfrp) -> None:
    s = SETUPS[0]
    bind_port, remote_port, local_port = free_ports(3)
    procs: list[Proc] = []
    try:
        server = start_server(server_kind, tmp_path, pyfrp, bind_port, TOKEN, s, procs)
        bad_token = "not-" + TOKEN
        client = start_client(
            client_kind, tmp_path, pyfrp, bind_port, bad_token, s, local_port, remote_port, procs,
        )  # fmt: skip
        end = time.monotonic() + STARTUP
        while client.alive() and time.monotonic() < end:
            time.sleep(0.05)
        assert not client.alive(), f"{client.name} still running:\n{client.log()}"
        assert client.p.returncode != 0
        client.wait_log(r"token in login doesn't match token from configuration", timeout=1)
        server.wait_log(
            r"register control error: token in login doesn't match token from configuration",
            timeout=5,
        )
        assert server.alive()
    finally:
        for p in reversed(procs):
            p.stop()
