"""Wire protocol v2 codec against byte vectors printed by frp 0.70.1's own Go code
(pkg/proto/wire, pkg/msg/wire_v2.go, pkg/util/net.NewAEADCryptoReadWriter)."""

from __future__ import annotations

import pytest

from pyfrp.errors import CryptoError, FrameError
from pyfrp.proto import wire2
from pyfrp.proto.msg import Login, NewWorkConn, UDPPacket

LOGIN_FRAME = bytes.fromhex(
    "001000000000008a00017b2276657273696f6e223a22302e37302e31222c22686f73746e616d65223a226822"
    "2c2275736572223a2275222c2270726976696c6567655f6b6579223a226b222c2274696d657374616d70223a"
    "313730303030303030302c2272756e5f6964223a22616263222c22636c69656e745f73706563223a7b7d2c22"
    "706f6f6c5f636f756e74223a317d"
)
NEW_WORK_CONN_FRAME = bytes.fromhex("001000000000001200067b2272756e5f6964223a22616263227d")
UDP_FRAME = bytes.fromhex("001000000000000e000d7b2263223a2261476b3d227d")
CLIENT_HELLO_FRAME = bytes.fromhex(
    "00010000000000d97b22626f6f747374726170223a7b227472616e73706f7274223a22746370222c22746370"
    "4d7578223a747275657d2c226361706162696c6974696573223a7b226d657373616765223a7b22636f646563"
    "73223a5b226a736f6e225d7d2c2263727970746f223a7b22616c676f726974686d73223a5b226165732d3235"
    "362d67636d222c227863686163686132302d706f6c7931333035225d2c22636c69656e7452616e646f6d223a"
    "2245524552455245524552455245524552455245524552455245524552455245524552455245524552455245"
    "3d227d7d7d"
)
SERVER_HELLO_FRAME = bytes.fromhex(
    "000200000000008c7b2273656c6563746564223a7b226d657373616765223a7b22636f646563223a226a736f"
    "6e227d2c2263727970746f223a7b22616c676f726974686d223a226165732d3235362d67636d222c22736572"
    "76657252616e646f6d223a224969496949694969496949694969496949694969496949694969496949694969"
    "49694969496949694969493d227d7d7d"
)
SERVER_HELLO_ERROR = bytes.fromhex(
    "7b2273656c6563746564223a7b226d657373616765223a7b22636f646563223a226a736f6e227d2c22637279"
    "70746f223a7b7d7d2c226572726f72223a226e6f20737570706f727465642063727970746f20616c676f7269"
    "74686d227d"
)
TRANSCRIPT = bytes.fromhex("1b49ac9dd694ae8550d8bf82902b5ef3eabd6404b9fa373cc1bd5553bd9669eb")
# Go client writing "hello control" then "second frame!" with token "secret-token".
AEAD_C2S = {
    "aes-256-gcm": "0adf0d2968872c77a8d709900000001d7dea397b9fbe7e03f3244455c55e6a13350842b69c3b95"
    "8fd27c3d5e960000001d9041fa19b4fc85d548807e454b8193b2a8844abf967af360becfe1e493",
    "xchacha20-poly1305": "6cad766159c6fba1ed4b9721629d6d6e4ff0285bf1f7bf270000001db81e67026fcaba"
    "b31b1b71b7494749e289e3983a846d0bb0fe6171866d0000001de8b4ca8207fe06e11a1177e5f2ac4257fa468a64"
    "cfc3194796bc33cb15",
}
# Go server writing "pong" with an empty token.
AEAD_S2C_EMPTY = {
    "aes-256-gcm": "1ec335ec0a6cce20702925b5000000143c61a9e732b04eaa078a98acfddd90c7b87cf027",
    "xchacha20-poly1305": "aae5d2f19bbaecbae55a5fbfb5c4beae8df650e37e833f4100000014f2597ee179bef0"
    "24e86b39bca454e7bf64ca9431",
}


def test_magic_is_seven_bytes_no_v1_type_starts_with_it() -> None:
    assert wire2.MAGIC == b"FRP\x00\x02\r\n"


def test_message_frames_match_go() -> None:
    login = Login(
        version="0.70.1", hostname="h", user="u", run_id="abc", pool_count=1,
        timestamp=1700000000, privilege_key="k",
    )  # fmt: skip
    assert wire2.encode_message(login) == LOGIN_FRAME
    assert wire2.encode_message(NewWorkConn(run_id="abc")) == NEW_WORK_CONN_FRAME
    assert wire2.encode_message(UDPPacket(content=b"hi")) == UDP_FRAME


def test_decoder_reads_frames_byte_by_byte_and_keeps_the_rest() -> None:
    dec = wire2.FrameDecoder()
    out = []
    for b in LOGIN_FRAME + NEW_WORK_CONN_FRAME + b"raw":
        dec.feed(bytes([b]))
        msg = dec.next_message()
        if msg is not None:
            out.append(msg)
        if len(out) == 2:
            break
    assert isinstance(out[0], Login)
    assert out[0].privilege_key == "k"
    assert out[1] == NewWorkConn(run_id="abc")
    dec.feed(b"raw")
    assert dec.take_remaining() == b"raw"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\x00\x10\x00\x01\x00\x00\x00\x00", "unsupported frame flags: 1"),
        (b"\x00\x10\x00\x00\x00\x01\x00\x01", "exceeds limit 65536"),
        (b"\x00\x10\x00\x00\x00\x00\x00\x02\x00\x63", "unknown v2 message type 99"),
        (b"\x00\x10\x00\x00\x00\x00\x00\x01\x00", "payload too short"),
        (b"\x00\x01\x00\x00\x00\x00\x00\x00", "unexpected frame type 1"),
    ],
)
def test_bad_frames_are_errors(data: bytes, text: str) -> None:
    dec = wire2.FrameDecoder(data)
    with pytest.raises(FrameError, match=text):
        dec.next_message()


def test_hellos_match_go_and_transcript() -> None:
    ch = wire2.client_hello(b"\x11" * 32, transport="tcp", tcp_mux=True)
    assert wire2.encode_frame(wire2.FRAME_CLIENT_HELLO, ch) == CLIENT_HELLO_FRAME
    sh = wire2.server_hello("aes-256-gcm", b"\x22" * 32)
    assert wire2.encode_frame(wire2.FRAME_SERVER_HELLO, sh) == SERVER_HELLO_FRAME
    assert wire2.server_hello("", b"", error="no supported crypto algorithm") == SERVER_HELLO_ERROR
    assert wire2.transcript_hash(ch, sh) == TRANSCRIPT
    assert wire2.select_for_client_hello(ch) == "aes-256-gcm"
    assert wire2.check_server_hello(ch, sh) == "aes-256-gcm"


def test_hello_refusals_carry_go_text() -> None:
    with pytest.raises(ValueError, match="no supported crypto algorithm"):
        wire2.select_for_client_hello(wire2.client_hello(b"\x11" * 32, algorithms=("rot13",)))
    with pytest.raises(ValueError, match="invalid crypto client random length 3, want 32"):
        wire2.select_for_client_hello(wire2.client_hello(b"abc"))
    ch = wire2.client_hello(b"\x11" * 32, algorithms=("aes-256-gcm",))
    sh = wire2.server_hello("xchacha20-poly1305", b"\x22" * 32)
    with pytest.raises(ValueError, match="not advertised by client"):
        wire2.check_server_hello(ch, sh)
    with pytest.raises(ValueError, match=r"^no supported crypto algorithm$"):
        wire2.check_server_hello(ch, SERVER_HELLO_ERROR)


@pytest.mark.parametrize("alg", ["aes-256-gcm", "xchacha20-poly1305"])
def test_aead_stream_reads_go_and_writes_the_same_bytes(alg: str) -> None:
    c2s, _ = wire2.control_keys(b"secret-token", alg, TRANSCRIPT)
    go = bytes.fromhex(AEAD_C2S[alg])
    reader = wire2.AeadStreamReader(alg, c2s)
    got = b"".join(reader.feed(go[i : i + 5]) for i in range(0, len(go), 5))
    assert got == b"hello controlsecond frame!"
    nonce_size = 12 if alg == "aes-256-gcm" else 24
    writer = wire2.AeadStreamWriter(alg, c2s, nonce=go[:nonce_size])
    assert writer.seal(b"hello control") + writer.seal(b"second frame!") == go
    _, s2c = wire2.control_keys(b"", alg, TRANSCRIPT)
    assert wire2.AeadStreamReader(alg, s2c).feed(bytes.fromhex(AEAD_S2C_EMPTY[alg])) == b"pong"


def test_aead_tampering_and_wrong_direction_fail() -> None:
    c2s, s2c = wire2.control_keys(b"secret-token", "aes-256-gcm", TRANSCRIPT)
    go = bytearray(bytes.fromhex(AEAD_C2S["aes-256-gcm"]))
    with pytest.raises(CryptoError, match="authentication"):
        wire2.AeadStreamReader("aes-256-gcm", s2c).feed(bytes(go))
    go[20] ^= 1
    with pytest.raises(CryptoError, match="authentication"):
        wire2.AeadStreamReader("aes-256-gcm", c2s).feed(bytes(go))
    with pytest.raises(CryptoError, match="exceeds limit"):
        wire2.AeadStreamReader("aes-256-gcm", c2s).feed(bytes(12) + b"\x00\x02\x00\x00")


def test_hchacha20_rfc_vector() -> None:
    # draft-irtf-cfrg-xchacha-03 section 2.2.1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    assert wire2.hchacha20(key, nonce).hex() == (
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    )
