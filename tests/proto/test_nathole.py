"""xtcp's pure parts: NAT classification, frps's behavior choice and scoring, NatHoleResp and
NatHoleSid bytes. Byte vectors come from frp 0.70.1 (msg.WriteMsg, nathole.EncodeMessage)."""

from __future__ import annotations

import pytest

from pyfrp.proto import nathole
from pyfrp.proto.framing import MessageDecoder, encode_message
from pyfrp.proto.msg import NatHoleDetectBehavior, NatHoleResp, NatHoleSid, PortsRange

# nathole.EncodeMessage(&msg.NatHoleSid{TransactionID: "1796494586abcdef0123456789",
#   Sid: "1796494586d5a576e21df6f954", Response: true, Nonce: "000"}, []byte("s3cret"))
GO_SID = bytes.fromhex(
    "c693a248df00cad91a32c70e68950afb31e0b3078902fa84b260c767cc6a7f344230e17dd91e4dbeabb35c76"
    "8bc5e151005596ff36b2447a181fc15f64adb42beaedfbadc554cafda00a3f709abb185de8b8b64a5ea50f4b"
    "f827df6c8529aab227f94a97b452f426c29063e8626042c8bac7ba05ca07747a4717721f58c52537fa6b668c"
    "81be9528bd"
)
# msg.WriteMsg of a NatHoleResp with a mode-1 receiver behavior and one candidate port range
GO_RESP = bytes.fromhex(
    "6d00000000000000e17b227472616e73616374696f6e5f6964223a227431222c22736964223a227331222c22"
    "70726f746f636f6c223a2271756963222c2263616e6469646174655f6164647273223a5b223132372e302e30"
    "2e313a35303030222c223132372e302e302e313a35303031225d2c226465746563745f6265686176696f7222"
    "3a7b22726f6c65223a227265636569766572222c226d6f6465223a312c2274746c223a372c22726561645f74"
    "696d656f7574223a353030302c2263616e6469646174655f706f727473223a5b7b2266726f6d223a34393930"
    "2c22746f223a353031307d5d7d7d"
)
# an error response: detect_behavior is still there, as {}
GO_ERR_RESP = bytes.fromhex(
    "6d000000000000005a7b227472616e73616374696f6e5f6964223a227432222c226465746563745f62656861"
    "76696f72223a7b7d2c226572726f72223a22787463702073657276657220666f72205b6261725d20646f6573"
    "6e2774206578697374227d"
)


def test_go_sid_datagram_decodes() -> None:
    m = nathole.decode_sid(GO_SID, "s3cret")
    assert m == NatHoleSid(
        transaction_id="1796494586abcdef0123456789",
        sid="1796494586d5a576e21df6f954",
        response=True,
        nonce="000",
    )


def test_sid_datagram_under_another_key_is_rejected() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any of several decode failures
        nathole.decode_sid(GO_SID, "wrong")


def test_sid_datagram_round_trip_and_garbage() -> None:
    m = NatHoleSid(transaction_id="t", sid="s", nonce="0" * 7)
    assert nathole.decode_sid(nathole.encode_sid(m, "k"), "k") == m
    with pytest.raises(ValueError, match="too short"):
        nathole.decode_sid(b"\x00" * 10, "k")


def test_nat_hole_resp_bytes_match_go() -> None:
    resp = NatHoleResp(
        transaction_id="t1",
        sid="s1",
        protocol="quic",
        candidate_addrs=["127.0.0.1:5000", "127.0.0.1:5001"],
        detect_behavior=NatHoleDetectBehavior(
            role="receiver",
            mode=1,
            ttl=7,
            read_timeout=5000,
            candidate_ports=[PortsRange(from_=4990, to=5010)],
        ),
    )
    assert encode_message(resp) == GO_RESP
    err = NatHoleResp(transaction_id="t2", error="xtcp server for [bar] doesn't exist")
    assert encode_message(err) == GO_ERR_RESP
    decoder = MessageDecoder()
    decoder.feed(GO_RESP)
    assert decoder.next_message() == resp


EASY_T, HARD_T = "EasyNAT", "HardNAT"


@pytest.mark.parametrize(
    ("addrs", "local", "expect"),
    [
        (["1.2.3.4:5000", "1.2.3.4:5000"], [], (EASY_T, "BehaviorNoChange", 0, False, False)),
        (["1.2.3.4:5000", "1.2.3.4:5003"], [], ("HardNAT", "BehaviorPortChanged", 3, True, False)),
        (
            ["1.2.3.4:5000", "1.2.3.4:5900"],
            [],
            (HARD_T, "BehaviorPortChanged", 900, False, False),
        ),
        (["1.2.3.4:5000", "1.2.3.5:5000"], [], ("HardNAT", "BehaviorIPChanged", 0, False, False)),
        (["1.2.3.4:5000", "1.2.3.5:5001"], [], ("HardNAT", "BehaviorBothChanged", 0, False, False)),
        (
            ["1.2.3.4:5000", "1.2.3.4:5000"],
            ["1.2.3.4"],
            ("EasyNAT", "BehaviorNoChange", 0, False, True),
        ),
    ],
)
def test_classify(addrs: list[str], local: list[str], expect: tuple[object, ...]) -> None:
    f = nathole.classify(addrs, local)
    assert (
        f.nat_type,
        f.behavior,
        f.ports_difference,
        f.regular_ports_change,
        f.public_network,
    ) == expect


def test_classify_needs_two_addresses() -> None:
    with pytest.raises(ValueError, match="not enough addresses"):
        nathole.classify(["1.2.3.4:5000"], [])


EASY = nathole.NatFeature(nathole.EASY_NAT, "BehaviorNoChange")
HARD_REGULAR = nathole.NatFeature(nathole.HARD_NAT, "BehaviorPortChanged", 2, True)
HARD = nathole.NatFeature(nathole.HARD_NAT, "BehaviorBothChanged")


def test_two_easy_nats_start_with_client_sending_and_visitor_receiving_at_ttl_7() -> None:
    a = nathole.Analyzer(3600)
    mode, index, cb, vb = a.recommend("k", EASY, EASY, now=0)
    assert (mode, index) == (0, 0)
    assert cb == nathole.Behavior(nathole.SENDER)
    assert vb == nathole.Behavior(nathole.RECEIVER, ttl=7)
    # each try costs the tried behavior a point: the next attempt tries the next one
    assert a.recommend("k", EASY, EASY, now=1)[:2] == (0, 1)


def test_a_reported_success_is_tried_again_first() -> None:
    a = nathole.Analyzer(3600)
    for i in range(3):
        assert a.recommend("k", EASY, EASY, now=i)[:2] == (0, i)
    a.report_success("k", 0, 1, now=3)  # index 1 now scores +1, the best
    assert a.recommend("k", EASY, EASY, now=4)[:2] == (0, 1)


def test_public_network_client_receives() -> None:
    public = nathole.NatFeature(nathole.EASY_NAT, "BehaviorNoChange", public_network=True)
    _, index, cb, vb = nathole.Analyzer(3600).recommend("k", public, EASY)
    assert index == 1
    assert (cb.role, vb.role) == (nathole.RECEIVER, nathole.SENDER)


def test_mode_1_the_hard_nat_sends_and_the_easy_one_guesses_ports() -> None:
    # the client is the easy one: frp swaps so that the HardNAT (visitor) sends
    mode, _, cb, vb = nathole.Analyzer(3600).recommend("k", EASY, HARD_REGULAR)
    assert mode == 1
    assert vb.role == nathole.SENDER
    assert (cb.role, cb.ttl, cb.ports_range_number) == (nathole.RECEIVER, 7, 10)


def test_mode_2_the_hard_nat_listens_on_many_ports() -> None:
    mode, _, cb, vb = nathole.Analyzer(3600).recommend("k", HARD, EASY)
    assert mode == 2
    assert (cb.role, cb.listen_random_ports) == (nathole.RECEIVER, 256)
    assert (vb.role, vb.ports_random_number, vb.send_delay_ms) == (nathole.SENDER, 1000, 3000)


def test_clean_forgets_unused_pairs() -> None:
    a = nathole.Analyzer(10)
    a.recommend("old", EASY, EASY, now=0)
    a.recommend("new", EASY, EASY, now=15)
    assert a.clean(now=20) == (1, 2)
    assert list(a.records) == ["new"]


def test_range_ports_around_the_last_candidate() -> None:
    assert nathole.range_ports(["1.1.1.1:100", "1.1.1.1:5000"], 3, 10) == [
        PortsRange(from_=4992, to=5008)
    ]
    assert nathole.range_ports(["1.1.1.1:3"], 0, 10) == [PortsRange(from_=1, to=8)]
    assert nathole.range_ports(["1.1.1.1:5000"], 3, 0) == []


def test_new_response_compacts_addresses() -> None:
    resp = nathole.new_response(
        "t", "s", "quic", 0, ["a:1", "a:1", "b:2"], ["c:3", "c:3"],
        nathole.Behavior(nathole.SENDER, send_delay_ms=5000), 5000, 0,
    )  # fmt: skip
    assert resp.candidate_addrs == ["a:1", "b:2"]
    assert resp.assisted_addrs == ["c:3"]
    assert resp.detect_behavior.send_delay_ms == 5000
    assert resp.detect_behavior.read_timeout == 5000
