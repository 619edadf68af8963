"""Hostile input on pyfrps's bind_port, while a real tunnel keeps carrying an echo stream.

Every hostile connection is crafted by hand (raw sockets, ``ssl``, pyfrp's own wire modules) and
must be closed within frp's timeouts with one log line naming the reason; meanwhile a long-lived
user connection through a pyfrpc tunnel keeps echoing, and new connections still work after.
"""

from __future__ import annotations

import os
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from pyfrp.proto import yamux
from pyfrp.proto.auth import privilege_key
from pyfrp.proto.crypto import StreamDecryptor, StreamEncryptor, derive_key
from pyfrp.proto.framing import MessageDecoder, encode_message
from pyfrp.proto.msg import (
    MESSAGE_TYPES,
    Login,
    LoginResp,
    Message,
    NewProxy,
    NewProxyResp,
    NewVisitorConn,
    NewVisitorConnResp,
    NewWorkConn,
    ReqWorkConn,
    StartWorkConn,
    UDPPacket,
)
from tests.harness import HOST, Proc, Pyfrp, assert_echo, free_ports, wait_echo

TOKEN = "hostile-test-token"
# frp's limit for the first bytes / first message on a new connection (connReadTimeout etc.).
FIRST_MESSAGE_TIMEOUT = 10.0


# ---------------------------------------------------------------------------- a raw frp client


class RawConn:
    """One hand-driven frp connection: TCP, optionally TLS, optionally a yamux session with one
    stream, carrying v1 frames (optionally with control-channel AES-CFB after LoginResp).

    ``closed`` means the logical connection ended: TCP EOF/reset, or FIN/RST on our yamux stream.
    """

    def __init__(self, port: int, *, tls: bool = False, mux: bool = False) -> None:
        raw = socket.create_connection((HOST, port), timeout=5)
        self.src_port: int = raw.getsockname()[1]
        self.sock: socket.socket = raw
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            try:
                self.sock = ctx.wrap_socket(raw)
            except BaseException:
                raw.close()
                raise
        self.session = yamux.Session(client=True) if mux else None
        self.stream_id: int | None = None
        self.decoder = MessageDecoder()
        self.enc: StreamEncryptor | None = None
        self.dec: StreamDecryptor | None = None
        self.closed = False
        self.go_away: int | None = None
        self.pongs: list[int] = []

    # -- sending
    def send_tcp(self, data: bytes) -> None:
        """Bytes straight onto the TCP/TLS connection, below any yamux framing."""
        self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        """Bytes onto the logical connection (our yamux stream when muxed)."""
        if self.session is None:
            self.sock.sendall(data)
            return
        if self.stream_id is None:
            self.stream_id = self.session.open_stream()
        sent = self.session.send_data(self.stream_id, data)
        assert sent == len(data), "test payload larger than the yamux window"
        self.sock.sendall(self.session.data_to_send())

    def send(self, msg: Message) -> None:
        frame = encode_message(msg)
        self.send_raw(self.enc.encrypt(frame) if self.enc is not None else frame)

    def start_crypto(self, token: str) -> None:
        """Switch to control-channel encryption (right after a successful LoginResp)."""
        key = derive_key(token)
        self.enc, self.dec = StreamEncryptor(key), StreamDecryptor(key)
        rest = self.decoder.take_remaining()
        if rest:
            self.decoder.feed(self.dec.decrypt(rest))

    # -- receiving
    def _fill(self, deadline: float) -> None:
        """Read once from the socket; sets ``closed`` at the end of the logical connection."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except OSError:  # reset, or a TLS error at close
            data = b""
        if not data:
            self.closed = True
            return
        plain = data
        if self.session is not None:
            plain = b""
            for ev in self.session.receive_data(data):
                if isinstance(ev, yamux.GoAwayReceived):
                    self.go_away = ev.code
                elif isinstance(ev, yamux.PongReceived):
                    self.pongs.append(ev.opaque)
                if getattr(ev, "stream_id", None) != self.stream_id:
                    continue
                if isinstance(ev, yamux.StreamData):
                    plain += bytes(ev.data)
                    self.session.consumed(ev.stream_id, len(ev.data))
                elif isinstance(ev, yamux.StreamEnded | yamux.StreamReset):
                    self.closed = True
            out = self.session.data_to_send()
            if out:
                try:
                    self.sock.sendall(out)
                except OSError:
                    pass
        if self.dec is not None:
            plain = self.dec.decrypt(plain)
        self.decoder.feed(plain)

    def recv(self, timeout: float = 10.0) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.decoder.next_message()
            if msg is not None:
                return msg
            if self.closed:
                raise ConnectionResetError("closed before a whole message arrived")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no message within {timeout}s")
            self._fill(deadline)

    def recv_as(self, cls: type[Message], timeout: float = 10.0) -> Message:
        while True:
            msg = self.recv(timeout)
            if isinstance(msg, cls):
                return msg

    def recv_raw(self, n: int, timeout: float = 10.0) -> bytes:
        """Exactly ``n`` plain bytes (past the last message)."""
        deadline = time.monotonic() + timeout
        while self.decoder.buffered < n and not self.closed and time.monotonic() < deadline:
            self._fill(deadline)
        data = self.decoder.take_remaining()
        assert len(data) == n, f"got {len(data)} of {n} raw bytes"
        return data

    def wait_closed(self, timeout: float) -> float:
        """Read (and discard) until the peer closes; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"connection from port {self.src_port} open after {timeout}s")
            self._fill(deadline)
            self.decoder.take_remaining()
        return time.monotonic() - start

    def login(self, token: str, run_id: str = "") -> LoginResp:
        ts = int(time.time())
        self.send(
            Login(
                version="0.61.0",
                os="linux",
                arch="amd64",
                privilege_key=privilege_key(token, ts),
                timestamp=ts,
                run_id=run_id,
            )
        )
        resp = self.recv()
        assert isinstance(resp, LoginResp), resp
        return resp

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def client_hello() -> bytes:
    """The bytes of a real TLS ClientHello, as Python's ssl would send it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO())
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert hello[:1] == b"\x16"
    return hello


# ---------------------------------------------------------------------------- the tunnel under test


class LiveEcho:
    """A long-lived user connection through the tunnel, echoing a few bytes every ``interval``."""

    def __init__(self, port: int, interval: float = 0.1) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.interval = interval
        self.ok: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                payload = os.urandom(32)
                self.sock.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    chunk = self.sock.recv(len(payload) - len(got))
                    if not chunk:
                        raise ConnectionResetError("tunnel closed the long-lived connection")
                    got += chunk
                assert got == payload, "long-lived echo returned different bytes"
                self.ok.append(time.monotonic())
                self._stop.wait(self.interval)
        except BaseException as exc:
            self.error = exc

    def wait_ok_after(self, t: float, timeout: float = 5.0) -> None:
        """An echo completed after monotonic time ``t`` (the stream kept working)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.error is not None:
                raise AssertionError(f"long-lived tunnel connection failed: {self.error!r}")
            if self.ok and self.ok[-1] > t:
                return
            time.sleep(0.02)
        raise AssertionError(f"long-lived tunnel connection stalled for {timeout}s")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()
        if self.error is not None:
            raise AssertionError(f"long-lived tunnel connection failed: {self.error!r}")


@dataclass
class Tunnel:
    frps: Proc
    frpc: Proc
    bind: int
    remote: int
    mux: bool

    @contextmanager
    def under_attack(self) -> Iterator[LiveEcho]:
        """Check the tunnel before, keep an echo stream going during, check again after."""
        wait_echo(self.remote, proc=self.frpc)
        live = LiveEcho(self.remote)
        live.wait_ok_after(time.monotonic())
        try:
            yield live
            live.wait_ok_after(time.monotonic())
        finally:
            live.stop()
        assert_echo(self.remote, os.urandom(200_000))
        assert self.frps.alive()
        assert self.frpc.alive()
        assert "Traceback" not in self.frps.log(), self.frps.log()[-3000:]

    def reason_logged_once(self, src_port: int, reason: str, timeout: float = 5.0) -> str:
        """frps logged exactly one line about the connection from ``src_port``, naming
        ``reason``."""
        port_rx = re.compile(rf"(?<!\d){src_port}(?!\d)")
        self.frps.wait_log(rf"(?m)^(?=.*{port_rx.pattern})(?=.*{reason}).*$", timeout=timeout)
        time.sleep(0.2)  # let any further line about it land
        lines = [ln for ln in self.frps.log().splitlines() if port_rx.search(ln)]
        assert len(lines) == 1, "\n".join(lines)
        assert re.search(reason, lines[0]), lines[0]
        return lines[0]


@pytest.fixture(params=[True, False], ids=["mux", "nomux"])
def tunnel(request: pytest.FixtureRequest, pyfrp: Pyfrp, echo: int) -> Tunnel:
    """pyfrps + pyfrpc (TLS on, as by default) with one tcp proxy in front of an echo server."""
    mux: bool = request.param
    bind, remote = free_ports(2)
    frps = pyfrp.frps(
        f"[common]\nbind_addr = {HOST}\nbind_port = {bind}\ntoken = {TOKEN}\ntcp_mux = {mux}\n"
    )
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_addr = {HOST}\nserver_port = {bind}\ntoken = {TOKEN}\n"
        f"tcp_mux = {mux}\n[echo]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
    )
    frpc.wait_log(r"\[echo\] start proxy success")
    return Tunnel(frps, frpc, bind, remote, mux)


MUX_ONLY = pytest.mark.parametrize("tunnel", [True], indirect=True, ids=["mux"])


# ---------------------------------------------------------------------------- tests


def test_random_bytes(tunnel: Tunnel) -> None:
    # A first byte that is neither TLS (0x16/0x17), nor yamux version 0, nor an frp message type,
    # so the reason is known; the rest is random.
    firsts = [b for b in range(1, 256) if b not in (0x16, 0x17) and bytes([b]) not in MESSAGE_TYPES]
    first = random.choice(firsts)
    junk = bytes([first]) + os.urandom(4095)
    with tunnel.under_attack():
        with RawConn(tunnel.bind) as c:
            c.send_tcp(junk)
            assert c.wait_closed(FIRST_MESSAGE_TIMEOUT) < 3
        if tunnel.mux:
            tunnel.reason_logged_once(c.src_port, rf"yamux version {first}, expected 0")
        else:
            tunnel.reason_logged_once(
                c.src_port, rf"message type byte 0x{first:02x}.* is not an frp v1 message type"
            )


@pytest.mark.parametrize("kind", ["client-hello", "record-header"])
def test_tls_hello_then_garbage(tunnel: Tunnel, kind: str) -> None:
    """A real ClientHello (or just a TLS record header) followed by junk: the handshake fails."""
    if kind == "client-hello":
        data = client_hello() + os.urandom(512)
    else:
        data = b"\x16\x03\x01\x00\x40" + os.urandom(64) + os.urandom(512)
    with tunnel.under_attack():
        with RawConn(tunnel.bind) as c:
            c.send_tcp(data)
            assert c.wait_closed(FIRST_MESSAGE_TIMEOUT) < 3
        tunnel.reason_logged_once(c.src_port, r"closed during handshake: .*SSL")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_login_wrong_token(tunnel: Tunnel, tls: bool) -> None:
    with tunnel.under_attack():
        with RawConn(tunnel.bind, tls=tls, mux=tunnel.mux) as c:
            resp = c.login("not-the-token")
            assert resp.error == "token in login doesn't match token from configuration"
            assert resp.run_id == ""
            assert c.wait_closed(5) < 2
        text = tunnel.frps.wait_log(r"register control error: token in login doesn't match")
        assert text.count("token in login doesn't match") == 1
        assert f"client login info: ip [127.0.0.1:{c.src_port}]" in text


def test_work_conn_unknown_run_id(tunnel: Tunnel) -> None:
    run_id = "0123456789abcdef"
    with tunnel.under_attack():
        with RawConn(tunnel.bind, mux=tunnel.mux) as c:
            c.send(NewWorkConn(run_id=run_id))
            start = c.recv()
            assert isinstance(start, StartWorkConn)
            assert start.error == f"no client control found for run id [{run_id}]"
            assert c.wait_closed(5) < 2
        tunnel.reason_logged_once(
            c.src_port, re.escape(f"no client control found for run id [{run_id}]")
        )


def test_huge_frame_length(tunnel: Tunnel) -> None:
    """A Login header announcing 2**62 bytes is refused at once, before any body arrives."""
    with tunnel.under_attack():
        with RawConn(tunnel.bind, mux=tunnel.mux) as c:
            c.send_raw(b"o" + struct.pack(">q", 2**62))
            assert c.wait_closed(5) < 1.5
        tunnel.reason_logged_once(c.src_port, rf"message length {2**62} exceeds")


def _slow_sender(c: RawConn, data: bytes, stop: threading.Event) -> None:
    for i in range(len(data)):
        try:
            c.send_tcp(data[i : i + 1])
        except OSError:
            return
        if stop.wait(1.0):
            return


@pytest.mark.timeout(60)
def test_slow_client(tunnel: Tunnel) -> None:
    """One byte per second of a valid Login (plain, in a yamux stream when muxed) and of a TLS
    ClientHello: both are cut off by frp's 10 s first-message / handshake timeout."""
    ts = int(time.time())
    login = encode_message(
        Login(version="0.61.0", privilege_key=privilege_key(TOKEN, ts), timestamp=ts)
    )
    stop = threading.Event()
    with (
        tunnel.under_attack(),
        RawConn(tunnel.bind, mux=tunnel.mux) as slow_msg,
        RawConn(tunnel.bind) as slow_tls,
    ):
        if slow_msg.session is not None:  # the yamux bytes (SYN, then the Login in a data frame)
            slow_msg.stream_id = slow_msg.session.open_stream()
            slow_msg.session.send_data(slow_msg.stream_id, login)
            login = slow_msg.session.data_to_send()
        threads = [
            threading.Thread(target=_slow_sender, args=(slow_msg, login, stop)),
            threading.Thread(target=_slow_sender, args=(slow_tls, client_hello(), stop)),
        ]
        start = time.monotonic()
        for t in threads:
            t.start()
        try:
            took_msg = slow_msg.wait_closed(FIRST_MESSAGE_TIMEOUT + 5)
            slow_tls.wait_closed(FIRST_MESSAGE_TIMEOUT + 5 - (time.monotonic() - start))
            took_tls = time.monotonic() - start
        finally:
            stop.set()
            for t in threads:
                t.join(5)
        assert FIRST_MESSAGE_TIMEOUT - 1 < took_msg < FIRST_MESSAGE_TIMEOUT + 2, took_msg
        assert FIRST_MESSAGE_TIMEOUT - 1 < took_tls < FIRST_MESSAGE_TIMEOUT + 2, took_tls
        tunnel.reason_logged_once(slow_msg.src_port, r"within 10 s, closing")
        tunnel.reason_logged_once(slow_tls.src_port, r"closed during handshake")


@MUX_ONLY
def test_yamux_bad_version(tunnel: Tunnel) -> None:
    """A working yamux session (it answers our ping) then a frame with version 1: frps answers
    GoAway(protocol error) and ends the session."""
    with tunnel.under_attack():
        with RawConn(tunnel.bind, mux=True) as c:
            c.send_tcp(yamux.encode_header(yamux.TYPE_PING, yamux.FLAG_SYN, 0, 77))
            deadline = time.monotonic() + 5
            while not c.pongs and not c.closed and time.monotonic() < deadline:
                c._fill(deadline)
            assert c.pongs == [77]
            c.send_tcp(struct.pack(">BBHII", 1, yamux.TYPE_DATA, 0, 1, 4) + b"evil")
            assert c.wait_closed(5) < 2
        assert c.go_away == yamux.GO_AWAY_PROTOCOL_ERROR
        tunnel.reason_logged_once(c.src_port, r"yamux version 1, expected 0")


def test_visitor_for_unknown_proxy(tunnel: Tunnel) -> None:
    with tunnel.under_attack():
        with RawConn(tunnel.bind, mux=tunnel.mux) as c:
            ts = int(time.time())
            c.send(
                NewVisitorConn(
                    proxy_name="nobody.ssh", sign_key=privilege_key("k", ts), timestamp=ts
                )
            )
            resp = c.recv()
            assert isinstance(resp, NewVisitorConnResp)
            assert resp.error == "custom listener for [nobody.ssh] doesn't exist"
            assert c.wait_closed(5) < 2
        tunnel.frps.wait_log(
            r"register visitor conn error: custom listener for \[nobody\.ssh\] doesn't exist"
        )


def test_malformed_udp_packet_closes_only_its_work_conn(tunnel: Tunnel) -> None:
    """A hand-driven frpc with a udp proxy sends a UDPPacket whose content is not base64: frps
    drops that work connection with a log line, asks for another, and the proxy still works."""
    udp_port = free_ports(1)[0]
    with tunnel.under_attack(), RawConn(tunnel.bind, mux=tunnel.mux) as ctl:
        resp = ctl.login(TOKEN)
        assert not resp.error
        ctl.start_crypto(TOKEN)
        ctl.send(NewProxy(proxy_name="u", proxy_type="udp", remote_port=udp_port))
        started = ctl.recv_as(NewProxyResp)
        assert isinstance(started, NewProxyResp)
        assert started.error == ""

        def work_conn() -> RawConn:
            ctl.recv_as(ReqWorkConn)
            w = RawConn(tunnel.bind, mux=tunnel.mux)
            w.send(NewWorkConn(run_id=resp.run_id))
            assert isinstance(w.recv(), StartWorkConn)
            return w

        with work_conn() as w:
            body = b'{"c":"!!! not base64 !!!","r":{"IP":"127.0.0.1","Port":1,"Zone":""}}'
            w.send_raw(b"u" + struct.pack(">q", len(body)) + body)
            assert w.wait_closed(5) < 2
        tunnel.frps.wait_log(r"\[u\] read from workConn for udp error: .*")
        with work_conn() as w2, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as user:
            user.sendto(b"still here", (HOST, udp_port))
            pkt = w2.recv()
            assert isinstance(pkt, UDPPacket)
            assert pkt.content == b"still here"


@pytest.mark.parametrize("proxy_type", ["tcp", "udp"])
def test_remote_port_beyond_65535(tunnel: Tunnel, proxy_type: str) -> None:
    """NewProxy's remote_port is any int64 on the wire: 70000 is refused as Go's port manager
    refuses it ("port not allowed"), and the control connection goes on. getaddrinfo() took the
    port modulo 65536: frps listened on 4464 and answered ":70000"."""
    with tunnel.under_attack(), RawConn(tunnel.bind, mux=tunnel.mux) as ctl:
        resp = ctl.login(TOKEN)
        assert not resp.error
        ctl.start_crypto(TOKEN)
        ctl.send(NewProxy(proxy_name="far", proxy_type=proxy_type, remote_port=70000))
        refused = ctl.recv_as(NewProxyResp)
        assert isinstance(refused, NewProxyResp)
        assert "port not allowed" in refused.error
        ctl.send(NewProxy(proxy_name="near", proxy_type=proxy_type, remote_port=0))
        ok = ctl.recv_as(NewProxyResp)
        assert isinstance(ok, NewProxyResp)
        assert ok.error == ""
