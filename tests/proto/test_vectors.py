"""Bytes recorded from the real Go frpc 0.65.0, read back with pyfrp's own decoders only.

tests/vectors/frpc-0.65.0.json is written by tests/vectors/capture_frpc.py, which stands in for
frps and records every byte frpc sends. Two scenarios: ``nomux`` (a control and a work TCP
connection) and ``mux`` (one yamux session: stream 1 control, stream 3 work). The script parsed
the bytes with its own, independent code; its results sit under ``expected`` and are the oracle
here.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pyfrp.proto import yamux
from pyfrp.proto.auth import privilege_key, verify_privilege_key
from pyfrp.proto.crypto import StreamDecryptor, StreamEncryptor, derive_key
from pyfrp.proto.framing import MessageDecoder, encode_message
from pyfrp.proto.msg import (
    ClientSpec,
    Login,
    LoginResp,
    Message,
    NewProxy,
    NewWorkConn,
    Ping,
    ReqWorkConn,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "frpc-0.65.0.json").read_text()
)
SCENARIOS: dict[str, Any] = VECTORS["scenarios"]
NOMUX = SCENARIOS["nomux"]
MUX = SCENARIOS["mux"]
CLASSES: dict[str, type[Message]] = {"p": NewProxy, "h": Ping, "w": NewWorkConn}
FLAGS = {"SYN": yamux.FLAG_SYN, "ACK": yamux.FLAG_ACK, "FIN": yamux.FLAG_FIN, "RST": yamux.FLAG_RST}
TYPES = {"data": 0, "window_update": 1, "ping": 2, "go_away": 3}


def conn(scenario: dict[str, Any], role: str) -> dict[str, Any]:
    (c,) = [c for c in scenario["connections"] if c["role"] == role]
    return dict(c)


def chunks(data: bytes, sizes: list[list[float]]) -> list[bytes]:
    """``data`` cut the way the recorder's recv() calls returned it."""
    out, pos = [], 0
    for _, n in sizes:
        out.append(data[pos : pos + int(n)])
        pos += int(n)
    assert pos == len(data)
    return out


def decode_all(data: bytes) -> tuple[list[Message], bytes]:
    dec = MessageDecoder()
    dec.feed(data)
    msgs = []
    while (m := dec.next_message()) is not None:
        msgs.append(m)
    return msgs, dec.take_remaining()


def expected_login(j: dict[str, Any]) -> Login:
    fields = dict(j)
    spec = ClientSpec(**fields.pop("client_spec"))
    return Login(client_spec=spec, **fields)


def expected_msg(entry: dict[str, Any]) -> Message:
    return CLASSES[entry["type"]](**entry["json"])


def check_login(raw: bytes, scenario: dict[str, Any]) -> bytes:
    """Decode the Login at the start of ``raw``, check it, and return the bytes after it."""
    dec = MessageDecoder()
    dec.feed(raw)
    login = dec.next_message()
    exp = scenario["expected"]["login"]
    assert login == expected_login(exp["json"])
    assert isinstance(login, Login)
    assert (login.version, login.os, login.user, login.pool_count) == ("0.65.0", "linux", "lab", 1)
    assert login.client_spec == ClientSpec()
    assert login.run_id == ""
    assert verify_privilege_key(scenario["token"], login.timestamp, login.privilege_key)
    assert not verify_privilege_key("wrong", login.timestamp, login.privilege_key)
    assert privilege_key(scenario["token"], login.timestamp) == login.privilege_key
    # pyfrp writes the same frame Go wrote: same keys, same order, same omissions
    frame = encode_message(login)
    assert len(frame) == 9 + exp["body_len"]
    assert raw.startswith(frame)
    return dec.take_remaining()


def check_encrypted_control(ciphertext: bytes, scenario: dict[str, Any]) -> list[Message]:
    key = derive_key(scenario["token"])
    assert key.hex() == scenario["key_hex"]
    client_iv = bytes.fromhex(scenario["client_iv_hex"])
    assert ciphertext[:16] == client_iv
    dec = StreamDecryptor(key)
    plaintext = b"".join(dec.decrypt(ciphertext[i : i + 7]) for i in range(0, len(ciphertext), 7))
    msgs, rest = decode_all(plaintext)
    assert rest == b""
    want = scenario["expected"]["control_c2s_plaintext_msgs"]
    assert Counter(map(repr, msgs)) == Counter(repr(expected_msg(e)) for e in want)
    assert NewProxy(**scenario["expected"]["new_proxy"]) in msgs
    # re-encoding and re-encrypting with frpc's IV reproduces its bytes exactly
    assert b"".join(encode_message(m) for m in msgs) == plaintext
    assert StreamEncryptor(key, iv=client_iv).encrypt(plaintext) == ciphertext
    return msgs


def check_server_bytes(raw: bytes, scenario: dict[str, Any]) -> None:
    """What the recorder answered: LoginResp in plaintext, then its IV and a ReqWorkConn."""
    dec = MessageDecoder()
    dec.feed(raw)
    assert dec.next_message() == LoginResp(version="0.65.0", run_id="0123456789abcdef")
    key = bytes.fromhex(scenario["key_hex"])
    server_iv = bytes.fromhex(scenario["server_iv_hex"])
    ciphertext = dec.take_remaining()
    assert ciphertext[:16] == server_iv
    assert decode_all(StreamDecryptor(key).decrypt(ciphertext)) == ([ReqWorkConn()], b"")
    want = bytes.fromhex(scenario["expected"]["req_work_conn_ciphertext_hex"])
    assert StreamEncryptor(key, iv=server_iv).encrypt(encode_message(ReqWorkConn())) == (
        server_iv + want
    )


def check_work_conn(raw: bytes, scenario: dict[str, Any]) -> None:
    msgs, rest = decode_all(raw)
    assert rest == b""
    assert msgs == [NewWorkConn(**scenario["expected"]["new_work_conn"])]
    assert msgs == [expected_msg(e) for e in scenario["expected"]["work_c2s_msgs"]]
    assert msgs[0] == NewWorkConn(run_id="0123456789abcdef")
    assert encode_message(msgs[0]) == raw


# --- tcpMux = false -------------------------------------------------------------------------------


def test_nomux_control_connection() -> None:
    raw = bytes.fromhex(conn(NOMUX, "control")["client_to_server_hex"])
    msgs = check_encrypted_control(check_login(raw, NOMUX), NOMUX)
    assert sorted(map(repr, msgs)) == [
        repr(
            NewProxy("lab.ssh", "tcp", use_encryption=True, use_compression=True, remote_port=6000)
        ),
        repr(Ping()),  # the first heartbeat
    ]


def test_nomux_decoded_in_the_recorded_recv_chunks() -> None:
    c = conn(NOMUX, "control")
    raw = bytes.fromhex(c["client_to_server_hex"])
    dec = MessageDecoder()
    pieces = chunks(raw, c["recv_chunks_ms_len"])
    dec.feed(pieces[0])
    assert isinstance(dec.next_message(), Login)
    assert dec.next_message() is None  # the next 16 bytes are an IV, not a frame
    assert dec.take_remaining() + b"".join(pieces[1:]) == raw[9 + 167 :]


def test_nomux_server_answer() -> None:
    check_server_bytes(bytes.fromhex(conn(NOMUX, "control")["server_to_client_hex"]), NOMUX)


def test_nomux_work_connection() -> None:
    check_work_conn(bytes.fromhex(conn(NOMUX, "work")["client_to_server_hex"]), NOMUX)


# --- tcpMux = true --------------------------------------------------------------------------------


def mux_c2s() -> tuple[bytes, list[bytes]]:
    c = conn(MUX, "yamux session")
    raw = bytes.fromhex(c["client_to_server_hex"])
    return raw, chunks(raw, c["recv_chunks_ms_len"])


def test_mux_headers_decode_as_recorded() -> None:
    raw, _ = mux_c2s()
    pos, got = 0, []
    while pos < len(raw):
        h = yamux.decode_header(raw, pos)
        got.append(h)
        pos += yamux.HEADER_SIZE + (h.length if h.type == yamux.TYPE_DATA else 0)
    assert pos == len(raw)
    want = [
        yamux.Header(0, TYPES[f["type"]], sum(FLAGS[n] for n in f["flags"]), f["sid"], f["len"])
        for f in MUX["yamux"]["client_frames"]
    ]
    assert got == want
    assert raw[:12] == bytes.fromhex("00 01 00 01 00 00 00 01 00 5c 00 00")


def test_mux_server_session_reads_frpc() -> None:
    _, pieces = mux_c2s()
    server = yamux.Session(client=False)
    events: list[yamux.Event] = []
    for piece in pieces:
        events += server.receive_data(piece)
    data: dict[int, bytearray] = defaultdict(bytearray)
    others = []
    for ev in events:
        if isinstance(ev, yamux.StreamData):
            data[ev.stream_id] += ev.data
        else:
            others.append(ev)
    assert others == [yamux.StreamOpened(1), yamux.StreamOpened(3)]
    assert sorted(data) == [1, 3]
    # our ACKs are the ones the recorder sent, with the same 6 MiB window delta
    acks = [bytes.fromhex(f["hdr"]) for f in MUX["yamux"]["server_frames"] if f["flags"] == ["ACK"]]
    assert server.data_to_send() == b"".join(acks)
    assert server.stream_count == 2

    msgs = check_encrypted_control(check_login(bytes(data[1]), MUX), MUX)
    assert [type(m) for m in msgs] == [NewProxy]
    check_work_conn(bytes(data[3]), MUX)


def test_mux_server_session_byte_at_a_time() -> None:
    raw, _ = mux_c2s()
    server = yamux.Session(client=False)
    data: dict[int, bytearray] = defaultdict(bytearray)
    for i in range(len(raw)):
        for ev in server.receive_data(raw[i : i + 1]):
            if isinstance(ev, yamux.StreamData):
                data[ev.stream_id] += ev.data
    check_login(bytes(data[1]), MUX)
    check_work_conn(bytes(data[3]), MUX)


def test_mux_client_session_reads_the_server_side() -> None:
    """A pyfrp client session opening the same streams produces frpc's SYNs and reads the answer."""
    raw, _ = mux_c2s()
    client = yamux.Session(client=True)
    assert client.open_stream() == 1
    assert client.data_to_send() == raw[:12]
    s2c = bytes.fromhex(conn(MUX, "yamux session")["server_to_client_hex"])
    # the recorder answered stream 1 before frpc opened stream 3: feed up to that point first
    ack3 = s2c.index(bytes.fromhex("0001000200000003005c0000"))
    events = client.receive_data(s2c[:ack3])
    assert events[:2] == [yamux.StreamAcked(1), yamux.StreamWindowUpdated(1)]
    stream1 = b"".join(bytes(e.data) for e in events if isinstance(e, yamux.StreamData))
    assert all(e.stream_id == 1 for e in events if isinstance(e, yamux.StreamData))
    check_server_bytes(stream1, MUX)
    assert client.open_stream() == 3
    assert client.data_to_send() == bytes.fromhex("0001000100000003005c0000")
    assert client.receive_data(s2c[ack3:]) == [yamux.StreamAcked(3), yamux.StreamWindowUpdated(3)]
    assert client.send_window(1) == yamux.FRP_MAX_WINDOW
