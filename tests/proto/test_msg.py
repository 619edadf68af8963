"""frp v1 messages (pyfrp.proto.msg): exact bytes per type, Go's JSON leniency and strictness.

The vectors are what Go's encoding/json writes for frp's structs (pkg/msg/msg.go): compact JSON,
struct field order, every field omitempty except struct-typed ones. The Login and NewProxy vectors
are byte for byte what a real frpc 0.65.0 sent (tests/vectors/frpc-0.65.0.json).
"""

from __future__ import annotations

import dataclasses
import random
import re
import struct
import types
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfrp.errors import MessageError, ProtocolError
from pyfrp.proto.framing import MessageDecoder, decode_body, encode_message, encode_udp_packet
from pyfrp.proto.msg import (
    MESSAGE_TYPES,
    ClientSpec,
    CloseProxy,
    Login,
    LoginResp,
    Message,
    NatHoleClient,
    NatHoleDetectBehavior,
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
    PortsRange,
    ReqWorkConn,
    StartWorkConn,
    UDPAddr,
    UDPPacket,
)


def frame(type_byte: bytes, body: str) -> bytes:
    raw = body.encode()
    return type_byte + struct.pack(">q", len(raw)) + raw


def decode_one(data: bytes) -> Message:
    dec = MessageDecoder()
    dec.feed(data)
    msg = dec.next_message()
    assert msg is not None
    assert dec.buffered == 0
    return msg


# --- byte vectors ---------------------------------------------------------------------------------

VECTORS: list[tuple[Message, bytes, str]] = [
    (
        Login(
            version="0.65.0",
            os="linux",
            arch="arm64",
            user="lab",
            privilege_key="998bcf00ac5279087d163db0af022c75",
            timestamp=1795902895,
            pool_count=1,
        ),
        b"o",
        '{"version":"0.65.0","os":"linux","arch":"arm64","user":"lab",'
        '"privilege_key":"998bcf00ac5279087d163db0af022c75","timestamp":1795902895,'
        '"client_spec":{},"pool_count":1}',
    ),
    (Login(), b"o", '{"client_spec":{}}'),
    (
        Login(
            version="0.61.0",
            hostname="box",
            os="linux",
            arch="amd64",
            user="u",
            privilege_key="k",
            timestamp=1,
            run_id="r",
            client_id="c",
            metas={"a": "1"},
            client_spec=ClientSpec(type="ssh-tunnel", always_auth_pass=True),
            pool_count=5,
        ),
        b"o",
        '{"version":"0.61.0","hostname":"box","os":"linux","arch":"amd64","user":"u",'
        '"privilege_key":"k","timestamp":1,"run_id":"r","client_id":"c","metas":{"a":"1"},'
        '"client_spec":{"type":"ssh-tunnel","always_auth_pass":true},"pool_count":5}',
    ),
    (
        LoginResp(version="0.65.0", run_id="0123456789abcdef"),
        b"1",
        '{"version":"0.65.0","run_id":"0123456789abcdef"}',
    ),
    (
        LoginResp(version="0.65.0", error="token in login doesn't match token from configuration"),
        b"1",
        '{"version":"0.65.0","error":"token in login doesn\'t match token from configuration"}',
    ),
    (
        NewProxy(
            proxy_name="lab.ssh",
            proxy_type="tcp",
            use_encryption=True,
            use_compression=True,
            remote_port=6000,
        ),
        b"p",
        '{"proxy_name":"lab.ssh","proxy_type":"tcp","use_encryption":true,'
        '"use_compression":true,"remote_port":6000}',
    ),
    (
        NewProxy(
            proxy_name="web",
            proxy_type="http",
            bandwidth_limit="1MB",
            bandwidth_limit_mode="server",
            group="g",
            group_key="gk",
            metas={"m": "v"},
            annotations={"an": "x"},
            custom_domains=["a.example.com", "b.example.com"],
            subdomain="sub",
            locations=["/", "/api"],
            http_user="user",
            http_pwd="pwd",
            host_header_rewrite="backend",
            headers={"X-From": "frp"},
            response_headers={"X-Resp": "1"},
            route_by_http_user="user",
        ),
        b"p",
        '{"proxy_name":"web","proxy_type":"http","bandwidth_limit":"1MB",'
        '"bandwidth_limit_mode":"server","group":"g","group_key":"gk","metas":{"m":"v"},'
        '"annotations":{"an":"x"},"custom_domains":["a.example.com","b.example.com"],'
        '"subdomain":"sub","locations":["/","/api"],"http_user":"user","http_pwd":"pwd",'
        '"host_header_rewrite":"backend","headers":{"X-From":"frp"},'
        '"response_headers":{"X-Resp":"1"},"route_by_http_user":"user"}',
    ),
    (
        NewProxy(proxy_name="s", proxy_type="stcp", sk="secret", allow_users=["*"]),
        b"p",
        '{"proxy_name":"s","proxy_type":"stcp","sk":"secret","allow_users":["*"]}',
    ),
    (
        NewProxy(proxy_name="m", proxy_type="tcpmux", multiplexer="httpconnect"),
        b"p",
        '{"proxy_name":"m","proxy_type":"tcpmux","multiplexer":"httpconnect"}',
    ),
    (
        NewProxyResp(proxy_name="lab.ssh", remote_addr=":6000"),
        b"2",
        '{"proxy_name":"lab.ssh","remote_addr":":6000"}',
    ),
    (
        NewProxyResp(proxy_name="x", error="port already used"),
        b"2",
        '{"proxy_name":"x","error":"port already used"}',
    ),
    (CloseProxy(proxy_name="lab.ssh"), b"c", '{"proxy_name":"lab.ssh"}'),
    (NewWorkConn(run_id="0123456789abcdef"), b"w", '{"run_id":"0123456789abcdef"}'),
    (
        NewWorkConn(run_id="r", privilege_key="k", timestamp=1700000000),
        b"w",
        '{"run_id":"r","privilege_key":"k","timestamp":1700000000}',
    ),
    (ReqWorkConn(), b"r", "{}"),
    (
        StartWorkConn(
            proxy_name="lab.ssh",
            src_addr="203.0.113.7",
            dst_addr="127.0.0.1",
            src_port=54321,
            dst_port=6000,
        ),
        b"s",
        '{"proxy_name":"lab.ssh","src_addr":"203.0.113.7","dst_addr":"127.0.0.1",'
        '"src_port":54321,"dst_port":6000}',
    ),
    (StartWorkConn(error="no proxy"), b"s", '{"error":"no proxy"}'),
    (
        NewVisitorConn(
            run_id="r",
            proxy_name="lab.secret",
            sign_key="abc",
            timestamp=1700000000,
            use_encryption=True,
            use_compression=True,
        ),
        b"v",
        '{"run_id":"r","proxy_name":"lab.secret","sign_key":"abc","timestamp":1700000000,'
        '"use_encryption":true,"use_compression":true}',
    ),
    (
        NewVisitorConnResp(proxy_name="lab.secret", error="x"),
        b"3",
        '{"proxy_name":"lab.secret","error":"x"}',
    ),
    (Ping(), b"h", "{}"),
    (
        Ping(privilege_key="3d8aac6cc09d79da303be74c311e5808", timestamp=1700000000),
        b"h",
        '{"privilege_key":"3d8aac6cc09d79da303be74c311e5808","timestamp":1700000000}',
    ),
    (Pong(), b"4", "{}"),
    (
        Pong(error="token in heartbeat doesn't match"),
        b"4",
        '{"error":"token in heartbeat doesn\'t match"}',
    ),
    (
        UDPPacket(content=b"\x00\x01hello", remote_addr=UDPAddr(ip="1.2.3.4", port=5353)),
        b"u",
        '{"c":"AAFoZWxsbw==","r":{"IP":"1.2.3.4","Port":5353,"Zone":""}}',
    ),
    (
        UDPPacket(
            content=b"x",
            local_addr=UDPAddr(ip="::1", port=1, zone="lo"),
            remote_addr=UDPAddr(),
        ),
        b"u",
        '{"c":"eA==","l":{"IP":"::1","Port":1,"Zone":"lo"},"r":{"IP":"","Port":0,"Zone":""}}',
    ),
    (
        NatHoleVisitor(
            transaction_id="t",
            proxy_name="p",
            pre_check=True,
            protocol="quic",
            sign_key="s",
            timestamp=2,
            mapped_addrs=["1.1.1.1:1"],
            assisted_addrs=["10.0.0.1:2"],
        ),
        b"i",
        '{"transaction_id":"t","proxy_name":"p","pre_check":true,"protocol":"quic",'
        '"sign_key":"s","timestamp":2,"mapped_addrs":["1.1.1.1:1"],'
        '"assisted_addrs":["10.0.0.1:2"]}',
    ),
    (
        NatHoleClient(transaction_id="t", proxy_name="p", sid="s", mapped_addrs=["a"]),
        b"n",
        '{"transaction_id":"t","proxy_name":"p","sid":"s","mapped_addrs":["a"]}',
    ),
    (NatHoleResp(), b"m", '{"detect_behavior":{}}'),
    (
        NatHoleResp(
            transaction_id="t",
            sid="s",
            protocol="kcp",
            candidate_addrs=["1.2.3.4:5"],
            assisted_addrs=["6.7.8.9:10"],
            detect_behavior=NatHoleDetectBehavior(
                role="sender",
                mode=2,
                ttl=7,
                send_delay_ms=10,
                read_timeout=5000,
                candidate_ports=[PortsRange(from_=1000, to=2000), PortsRange()],
                send_random_ports=3,
                listen_random_ports=4,
            ),
            error="e",
        ),
        b"m",
        '{"transaction_id":"t","sid":"s","protocol":"kcp","candidate_addrs":["1.2.3.4:5"],'
        '"assisted_addrs":["6.7.8.9:10"],"detect_behavior":{"role":"sender","mode":2,"ttl":7,'
        '"send_delay_ms":10,"read_timeout":5000,"candidate_ports":[{"from":1000,"to":2000},{}],'
        '"send_random_ports":3,"listen_random_ports":4},"error":"e"}',
    ),
    (
        NatHoleSid(transaction_id="t", sid="s", response=True, nonce="n"),
        b"5",
        '{"transaction_id":"t","sid":"s","response":true,"nonce":"n"}',
    ),
    (NatHoleReport(sid="s", success=True), b"6", '{"sid":"s","success":true}'),
    (NatHoleReport(), b"6", "{}"),
]


@pytest.mark.parametrize(("msg", "type_byte", "body"), VECTORS)
def test_encode_vector(msg: Message, type_byte: bytes, body: str) -> None:
    assert encode_message(msg) == frame(type_byte, body)


@pytest.mark.parametrize(("msg", "type_byte", "body"), VECTORS)
def test_decode_vector(msg: Message, type_byte: bytes, body: str) -> None:
    assert decode_one(frame(type_byte, body)) == msg


def test_every_type_has_a_vector() -> None:
    assert {type(m) for m, _, _ in VECTORS} == set(MESSAGE_TYPES.values())


def test_type_bytes_match_frp() -> None:
    """pkg/msg/msg.go: the peer kills the connection on any other byte, so these must be exact."""
    assert {k: v.__name__ for k, v in MESSAGE_TYPES.items()} == {
        b"o": "Login",
        b"1": "LoginResp",
        b"p": "NewProxy",
        b"2": "NewProxyResp",
        b"c": "CloseProxy",
        b"w": "NewWorkConn",
        b"r": "ReqWorkConn",
        b"s": "StartWorkConn",
        b"v": "NewVisitorConn",
        b"3": "NewVisitorConnResp",
        b"h": "Ping",
        b"4": "Pong",
        b"u": "UDPPacket",
        b"i": "NatHoleVisitor",
        b"n": "NatHoleClient",
        b"m": "NatHoleResp",
        b"5": "NatHoleSid",
        b"6": "NatHoleReport",
    }
    assert all(k == cls.TYPE for k, cls in MESSAGE_TYPES.items())


def test_real_frpc_login_frame_round_trips_byte_for_byte() -> None:
    raw = bytes.fromhex(
        "6f00000000000000a77b2276657273696f6e223a22302e36352e30222c226f73223a226c696e7578222c"
        "2261726368223a2261726d3634222c2275736572223a226c6162222c2270726976696c6567655f6b6579"
        "223a223939386263663030616335323739303837643136336462306166303232633735222c2274696d65"
        "7374616d70223a313739353930323839352c22636c69656e745f73706563223a7b7d2c22706f6f6c5f63"
        "6f756e74223a317d"
    )
    msg = decode_one(raw)
    assert isinstance(msg, Login)
    assert encode_message(msg) == raw


def test_non_ascii_is_utf8_not_escaped() -> None:
    # Go escapes only <, >, & and U+2028/9; both forms parse the same on the other side.
    msg = Login(hostname="höst<&>")
    data = encode_message(msg)
    assert "höst".encode() in data
    assert decode_one(data) == msg
    assert decode_one(frame(b"o", '{"hostname":"h\\u00f6st\\u003c\\u0026\\u003e"}')) == msg


def test_empty_bytes_are_omitted() -> None:
    """An empty UDP datagram: Go writes no "c" key at all."""
    msg = UDPPacket(remote_addr=UDPAddr(ip="1.2.3.4", port=53))
    assert encode_message(msg) == frame(b"u", '{"r":{"IP":"1.2.3.4","Port":53,"Zone":""}}')


# --- Go leniency ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_byte", "body", "expected"),
    [
        (b"w", '{"run_id":"x","future_field":[1,{"a":null}],"n":1.5}', NewWorkConn(run_id="x")),
        (
            b"w",
            '{"RUN_ID":"x","Privilege_Key":"k","TimeStamp":5}',
            NewWorkConn(run_id="x", privilege_key="k", timestamp=5),
        ),
        (
            b"u",
            '{"C":"aGk=","R":{"ip":"1.2.3.4","PORT":53,"zone":"z"}}',
            UDPPacket(content=b"hi", remote_addr=UDPAddr("1.2.3.4", 53, "z")),
        ),
        (b"u", '{"r":{"IP":"1.2.3.4"}}', UDPPacket(remote_addr=UDPAddr(ip="1.2.3.4"))),
        (b"w", '{"run_id":"a","RUN_ID":"b"}', NewWorkConn(run_id="b")),  # the last one wins
        (b"w", '{"run_id":null,"timestamp":null,"privilege_key":null}', NewWorkConn()),
        (b"o", '{"version":"1.0.0"}', Login(version="1.0.0")),  # client_spec missing
        (b"o", '{"client_spec":null,"metas":null}', Login()),
        (
            b"o",
            '{"client_spec":{"TYPE":"ssh-tunnel"}}',
            Login(client_spec=ClientSpec("ssh-tunnel")),
        ),
        (b"u", '{"c":null,"l":null,"r":null}', UDPPacket()),
        (b"p", '{"custom_domains":null,"headers":null}', NewProxy()),
        (b"p", '{"custom_domains":[],"headers":{}}', NewProxy()),
        (b"w", ' {\n  "run_id" : "x"\n}\n', NewWorkConn(run_id="x")),
        (b"w", '{"timestamp":-0}', NewWorkConn()),
        (b"w", '{"timestamp":9223372036854775807}', NewWorkConn(timestamp=2**63 - 1)),
        (b"w", '{"timestamp":-9223372036854775808}', NewWorkConn(timestamp=-(2**63))),
        (b"r", '{"anything":"goes"}', ReqWorkConn()),
        (b"4", '{"error":""}', Pong()),
        (b"o", '{"user":"\\ud83d\\ude00"}', Login(user="\U0001f600")),
    ],
    ids=[
        "unknown-keys",
        "key-case",
        "nested-key-case",
        "partial-struct",
        "duplicate-key",
        "null-scalars",
        "no-client-spec",
        "null-struct-and-map",
        "nested-struct-key-case",
        "null-pointers",
        "null-slices",
        "empty-containers",
        "whitespace",
        "minus-zero",
        "int64-max",
        "int64-min",
        "empty-struct-extra-key",
        "explicit-zero",
        "surrogate-pair-escape",
    ],
)
def test_lenient_like_go(type_byte: bytes, body: str, expected: Message) -> None:
    assert decode_one(frame(type_byte, body)) == expected


def test_lone_surrogate_escape_becomes_replacement_char_like_go() -> None:
    msg = decode_one(frame(b"p", '{"proxy_name":"a\\ud800b"}'))
    assert isinstance(msg, NewProxy)
    assert msg.proxy_name == "a\ufffdb"
    encode_message(NewProxyResp(proxy_name=msg.proxy_name))


# --- strictness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_byte", "body", "where"),
    [
        (b"w", '{"timestamp":1.5}', "timestamp"),
        (b"w", '{"timestamp":1.0}', "timestamp"),
        (b"w", '{"timestamp":1e3}', "timestamp"),
        (b"w", '{"timestamp":"5"}', "timestamp"),
        (b"w", '{"timestamp":true}', "timestamp"),
        (b"w", '{"timestamp":9223372036854775808}', "timestamp"),
        (b"w", '{"timestamp":-9223372036854775809}', "timestamp"),
        (b"w", '{"run_id":true}', "run_id"),
        (b"w", '{"run_id":5}', "run_id"),
        (b"w", '{"run_id":["x"]}', "run_id"),
        (b"w", '{"run_id":{}}', "run_id"),
        (b"p", '{"use_encryption":"true"}', "use_encryption"),
        (b"p", '{"use_encryption":1}', "use_encryption"),
        (b"p", '{"metas":[]}', "metas"),
        (b"p", '{"metas":{"a":1}}', "metas.a"),
        (b"p", '{"custom_domains":"a.example.com"}', "custom_domains"),
        (b"p", '{"custom_domains":["a",1]}', "custom_domains[1]"),
        (b"p", '{"remote_port":6000.5}', "remote_port"),
        (b"o", '{"client_spec":"x"}', "client_spec"),
        (b"o", '{"client_spec":[]}', "client_spec"),
        (b"o", '{"client_spec":{"always_auth_pass":"yes"}}', "always_auth_pass"),
        (b"o", '{"pool_count":"1"}', "pool_count"),
        (b"u", '{"c":"!!!!"}', "c"),
        (b"u", '{"c":"aGk"}', "c"),  # Go's StdEncoding wants the padding
        (b"u", '{"c":5}', "c"),
        (b"u", '{"r":"1.2.3.4:53"}', "r"),
        (b"u", '{"r":{"Port":"53"}}', "Port"),
        (b"m", '{"detect_behavior":{"candidate_ports":[{"from":"1"}]}}', "from"),
        (b"m", '{"detect_behavior":{"candidate_ports":{}}}', "candidate_ports"),
    ],
)
def test_wrong_json_types_are_message_errors(type_byte: bytes, body: str, where: str) -> None:
    with pytest.raises(
        MessageError, match=f"{MESSAGE_TYPES[type_byte].__name__}.*{re.escape(where)}"
    ):
        decode_one(frame(type_byte, body))


@pytest.mark.parametrize(
    "body",
    ['{"timestamp":' + "1" * 5000 + "}", '{"unknown":' + "1" * 5000 + "}"],
    ids=["known-field", "unknown-field"],
)
def test_huge_integer_literal_is_not_a_crash(body: str) -> None:
    """A 5000-digit number fits in a 10240-byte body; Go rejects (or, unknown, skips) it."""
    try:
        msg = decode_one(frame(b"w", body))
    except ProtocolError:
        return
    assert msg == NewWorkConn()


# --- Hypothesis: every registered type round-trips ------------------------------------------------


def values_for(hint: typing.Any) -> st.SearchStrategy[typing.Any]:
    """Field values of the given type hint, as a user of the dataclasses might set them."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | values_for(inner)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-(2**63), 2**63 - 1)
    if hint is str:
        return st.text(max_size=12)
    if hint is bytes:
        return st.binary(max_size=48)
    if origin is dict:
        return st.dictionaries(st.text(max_size=6), values_for(args[1]), max_size=3)
    if origin is list:
        return st.lists(values_for(args[0]), max_size=3)
    if dataclasses.is_dataclass(hint):
        return instances_of(typing.cast(type[typing.Any], hint))
    raise AssertionError(f"no strategy for {hint!r}")


def instances_of(cls: type[typing.Any]) -> st.SearchStrategy[typing.Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: values_for(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


any_message = st.sampled_from(sorted(MESSAGE_TYPES.values(), key=lambda c: c.TYPE)).flatmap(
    instances_of
)


@settings(derandomize=True, database=None)  # same examples on every run
@given(any_message)
def test_round_trip_every_type(msg: Message) -> None:
    data = encode_message(msg)
    assert data[:1] == msg.TYPE
    assert decode_one(data) == msg
    assert type(msg).from_json(msg.to_json()) == msg


@settings(derandomize=True, database=None)  # same examples on every run
@given(any_message)
def test_zero_fields_are_omitted(msg: Message) -> None:
    """omitempty: a key is on the wire only if its value is non-zero, or it is a struct field."""
    obj = msg.to_json()
    always = {"client_spec", "detect_behavior"}
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        key = f.metadata.get("json", f.name)
        value = getattr(msg, f.name)
        if value == b"":
            continue  # see test_empty_bytes_are_omitted
        zero = value in (None, False, 0, "", [], {})
        assert (key in obj) == (key in always or not zero), key


def test_udp_packet_fast_paths_match_the_general_codec() -> None:
    """encode_udp_packet and UDPPacket's direct decoding give what the general codec gives, for
    the shapes peers send and for the odd ones (no content, IPv6 with a zone, a key in another
    case, a null, extra keys), and reject bad base64 alike."""
    rng = random.Random(5)
    addrs = [UDPAddr("127.0.0.1", 53), UDPAddr("fe80::1", 65535, "eth0"), UDPAddr("::1", 0)]
    for size in [0, 1, 2, 3, 100, 1500, 7000]:
        for addr in addrs:
            content = rng.randbytes(size)
            frame = encode_udp_packet(content, addr)
            assert frame == encode_message(UDPPacket(content=content, remote_addr=addr))
            assert decode_body(b"u", frame[9:]) == UDPPacket(content=content, remote_addr=addr)
    odd = [
        b'{"C":"aGk=","r":{"IP":"1.2.3.4","Port":5,"Zone":""}}',
        b'{"c":"aGk=","r":null}',
        b'{"c":"aGk=","l":{"IP":"1.2.3.4","Port":5,"Zone":""},"r":{"IP":"1.2.3.4","Port":5}}',
        b'{"c":"aGk=","r":{"IP":"1.2.3.4","Port":5,"Zone":"","x":1}}',
    ]
    for body in odd:
        got = decode_body(b"u", body)
        assert isinstance(got, UDPPacket)
        assert got.content == b"hi"
    for body in [
        b'{"c":"!!","r":{"IP":"1.2.3.4","Port":5,"Zone":""}}',
        b'{"c":"aGk","r":{"IP":"1.2.3.4","Port":5,"Zone":""}}',
        b'{"c":"aGk=","r":{"IP":"1.2.3.4","Port":"5","Zone":""}}',
    ]:
        with pytest.raises(MessageError):
            decode_body(b"u", body)
