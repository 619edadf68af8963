"""One fuzz target per parser that faces hostile bytes.

A target is a function of ``bytes`` that feeds the pure decoder the way pyfrp's adapter does:
incremental decoders get the input whole and again cut into pieces (the cuts are drawn from a
seed derived from the bytes, so an input always replays the same way), and must give the same
result both times; datagram decoders get the input as ``u16 length | datagram`` records. The
decoder's documented errors (``Target.allowed``, what its adapter catches) are an answer like
any other. Any other exception escaping ``run`` is a crash, and so is an AssertionError from a
broken invariant (split-dependent output, a decoded message that does not re-encode, a rewritten
HTTP head the backend would frame differently from frps).

``seeds()`` builds small valid inputs from pyfrp's own encoders, for the mutation engines.
"""

from __future__ import annotations

import atexit
import base64
import os
import random
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyfrp.config import load as config_load
from pyfrp.errors import (
    ConfigError,
    CryptoError,
    FrameError,
    OIDCError,
    ProtocolError,
    YamuxError,
)
from pyfrp.proto import crypto, detect, framing, kcp, kcpfec, oidc, snappy, sshcmd, wire2, yamux
from pyfrp.proto import msg as m
from pyfrp.vhost import http as vhttp
from pyfrp.vhost import http1, sni
from pyfrp.vhost.router import Router, canonical_host


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    allowed: tuple[type[BaseException], ...]  # what the adapter catches: documented answers
    what: str = ""
    max_len: int = 4096
    dictionary: tuple[bytes, ...] = field(default=())


class Refused(Exception):
    """Stand-in outcome for an allowed error, so that two runs can be compared."""


def _outcome(allowed: tuple[type[BaseException], ...], fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except allowed as exc:
        return ("refused", type(exc).__name__, str(exc))


def chunks(data: bytes, salt: int = 0) -> list[bytes]:
    """``data`` cut into pieces, the cuts a function of the bytes (so a crasher replays)."""
    if len(data) < 2:
        return [data]
    rng = random.Random(zlib.crc32(data) ^ salt)
    if len(data) <= 256 and rng.random() < 0.15:
        return [data[i : i + 1] for i in range(len(data))]  # a peer trickling one byte at a time
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 8))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def datagrams(data: bytes) -> list[bytes]:
    """``u16 LE length | datagram`` records; a short last record is taken as it is."""
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            out.append(data[pos:])
            break
        (n,) = struct.unpack_from("<H", data, pos)
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def records(items: Iterable[bytes]) -> bytes:
    return b"".join(struct.pack("<H", len(d)) + d for d in items)


# ------------------------------------------------------------------------------ v1 messages


def _seed_messages() -> list[m.Message]:
    addr = m.UDPAddr("127.0.0.1", 5353, "")
    return [
        m.Login(version="0.70.1", hostname="h", os="linux", arch="amd64", user="u",
                privilege_key="k", timestamp=1, run_id="r", metas={"a": "b"}, pool_count=1),
        m.LoginResp(version="0.70.1", run_id="r"),
        m.NewProxy(proxy_name="p", proxy_type="http", custom_domains=["a.b"], locations=["/"],
                   headers={"x": "y"}, use_encryption=True, remote_port=80),
        m.NewProxyResp(proxy_name="p", remote_addr=":80", error="e"),
        m.CloseProxy(proxy_name="p"),
        m.NewWorkConn(run_id="r", privilege_key="k", timestamp=2),
        m.ReqWorkConn(),
        m.StartWorkConn(proxy_name="p", src_addr="1.2.3.4", src_port=5, dst_port=6),
        m.NewVisitorConn(run_id="r", proxy_name="p", sign_key="s", timestamp=3),
        m.NewVisitorConnResp(proxy_name="p"),
        m.Ping(privilege_key="k", timestamp=4),
        m.Pong(),
        m.UDPPacket(content=b"\x00\x01datagram", remote_addr=addr),
        m.UDPPacket(content=b"x", local_addr=addr),
        m.NatHoleVisitor(transaction_id="t", proxy_name="p", mapped_addrs=["1.1.1.1:1"]),
        m.NatHoleClient(transaction_id="t", sid="s", assisted_addrs=["2.2.2.2:2"]),
        m.NatHoleResp(transaction_id="t", sid="s", candidate_addrs=["3.3.3.3:3"],
                      detect_behavior=m.NatHoleDetectBehavior(
                          role="sender", mode=1, candidate_ports=[m.PortsRange(1, 2)])),
        m.NatHoleSid(transaction_id="t", sid="s", response=True, nonce="n"),
        m.NatHoleReport(sid="s", success=True),
    ]  # fmt: skip


def _seeds_msg() -> list[bytes]:
    frames = [framing.encode_message(x) for x in _seed_messages()]
    return [*frames, b"".join(frames[:4]), b"".join(frames[-5:])]


def _v1_stream(pieces: list[bytes]) -> tuple[list[m.Message], Any]:
    dec = framing.MessageDecoder()
    out: list[m.Message] = []
    try:
        for piece in pieces:
            dec.feed(piece)
            while (msg := dec.next_message()) is not None:
                out.append(msg)
    except ProtocolError as exc:
        return out, (type(exc).__name__, str(exc))
    return out, None


def _reencodes(msg: m.Message) -> None:
    """A decoded message must encode again (frps echoes names and metas) to itself."""
    body = framing.encode_message(msg, max_body=1 << 30)[framing.HEADER_SIZE :]
    again = framing.decode_body(msg.TYPE, body)
    assert again == msg, f"{msg!r} re-decodes as {again!r}"


def run_msg(data: bytes) -> None:
    whole = _v1_stream([data])
    split = _v1_stream(chunks(data))
    assert whole == split, f"split changes the result: {whole!r} != {split!r}"
    for msg in whole[0]:
        _reencodes(msg)


# ------------------------------------------------------------------------------ yamux


def _seeds_yamux() -> list[bytes]:
    h = yamux.encode_header
    syn = h(yamux.TYPE_WINDOW_UPDATE, yamux.FLAG_SYN, 1, 0)
    data = h(yamux.TYPE_DATA, 0, 1, 5) + b"hello"
    fin = h(yamux.TYPE_DATA, yamux.FLAG_FIN, 1, 3) + b"bye"
    return [
        syn,
        syn + data + fin,
        h(yamux.TYPE_DATA, yamux.FLAG_SYN, 3, 2) + b"hi" + h(yamux.TYPE_WINDOW_UPDATE, 0, 3, 999),
        syn + h(yamux.TYPE_WINDOW_UPDATE, yamux.FLAG_RST, 1, 0) + data,
        h(yamux.TYPE_PING, yamux.FLAG_SYN, 0, 7) + h(yamux.TYPE_PING, yamux.FLAG_ACK, 0, 7),
        syn + h(yamux.TYPE_GO_AWAY, 0, 0, 0) + h(yamux.TYPE_WINDOW_UPDATE, yamux.FLAG_SYN, 5, 0),
        h(yamux.TYPE_WINDOW_UPDATE, yamux.FLAG_ACK, 2, 0),
    ]


def _yamux(pieces: list[bytes], client: bool, app: bool) -> Any:
    """Events (adjacent data merged) and output; with ``app`` the session is also driven the way
    the adapter drives it: delivered bytes consumed, streams answered and closed."""
    s = yamux.Session(client=client)
    events: list[Any] = []
    out: list[bytes] = []
    try:
        for piece in pieces:
            for ev in s.receive_data(piece):
                if isinstance(ev, yamux.StreamData):
                    if app:
                        s.consumed(ev.stream_id, len(ev.data))
                    last = events[-1] if events else None
                    if isinstance(last, yamux.StreamData) and last.stream_id == ev.stream_id:
                        events[-1] = yamux.StreamData(ev.stream_id, bytes(last.data) + ev.data)
                        continue
                    ev = yamux.StreamData(ev.stream_id, bytes(ev.data))
                elif app and isinstance(ev, yamux.StreamOpened):
                    # The events come after the whole batch: the id may since have been reset,
                    # or closed by an earlier incarnation's StreamEnded (ids are reused after RST).
                    if s.send_window(ev.stream_id):
                        s.send_data(ev.stream_id, b"reply")
                elif app and isinstance(ev, yamux.StreamEnded):
                    s.close_stream(ev.stream_id)
                elif app and isinstance(ev, yamux.StreamAcked) and s.is_stream_open(ev.stream_id):
                    s.reset_stream(ev.stream_id)
                events.append(ev)
            out.append(s.data_to_send())
            if app and s.stream_count < 3 and not s._remote_go_away:
                s.open_stream()
    except YamuxError as exc:
        s.go_away(exc.go_away_code)
        s.data_to_send()
        return ("refused", str(exc), exc.go_away_code)
    return events, b"".join(out)


def run_yamux(data: bytes) -> None:
    client = bool(zlib.crc32(data) & 1)
    pieces = chunks(data)
    whole = _yamux([data], client, app=False)
    split = _yamux(pieces, client, app=False)
    assert whole == split, f"split changes the result: {whole!r} != {split!r}"
    _yamux(pieces, client, app=True)


# ------------------------------------------------------------------------------ HTTP/1


def _seeds_http() -> list[bytes]:
    get = b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n"
    post = (b"POST /up HTTP/1.1\r\nHost: a.example.com:8080\r\nContent-Length: 5\r\n"
            b"Connection: keep-alive\r\n\r\nhello")  # fmt: skip
    chunked = (b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTe: trailers\r\n\r\n"
               b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n")  # fmt: skip
    upgrade = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    proxy = b"GET http://user@h.example:80/p HTTP/1.0\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"
    connect = b"CONNECT h.example:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    resp_chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n"
                    b"Trailer: X\r\n\r\n2\r\nok\r\n0\r\n\r\n")  # fmt: skip
    cont = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\nKeep-Alive: 1\r\n\r\n"
    return [get, post, chunked, upgrade, proxy, connect, get + post + chunked, resp,
            resp_chunked, cont, b"\r\n" + get]  # fmt: skip


class _HeadReader:
    """frps's head loop (vhost/http.py _read_head/_upstream_data) over a byte stream."""

    def __init__(self, limit: int) -> None:
        self.buf = bytearray()
        self.scan = 0
        self.limit = limit

    def feed(self, piece: bytes, request: bool) -> bytes | None:
        buf = self.buf
        buf += piece
        if request and buf and buf[0] in (13, 10):
            while buf and buf[0] in (13, 10):
                del buf[:1]
            self.scan = 0
        end = http1.find_head_end(buf, self.scan)
        if end > self.limit or (end < 0 and len(buf) > self.limit):
            raise http1.HttpError("head too large", 431)
        if end < 0:
            self.scan = max(0, len(buf) - 3)
            return None
        raw = bytes(buf[:end])
        del buf[:end]
        self.scan = 0
        return raw


def _http_stream(pieces: list[bytes], request: bool, method: str) -> Any:
    """The heads and body byte counts of a pipelined stream of requests (or responses)."""
    reader = _HeadReader(http1.MAX_HEAD if request else http1.MAX_RESPONSE_HEAD)
    out: list[Any] = []
    body: http1.BodyFramer | None = None
    sunk = bytearray()
    try:
        for piece in pieces:
            pending = piece
            while True:
                if body is not None:
                    n = body.feed(pending)
                    out[-1][1] += n
                    pending = pending[n:]
                    if not body.done:
                        break
                    body = None
                raw = reader.feed(pending, request)
                pending = b""
                if raw is None:
                    break
                head: Any
                if request:
                    head = http1.parse_request_head(raw)
                    _route(head)
                    _check_upstream(head)
                else:
                    head = http1.parse_response_head(raw, method)
                    _check_client_response(head)
                out.append([head, 0])
                if request and (head.upgrade or head.method == "CONNECT"):
                    return out, "tunnel"
                if not request and head.status < 200:
                    if head.status == 101:
                        return out, "tunnel"
                    continue
                framer = http1.BodyFramer(head.framing, head.length, sink=sunk.extend)
                if not framer.done:
                    body = framer
                    pending = bytes(reader.buf)
                    reader.buf.clear()
                    reader.scan = 0
        if body is not None:
            body.eof()
    except http1.HttpError as exc:  # the heads so far, not how much of a body went through
        return [head for head, _ in out], ("refused", str(exc), exc.status)
    return out, bytes(sunk)


_ROUTER: Router[str] = Router()
for _domain, _location, _user in (("example.com", "", ""), ("*.example.com", "/a", ""),
                                  ("h", "/", "u"), ("*", "", "")):  # fmt: skip
    _ROUTER.add(_domain, _location, _user, _domain)


def _route(req: http1.Request) -> None:
    """What the http vhost does with a head before it forwards it: host, user, route."""
    user = vhttp.route_user(req)
    found = _ROUTER.lookup(canonical_host(req.host), req.path, user)
    assert found is not None, "the * route matches every host"


def _check_upstream(req: http1.Request) -> None:
    """The head frps sends the backend must parse, with the body framed as frps frames it:
    otherwise the two ends disagree where the body ends (request smuggling)."""
    for ip in ("127.0.0.1", None):
        head = http1.upstream_request_head(
            req, ip, rewrite_host="rewritten.example", set_headers={"x-from-where": "frp"}
        )
        again = http1.parse_request_head(head)
        assert (again.framing, again.length) == (req.framing, req.length), (
            f"upstream head frames the body as {again.framing} {again.length}, frps as "
            f"{req.framing} {req.length}: {head!r}"
        )


def _check_client_response(resp: http1.Response) -> None:
    if resp.status == 101 or resp.status < 200 or resp.framing is http1.Framing.NONE:
        return
    close = resp.framing is http1.Framing.UNTIL_CLOSE  # as the vhost's close_after
    head = http1.client_response_head(resp, chunked_to_client=True, close=close)
    again = http1.parse_response_head(head, "GET")
    theirs = (again.framing, again.length) if again.framing is not http1.Framing.NONE else None
    ours = (resp.framing, resp.length)
    assert theirs == ours, f"client sees the body as {theirs}, frps sends {ours}: {head!r}"


def run_http1_head(data: bytes) -> None:
    request = not data.startswith(b"HTTP/")
    method = "HEAD" if zlib.crc32(data) % 7 == 0 else "GET"
    whole = _http_stream([data], request, method)
    split = _http_stream(chunks(data), request, method)
    assert whole == split, f"split changes the result: {whole!r} != {split!r}"


def _seeds_http_body() -> list[bytes]:
    return [
        b"\x00\x00\x00" + b"5\r\nhello\r\n0\r\n\r\n",
        b"\x01\x00\x00" + b"3;a=b\r\nabc\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nT: 1\r\n\r\nnext",
        b"\x02\x00\x05" + b"hellonext",
        b"\x03\x00\x00" + b"until close",
    ]


def _body(framing_byte: int, length: int, pieces: list[bytes]) -> Any:
    kind = framing_byte % 4
    sunk = bytearray()
    framer = http1.BodyFramer(
        (http1.Framing.CHUNKED, http1.Framing.CHUNKED, http1.Framing.LENGTH,
         http1.Framing.UNTIL_CLOSE)[kind],
        length,
        sink=sunk.extend if kind == 1 else None,
    )  # fmt: skip
    taken = 0
    try:
        for piece in pieces:
            n = framer.feed(piece)
            assert 0 <= n <= len(piece), f"feed took {n} of {len(piece)} bytes"
            taken += n
            if n < len(piece):
                assert framer.done, "the framer left bytes without finishing the body"
        framer.eof()
    except http1.HttpError as exc:
        return ("refused", str(exc))
    return taken, framer.done, bytes(sunk)


def run_http1_body(data: bytes) -> None:
    if len(data) < 3:
        return
    length = int.from_bytes(data[1:3], "big")
    body = data[3:]
    whole = _body(data[0], length, [body])
    split = _body(data[0], length, chunks(body))
    assert whole == split, f"split changes the result: {whole!r} != {split!r}"


# ------------------------------------------------------------------------------ TLS sniffing


def _client_hello(name: bytes | None, records_of: int = 0) -> bytes:
    exts = b""
    if name is not None:
        entry = b"\x00" + struct.pack(">H", len(name)) + name
        sni_list = struct.pack(">H", len(entry)) + entry
        exts += struct.pack(">HH", 0, len(sni_list)) + sni_list
    exts += struct.pack(">HH", 0x2B, 3) + b"\x02\x03\x04"
    body = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack(">H", len(exts)) + exts)  # fmt: skip
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    if not records_of:
        return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs
    out = b""
    for i in range(0, len(hs), records_of):
        part = hs[i : i + records_of]
        out += b"\x16\x03\x01" + struct.pack(">H", len(part)) + part
    return out


def _seeds_tls() -> list[bytes]:
    return [
        _client_hello(b"example.com"),
        b"\x17" + _client_hello(b"a.b"),
        _client_hello(None),
        _client_hello(b"split.example", records_of=7),
        b"o" + bytes(8),
    ]


def _sniff(pieces: list[bytes]) -> Any:
    """bind_port's first-byte check, then the https vhost's SNI read on a growing buffer."""
    buf = bytearray()
    kind: detect.FirstByte | None = None
    try:
        for piece in pieces:
            if kind is None and piece:
                kind = detect.classify_first_byte(piece[0])
                if kind is detect.FirstByte.CUSTOM_TLS:
                    piece = piece[1:]
                elif kind is detect.FirstByte.PLAIN:
                    return kind
            buf += piece
            name = sni.parse_client_hello(buf)
            if name is not None:
                return kind, name
            if len(buf) > sni.MAX_HELLO + 5 * 8:
                return kind, "too long"
    except sni.ClientHelloError as exc:
        return kind, ("refused", str(exc))
    return kind, None


def run_tls_sniff(data: bytes) -> None:
    whole = _sniff([data])
    split = _sniff(chunks(data))
    assert whole == split, f"split changes the result: {whole!r} != {split!r}"


# ------------------------------------------------------------------------------ snappy


def _seeds_snappy() -> list[bytes]:
    enc = snappy.SnappyFrameEncoder()
    first = enc.encode(b"hello hello hello hello hello hello")
    return [
        first,
        first + enc.encode(os.urandom(40)) + enc.encode(b"a" * 300),
        snappy.STREAM_IDENTIFIER + b"\xfe\x02\x00\x00xx" + snappy.STREAM_IDENTIFIER,
    ]


def _unsnappy(pieces: list[bytes]) -> Any:
    dec = snappy.SnappyFrameDecoder()
    try:
        out = [dec.decode(piece) for piece in pieces]
    except CryptoError:
        # Which error: a whole buffer has every chunk header checked before any block is
        # decompressed, so a bad header may be reported before an earlier corrupt block.
        return "refused"
    return b"".join(out)


def run_snappy(data: bytes) -> None:
    whole = _unsnappy([data])
    split = _unsnappy(chunks(data))
    assert whole == split, f"split changes the result: {whole!r} != {split!r}"
    if isinstance(whole, bytes) and whole:
        assert _unsnappy([snappy.SnappyFrameEncoder().encode(whole)]) == whole


# ------------------------------------------------------------------------------ AES-CFB


_KEY = crypto.derive_key("fuzz token")


def _seeds_cfb() -> list[bytes]:
    enc = crypto.StreamEncryptor(_KEY, iv=bytes(range(16)))
    return [enc.encrypt(b"o" + bytes(8) + b"{}"), enc.encrypt(b"more"), bytes(16)]


def _decrypt(pieces: list[bytes]) -> bytes:
    dec = crypto.StreamDecryptor(_KEY)
    return b"".join(dec.decrypt(p) for p in pieces)


def run_aes_cfb(data: bytes) -> None:
    whole = _decrypt([data])
    split = _decrypt(chunks(data))
    assert whole == split, "split changes the plaintext"
    assert len(whole) == max(0, len(data) - crypto.IV_SIZE)
    if whole:  # the writer with the same IV gives the ciphertext back
        enc = crypto.StreamEncryptor(_KEY, iv=data[: crypto.IV_SIZE])
        assert enc.encrypt(whole) == data


# ------------------------------------------------------------------------------ wire v2


_CH = wire2.client_hello(bytes(32), tls=True, tcp_mux=True)
_SH = wire2.server_hello(wire2.AES_256_GCM, bytes(32))
_AEAD_KEY = bytes(range(32))


def _seeds_wire2() -> list[bytes]:
    login = wire2.encode_message(m.Login(version="0.70.1", user="u", run_id="r"))
    work = wire2.encode_message(m.NewWorkConn(run_id="r"))
    sealed = wire2.AeadStreamWriter(wire2.AES_256_GCM, _AEAD_KEY, bytes(12)).seal(b"hello")
    chacha = wire2.AeadStreamWriter(wire2.XCHACHA20_POLY1305, _AEAD_KEY, bytes(24)).seal(b"x")
    return [
        wire2.MAGIC + wire2.encode_frame(wire2.FRAME_CLIENT_HELLO, _CH) + login,
        wire2.MAGIC + work + wire2.encode_udp_packet(b"dgram", m.UDPAddr("1.2.3.4", 5, "")),
        wire2.encode_frame(wire2.FRAME_SERVER_HELLO, _SH)
        + wire2.encode_message(m.LoginResp(run_id="r")),
        b"\x00" + sealed,
        b"\x01" + chacha,
        wire2.MAGIC[:3],
    ]


def _server_side(pieces: list[bytes]) -> Any:
    """frps's first-message logic (server/service.py _first_message), then more messages."""
    dec: framing.MessageDecoder | wire2.FrameDecoder = framing.MessageDecoder()
    hello = False
    out: list[Any] = []
    try:
        for piece in pieces:
            dec.feed(piece)
            while True:
                if isinstance(dec, framing.MessageDecoder):
                    head = dec.peek(len(wire2.MAGIC))
                    if wire2.MAGIC.startswith(head):
                        if len(head) < len(wire2.MAGIC):
                            break
                        dec = wire2.FrameDecoder(dec.take_remaining()[len(wire2.MAGIC) :])
                        continue
                    msg = dec.next_message()
                    if msg is None:
                        break
                    out.append(msg)
                    continue
                frame = dec.next_frame()
                if frame is None:
                    break
                ftype, payload = frame
                if ftype == wire2.FRAME_CLIENT_HELLO and not hello:
                    try:
                        alg = wire2.select_for_client_hello(payload)
                    except ValueError as exc:  # refused: frps answers it in a ServerHello
                        return out, ("hello refused", str(exc))
                    hello = True
                    sh = wire2.server_hello(alg, bytes(32))
                    out.append((alg, wire2.transcript_hash(payload, sh)))
                    continue
                if ftype != wire2.FRAME_MESSAGE:
                    raise FrameError(f"unexpected frame type {ftype}")
                msg = wire2.decode_message_payload(payload)
                _reencodes(msg)
                out.append(msg)
    except ProtocolError as exc:
        return out, ("refused", str(exc))
    return out, None


def _client_side(data: bytes) -> Any:
    """frpc reading the ServerHello after sending its ClientHello."""
    dec = wire2.FrameDecoder()
    dec.feed(data)
    try:
        frame = dec.next_frame()
        if frame is not None and frame[0] == wire2.FRAME_SERVER_HELLO:
            try:
                return wire2.check_server_hello(_CH, frame[1])
            except ValueError as exc:
                return ("hello refused", str(exc))
    except ProtocolError as exc:
        return ("refused", str(exc))
    return None


def _aead(pieces: list[bytes], alg: str) -> Any:
    reader = wire2.AeadStreamReader(alg, _AEAD_KEY)
    try:
        out = [reader.feed(piece) for piece in pieces]
    except CryptoError as exc:
        return ("refused", str(exc))
    return b"".join(out)


def run_wire2(data: bytes) -> None:
    pieces = chunks(data)
    whole = _server_side([data])
    split = _server_side(pieces)
    assert whole == split, f"split changes the result: {whole!r} != {split!r}"
    _client_side(data)
    if data:
        alg = wire2.SUPPORTED_ALGORITHMS[data[0] & 1]
        rest = data[1:]
        assert _aead([rest], alg) == _aead(chunks(rest), alg), "split changes the plaintext"


# ------------------------------------------------------------------------------ KCP + FEC


def _kcp_packets(conv: int) -> list[bytes]:
    peer = kcp.Kcp(conv)
    peer.set_nodelay(1, 20, 2, 1)
    peer.set_mtu(160)
    peer.send(b"x" * 500)
    peer.flush(0)
    out = peer.packets()
    probe = kcp.HEADER.pack(conv, kcp.CMD_WASK, 0, 32, 0, 0, 0, 0)
    ack = kcp.HEADER.pack(conv, kcp.CMD_ACK, 0, 32, 5, 0, 1, 0)
    return [*out, probe, ack]


def _seeds_kcp() -> list[bytes]:
    plain = _kcp_packets(7)
    enc = kcpfec.FecEncoder()
    shards = [s for i, p in enumerate(plain * 4) for s in enc.encode(p, i)]
    lossy = [s for i, s in enumerate(shards) if i % 13 not in (2, 5)]
    return [records(plain), records(shards[:14]), records(lossy[:26])]


def _kcp_session(items: list[bytes]) -> None:
    """kcp.py's KcpServer + KcpSession.datagram_received, without the sockets and clocks."""
    from pyfrp.net.kcp import SERVER_OPTIONS, _header_conv_sn

    session: kcp.Kcp | None = None
    dec = kcpfec.FecDecoder()
    now = 1000
    for data in items:
        now += 7
        head = _header_conv_sn(data)
        if session is None:
            if head is None:
                continue
            session = kcp.Kcp(head[0], stream=True)
            session.set_nodelay(*SERVER_OPTIONS.nodelay)
            session.set_mtu(SERVER_OPTIONS.mtu)
            session.set_window(SERVER_OPTIONS.snd_wnd, SERVER_OPTIONS.rcv_wnd)
        elif head is not None and head[0] != session.conv:
            continue
        k = session

        def plausible(packet: bytes, conv: int = k.conv) -> bool:
            return len(packet) >= kcp.OVERHEAD and kcp.conv_of(packet) == conv

        try:
            kind = kcpfec.shard_type(data)
            if kind in (kcpfec.TYPE_DATA, kcpfec.TYPE_PARITY):
                if len(data) < 8:
                    raise kcp.KcpError("short fec packet")
                packet, recovered = dec.decode(data, plausible)
                if packet is not None and len(packet) >= kcp.OVERHEAD:
                    k.input(packet, now)
                for r in recovered:
                    k.input(r, now, regular=False)
            else:
                k.input(data, now)
        except ValueError:  # KcpError and the FEC decoder's: the adapter counts a bad packet
            continue
        k.flush(now)
        k.packets()
        k.recv()
        if k.can_send():
            k.send(b"reply")


def run_kcp(data: bytes) -> None:
    _kcp_session(datagrams(data))


def run_kcpfec(data: bytes) -> None:
    dec = kcpfec.FecDecoder()
    for shard in datagrams(data):
        if len(shard) < 8:
            continue
        try:
            packet, recovered = dec.decode(shard)
        except ValueError:
            continue
        if packet is not None:
            assert shard[kcpfec.HEADER_SIZE_PLUS2 :].startswith(packet)
        for r in recovered:
            assert isinstance(r, bytes)


# ------------------------------------------------------------------------------ SSH gateway


def _seeds_ssh() -> list[bytes]:
    return [
        b"tcp --remote_port 9090 --proxy_name p",
        b"http -d a.example.com,b.example.com --locations /x --http_user u --http_pwd p",
        b"tcpmux --mux httpconnect --sd s -n name --metadatas a=b,c=d",
        b'stcp --sk key --allow_users "a,b",c -u user --token t --client-id x',
        b"https --custom_domain=x.example --annotations k=v",
        b"tcp -r 0x1F90 -- trailing",
        b"tcp --help",
    ]


def run_sshcmd(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        cmd = sshcmd.parse(text)
    except (sshcmd.CommandError, sshcmd.HelpRequested):
        return
    assert cmd.proxy_type in sshcmd.SUPPORTED_TYPES
    assert cmd.name


# ------------------------------------------------------------------------------ OIDC tokens


_OIDC_OPTS = oidc.VerifyOptions("https://issuer.example", audience="frps")


def _seeds_oidc() -> list[bytes]:
    claims = b'{"iss":"https://issuer.example","sub":"s","aud":["frps"],"exp":4102444800}'
    header = b'{"alg":"RS256","kid":"k1"}'
    token = b".".join(base64.urlsafe_b64encode(x).rstrip(b"=") for x in (header, claims, b"sig"))
    return [token, claims, b'{"iss":"x","aud":"frps","exp":1,"nbf":2}']


def run_oidc(data: bytes) -> None:
    """frps's check of a Login's OIDC token: the compact JWS header (before any signature
    check), then the claims as if the signature had verified (a trusted issuer's bad token)."""
    try:
        oidc.parse_jwt(data.decode("utf-8", "replace"), ["RS256", "ES256"])
    except OIDCError:
        pass
    try:
        oidc.check_claims(data, _OIDC_OPTS, now=1e9)
    except OIDCError:
        pass


# ------------------------------------------------------------------------------ config files


_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="pyfrp-fuzz-config-", dir="/dev/shm"
                                    if os.path.isdir("/dev/shm") else None))  # fmt: skip


def cleanup() -> None:
    shutil.rmtree(_CONFIG_DIR, True)


atexit.register(cleanup)
_SUFFIXES = (".ini", ".toml", ".yaml", ".json", ".toml")
_FIXTURES = Path(__file__).parent.parent / "config" / "data"


def _seeds_config() -> list[bytes]:
    out = []
    for p in sorted(_FIXTURES.iterdir()):  # a full server and client config in each format
        index = {".ini": 0, ".toml": 1, ".yaml": 2, ".json": 3}[p.suffix]
        out.append(bytes([index + 5 * p.name.startswith("client")]) + p.read_bytes())
    out += [  # and small ones, which mutate faster
        b"\x00[common]\nbind_port = 7000\ntoken = t\nallow_ports = 2000-3000,3001\n",
        b"\x05[common]\nserver_port = 7000\n[web]\ntype = http\ncustom_domains = a.b\n"
        b"[range:p]\ntype = tcp\nlocal_port = 1-3\nremote_port = 4-6\n",
        b"\x01bindPort = 7000\n[auth]\ntoken = 't'\n[[httpPlugins]]\nname = 'a'\n",
        b'\x06serverPort = 7000\n[[proxies]]\nname = "s"\ntype = "stcp"\nsecretKey = "k"\n'
        b'[[visitors]]\nname = "v"\ntype = "xtcp"\nserverName = "s"\nbindPort = 1\n',
        b"\x02bindPort: 7000\nallowPorts:\n  - start: 1\n    end: 2\n.anchor: &a 1\n",
        b"\x07proxies:\n  - name: p\n    type: tcp\n    localPort: 22\n    remotePort: 6000\n",
        b'\x03{"bindPort": 7000, "transport": {"tls": {"force": true}}}',
        b'\x08{"serverPort": 7000, "proxies": [{"name": "h", "type": "https",'
        b' "customDomains": ["x"], "plugin": {"type": "https2http", "localAddr": "a:1"}}]}',
    ]
    out.append(
        b"\x01" + b"bindPort = {{ .Envs.PORT }}\n{{- range $i := parseNumberRangePair "
        b'"1-3" "4-6" }}\n[[proxies]]\nname = "p{{ $i.First }}"\n{{- end }}\n'
    )
    return out


def _includes_here(common: Any) -> list[str]:
    """``includes`` limited to the fuzz directory: a fuzzed pattern must not read /proc."""
    return [p for p in _real_includes(common) if p.startswith(str(_CONFIG_DIR))]


_real_includes = config_load._includes


def run_config(data: bytes) -> None:
    if not data:
        return
    path = _CONFIG_DIR / f"fuzz{_SUFFIXES[data[0] % len(_SUFFIXES)]}"
    path.write_bytes(data[1:])
    client = data[0] // len(_SUFFIXES) % 2
    load = (config_load.load_server_config, config_load.load_client_config)[client]
    saved = config_load._includes
    config_load._includes = _includes_here
    try:
        load(str(path), envs={"PORT": "7000", "X": "1"})
    except ConfigError:
        pass
    finally:
        config_load._includes = saved


# ------------------------------------------------------------------------------ registry

_HTTP_WORDS = (b"\r\n", b"\r\n\r\n", b"Transfer-Encoding: ", b"chunked", b"Content-Length: ",
               b"Connection: ", b"Host: ", b"HTTP/1.1", b"HTTP/1.0", b"Upgrade", b"close",
               b"keep-alive", b"%2", b"CONNECT ", b"HEAD ", b";", b"0\r\n\r\n")  # fmt: skip

_CONFIG_WORDS = (b"[[proxies]]\n", b"[[visitors]]\n", b"{{ ", b" }}", b".Envs.X", b"range:",
                 b"[common]\n", b"includes", b"type = ", b"tcp", b"http", b"xtcp", b": ",
                 b"- ", b'": ', b"true", b"null", b"70000", b"-1", b"\\u0000", b"&a", b"*a",
                 b"!!binary", b"'''", b'"""', b"\n  ")  # fmt: skip

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("msg", run_msg, _seeds_msg, (ProtocolError,), "v1 message framing + JSON bodies"),
        Target("yamux", run_yamux, _seeds_yamux, (YamuxError,), "yamux session (both roles)"),
        Target("http1_head", run_http1_head, _seeds_http, (http1.HttpError,),
               "HTTP/1 request/response heads, pipelined bodies, head rewriting",
               dictionary=_HTTP_WORDS),
        Target("http1_body", run_http1_body, _seeds_http_body, (http1.HttpError,),
               "HTTP/1 body framing (chunked, length, until close)", dictionary=_HTTP_WORDS),
        Target("tls_sniff", run_tls_sniff, _seeds_tls, (sni.ClientHelloError,),
               "bind_port first byte (0x17/0x16) + ClientHello SNI"),
        Target("snappy", run_snappy, _seeds_snappy, (CryptoError,), "snappy framing decoder"),
        Target("aes_cfb", run_aes_cfb, _seeds_cfb, (), "AES-128-CFB stream decryptor"),
        Target("wire2", run_wire2, _seeds_wire2, (ProtocolError, ValueError),
               "wire v2 magic, frames, hellos, AEAD stream"),
        Target("kcp", run_kcp, _seeds_kcp, (ValueError,), "KCP session input (+FEC), as kcp.py",
               max_len=8192),
        Target("kcpfec", run_kcpfec, _seeds_kcp, (ValueError,), "FEC shard decoder/recovery",
               max_len=8192),
        Target("sshcmd", run_sshcmd, _seeds_ssh, (sshcmd.CommandError, sshcmd.HelpRequested),
               "SSH gateway exec command", max_len=512),
        Target("oidc", run_oidc, _seeds_oidc, (OIDCError,), "OIDC token header + claims"),
        Target("config", run_config, _seeds_config, (ConfigError,),
               "config files: INI/TOML/YAML/JSON + templates", max_len=8192,
               dictionary=_CONFIG_WORDS),
    )
}  # fmt: skip
