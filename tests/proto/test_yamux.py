"""Tests for pyfrp.proto.yamux: byte vectors, two engines talking, re-chunking, hostile input."""

from __future__ import annotations

import itertools
import struct
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfrp.errors import YamuxError
from pyfrp.proto.yamux import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    FRP_MAX_WINDOW,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    HEADER_SIZE,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    Event,
    GoAwayReceived,
    Header,
    PingReceived,
    PongReceived,
    Session,
    StreamAcked,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamWindowUpdated,
    decode_header,
    encode_header,
)

FRP_DELTA = FRP_MAX_WINDOW - INITIAL_WINDOW  # 6029312 = 0x5C0000


def hdr(type_: int, flags: int, stream_id: int, length: int) -> bytes:
    return struct.pack(">BBHII", 0, type_, flags, stream_id, length)


def data_frame(stream_id: int, payload: bytes, flags: int = 0) -> bytes:
    return hdr(TYPE_DATA, flags, stream_id, len(payload)) + payload


def syn(stream_id: int, delta: int = 0) -> bytes:
    return hdr(TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, delta)


def split_frames(buf: bytes) -> list[tuple[Header, bytes]]:
    """Decode a whole byte string of frames (test helper; the engine never does this)."""
    frames = []
    pos = 0
    while pos < len(buf):
        h = decode_header(buf, pos)
        pos += HEADER_SIZE
        n = h.length if h.type == TYPE_DATA else 0
        frames.append((h, buf[pos : pos + n]))
        pos += n
    return frames


def collect(events: list[Event]) -> tuple[dict[int, bytes], list[Event]]:
    """Per-stream concatenated data and the list of all other events."""
    data: dict[int, bytearray] = defaultdict(bytearray)
    other: list[Event] = []
    for ev in events:
        if isinstance(ev, StreamData):
            data[ev.stream_id] += ev.data
        else:
            other.append(ev)
    return {k: bytes(v) for k, v in data.items()}, other


class Pair:
    """A client and a server Session joined back to back, with no event loop."""

    def __init__(self, **kwargs: int) -> None:
        self.client = Session(client=True, **kwargs)
        self.server = Session(client=False, **kwargs)

    def to_server(self) -> list[Event]:
        return self.server.receive_data(self.client.data_to_send())

    def to_client(self) -> list[Event]:
        return self.client.receive_data(self.server.data_to_send())

    def open(self) -> int:
        sid = self.client.open_stream()
        assert self.to_server() == [StreamOpened(sid)]
        assert self.to_client() == [StreamAcked(sid), StreamWindowUpdated(sid)]
        return sid


# --- byte vectors ---------------------------------------------------------------------------------


def test_first_frame_of_go_frpc():
    client = Session(client=True)
    assert client.open_stream() == 1
    assert client.data_to_send() == bytes.fromhex("00 01 00 01 00 00 00 01 00 5c 00 00")
    assert client.data_to_send() == b""


def test_server_acks_with_same_delta():
    server = Session(client=False)
    events = server.receive_data(bytes.fromhex("00 01 00 01 00 00 00 01 00 5c 00 00"))
    assert events == [StreamOpened(1)]
    assert server.data_to_send() == bytes.fromhex("00 01 00 02 00 00 00 01 00 5c 00 00")
    assert server.is_stream_open(1)
    assert server.stream_count == 1


def test_old_frp_window_sends_zero_delta():
    client = Session(client=True, max_window=INITIAL_WINDOW)
    client.open_stream()
    assert client.data_to_send() == bytes.fromhex("00 01 00 01 00 00 00 01 00 00 00 00")


def test_stream_ids_by_role():
    client = Session(client=True)
    server = Session(client=False)
    assert [client.open_stream() for _ in range(3)] == [1, 3, 5]
    assert [server.open_stream() for _ in range(3)] == [2, 4, 6]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (lambda s: s.ping(0), "00 02 00 01 00000000 00000000"),
        (lambda s: s.ping(0x01020304), "00 02 00 01 00000000 01020304"),
        (lambda s: s.go_away(), "00 03 00 00 00000000 00000000"),
        (lambda s: s.go_away(GO_AWAY_PROTOCOL_ERROR), "00 03 00 00 00000000 00000001"),
        (lambda s: s.close_stream(1), "00 01 00 04 00000001 00000000"),
        (lambda s: s.reset_stream(1), "00 01 00 08 00000001 00000000"),
        (lambda s: s.send_data(1, b"hello"), "00 00 00 00 00000001 00000005 68656c6c6f"),
    ],
    ids=["ping", "ping-opaque", "go-away", "go-away-1", "fin", "rst", "data"],
)
def test_frame_bytes(action, expected):
    client = Session(client=True)
    client.open_stream()
    client.data_to_send()
    action(client)
    assert client.data_to_send() == bytes.fromhex(expected)


def test_ping_reply_echoes_opaque():
    server = Session(client=False)
    events = server.receive_data(bytes.fromhex("00 02 00 01 00000000 0000002a"))
    assert events == [PingReceived(42)]
    assert server.data_to_send() == bytes.fromhex("00 02 00 02 00000000 0000002a")


def test_header_vectors():
    raw = bytes.fromhex("00 01 00 01 00 00 00 01 00 5c 00 00")
    assert decode_header(raw) == Header(0, TYPE_WINDOW_UPDATE, FLAG_SYN, 1, FRP_DELTA)
    assert encode_header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, FRP_DELTA) == raw
    assert decode_header(b"xx" + raw, 2) == decode_header(raw)
    assert decode_header(memoryview(bytearray(raw))).stream_id == 1


@given(
    type_=st.integers(0, 3),
    flags=st.integers(0, 0xFFFF),
    stream_id=st.integers(0, 2**32 - 1),
    length=st.integers(0, 2**32 - 1),
)
def test_header_round_trip(type_, flags, stream_id, length):
    raw = encode_header(type_, flags, stream_id, length)
    assert len(raw) == HEADER_SIZE
    assert decode_header(raw) == Header(0, type_, flags, stream_id, length)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (bytes.fromhex("01 00 0000 00000001 00000000"), "yamux version 1, expected 0"),
        (bytes.fromhex("00 04 0000 00000001 00000000"), "yamux frame type 4, expected 0 to 3"),
        (bytes(11), "yamux header of 11 bytes, expected 12"),
    ],
)
def test_decode_header_rejects(raw, message):
    with pytest.raises(YamuxError, match=message) as info:
        decode_header(raw)
    assert info.value.go_away_code == GO_AWAY_PROTOCOL_ERROR


# --- two engines ----------------------------------------------------------------------------------


def test_data_both_ways():
    pair = Pair()
    sid = pair.open()
    assert pair.client.send_data(sid, b"ping?") == 5
    assert collect(pair.to_server()) == ({sid: b"ping?"}, [])
    assert pair.server.send_data(sid, bytearray(b"pong!")) == 5
    assert collect(pair.to_client()) == ({sid: b"pong!"}, [])


def test_data_may_follow_syn_before_ack():
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.send_data(sid, b"early")
    events = pair.to_server()
    assert events[0] == StreamOpened(sid)
    assert collect(events) == ({sid: b"early"}, [StreamOpened(sid)])


def test_send_window_before_and_after_ack():
    pair = Pair()
    sid = pair.client.open_stream()
    assert pair.client.send_window(sid) == INITIAL_WINDOW
    payload = bytes(300_000)
    assert pair.client.send_data(sid, payload) == INITIAL_WINDOW
    assert pair.client.send_window(sid) == 0
    assert pair.client.send_data(sid, payload) == 0
    data, _ = collect(pair.to_server())
    assert len(data[sid]) == INITIAL_WINDOW
    assert pair.to_client() == [StreamAcked(sid), StreamWindowUpdated(sid)]
    assert pair.client.send_window(sid) == FRP_DELTA


def test_frames_split_at_max_frame():
    client = Session(client=True, max_frame=100_000)
    sid = client.open_stream()
    client.data_to_send()
    payload = bytes(range(256)) * 1000  # 256000 bytes
    assert client.send_data(sid, payload) == len(payload)
    frames = split_frames(client.data_to_send())
    assert [h.length for h, _ in frames] == [100_000, 100_000, 56_000]
    assert all(h.type == TYPE_DATA and h.flags == 0 and h.stream_id == sid for h, _ in frames)
    assert b"".join(body for _, body in frames) == payload


def test_buffers_to_send_joins_small_pieces_and_passes_large_payloads_as_views():
    client = Session(client=True)
    a, b = client.open_stream(), client.open_stream()
    big = bytes(range(256)) * 400  # 102400 bytes: past the join threshold
    assert client.send_data(a, b"hi") == 2
    assert client.send_data(b, big) == len(big)
    client.close_stream(a)
    bufs = client.buffers_to_send()
    assert client.buffers_to_send() == []
    # The same bytes as one joined write would be...
    expected = (
        syn(a, FRP_DELTA) + syn(b, FRP_DELTA) + data_frame(a, b"hi")
        + data_frame(b, big) + hdr(TYPE_WINDOW_UPDATE, FLAG_FIN, a, 0)
    )  # fmt: skip
    assert b"".join(bufs) == expected
    # ...cut into: the small frames topped up with the payload's start to one 16 KiB TLS record,
    # the rest of the payload (a view of the caller's bytes, not a copy), and the FIN.
    assert [len(x) for x in bufs] == [16384, len(expected) - 16384 - 12, 12]
    assert isinstance(bufs[1], memoryview)
    assert bufs[1].obj is big


def test_send_data_copies_writable_buffers_only():
    client = Session(client=True)
    sid = client.open_stream()
    client.data_to_send()
    writable = bytearray(b"w" * 40000)
    readonly = memoryview(bytearray(b"r" * 40000)).toreadonly()  # the owner's promise: unchanged
    client.send_data(sid, writable)
    client.send_data(sid, readonly)
    writable[:] = b"X" * 40000  # the caller reuses its buffer at once
    bufs = client.buffers_to_send()
    assert b"".join(bufs) == data_frame(sid, b"w" * 40000) + data_frame(sid, b"r" * 40000)
    assert any(isinstance(x, memoryview) and x.obj is readonly.obj for x in bufs)


def test_window_exhausted_and_refilled_by_consumed():
    pair = Pair()
    sid = pair.open()
    assert pair.client.send_window(sid) == FRP_MAX_WINDOW
    chunk = b"x" * FRP_MAX_WINDOW
    assert pair.client.send_data(sid, chunk + b"more") == FRP_MAX_WINDOW
    assert pair.client.send_window(sid) == 0
    data, _ = collect(pair.to_server())
    assert len(data[sid]) == FRP_MAX_WINDOW

    half = FRP_MAX_WINDOW // 2
    pair.server.consumed(sid, half - 1)
    assert pair.server.data_to_send() == b""  # below the threshold: batched
    pair.server.consumed(sid, 1)
    out = pair.server.data_to_send()
    assert out == encode_header(TYPE_WINDOW_UPDATE, 0, sid, half)
    assert pair.client.receive_data(out) == [StreamWindowUpdated(sid)]
    assert pair.client.send_window(sid) == half
    assert pair.client.send_data(sid, b"more") == 4

    pair.server.consumed(sid, half)  # the rest of the first batch
    with pytest.raises(ValueError, match="only 0 are delivered"):
        pair.server.consumed(sid, 1)
    with pytest.raises(ValueError, match="expected n >= 0"):
        pair.server.consumed(sid, -1)


def test_consumed_on_unknown_stream_is_ignored():
    session = Session(client=False)
    session.consumed(7, 10)
    assert session.data_to_send() == b""


def test_fin_both_ways_frees_stream():
    pair = Pair()
    sid = pair.open()
    pair.client.close_stream(sid)
    pair.client.close_stream(sid)  # idempotent
    assert pair.client.send_window(sid) == 0
    with pytest.raises(ValueError, match="after close_stream"):
        pair.client.send_data(sid, b"late")
    assert pair.to_server() == [StreamEnded(sid)]
    assert pair.client.is_stream_open(sid)
    assert pair.server.is_stream_open(sid)
    # half-closed: the server can still send to the client
    assert pair.server.send_data(sid, b"reply") == 5
    pair.server.close_stream(sid)
    assert not pair.server.is_stream_open(sid)
    assert collect(pair.to_client()) == ({sid: b"reply"}, [StreamEnded(sid)])
    assert not pair.client.is_stream_open(sid)
    assert pair.client.stream_count == pair.server.stream_count == 0
    pair.client.close_stream(sid)  # unknown now: no-op
    assert pair.client.data_to_send() == b""


def test_fin_crossing_frees_both():
    pair = Pair()
    sid = pair.open()
    pair.client.close_stream(sid)
    pair.server.close_stream(sid)
    assert pair.to_server() == [StreamEnded(sid)]
    assert pair.to_client() == [StreamEnded(sid)]
    assert pair.client.stream_count == pair.server.stream_count == 0


def test_rst_frees_at_once():
    pair = Pair()
    sid = pair.open()
    pair.server.reset_stream(sid)
    assert not pair.server.is_stream_open(sid)
    pair.server.reset_stream(sid)  # unknown now: no-op
    assert pair.to_client() == [StreamReset(sid)]
    assert not pair.client.is_stream_open(sid)
    assert pair.client.send_window(sid) == 0
    with pytest.raises(ValueError, match="not open"):
        pair.client.send_data(sid, b"x")


def test_frames_after_reset_are_dropped():
    pair = Pair()
    sid = pair.open()
    pair.client.send_data(sid, b"in flight")
    pair.client.close_stream(sid)
    pair.client.ping(1)
    pair.server.reset_stream(sid)
    # data and FIN for the reset stream are dropped without error, and framing stays intact
    assert pair.to_server() == [PingReceived(1)]
    assert pair.server.data_to_send() == encode_header(
        TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0
    ) + encode_header(TYPE_PING, FLAG_ACK, 0, 1)


def test_dropped_payload_split_across_calls_keeps_framing():
    server = Session(client=False)
    server.receive_data(syn(1))
    server.reset_stream(1)
    blob = data_frame(1, b"z" * 1000) + hdr(TYPE_PING, FLAG_SYN, 0, 5)
    events: list[Event] = []
    for i in range(0, len(blob), 7):
        events += server.receive_data(blob[i : i + 7])
    assert events == [PingReceived(5)]


def test_ping_pong():
    pair = Pair()
    pair.client.ping(7)
    assert pair.to_server() == [PingReceived(7)]
    assert pair.to_client() == [PongReceived(7)]


def test_go_away_received_blocks_new_streams():
    pair = Pair()
    sid = pair.open()
    pair.server.go_away()
    assert pair.to_client() == [GoAwayReceived(GO_AWAY_NORMAL)]
    with pytest.raises(YamuxError, match="GoAway") as info:
        pair.client.open_stream()
    assert info.value.go_away_code == GO_AWAY_NORMAL
    assert pair.client.send_data(sid, b"still fine") == 10  # existing streams keep working


def test_local_go_away_refuses_incoming_streams():
    pair = Pair()
    pair.server.go_away()
    assert pair.to_client() == [GoAwayReceived(GO_AWAY_NORMAL)]
    server = Session(client=False)
    server.go_away()
    server.data_to_send()
    assert server.receive_data(syn(1) + data_frame(1, b"abc")) == []
    assert server.data_to_send() == encode_header(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0)
    assert server.stream_count == 0
    assert server.receive_data(data_frame(1, b"more")) == []  # refused stream: dropped


def test_flags_on_data_frames():
    client = Session(client=True)
    sid = client.open_stream()
    client.data_to_send()
    # the server ACKs with its first data frame, and a later data frame carries FIN
    events = client.receive_data(data_frame(sid, b"ab", FLAG_ACK) + data_frame(sid, b"c", FLAG_FIN))
    assert [type(e) for e in events] == [StreamAcked, StreamData, StreamData, StreamEnded]
    assert collect(events)[0] == {sid: b"abc"}


def test_fin_on_data_frame_waits_for_last_payload_byte():
    server = Session(client=False)
    server.receive_data(syn(1))
    frame = data_frame(1, b"hello", FLAG_FIN)
    assert server.receive_data(frame[:14]) == [StreamData(1, b"he")]
    assert server.receive_data(frame[14:]) == [StreamData(1, b"llo"), StreamEnded(1)]


def test_rst_on_data_frame_discards_payload():
    server = Session(client=False)
    server.receive_data(syn(1))
    events = server.receive_data(data_frame(1, b"gone", FLAG_RST) + hdr(TYPE_PING, FLAG_ACK, 0, 3))
    assert events == [StreamReset(1), PongReceived(3)]


def test_syn_on_data_frame_opens_stream():
    server = Session(client=False)
    events = server.receive_data(data_frame(3, b"hi", FLAG_SYN))
    assert events == [StreamOpened(3), StreamData(3, b"hi")]
    assert server.data_to_send() == encode_header(TYPE_WINDOW_UPDATE, FLAG_ACK, 3, FRP_DELTA)


def test_out_of_order_syns_are_accepted():
    # Go may send the SYNs of two concurrent Opens in either order
    server = Session(client=False)
    assert server.receive_data(syn(3) + syn(1)) == [StreamOpened(3), StreamOpened(1)]


def test_local_reset_mid_payload_discards_rest():
    server = Session(client=False)
    server.receive_data(syn(1))
    frame = data_frame(1, b"abcdef", FLAG_FIN)
    assert server.receive_data(frame[:15]) == [StreamData(1, b"abc")]
    server.reset_stream(1)
    assert server.receive_data(frame[15:] + hdr(TYPE_PING, FLAG_ACK, 0, 1)) == [PongReceived(1)]


def test_stream_data_is_a_view_of_the_input():
    server = Session(client=False)
    server.receive_data(syn(1))
    chunk = data_frame(1, b"payload")
    (event,) = server.receive_data(chunk)
    assert isinstance(event, StreamData)
    assert isinstance(event.data, memoryview)
    assert event.data.obj is chunk


def test_send_data_does_not_copy_bytes_but_copies_mutable_buffers():
    client = Session(client=True)
    sid = client.open_stream()
    client.data_to_send()
    buf = bytearray(b"abc")
    client.send_data(sid, buf)
    buf[:] = b"XYZ"
    assert client.data_to_send()[HEADER_SIZE:] == b"abc"
    client.send_data(sid, memoryview(b"defg")[1:3])
    assert client.data_to_send()[HEADER_SIZE:] == b"ef"
    assert client.send_data(sid, b"") == 0
    assert client.data_to_send() == b""


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_window"):
        Session(client=True, max_window=1000)
    with pytest.raises(ValueError, match="max_frame"):
        Session(client=True, max_frame=0)
    session = Session(client=True)
    with pytest.raises(ValueError, match="32 bits"):
        session.ping(2**32)
    with pytest.raises(ValueError, match="32 bits"):
        session.go_away(-1)


# --- re-chunking ----------------------------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.just(0), st.just(b"")),
        st.tuples(st.just("send"), st.integers(0, 7), st.binary(min_size=1, max_size=300)),
        st.tuples(st.just("big"), st.integers(0, 7), st.integers(1, 70_000).map(bytes)),
        st.tuples(st.just("close"), st.integers(0, 7), st.just(b"")),
        st.tuples(st.just("reset"), st.integers(0, 7), st.just(b"")),
        st.tuples(st.just("ping"), st.integers(0, 2**32 - 1), st.just(b"")),
    ),
    max_size=30,
)


def _traffic(ops: list[tuple[str, int, bytes]]) -> bytes:
    """The bytes a client Session emits for a script of operations."""
    client = Session(client=True, max_frame=4096)
    opened: list[int] = []
    out = bytearray()
    for op, arg, payload in ops:
        sid = opened[arg % len(opened)] if opened else 0
        if op == "open":
            opened.append(client.open_stream())
        elif op == "ping":
            client.ping(arg)
        elif opened and client.send_window(sid) and op in ("send", "big"):
            client.send_data(sid, payload)
        elif opened and op == "close":
            client.close_stream(sid)
        elif opened and op == "reset":
            client.reset_stream(sid)
        out += client.data_to_send()
    return bytes(out)


def _feed(chunks: list[bytes]) -> tuple[dict[int, bytes], list[Event]]:
    server = Session(client=False)
    events: list[Event] = []
    for chunk in chunks:
        events += server.receive_data(chunk)
    return collect(events)


@settings(max_examples=150, deadline=None)
@given(ops=_ops, cuts=st.lists(st.integers(0, 10**6), max_size=40))
def test_any_chunking_gives_same_events(ops, cuts):
    blob = _traffic(ops)
    points = sorted({c % (len(blob) + 1) for c in cuts})
    bounds = [0, *points, len(blob)]
    chunks = [blob[a:b] for a, b in itertools.pairwise(bounds)]
    assert _feed(chunks) == _feed([blob])


def test_byte_at_a_time_gives_same_events():
    ops = [
        ("open", 0, b""),
        ("send", 0, b"first"),
        ("open", 0, b""),
        ("big", 1, bytes(10_000)),
        ("ping", 77, b""),
        ("close", 0, b""),
        ("reset", 1, b""),
    ]
    blob = _traffic(ops)
    data, other = _feed([blob[i : i + 1] for i in range(len(blob))])
    assert (data, other) == _feed([blob])
    assert data == {1: b"first", 3: bytes(10_000)}
    assert other == [
        StreamOpened(1),
        StreamOpened(3),
        PingReceived(77),
        StreamEnded(1),
        StreamReset(3),
    ]


# --- hostile input --------------------------------------------------------------------------------

HOSTILE = [
    pytest.param(
        {},
        b"\x03" + syn(1)[1:],
        "yamux version 3, expected 0",
        id="version",
    ),
    pytest.param({}, b"\x00\x07" + syn(1)[2:], "yamux frame type 7, expected 0 to 3", id="type-7"),
    pytest.param(
        {},
        data_frame(9, b"abcd"),
        "data frame for stream 9, which the peer never opened",
        id="never-opened",
    ),
    pytest.param(
        {},
        syn(1) + hdr(TYPE_WINDOW_UPDATE, 0, 2, 100),
        "window update frame for stream 2, which we never opened",
        id="never-opened-our-parity",
    ),
    pytest.param(
        {"max_window": INITIAL_WINDOW},
        syn(5) + hdr(TYPE_DATA, 0, 5, 300_000),
        "data frame of 300000 bytes exceeds receive window 262144 on stream 5",
        id="window-overrun",
    ),
    pytest.param(
        {"max_window": INITIAL_WINDOW},
        syn(1) + data_frame(1, bytes(INITIAL_WINDOW - 10)) + data_frame(1, bytes(11)),
        "data frame of 11 bytes exceeds receive window 10 on stream 1",
        id="window-overrun-cumulative",
    ),
    pytest.param({}, syn(1) + syn(1), "SYN for stream 1, which is already open", id="dup-syn"),
    pytest.param(
        {},
        syn(2),
        "SYN for stream 2, expected an odd id from the yamux client",
        id="wrong-parity",
    ),
    pytest.param({}, data_frame(0, b"x"), "data frame on stream 0", id="stream-0"),
    pytest.param(
        {},
        syn(1) + hdr(TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0) + data_frame(1, b"late"),
        "data frame of 4 bytes on stream 1 after the peer's FIN",
        id="data-after-fin",
    ),
    pytest.param(
        {},
        syn(1) + hdr(TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0) * 2,
        "second FIN on stream 1",
        id="second-fin",
    ),
]


@pytest.mark.parametrize(("kwargs", "blob", "message"), HOSTILE)
def test_hostile_input(kwargs, blob, message):
    server = Session(client=False, **kwargs)
    with pytest.raises(YamuxError, match=message) as info:
        server.receive_data(blob)
    assert info.value.go_away_code == GO_AWAY_PROTOCOL_ERROR
    # the session is dead from now on, even for valid input
    with pytest.raises(YamuxError, match="already failed") as again:
        server.receive_data(hdr(TYPE_PING, FLAG_SYN, 0, 1))
    assert again.value.go_away_code == GO_AWAY_PROTOCOL_ERROR
    with pytest.raises(YamuxError):
        server.open_stream()
    server.go_away(info.value.go_away_code)  # the adapter can still say why it hangs up
    assert server.data_to_send().endswith(encode_header(TYPE_GO_AWAY, 0, 0, 1))


@pytest.mark.parametrize(("kwargs", "blob", "message"), HOSTILE)
def test_hostile_input_byte_at_a_time(kwargs, blob, message):
    server = Session(client=False, **kwargs)
    with pytest.raises(YamuxError, match=message):  # noqa: PT012
        for i in range(len(blob)):
            server.receive_data(blob[i : i + 1])


def test_wrong_parity_for_server_side_client():
    client = Session(client=True)
    with pytest.raises(YamuxError, match="expected an even id from the yamux server"):
        client.receive_data(syn(3))


def _error_code(session: Session, *chunks: bytes) -> int | None:
    """Feed chunks; the GoAway code of the YamuxError raised, or None. Any other error escapes."""
    try:
        for chunk in chunks:
            session.receive_data(chunk)
    except YamuxError as exc:
        return exc.go_away_code
    return None


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=200))
def test_garbage_raises_only_yamux_error(blob):
    for client in (True, False):
        session = Session(client=client, max_window=INITIAL_WINDOW)
        assert _error_code(session, blob) in (None, GO_AWAY_PROTOCOL_ERROR)


_frames = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.integers(0, 15),
        st.integers(0, 6),
        st.integers(0, 40),
        st.binary(max_size=40),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(frames=_frames, cut=st.integers(0, 1000))
def test_structured_garbage_raises_only_yamux_error(frames, cut):
    blob = b"".join(hdr(t, f, s, n) + payload for t, f, s, n, payload in frames)
    for client in (True, False):
        session = Session(client=client, max_window=INITIAL_WINDOW)
        assert _error_code(session, blob[:cut], blob[cut:]) in (None, GO_AWAY_PROTOCOL_ERROR)
