#!/usr/bin/env python3
"""Capture wire vectors from the real Go frpc 0.65.0 (``frpc-go-new``).

A tiny recording server stands in for frps on an ephemeral 127.0.0.1 port. For each scenario it
starts ``frpc-go-new -c <toml>`` against itself, records every byte frpc sends, and answers just
enough for frpc to get going:

* Login  -> plaintext LoginResp (``version`` 0.65.0, ``run_id`` 0123456789abcdef)
* then   -> its own 16-byte IV + AES-128-CFB encrypted ReqWorkConn on the control connection
* frpc   -> opens a work connection (a second TCP connection, or yamux stream 3) with NewWorkConn

Scenarios: ``nomux`` (``transport.tcpMux = false``) and ``mux`` (yamux, the default).
It decrypts what it recorded, checks ``privilege_key == md5hex(token + str(timestamp))`` and
writes ``frpc-0.65.0.json`` next to this file.

Self-contained on purpose (stdlib + ``cryptography``, no pyfrp imports) so the vectors stay an
independent oracle. Regenerate with::

    python3 tests/vectors/capture_frpc.py            # needs ../shared/peers/setup done
    python3 tests/vectors/capture_frpc.py -o /tmp/x.json --frpc /path/to/frpc
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # cryptography >= 47 moved CFB here; the old location warns and will go away
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - old cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB  # type: ignore[attr-defined,no-redef,unused-ignore]

TOKEN = "tok123"
USER = "lab"
RUN_ID = "0123456789abcdef"
SERVER_VERSION = "0.65.0"
FRPC_VERSION = "0.65.0"
RECORD_SECONDS = 3.0
MUX_WINDOW_DELTA = 6029312  # 6 MiB - 256 KiB

NOTES = [
    "hex fields are the exact bytes of each TCP connection, in order; *_chunks_ms_len are"
    " [ms since frpc start, bytes] per recv()/send() and only informational",
    "server_to_client_hex = LoginResp (plaintext), then the recorder's IV, then the encrypted"
    " ReqWorkConn; decrypt client bytes after Login with key_hex + client_iv_hex (AES-128-CFB-128)",
    "ordering across streams/connections and of NewProxy vs Ping (nomux) is racy in frpc:"
    " compare the multiset of messages per stream, not their global order",
    "timestamp/privilege_key/IVs/ports change on every capture",
]

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "frpc-0.65.0.json"

YAMUX_TYPES = {0: "data", 1: "window_update", 2: "ping", 3: "go_away"}


# --------------------------------------------------------------------------------------------- #
# protocol helpers (deliberately re-implemented here, independent of pyfrp)


def derive_key(token: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha1", token.encode(), b"frp", 64, 16)


def cfb(key: bytes, iv: bytes, *, encrypt: bool) -> Any:
    c = Cipher(algorithms.AES(key), CFB(iv))
    return c.encryptor() if encrypt else c.decryptor()


def pack_msg(type_byte: bytes, obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return type_byte + struct.pack(">q", len(body)) + body


def parse_msgs(
    data: bytes, limit: int | None = None
) -> tuple[list[tuple[str, dict[str, Any], int]], bytes]:
    """Split up to `limit` v1 frames; return ([(type, json, body_len)], the bytes after them)."""
    out: list[tuple[str, dict[str, Any], int]] = []
    pos = 0
    while len(data) - pos >= 9 and (limit is None or len(out) < limit):
        (n,) = struct.unpack(">q", data[pos + 1 : pos + 9])
        if n < 0 or len(data) - pos - 9 < n:
            break
        body = data[pos + 9 : pos + 9 + n]
        out.append((chr(data[pos]), json.loads(body), n))
        pos += 9 + n
    return out, data[pos:]


def yamux_hdr(typ: int, flags: int, sid: int, length: int) -> bytes:
    return struct.pack(">BBHII", 0, typ, flags, sid, length)


def flag_names(flags: int) -> list[str]:
    return [n for b, n in ((1, "SYN"), (2, "ACK"), (4, "FIN"), (8, "RST")) if flags & b]


def parse_yamux(data: bytes) -> tuple[list[tuple[int, int, int, int, int, bytes]], bytes]:
    """Split yamux frames: [(version, type, flags, sid, length, payload)], trailing bytes."""
    out = []
    pos = 0
    while len(data) - pos >= 12:
        ver, typ, flags, sid, length = struct.unpack(">BBHII", data[pos : pos + 12])
        plen = length if typ == 0 else 0
        if len(data) - pos - 12 < plen:
            break
        out.append((ver, typ, flags, sid, length, data[pos + 12 : pos + 12 + plen]))
        pos += 12 + plen
    return out, data[pos:]


def hdr_json(fr: tuple[int, int, int, int, int, bytes]) -> dict[str, Any]:
    ver, typ, flags, sid, length, _ = fr
    return {
        "hdr": struct.pack(">BBHII", ver, typ, flags, sid, length).hex(),
        "type": YAMUX_TYPES.get(typ, typ),
        "flags": flag_names(flags),
        "sid": sid,
        "len": length,
    }


# --------------------------------------------------------------------------------------------- #
# recording connection


class RecConn:
    """A socket whose received bytes are all recorded by a reader thread."""

    def __init__(self, sock: socket.socket, t0: float) -> None:
        self.sock = sock
        self.t0 = t0
        self.recv_buf = bytearray()
        self.recv_chunks: list[tuple[float, int]] = []  # (ms since t0, bytes)
        self.sent = bytearray()
        self.sent_writes: list[tuple[float, int]] = []
        self.eof = False
        self.pos = 0  # consumer cursor into recv_buf
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.recv_chunks.append((round((time.monotonic() - self.t0) * 1000, 1), len(data)))
                self.recv_buf += data
                self.cond.notify_all()

    def take(self, n: int, deadline: float) -> bytes | None:
        """Consume exactly n bytes, or return None at the deadline / EOF."""
        with self.cond:
            while len(self.recv_buf) - self.pos < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return None
                self.cond.wait(left)
            data = bytes(self.recv_buf[self.pos : self.pos + n])
            self.pos += n
            return data

    def send(self, data: bytes) -> None:
        self.sent_writes.append((round((time.monotonic() - self.t0) * 1000, 1), len(data)))
        self.sent += data
        self.sock.sendall(data)

    def snapshot(self) -> bytes:
        with self.cond:
            return bytes(self.recv_buf)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def take_or_die(c: RecConn, n: int, deadline: float, what: str) -> bytes:
    data = c.take(n, deadline)
    if data is None:
        raise TimeoutError(f"timed out / EOF waiting for {what}")
    return data


def read_msg(c: RecConn, deadline: float, what: str) -> tuple[str, dict[str, Any]]:
    hdr = take_or_die(c, 9, deadline, what)
    (n,) = struct.unpack(">q", hdr[1:])
    body = take_or_die(c, n, deadline, what)
    return chr(hdr[0]), json.loads(body)


# --------------------------------------------------------------------------------------------- #
# frpc process


def frpc_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    root = Path(os.environ.get("FRP_PEERS_DIR") or Path.home() / ".cache" / "frp-peers")
    return root / "bin" / "frpc-go-new"


def make_toml(port: int, mux: bool) -> str:
    return (
        'serverAddr = "127.0.0.1"\n'
        f"serverPort = {port}\n"
        f'user = "{USER}"\n'
        "loginFailExit = false\n"
        'auth.method = "token"\n'
        f'auth.token = "{TOKEN}"\n'
        "transport.tls.enable = false\n"
        f"transport.tcpMux = {'true' if mux else 'false'}\n"
        'log.to = "console"\n'
        'log.level = "debug"\n'
        "log.disablePrintColor = true\n"
        "\n"
        "[[proxies]]\n"
        'name = "ssh"\n'
        'type = "tcp"\n'
        'localIP = "127.0.0.1"\n'
        "localPort = 22\n"
        "remotePort = 6000\n"
        "transport.useEncryption = true\n"
        "transport.useCompression = true\n"
    )


class Frpc:
    def __init__(self, exe: Path, workdir: Path, toml: str, name: str) -> None:
        self.cfg = workdir / f"{name}.toml"
        self.cfg.write_text(toml)
        self.log_path = workdir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(exe), "-c", str(self.cfg)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # by PID; under qemu SIGTERM runs frpc's graceful close
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def accept(lsock: socket.socket, deadline: float, frpc: Frpc, what: str) -> socket.socket:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no connection for {what}")
        if frpc.proc.poll() is not None:
            raise RuntimeError(f"frpc exited with {frpc.proc.returncode}: {frpc.log_text()}")
        lsock.settimeout(min(left, 0.5))
        try:
            s, _ = lsock.accept()
        except TimeoutError:
            continue
        s.settimeout(None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


# --------------------------------------------------------------------------------------------- #
# scenarios


def run_nomux(exe: Path, workdir: Path) -> dict[str, Any]:
    key = derive_key(TOKEN)
    server_iv = os.urandom(16)
    enc = cfb(key, server_iv, encrypt=True)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    toml = make_toml(port, mux=False)
    t0 = time.monotonic()
    frpc = Frpc(exe, workdir, toml, "nomux")
    conns: list[RecConn] = []
    try:
        deadline = time.monotonic() + 30
        ctl = RecConn(accept(lsock, deadline, frpc, "control"), t0)
        conns.append(ctl)
        typ, _login = read_msg(ctl, deadline, "Login")
        assert typ == "o", typ
        ctl.send(pack_msg(b"1", {"version": SERVER_VERSION, "run_id": RUN_ID}))
        t_resp = time.monotonic()
        # like golib's crypto.Writer: the IV is its own Write, then the encrypted frame
        ctl.send(server_iv)
        ctl.send(enc.update(pack_msg(b"r", {})))
        work = RecConn(accept(lsock, time.monotonic() + 10, frpc, "work conn"), t0)
        conns.append(work)
        typ, _nwc = read_msg(work, time.monotonic() + 10, "NewWorkConn")
        assert typ == "w", typ
        time.sleep(max(0.0, t_resp + RECORD_SECONDS - time.monotonic()))
        # no extra connections expected; note any that did arrive
        lsock.settimeout(0.01)
        extra = 0
        with contextlib.suppress(TimeoutError):
            while True:
                s, _ = lsock.accept()
                s.close()
                extra += 1
        recv = [c.snapshot() for c in conns]
    finally:
        rc = frpc.stop()
        for c in conns:
            c.close()
        lsock.close()

    # ---- decode what we recorded
    msgs0, _ = parse_msgs(recv[0], 1)
    login_frame_len = 9 + msgs0[0][2]
    client_iv = recv[0][login_frame_len : login_frame_len + 16]
    dec = cfb(key, client_iv, encrypt=False)
    plain = dec.update(recv[0][login_frame_len + 16 :])
    ctl_msgs, ctl_rest = parse_msgs(plain)
    wmsgs, wrest = parse_msgs(recv[1])
    result = build_result(
        toml=toml,
        login=msgs0[0],
        client_iv=client_iv,
        ctl_msgs=ctl_msgs,
        ctl_trailing=len(ctl_rest),
        work_msgs=wmsgs,
        work_trailing=len(wrest),
        server_iv=server_iv,
    )
    result["connections"] = [
        {
            "role": role,
            "client_to_server_hex": r.hex(),
            "server_to_client_hex": bytes(c.sent).hex(),
            "recv_chunks_ms_len": c.recv_chunks,
            "sent_writes_ms_len": c.sent_writes,
        }
        for role, r, c in zip(("control", "work"), recv, conns, strict=True)
    ]
    result["notes"] = {
        "extra_connections": extra,
        "client_iv_offset": login_frame_len,
        "frpc_exit_code": rc,
        "frpc_log": filter_log(frpc.log_text()),
    }
    return result


def run_mux(exe: Path, workdir: Path) -> dict[str, Any]:
    key = derive_key(TOKEN)
    server_iv = os.urandom(16)
    enc = cfb(key, server_iv, encrypt=True)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    toml = make_toml(port, mux=True)
    t0 = time.monotonic()
    frpc = Frpc(exe, workdir, toml, "mux")
    conns: list[RecConn] = []
    streams: dict[int, bytearray] = {}
    acked: set[int] = set()

    def pump(c: RecConn, deadline: float) -> bool:
        """Read one yamux frame; ACK new streams, answer pings. False at deadline/EOF."""
        hdr = c.take(12, deadline)
        if hdr is None:
            return False
        ver, typ, flags, sid, length = struct.unpack(">BBHII", hdr)
        assert ver == 0, hdr.hex()
        payload = b""
        if typ == 0 and length:
            p = c.take(length, deadline)
            if p is None:
                return False
            payload = p
        if flags & 1 and sid and sid not in acked:  # SYN on a new stream -> ACK it
            acked.add(sid)
            c.send(yamux_hdr(1, 2, sid, MUX_WINDOW_DELTA))
        if typ == 2 and flags & 1:  # ping request -> echo with ACK
            c.send(yamux_hdr(2, 2, 0, length))
        streams.setdefault(sid, bytearray()).extend(payload)
        return True

    try:
        deadline = time.monotonic() + 30
        sess = RecConn(accept(lsock, deadline, frpc, "mux session"), t0)
        conns.append(sess)
        while not parse_msgs(bytes(streams.get(1, b"")), 1)[0]:
            if not pump(sess, deadline):
                raise TimeoutError("no Login on stream 1")
        sess.send(data_frame(1, pack_msg(b"1", {"version": SERVER_VERSION, "run_id": RUN_ID})))
        t_resp = time.monotonic()
        sess.send(data_frame(1, server_iv))
        sess.send(data_frame(1, enc.update(pack_msg(b"r", {}))))
        deadline = time.monotonic() + 10
        while not parse_msgs(bytes(streams.get(3, b"")), 1)[0]:
            if not pump(sess, deadline):
                raise TimeoutError("no NewWorkConn on stream 3")
        end = t_resp + RECORD_SECONDS
        while pump(sess, end):
            pass
        lsock.settimeout(0.01)
        extra = 0
        with contextlib.suppress(TimeoutError):
            while True:
                s, _ = lsock.accept()
                s.close()
                extra += 1
        recv = sess.snapshot()
    finally:
        rc = frpc.stop()
        for c in conns:
            c.close()
        lsock.close()

    # ---- decode what we recorded (from the raw bytes, not from the live pump)
    cframes, ctrail = parse_yamux(recv)
    sframes, strail = parse_yamux(bytes(conns[0].sent))
    per_stream: dict[int, bytes] = {}
    for fr in cframes:
        per_stream[fr[3]] = per_stream.get(fr[3], b"") + fr[5]
    s1 = per_stream.get(1, b"")
    msgs1, _ = parse_msgs(s1, 1)
    login_frame_len = 9 + msgs1[0][2]
    client_iv = s1[login_frame_len : login_frame_len + 16]
    dec = cfb(key, client_iv, encrypt=False)
    ctl_msgs, ctl_rest = parse_msgs(dec.update(s1[login_frame_len + 16 :]))
    wmsgs, wrest = parse_msgs(per_stream.get(3, b""))
    result = build_result(
        toml=toml,
        login=msgs1[0],
        client_iv=client_iv,
        ctl_msgs=ctl_msgs,
        ctl_trailing=len(ctl_rest),
        work_msgs=wmsgs,
        work_trailing=len(wrest),
        server_iv=server_iv,
    )
    result["connections"] = [
        {
            "role": "yamux session",
            "client_to_server_hex": recv.hex(),
            "server_to_client_hex": bytes(conns[0].sent).hex(),
            "recv_chunks_ms_len": conns[0].recv_chunks,
            "sent_writes_ms_len": conns[0].sent_writes,
        }
    ]
    result["yamux"] = {
        "client_frames": [hdr_json(f) for f in cframes],
        "server_frames": [hdr_json(f) for f in sframes],
        "client_trailing_bytes": len(ctrail),
        "server_trailing_bytes": len(strail),
    }
    result["notes"] = {
        "extra_connections": extra,
        "client_iv_offset_in_stream1": login_frame_len,
        "frpc_exit_code": rc,
        "frpc_log": filter_log(frpc.log_text()),
    }
    return result


def data_frame(sid: int, payload: bytes) -> bytes:
    return yamux_hdr(0, 0, sid, len(payload)) + payload


def filter_log(text: str) -> list[str]:
    """Keep frpc's log lines, minus timestamps (so the file stays small and readable)."""
    lines = []
    for ln in text.splitlines():
        if "start frpc service for config file" in ln:
            continue  # names a temp path
        parts = ln.split(" ", 2)
        lines.append(parts[2] if len(parts) == 3 and parts[1][:2].isdigit() else ln)
    return lines[:40]


def build_result(
    *,
    toml: str,
    login: tuple[str, dict[str, Any], int],
    client_iv: bytes,
    ctl_msgs: list[tuple[str, dict[str, Any], int]],
    ctl_trailing: int,
    work_msgs: list[tuple[str, dict[str, Any], int]],
    work_trailing: int,
    server_iv: bytes,
) -> dict[str, Any]:
    _, lj, llen = login
    ts = lj["timestamp"]
    want_key = hashlib.md5((TOKEN + str(ts)).encode()).hexdigest()
    new_proxy = next((m[1] for m in ctl_msgs if m[0] == "p"), None)
    nwc = next((m[1] for m in work_msgs if m[0] == "w"), None)
    key = derive_key(TOKEN)
    enc = cfb(key, server_iv, encrypt=True)
    return {
        "tcp_mux": "tcpMux = true" in toml,
        "token": TOKEN,
        "key_hex": key.hex(),
        "server_iv_hex": server_iv.hex(),
        "client_iv_hex": client_iv.hex(),
        "expected": {
            "login": {"type": "o", "body_len": llen, "json": lj},
            "login_privilege_key_ok": lj.get("privilege_key") == want_key,
            "login_resp": {"type": "1", "json": {"version": SERVER_VERSION, "run_id": RUN_ID}},
            "req_work_conn_ciphertext_hex": enc.update(pack_msg(b"r", {})).hex(),
            "control_c2s_plaintext_msgs": [
                {"type": t, "body_len": n, "json": j} for t, j, n in ctl_msgs
            ],
            "control_c2s_trailing_partial_bytes": ctl_trailing,
            "new_proxy": new_proxy,
            "new_work_conn": nwc,
            "work_c2s_msgs": [{"type": t, "body_len": n, "json": j} for t, j, n in work_msgs],
            "work_c2s_trailing_partial_bytes": work_trailing,
        },
    }


def dumps(obj: Any, indent: str = "") -> str:
    """JSON with small values kept on one line (keeps the file short and diff-friendly)."""
    flat = json.dumps(obj)
    if len(flat) + len(indent) <= 130 or not isinstance(obj, dict | list) or not obj:
        return flat
    inner = indent + " "
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return "[\n" + ",\n".join(inner + dumps(v, inner) for v in obj) + "\n" + indent + "]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--frpc", help="frpc binary/wrapper (default: peers bin/frpc-go-new)")
    args = ap.parse_args(argv)
    exe = frpc_path(args.frpc)
    if not os.access(exe, os.X_OK):
        print(f"{exe} not found: run ../shared/peers/setup", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="capture-frpc-") as td:
        scenarios = {"nomux": run_nomux(exe, Path(td)), "mux": run_mux(exe, Path(td))}
    doc = {
        "generator": "tests/vectors/capture_frpc.py",
        "frpc_version": FRPC_VERSION,
        "captured_at_unix": int(time.time()),
        "frpc_config_toml": make_toml(0, mux=False)
        .replace("serverPort = 0", "serverPort = <port>")
        .replace("tcpMux = false", "tcpMux = <true|false>"),
        "notes": NOTES,
        "scenarios": scenarios,
    }
    args.out.write_text(dumps(doc) + "\n")
    ok = True
    for name, sc in scenarios.items():
        exp = sc["expected"]
        ok &= bool(exp["login_privilege_key_ok"]) and exp["new_proxy"] is not None
        ok &= exp["new_work_conn"] is not None
        print(
            f"{name}: login keys={sorted(exp['login']['json'])} "
            f"ctl msgs={[m['type'] for m in exp['control_c2s_plaintext_msgs']]} "
            f"new_proxy={exp['new_proxy']} nwc={exp['new_work_conn']} "
            f"pk_ok={exp['login_privilege_key_ok']}"
        )
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes) in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
