"""frp's wire protocol v2 (frp >= 0.69: pkg/proto/wire, pkg/msg/wire_v2.go, golib aead_stream).

A client opts in with ``transport.wireProtocol = "v2"``; frps takes v1 and v2 on the same port
and tells them apart by the first bytes of every logical connection (TCP connection, TLS
session or yamux stream).

Byte by byte
------------
Magic: every v2 connection (control, work and visitor alike) starts with the seven bytes
``46 52 50 00 02 0d 0a`` (``b"FRP\\x00\\x02\\r\\n"``). A v1 connection's first byte is a message
type letter, never ``F``, so frps reads seven bytes (or fewer, if they already differ) to decide.

Frame: ``type:u16 | flags:u16 | length:u32`` big endian, then ``length`` payload bytes.
flags must be 0 and length at most 65536; anything else is fatal to the connection.
Frame types: 1 ClientHello, 2 ServerHello, 16 Message.

Message frame payload: ``msg_type:u16`` big endian, then the same JSON body as v1 (Go's
encoding/json of the pkg/msg struct). v2 type ids: Login 1, LoginResp 2, NewProxy 3,
NewProxyResp 4, CloseProxy 5, NewWorkConn 6, ReqWorkConn 7, StartWorkConn 8, NewVisitorConn 9,
NewVisitorConnResp 10, Ping 11, Pong 12, UDPPacket 13, NatHoleVisitor 14, NatHoleClient 15,
NatHoleResp 16, NatHoleSid 17, NatHoleReport 18.

Control login: frpc sends magic, a ClientHello frame, then the Login message frame, without
waiting. frps answers a ServerHello frame, then the LoginResp message frame. Work and visitor
connections send magic and their first message frame with no hello.

ClientHello JSON (Go field order; ``[]byte`` is padded base64)::

    {"bootstrap":{"transport":"tcp","tls":true,"tcpMux":true},
     "capabilities":{"message":{"codecs":["json"]},
                     "crypto":{"algorithms":["aes-256-gcm","xchacha20-poly1305"],
                               "clientRandom":"<32 bytes>"}}}

ServerHello JSON: ``{"selected":{"message":{"codec":"json"},"crypto":{"algorithm":A,
"serverRandom":"<32 bytes>"}}}``, or with ``"error":"..."`` when frps refuses the hello (then
frps closes). frps selects the first of the client's algorithms it supports.

Control channel encryption (after LoginResp, both directions, like v1's AES-CFB but AEAD):

* transcript = SHA-256("frp wire v2 crypto transcript" || part("client hello", CH) ||
  part("server hello", SH)) where CH/SH are the exact hello frame payloads and
  part(label, p) = 0x00 || label || 0x00 || len(p):u64 big endian || p.
* key(direction) = HKDF-SHA256(ikm = auth token bytes, salt = transcript,
  info = "frp wire v2 control aead " + algorithm + " " + direction, 32 bytes) with direction
  "client-to-server" or "server-to-client".
* Each direction is a golib AEAD stream: a random nonce (12 bytes AES-256-GCM, 24 bytes
  XChaCha20-Poly1305) sent once before the first frame, then frames of
  ``length:u32`` (ciphertext length incl. the 16-byte tag; plaintext at most 65536) followed by
  the ciphertext. The AEAD nonce starts at the sent nonce and is incremented as a big-endian
  counter after each frame; the associated data of every frame is the initial nonce followed by
  that frame's 4 length bytes.

Work connections are not encrypted by v2 (only per-proxy ``useEncryption`` as in v1); after
StartWorkConn their bytes are the proxied stream, except udp/sudp payloads, which are UDPPacket
message frames in the connection's own wire protocol.

Everything here is pure: bytes in, bytes out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from pyfrp.errors import CryptoError, FrameError, MessageError
from pyfrp.proto import framing
from pyfrp.proto.framing import decode_body
from pyfrp.proto.msg import (
    CloseProxy,
    Login,
    LoginResp,
    Message,
    NatHoleClient,
    NatHoleReport,
    NatHoleResp,
    NatHoleSid,
    NatHoleVisitor,
    NewProxy,
    NewProxyResp,
    NewVisitorConn,
    NewVisitorConnResp,
    NewWorkConn,
    Ping,
    Pong,
    ReqWorkConn,
    StartWorkConn,
    UDPAddr,
    UDPPacket,
)

PROTOCOL_V1: Final = "v1"
PROTOCOL_V2: Final = "v2"
MAGIC: Final = b"FRP\x00\x02\r\n"

FRAME_CLIENT_HELLO: Final = 1
FRAME_SERVER_HELLO: Final = 2
FRAME_MESSAGE: Final = 16
MAX_FRAME_PAYLOAD: Final = 64 * 1024
FRAME_HEADER: Final = struct.Struct(">HHI")
_U16: Final = struct.Struct(">H")

AES_256_GCM: Final = "aes-256-gcm"
XCHACHA20_POLY1305: Final = "xchacha20-poly1305"
SUPPORTED_ALGORITHMS: Final = (AES_256_GCM, XCHACHA20_POLY1305)
RANDOM_SIZE: Final = 32
AEAD_KEY_SIZE: Final = 32
AEAD_TAG_SIZE: Final = 16
AEAD_MAX_PAYLOAD: Final = 64 * 1024

_ORDER: tuple[type[Message], ...] = (
    Login, LoginResp, NewProxy, NewProxyResp, CloseProxy, NewWorkConn, ReqWorkConn,
    StartWorkConn, NewVisitorConn, NewVisitorConnResp, Ping, Pong, UDPPacket, NatHoleVisitor,
    NatHoleClient, NatHoleResp, NatHoleSid, NatHoleReport,
)  # fmt: skip
V2_TYPE_IDS: Final[dict[type[Message], int]] = {cls: i + 1 for i, cls in enumerate(_ORDER)}
_BY_ID: Final[dict[int, type[Message]]] = {i + 1: cls for i, cls in enumerate(_ORDER)}

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


# -- frames


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_PAYLOAD:
        raise MessageError(f"frame payload length {len(payload)} exceeds limit {MAX_FRAME_PAYLOAD}")
    return FRAME_HEADER.pack(frame_type, 0, len(payload)) + payload


def encode_message(msg: Message) -> bytes:
    """The complete v2 message frame for ``msg``."""
    body = _ENCODE(msg.to_json()).encode("utf-8")
    return encode_frame(FRAME_MESSAGE, _U16.pack(V2_TYPE_IDS[type(msg)]) + body)


_UDP_PREFIX: Final = _U16.pack(V2_TYPE_IDS[UDPPacket])


def encode_udp_packet(
    content: bytes, addr: UDPAddr, max_body: int = MAX_FRAME_PAYLOAD - 2
) -> bytes:
    """``encode_message(UDPPacket(content, remote_addr=addr))`` by way of v1's fast encoder."""
    body = memoryview(framing.encode_udp_packet(content, addr, max_body))[framing.HEADER_SIZE :]
    return FRAME_HEADER.pack(FRAME_MESSAGE, 0, len(body) + 2) + _UDP_PREFIX + body


def decode_message_payload(payload: bytes | bytearray | memoryview) -> Message:
    if len(payload) < 2:
        raise FrameError("message frame payload too short")
    (type_id,) = _U16.unpack_from(payload)
    cls = _BY_ID.get(type_id)
    if cls is None:
        raise FrameError(f"unknown v2 message type {type_id}")
    return decode_body(cls.TYPE, memoryview(payload)[2:])


class FrameDecoder(framing.BufferedDecoder):
    """Incremental v2 frame decoder with ``MessageDecoder``'s interface (next_message,
    take_remaining, buffered), so a MessageConn can switch to it after the magic."""

    __slots__ = ()

    def next_frame(self) -> tuple[int, bytes] | None:
        """(type, payload) of the next complete frame, or None if more bytes are needed."""
        buf = self._buf
        if len(buf) < FRAME_HEADER.size:
            return None
        frame_type, flags, length = FRAME_HEADER.unpack_from(buf)
        if flags != 0:
            raise FrameError(f"unsupported frame flags: {flags}")
        if length > MAX_FRAME_PAYLOAD:
            raise FrameError(f"frame payload length {length} exceeds limit {MAX_FRAME_PAYLOAD}")
        end = FRAME_HEADER.size + length
        if len(buf) < end:
            return None
        payload = bytes(buf[FRAME_HEADER.size : end])
        del buf[:end]
        return frame_type, payload

    def next_message(self) -> Message | None:
        frame = self.next_frame()
        if frame is None:
            return None
        frame_type, payload = frame
        if frame_type != FRAME_MESSAGE:
            raise FrameError(f"unexpected frame type {frame_type}, want {FRAME_MESSAGE}")
        return decode_message_payload(payload)


# -- hellos


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, where: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise MessageError(f"{where} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise MessageError(f"{where} is not valid base64: {exc}") from exc


def client_hello(
    client_random: bytes,
    *,
    transport: str = "tcp",
    tls: bool = False,
    tcp_mux: bool = False,
    algorithms: tuple[str, ...] = SUPPORTED_ALGORITHMS,
) -> bytes:
    """A ClientHello frame payload, as Go's encoding/json writes it."""
    bootstrap: dict[str, Any] = {}
    if transport:
        bootstrap["transport"] = transport
    if tls:
        bootstrap["tls"] = True
    if tcp_mux:
        bootstrap["tcpMux"] = True
    crypto: dict[str, Any] = {}
    if algorithms:
        crypto["algorithms"] = list(algorithms)
    if client_random:
        crypto["clientRandom"] = _b64(client_random)
    hello = {
        "bootstrap": bootstrap,
        "capabilities": {"message": {"codecs": ["json"]}, "crypto": crypto},
    }
    return _ENCODE(hello).encode()


def server_hello(algorithm: str, server_random: bytes, error: str = "") -> bytes:
    """A ServerHello frame payload; with ``error`` it is Go's DefaultServerHello + error."""
    crypto: dict[str, Any] = {}
    if algorithm:
        crypto["algorithm"] = algorithm
    if server_random:
        crypto["serverRandom"] = _b64(server_random)
    hello: dict[str, Any] = {"selected": {"message": {"codec": "json"}, "crypto": crypto}}
    if error:
        hello["error"] = error
    return _ENCODE(hello).encode()


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError(f"{where} must be a JSON object")
    return value


def _get(obj: dict[str, Any], key: str) -> Any:
    """Go's decoder matches keys case-insensitively (an exact match wins)."""
    if key in obj:
        return obj[key]
    low = key.lower()
    for k, v in obj.items():
        if k.lower() == low:
            return v
    return None


def _load(payload: bytes, name: str) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise MessageError(f"decode {name}: {exc}") from exc
    return _obj(obj, name)


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MessageError(f"{where} must be a list of strings")
    return value


def select_for_client_hello(payload: bytes) -> str:
    """Validate a ClientHello payload (ValidateClientHello) and return the algorithm frps picks.

    Raises MessageError for undecodable JSON and ValueError with Go's text for a refused hello
    (frps then answers a ServerHello carrying that text).
    """
    hello = _load(payload, "ClientHello")
    caps = _obj(_get(hello, "capabilities"), "capabilities")
    codecs = _str_list(_get(_obj(_get(caps, "message"), "message"), "codecs"), "codecs")
    if "json" not in codecs:
        raise ValueError("unsupported message codec")
    crypto = _obj(_get(caps, "crypto"), "crypto")
    random = _unb64(_get(crypto, "clientRandom"), "clientRandom")
    if len(random) != RANDOM_SIZE:
        raise ValueError(f"invalid crypto client random length {len(random)}, want {RANDOM_SIZE}")
    for alg in _str_list(_get(crypto, "algorithms"), "algorithms"):
        if alg in SUPPORTED_ALGORITHMS:
            return alg
    raise ValueError("no supported crypto algorithm")


def check_server_hello(client_payload: bytes, server_payload: bytes) -> str:
    """The algorithm frps selected; raises ValueError with Go's text for a refusal or a bad
    selection (the ServerHello's own ``error`` first)."""
    hello = _load(server_payload, "ServerHello")
    err = _get(hello, "error")
    if isinstance(err, str) and err:
        raise ValueError(err)
    selected = _obj(_get(hello, "selected"), "selected")
    codec = _get(_obj(_get(selected, "message"), "message"), "codec")
    if codec != "json":
        raise ValueError(f"unsupported selected message codec: {codec or ''}")
    crypto = _obj(_get(selected, "crypto"), "crypto")
    alg = _get(crypto, "algorithm")
    if alg not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"unknown selected crypto algorithm: {alg or ''}")
    caps = _obj(_get(_load(client_payload, "ClientHello"), "capabilities"), "capabilities")
    offered = _get(_obj(_get(caps, "crypto"), "crypto"), "algorithms")
    if alg not in _str_list(offered, "algorithms"):
        raise ValueError(f"selected crypto algorithm was not advertised by client: {alg}")
    random = _unb64(_get(crypto, "serverRandom"), "serverRandom")
    if len(random) != RANDOM_SIZE:
        raise ValueError(f"invalid crypto server random length {len(random)}, want {RANDOM_SIZE}")
    return str(alg)


def new_random() -> bytes:
    return os.urandom(RANDOM_SIZE)


# -- key schedule


def transcript_hash(client_hello_payload: bytes, server_hello_payload: bytes) -> bytes:
    h = hashlib.sha256(b"frp wire v2 crypto transcript")
    parts = ((b"client hello", client_hello_payload), (b"server hello", server_hello_payload))
    for label, part in parts:
        h.update(b"\x00" + label + b"\x00" + struct.pack(">Q", len(part)))
        h.update(part)
    return h.digest()


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.digest(salt or bytes(32), ikm, "sha256")
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
        counter += 1
    return out[:length]


def control_keys(token: bytes, algorithm: str, transcript: bytes) -> tuple[bytes, bytes]:
    """(client-to-server key, server-to-client key) for the control channel."""
    prefix = f"frp wire v2 control aead {algorithm} ".encode()
    return (
        _hkdf_sha256(token, transcript, prefix + b"client-to-server", AEAD_KEY_SIZE),
        _hkdf_sha256(token, transcript, prefix + b"server-to-client", AEAD_KEY_SIZE),
    )


# -- AEAD stream (golib crypto/aead_stream.go)


def _rotl32(v: int, c: int) -> int:
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha): the subkey XChaCha20 runs ChaCha20 with."""
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl32(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl32(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl32(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl32(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12)
        qr(1, 5, 9, 13)
        qr(2, 6, 10, 14)
        qr(3, 7, 11, 15)
        qr(0, 5, 10, 15)
        qr(1, 6, 11, 12)
        qr(2, 7, 8, 13)
        qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


class _Aead:
    """seal/open with a per-frame nonce, for both algorithms."""

    __slots__ = ("_aes", "_key", "_sub", "_sub_prefix", "nonce_size")

    def __init__(self, algorithm: str, key: bytes) -> None:
        if len(key) != AEAD_KEY_SIZE:
            raise CryptoError(f"aead key must be {AEAD_KEY_SIZE} bytes")
        self._key = key
        self._sub: ChaCha20Poly1305 | None = None
        self._sub_prefix = b""
        if algorithm == AES_256_GCM:
            self._aes: AESGCM | None = AESGCM(key)
            self.nonce_size = 12
        elif algorithm == XCHACHA20_POLY1305:
            self._aes = None
            self.nonce_size = 24
        else:
            raise CryptoError(f"unsupported aead algorithm: {algorithm}")

    def _chacha(self, nonce: bytes) -> tuple[ChaCha20Poly1305, bytes]:
        # The counter only moves the low bytes, so the subkey is recomputed on a carry only.
        if self._sub is None or nonce[:16] != self._sub_prefix:
            self._sub_prefix = nonce[:16]
            self._sub = ChaCha20Poly1305(hchacha20(self._key, self._sub_prefix))
        return self._sub, b"\x00\x00\x00\x00" + nonce[16:]

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        if self._aes is not None:
            return self._aes.encrypt(nonce, data, aad)
        aead, n = self._chacha(nonce)
        return aead.encrypt(n, data, aad)

    def open(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        try:
            if self._aes is not None:
                return self._aes.decrypt(nonce, data, aad)
            aead, n = self._chacha(nonce)
            return aead.decrypt(n, data, aad)
        except InvalidTag:
            raise CryptoError("aead stream frame failed authentication") from None


def _increment(nonce: bytearray) -> None:
    for i in range(len(nonce) - 1, -1, -1):
        nonce[i] = (nonce[i] + 1) & 0xFF
        if nonce[i]:
            return
    raise CryptoError("aead stream frame counter exhausted")


class AeadStreamWriter:
    """One direction's sender: ``seal(plaintext)`` returns the bytes to write."""

    __slots__ = ("_aead", "_nonce", "_sent", "_stream_nonce")

    def __init__(self, algorithm: str, key: bytes, nonce: bytes | None = None) -> None:
        self._aead = _Aead(algorithm, key)
        self._stream_nonce = nonce if nonce is not None else os.urandom(self._aead.nonce_size)
        self._nonce = bytearray(self._stream_nonce)
        self._sent = False

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        data = bytes(data)
        out: list[bytes] = []
        if data and not self._sent:
            out.append(self._stream_nonce)
            self._sent = True
        for i in range(0, len(data), AEAD_MAX_PAYLOAD):
            chunk = data[i : i + AEAD_MAX_PAYLOAD]
            header = struct.pack(">I", len(chunk) + AEAD_TAG_SIZE)
            out.append(header)
            out.append(self._aead.seal(bytes(self._nonce), chunk, self._stream_nonce + header))
            _increment(self._nonce)
        return b"".join(out)


class AeadStreamReader:
    """One direction's receiver: ``feed(bytes)`` returns the plaintext of complete frames."""

    __slots__ = ("_aead", "_buf", "_nonce", "_stream_nonce")

    def __init__(self, algorithm: str, key: bytes) -> None:
        self._aead = _Aead(algorithm, key)
        self._stream_nonce = b""
        self._nonce = bytearray()
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        buf = self._buf
        buf += data
        if not self._stream_nonce:
            size = self._aead.nonce_size
            if len(buf) < size:
                return b""
            self._stream_nonce = bytes(buf[:size])
            self._nonce = bytearray(self._stream_nonce)
            del buf[:size]
        out: list[bytes] = []
        while len(buf) >= 4:
            header = bytes(buf[:4])
            (length,) = struct.unpack(">I", header)
            if length < AEAD_TAG_SIZE:
                raise CryptoError(
                    f"aead stream ciphertext length {length} is smaller than overhead "
                    f"{AEAD_TAG_SIZE}"
                )
            if length > AEAD_MAX_PAYLOAD + AEAD_TAG_SIZE:
                raise CryptoError(
                    f"aead stream ciphertext length {length} exceeds limit "
                    f"{AEAD_MAX_PAYLOAD + AEAD_TAG_SIZE}"
                )
            if len(buf) < 4 + length:
                break
            ciphertext = bytes(buf[4 : 4 + length])
            del buf[: 4 + length]
            out.append(self._aead.open(bytes(self._nonce), ciphertext, self._stream_nonce + header))
            _increment(self._nonce)
        return b"".join(out)
