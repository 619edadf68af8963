"""A frpc logging in again with its run id while its old control connection is half-open (no
FIN ever arrives): pyfrps replaces the old control, keeps one client online and lets the new
control take the proxy over. Driven with raw wire v2 logins (hellos, AEAD control channel) so
the test decides exactly when the old connection goes silent; also a refused ClientHello."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request

from pyfrp.proto import wire2
from pyfrp.proto.auth import privilege_key
from pyfrp.proto.msg import Login, LoginResp, Message, NewProxy, NewProxyResp
from tests.harness import Pyfrp, free_ports

TOKEN = "tok"


class RawV2Control:
    """The frpc side of a v2 control connection, by hand."""

    def __init__(self, port: int, run_id: str = "") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.frames = wire2.FrameDecoder()
        hello = wire2.client_hello(os.urandom(32))
        ts = int(time.time())
        login = Login(
            version="0.70.1", client_id="rep", run_id=run_id, timestamp=ts,
            privilege_key=privilege_key(TOKEN, ts),
        )  # fmt: skip
        self.sock.sendall(
            wire2.MAGIC
            + wire2.encode_frame(wire2.FRAME_CLIENT_HELLO, hello)
            + wire2.encode_message(login)
        )
        frame_type, payload = self._frame()
        assert frame_type == wire2.FRAME_SERVER_HELLO
        algorithm = wire2.check_server_hello(hello, payload)
        resp = wire2.decode_message_payload(self._frame()[1])
        assert isinstance(resp, LoginResp)
        assert resp.error == ""
        self.run_id = resp.run_id
        c2s, s2c = wire2.control_keys(
            TOKEN.encode(), algorithm, wire2.transcript_hash(hello, payload)
        )
        self.enc = wire2.AeadStreamWriter(algorithm, c2s)
        self.dec = wire2.AeadStreamReader(algorithm, s2c)
        self.plain = wire2.FrameDecoder(self.frames.take_remaining())

    def close(self) -> None:
        self.sock.close()

    def _frame(self) -> tuple[int, bytes]:
        while (frame := self.frames.next_frame()) is None:
            data = self.sock.recv(65536)
            assert data, "frps closed the connection"
            self.frames.feed(data)
        return frame

    def send(self, msg: Message) -> None:
        self.sock.sendall(self.enc.seal(wire2.encode_message(msg)))

    def recv(self) -> Message | None:
        """The next message; None once frps closed the connection."""
        pending = self.plain.take_remaining()
        self.plain = wire2.FrameDecoder(self.dec.feed(pending))
        while (msg := self.plain.next_message()) is None:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.plain.feed(self.dec.feed(data))
        return msg


def _online(web: int) -> list[str]:
    url = f"http://127.0.0.1:{web}/api/clients?status=online"
    with urllib.request.urlopen(url) as resp:
        return [c["clientID"] for c in json.load(resp)]


def test_new_login_with_same_run_id_replaces_half_open_control(pyfrp: Pyfrp) -> None:
    bind, web, remote = free_ports(3)
    frps = pyfrp.frps(
        f'bindPort = {bind}\nauth.token = "{TOKEN}"\ntransport.tcpMux = false\n'
        f"webServer.port = {web}\n",
        suffix=".toml",
    )
    frps.wait_port(bind)
    old = RawV2Control(bind)
    try:
        _replace(old, bind, web, remote)
    finally:
        old.close()
    frps.wait_log("replaced by a new control with the same run id")


def _replace(old: RawV2Control, bind: int, web: int, remote: int) -> None:
    old.send(NewProxy(proxy_name="p", proxy_type="tcp", remote_port=remote))
    resp = old.recv()
    assert isinstance(resp, NewProxyResp)
    assert resp.error == ""
    assert _online(web) == ["rep"]
    # The old connection now goes silent; the client comes back with its run id.
    new = RawV2Control(bind, run_id=old.run_id)
    try:
        _take_over(old, new, web, remote)
    finally:
        new.close()


def _take_over(old: RawV2Control, new: RawV2Control, web: int, remote: int) -> None:
    assert new.run_id == old.run_id
    assert old.recv() is None  # frps closed the replaced control
    new.send(NewProxy(proxy_name="p", proxy_type="tcp", remote_port=remote))
    resp = new.recv()
    assert isinstance(resp, NewProxyResp)
    assert resp.error == ""
    assert _online(web) == ["rep"]


def test_refused_client_hello_gets_the_reason_and_server_keeps_working(pyfrp: Pyfrp) -> None:
    (bind,) = free_ports(1)
    frps = pyfrp.frps(
        f'bindPort = {bind}\nauth.token = "{TOKEN}"\ntransport.tcpMux = false\n', suffix=".toml"
    )
    frps.wait_port(bind)
    with socket.create_connection(("127.0.0.1", bind), timeout=10) as sock:
        hello = wire2.client_hello(os.urandom(32), algorithms=("rot13",))
        sock.sendall(wire2.MAGIC + wire2.encode_frame(wire2.FRAME_CLIENT_HELLO, hello))
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        frame = wire2.FrameDecoder(data).next_frame()
    assert frame is not None
    assert frame[0] == wire2.FRAME_SERVER_HELLO
    assert json.loads(frame[1])["error"] == "no supported crypto algorithm"
    frps.wait_log("refused ClientHello: no supported crypto algorithm")
    RawV2Control(bind).close()  # the next client logs in
