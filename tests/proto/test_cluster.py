"""The supervisor/worker datagram codec (pyfrp.workers): byte vectors and what it refuses."""

from __future__ import annotations

import pytest

from pyfrp.errors import FrameError
from pyfrp.proto.cluster import MAX_DATAGRAM, MAX_JSON, decode, encode


def test_a_message_and_its_bytes_as_on_the_socket() -> None:
    datagram = encode({"op": "conn", "to": 1, "kind": "work"}, b"\x00\x01GET")
    assert datagram == b'\x00\x00\x00\x22{"op":"conn","to":1,"kind":"work"}\x00\x01GET'
    assert decode(datagram) == ({"op": "conn", "to": 1, "kind": "work"}, b"\x00\x01GET")


def test_a_message_without_bytes() -> None:
    datagram = b'\x00\x00\x00\x0b{"op":"hi"}'
    assert encode({"op": "hi"}) == datagram
    assert decode(datagram) == ({"op": "hi"}, b"")


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\x00\x00\x00",
        b"\x00\x00\x00\x10{}",  # length past the end
        b"\x00\x01\x00\x01" + b"x" * 70000,  # JSON longer than MAX_JSON
        b"\x00\x00\x00\x03{x}",  # not JSON
        b"\x00\x00\x00\x02[]",  # not an object
        b'\x00\x00\x00\x0a{"op": 1}',  # op not a string
        b"\x00\x00\x00\x02{}",  # no op
        b"\x00\x00\x00\x04\xff\xfe{}",  # not UTF-8
    ],
)
def test_malformed_datagrams_are_frame_errors(datagram: bytes) -> None:
    with pytest.raises(FrameError):
        decode(datagram)


def test_too_large_to_send() -> None:
    with pytest.raises(ValueError, match="too large"):
        encode({"op": "conn"}, b"x" * MAX_DATAGRAM)
    with pytest.raises(ValueError, match="too large"):
        encode({"op": "x", "pad": "y" * MAX_JSON})
    assert decode(encode({"op": "conn"}, b"x" * (MAX_DATAGRAM - 100)))[1] == b"x" * (
        MAX_DATAGRAM - 100
    )
