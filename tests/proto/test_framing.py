"""v1 framing (pyfrp.proto.framing): header layout, limits, incremental decoding, hostile bytes.

golib msg/json/pack.go: 1 type byte, int64 big-endian body length, JSON body; at most 10240 body
bytes; a negative length or unknown type byte kills the connection.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfrp.errors import FrameError, MessageError, ProtocolError
from pyfrp.proto.framing import MAX_BODY, MessageDecoder, encode_message
from pyfrp.proto.msg import (
    MESSAGE_TYPES,
    LoginResp,
    Message,
    NewWorkConn,
    Ping,
    Pong,
    ReqWorkConn,
    StartWorkConn,
)
from tests.proto.test_msg import any_message

PING_FRAME = bytes.fromhex("68 0000000000000002 7b7d")


def header(type_byte: bytes, length: int) -> bytes:
    return type_byte + struct.pack(">q", length)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def drain(dec: MessageDecoder) -> list[Message]:
    out = []
    while (msg := dec.next_message()) is not None:
        out.append(msg)
    return out


def ping_of_body_size(n: int) -> Ping:
    """A Ping whose JSON body is exactly ``n`` bytes (n > 20)."""
    msg = Ping(privilege_key="k" * (n - len('{"privilege_key":""}')))
    assert len(json.dumps(msg.to_json(), separators=(",", ":"))) == n
    return msg


# --- layout ---------------------------------------------------------------------------------------


def test_header_layout() -> None:
    assert encode_message(Ping()) == PING_FRAME
    assert encode_message(ReqWorkConn()) == bytes.fromhex("72 0000000000000002 7b7d")
    data = encode_message(ping_of_body_size(300))
    assert data[:9] == bytes.fromhex("68 000000000000012c")
    assert len(data) == 9 + 300


def test_empty_messages_are_braces_not_empty_bodies() -> None:
    """A zero-length body fails JSON parsing in Go; frp sends ``{}``."""
    for cls in (ReqWorkConn, Ping, Pong):
        assert encode_message(cls())[9:] == b"{}"


# --- limits ---------------------------------------------------------------------------------------


def test_body_of_exactly_the_limit_round_trips() -> None:
    msg = ping_of_body_size(MAX_BODY)
    data = encode_message(msg)
    assert data[:9] == header(b"h", 10240)
    dec = MessageDecoder()
    dec.feed(data)
    assert dec.next_message() == msg


def test_encode_refuses_a_body_over_the_limit() -> None:
    with pytest.raises(MessageError, match=r"10241 bytes.*10240"):
        encode_message(ping_of_body_size(MAX_BODY + 1))
    assert len(encode_message(ping_of_body_size(50), max_body=50)) == 59
    with pytest.raises(MessageError):
        encode_message(ping_of_body_size(51), max_body=50)


@pytest.mark.parametrize("length", [MAX_BODY + 1, 70000, 2**63 - 1])
def test_over_limit_is_rejected_from_the_header_alone(length: int) -> None:
    dec = MessageDecoder()
    dec.feed(header(b"p", length)[:8])
    assert dec.next_message() is None
    dec.feed(header(b"p", length)[8:])  # no body byte has arrived
    with pytest.raises(FrameError, match=f"{length} exceeds the limit of 10240"):
        dec.next_message()


def test_custom_decoder_limit() -> None:
    dec = MessageDecoder(max_body=30)
    dec.feed(encode_message(ping_of_body_size(30)))
    assert dec.next_message() == ping_of_body_size(30)
    dec.feed(header(b"h", 31))
    with pytest.raises(FrameError, match="31 exceeds the limit of 30"):
        dec.next_message()


@pytest.mark.parametrize("length", [-1, -(2**63)])
def test_negative_length(length: int) -> None:
    dec = MessageDecoder()
    dec.feed(header(b"w", length))
    with pytest.raises(FrameError, match="negative"):
        dec.next_message()


@pytest.mark.parametrize(
    ("first", "named"),
    [(b"F", "0x46"), (b"\x00", "0x00"), (b"\x17", "0x17"), (b"\x16", "0x16"), (b"\xff", "0xff")],
    ids=["wire-v2-magic", "yamux", "tls-marker", "tls", "high"],
)
def test_unknown_type_byte_is_fatal_at_once(first: bytes, named: str) -> None:
    """Raised from the first byte: no waiting for a header that would never make sense."""
    dec = MessageDecoder()
    dec.feed(first)
    with pytest.raises(FrameError, match=named):
        dec.next_message()


def test_every_unregistered_byte_is_refused() -> None:
    for value in range(256):
        dec = MessageDecoder()
        dec.feed(bytes([value]) + PING_FRAME[1:])
        if bytes([value]) in MESSAGE_TYPES:
            assert dec.next_message() is not None
        else:
            with pytest.raises(FrameError):
                dec.next_message()


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"run_id":}', b"[]", b'"x"', b"1", b"true", b"\xff\xfe", b'{"run_id":"\xff"}'],
    ids=["empty", "truncated", "syntax", "array", "string", "number", "bool", "binary", "bad-utf8"],
)
def test_bad_body_is_message_error(body: bytes) -> None:
    dec = MessageDecoder()
    dec.feed(header(b"w", len(body)) + body)
    with pytest.raises(MessageError):
        dec.next_message()


def test_deeply_nested_body_is_message_error() -> None:
    body = b"[" * 10000
    dec = MessageDecoder()
    dec.feed(header(b"w", len(body)) + body)
    with pytest.raises(MessageError):
        dec.next_message()


# --- incremental decoding -------------------------------------------------------------------------


def test_byte_at_a_time() -> None:
    msgs = [LoginResp(version="0.65.0", run_id="abc"), ReqWorkConn(), Ping()]
    frames = [encode_message(m) for m in msgs]
    dec = MessageDecoder()
    got = []
    for f in frames:
        for i in range(len(f)):
            dec.feed(f[i : i + 1])
            msg = dec.next_message()
            if i < len(f) - 1:
                assert msg is None  # nothing is returned before the frame's last byte
            else:
                got.append(msg)
    assert got == msgs
    assert dec.buffered == 0


def test_nothing_past_the_requested_message_is_interpreted() -> None:
    """After LoginResp the stream turns into ciphertext: it must not be parsed as a frame."""
    ciphertext = b"\x99not-a-frame" + header(b"w", -5)
    dec = MessageDecoder()
    dec.feed(encode_message(LoginResp(run_id="r")) + ciphertext)
    assert dec.next_message() == LoginResp(run_id="r")
    assert dec.buffered == len(ciphertext)
    assert dec.take_remaining() == ciphertext
    assert dec.buffered == 0
    assert dec.next_message() is None
    assert dec.take_remaining() == b""


def test_take_remaining_mid_frame() -> None:
    first = encode_message(StartWorkConn(proxy_name="p", src_port=1))
    partial = encode_message(NewWorkConn(run_id="x"))[:5]
    dec = MessageDecoder()
    dec.feed(first + partial)
    assert dec.next_message() == StartWorkConn(proxy_name="p", src_port=1)
    assert dec.next_message() is None
    assert dec.take_remaining() == partial


def test_take_remaining_before_any_message() -> None:
    dec = MessageDecoder()
    assert dec.take_remaining() == b""
    dec.feed(b"raw")
    assert dec.take_remaining() == b"raw"


def test_feed_copies_its_input() -> None:
    buf = bytearray(encode_message(NewWorkConn(run_id="abc")))
    dec = MessageDecoder()
    dec.feed(memoryview(buf))
    buf[:] = bytes(len(buf))  # a reader reusing its buffer
    assert dec.next_message() == NewWorkConn(run_id="abc")


# --- Hypothesis -----------------------------------------------------------------------------------


@settings(derandomize=True, database=None)  # same examples on every run
@given(st.lists(any_message, max_size=6), st.lists(st.integers(0, 2**16), max_size=12))
def test_any_chunking_gives_the_same_messages(msgs: list[Message], cuts: list[int]) -> None:
    data = b"".join(encode_message(m) for m in msgs)
    dec = MessageDecoder()
    got: list[Message] = []
    for piece in split(data, cuts):
        dec.feed(piece)
        got += drain(dec)
    assert got == msgs
    assert dec.take_remaining() == b""


@settings(derandomize=True, database=None)  # same examples on every run
@given(any_message, st.binary(max_size=40))
def test_take_remaining_is_exactly_the_tail(msg: Message, tail: bytes) -> None:
    dec = MessageDecoder()
    dec.feed(encode_message(msg) + tail)
    assert dec.next_message() == msg
    assert dec.take_remaining() == tail


def assert_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    dec = MessageDecoder()
    try:
        for piece in split(data, cuts):
            dec.feed(piece)
            for msg in drain(dec):
                assert isinstance(msg, Message)
    except ProtocolError:
        pass


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=64), st.lists(st.integers(0, 64), max_size=4))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    assert_only_protocol_errors(data, cuts)


_KEYS = sorted(
    {f.name for cls in MESSAGE_TYPES.values() for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    | {"c", "l", "r", "IP", "Port", "Zone", "from", "to", "type", "always_auth_pass"}
)
json_keys = st.sampled_from(_KEYS) | st.sampled_from(_KEYS).map(str.upper) | st.text(max_size=4)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(json_keys, children, max_size=4)
    ),
    max_leaves=12,
)
json_bodies = st.dictionaries(json_keys, json_values, max_size=5) | json_values


@settings(max_examples=300, derandomize=True, database=None)
@given(
    st.sampled_from(sorted(MESSAGE_TYPES)),
    json_bodies,
    st.lists(st.integers(0, 200), max_size=3),
)
def test_hostile_json_bodies_raise_only_protocol_errors(
    type_byte: bytes, value: typing.Any, cuts: list[int]
) -> None:
    body = json.dumps(value).encode()
    assert_only_protocol_errors(header(type_byte, len(body)) + body, cuts)
