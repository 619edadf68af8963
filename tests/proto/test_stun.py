"""STUN codec: RFC 5769's sample response, our server answer read back, malformed input."""

from __future__ import annotations

import pytest

from pyfrp.proto import stun

# RFC 5769 section 2.2: sample IPv4 response (SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY,
# FINGERPRINT), mapped address 192.0.2.1:32853.
RFC5769_TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96"
)
# an 8-byte body whose XOR-MAPPED-ADDRESS says 12 bytes
TRUNCATED_ATTRIBUTE = (
    bytes.fromhex("010100082112a442") + RFC5769_TID + bytes.fromhex("0020000c00010000")
)


def test_rfc5769_sample_ipv4_response() -> None:
    mapped, other = stun.parse_binding_response(RFC5769_RESPONSE, RFC5769_TID) or ((), None)
    assert mapped == ("192.0.2.1", 32853)
    assert other is None


def test_response_to_another_transaction_is_not_ours() -> None:
    assert stun.parse_binding_response(RFC5769_RESPONSE, bytes(12)) is None


def test_binding_request_bytes() -> None:
    tid = bytes(range(12))
    assert stun.binding_request(tid) == bytes.fromhex("000100002112a442") + tid


def test_server_answer_reads_back_with_other_address() -> None:
    tid = stun.new_transaction_id()
    data = stun.binding_success(tid, ("10.1.2.3", 40000), ("127.0.0.1", 3479))
    assert stun.parse_binding_response(data, tid) == (("10.1.2.3", 40000), ("127.0.0.1", 3479))


def test_rfc3489_changed_address_counts_as_other_address() -> None:
    tid = bytes(12)
    plain = bytes.fromhex("00010d9602030405")  # 2.3.4.5:3478
    data = stun.encode(
        stun.BINDING_SUCCESS,
        tid,
        [(stun.ATTR_MAPPED_ADDRESS, plain), (stun.ATTR_CHANGED_ADDRESS, plain)],
    )
    assert stun.parse_binding_response(data, tid) == (("2.3.4.5", 3478), ("2.3.4.5", 3478))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00\x01", "shorter than the STUN header"),
        (RFC5769_RESPONSE[:-2], "does not match"),
        (TRUNCATED_ATTRIBUTE, "truncated"),
        (b"\x41" + RFC5769_RESPONSE[1:], "not a STUN message"),
    ],
)
def test_malformed_messages_raise(data: bytes, why: str) -> None:
    with pytest.raises(stun.StunError, match=why):
        stun.parse_binding_response(data, RFC5769_TID)


def test_error_response_and_missing_address_raise() -> None:
    tid = bytes(12)
    with pytest.raises(stun.StunError, match="failed"):
        stun.parse_binding_response(stun.encode(stun.BINDING_ERROR, tid, []), tid)
    with pytest.raises(stun.StunError, match="no external address"):
        stun.parse_binding_response(stun.encode(stun.BINDING_SUCCESS, tid, []), tid)
