"""Snappy framing format (golang/snappy Writer/Reader), checked against doc §5.2 and a
pure-Python reference of Go's writer."""

from __future__ import annotations

import itertools
import random
import struct

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfrp.errors import CryptoError
from pyfrp.proto.snappy import (
    MAX_BLOCK_SIZE,
    MAX_CHUNK_LEN,
    STREAM_IDENTIFIER,
    SnappyFrameDecoder,
    SnappyFrameEncoder,
    masked_crc32c,
)

HELLO_STREAM = bytes.fromhex("ff060000734e6150705901090000bb1f1c1968656c6c6f")

# --- pure-Python oracles ------------------------------------------------------------------

_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    """Bitwise-table CRC-32C (Castagnoli, reflected); slow, for checking only."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def chunk(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "little") + body


def data_chunk(kind: int, payload: bytes, uncompressed: bytes) -> bytes:
    return chunk(kind, struct.pack("<I", mask(crc32c(uncompressed))) + payload)


def go_writer_oracle(data: bytes, first: bool) -> bytes:
    """golang/snappy encode.go Writer.write, by hand: 64 KiB slices, 1/8 rule, masked CRC."""
    out = bytearray(STREAM_IDENTIFIER if first and data else b"")
    for i in range(0, len(data), MAX_BLOCK_SIZE):
        block = data[i : i + MAX_BLOCK_SIZE]
        compressed = bytes(cramjam.snappy.compress_raw(block))
        if len(compressed) >= len(block) - len(block) // 8:
            out += data_chunk(0x01, block, block)
        else:
            out += data_chunk(0x00, compressed, block)
    return bytes(out)


def chunks_of(stream: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of every chunk in a complete stream."""
    out = []
    pos = 0
    while pos < len(stream):
        kind = stream[pos]
        length = int.from_bytes(stream[pos + 1 : pos + 4], "little")
        out.append((kind, stream[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    assert pos == len(stream)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def compressible_bytes(seed: int, size: int) -> bytes:
    """Text-like data that snappy shrinks by far more than 1/8."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(1, 12)) for _ in range(rng.randint(1, 40))]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def decode_all(pieces: list[bytes], decoder: SnappyFrameDecoder | None = None) -> bytes:
    dec = decoder or SnappyFrameDecoder()
    return b"".join(dec.decode(piece) for piece in pieces)


sizes = st.integers(min_value=0, max_value=200_000)
seeds = st.integers(min_value=0, max_value=2**32)
cut_lists = st.lists(st.integers(min_value=0, max_value=300_000), max_size=24)

# --- CRC-32C -------------------------------------------------------------------------------


def test_crc32c_oracle_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_masked_crc32c_known_values() -> None:
    assert masked_crc32c(b"123456789") == mask(0xE3069283)
    assert masked_crc32c(b"hello") == 0x191C1FBB  # bb1f1c19 little-endian in the hello vector
    assert masked_crc32c(b"") == mask(0)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, size=st.integers(min_value=0, max_value=MAX_BLOCK_SIZE))
def test_masked_crc32c_matches_oracle(seed: int, size: int) -> None:
    data = random_bytes(seed, size)
    assert masked_crc32c(data) == mask(crc32c(data))
    assert masked_crc32c(memoryview(data)) == masked_crc32c(bytearray(data))


def test_masked_crc32c_refuses_more_than_a_chunk() -> None:
    with pytest.raises(ValueError, match=r"at most 65536 bytes, got 65537"):
        masked_crc32c(bytes(MAX_BLOCK_SIZE + 1))


# --- encoder -------------------------------------------------------------------------------


def test_hello_vector() -> None:
    assert SnappyFrameEncoder().encode(b"hello") == HELLO_STREAM
    assert SnappyFrameDecoder().decode(HELLO_STREAM) == b"hello"


def test_identifier_only_once_and_not_for_empty_writes() -> None:
    enc = SnappyFrameEncoder()
    assert enc.encode(b"") == b""
    assert enc.encode(b"hello") == HELLO_STREAM
    assert enc.encode(memoryview(b"hello")) == HELLO_STREAM[len(STREAM_IDENTIFIER) :]
    assert enc.encode(bytearray()) == b""


@settings(max_examples=25, deadline=None)
@given(seed=seeds, size=sizes, compressible=st.booleans(), first=st.booleans())
def test_encoder_matches_go_writer(seed: int, size: int, compressible: bool, first: bool) -> None:
    data = compressible_bytes(seed, size) if compressible else random_bytes(seed, size)
    enc = SnappyFrameEncoder()
    if not first:
        enc.encode(b"x")
    assert enc.encode(data) == go_writer_oracle(data, first)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, size=st.integers(min_value=1, max_value=200_000))
def test_chunk_types_follow_the_one_eighth_rule(seed: int, size: int) -> None:
    for data, expected in [
        (compressible_bytes(seed, size), 0x00),
        (random_bytes(seed, size), 0x01),
    ]:
        kinds = chunks_of(SnappyFrameEncoder().encode(data))
        assert kinds[0] == (0xFF, b"sNaPpY")
        assert len(kinds) == 1 + -(-size // MAX_BLOCK_SIZE)
        for i, (kind, body) in enumerate(kinds[1:]):
            block = data[i * MAX_BLOCK_SIZE : (i + 1) * MAX_BLOCK_SIZE]
            assert body[:4] == struct.pack("<I", masked_crc32c(block))
            if len(block) >= 256:  # tiny tails may not compress
                assert kind == expected
            if kind == 0x01:
                assert body[4:] == block


# --- decoder: round trips ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=seeds,
    size=sizes,
    compressible=st.booleans(),
    write_cuts=st.lists(st.integers(min_value=0, max_value=300_000), max_size=6),
    read_cuts=cut_lists,
)
def test_roundtrip_under_any_rechunking(
    seed: int, size: int, compressible: bool, write_cuts: list[int], read_cuts: list[int]
) -> None:
    data = compressible_bytes(seed, size) if compressible else random_bytes(seed, size)
    enc = SnappyFrameEncoder()
    wire = b"".join(enc.encode(piece) for piece in split(data, write_cuts))
    assert decode_all(split(wire, read_cuts)) == data


def test_decode_byte_by_byte() -> None:
    data = random_bytes(1, 70_000) + compressible_bytes(2, 70_000)
    wire = SnappyFrameEncoder().encode(data)
    assert decode_all([wire[i : i + 1] for i in range(len(wire))]) == data


def test_decode_accepts_bytearray_and_memoryview() -> None:
    dec = SnappyFrameDecoder()
    assert dec.decode(bytearray(HELLO_STREAM[:12])) == b""
    assert dec.decode(memoryview(HELLO_STREAM)[12:]) == b"hello"


def test_decode_skips_padding_skippable_and_repeated_identifiers() -> None:
    block = compressible_bytes(3, 5000)
    compressed = bytes(cramjam.snappy.compress_raw(block))
    wire = (
        STREAM_IDENTIFIER
        + chunk(0xFE, bytes(100))
        + data_chunk(0x00, compressed, block)
        + STREAM_IDENTIFIER
        + chunk(0x80, b"skip me")
        + chunk(0xFD, b"")
        + data_chunk(0x01, b"raw", b"raw")
        + data_chunk(0x00, bytes(cramjam.snappy.compress_raw(b"")), b"")
        + data_chunk(0x01, b"", b"")
        + chunk(0xFE, bytes(MAX_CHUNK_LEN))
    )
    for cuts in ([], [7, 10, 11, 5000, 5001], list(range(0, len(wire), 999))):
        assert decode_all(split(wire, cuts)) == block + b"raw"


@settings(max_examples=20, deadline=None)
@given(seed=seeds, size=sizes, read_cuts=cut_lists)
def test_decodes_go_writer_output(seed: int, size: int, read_cuts: list[int]) -> None:
    data = compressible_bytes(seed, size)
    assert decode_all(split(go_writer_oracle(data, True), read_cuts)) == data


def test_decoder_keeps_only_an_incomplete_chunk() -> None:
    wire = SnappyFrameEncoder().encode(random_bytes(4, 3 * MAX_BLOCK_SIZE))
    dec = SnappyFrameDecoder()
    out = dec.decode(wire[:-10])
    assert out == random_bytes(4, 3 * MAX_BLOCK_SIZE)[: 2 * MAX_BLOCK_SIZE]
    assert len(dec._buf) == 4 + 4 + MAX_BLOCK_SIZE - 10  # white-box: the bound the doc promises


# --- decoder: hostile input ----------------------------------------------------------------


def expect_error(wire: bytes, match: str, *, decoder: SnappyFrameDecoder | None = None) -> None:
    """Both all at once and byte by byte must fail with the same kind of message."""
    with pytest.raises(CryptoError, match=match):
        (decoder or SnappyFrameDecoder()).decode(wire)
    with pytest.raises(CryptoError, match=match):
        decode_all([wire[i : i + 1] for i in range(len(wire))])


def test_missing_identifier() -> None:
    wire = HELLO_STREAM[len(STREAM_IDENTIFIER) :]
    expect_error(
        wire, r"must start with the stream identifier chunk \(type 0xff\), got chunk type 0x01"
    )


def test_bad_identifier() -> None:
    expect_error(chunk(0xFF, b"sNaPpX"), r"body b'sNaPpX', expected b'sNaPpY'")
    expect_error(chunk(0xFF, b"sNaPpYY"), r"length 7, expected 6")
    expect_error(STREAM_IDENTIFIER + chunk(0xFF, b"SNAPPY"), r"offset 10: body b'SNAPPY', expected")


def test_bad_crc_raw_chunk() -> None:
    wire = STREAM_IDENTIFIER + chunk(0x01, b"\x00\x00\x00\x00hello")
    expect_error(
        wire,
        r"offset 10: checksum mismatch, the chunk says 0x00000000 but its 5 data bytes "
        r"give 0x191c1fbb",
    )


def test_bad_crc_compressed_chunk() -> None:
    block = compressible_bytes(5, 4000)
    good = data_chunk(0x00, bytes(cramjam.snappy.compress_raw(block)), block)
    bad = good[:4] + bytes([good[4] ^ 1]) + good[5:]
    expect_error(STREAM_IDENTIFIER + good + bad, r"offset \d+: checksum mismatch")


def test_reserved_unskippable_chunk_type() -> None:
    expect_error(
        STREAM_IDENTIFIER + chunk(0x05, b"xyz"),
        r"reserved unskippable chunk type 0x05 \(expected 0x00, 0x01 or 0x80-0xff\)",
    )


def test_overlong_chunk_fails_at_its_header() -> None:
    header = b"\x00\xff\xff\xff"  # length 2**24 - 1
    dec = SnappyFrameDecoder()
    assert dec.decode(STREAM_IDENTIFIER) == b""
    with pytest.raises(CryptoError, match=r"length 16777215 exceeds the format's limit 76494"):
        dec.decode(header)  # before any of the body has arrived
    expect_error(STREAM_IDENTIFIER + chunk(0xFE, bytes(MAX_CHUNK_LEN + 1)), r"length 76495")


def test_smaller_max_buffer() -> None:
    dec = SnappyFrameDecoder(max_buffer=1000)
    assert dec.decode(STREAM_IDENTIFIER + chunk(0xFE, bytes(996))) == b""
    with pytest.raises(CryptoError, match=r"length 997 exceeds this decoder's limit 996"):
        dec.decode(b"\xfe\xe5\x03\x00")
    with pytest.raises(ValueError, match=r"between 10 and 76498, got 9"):
        SnappyFrameDecoder(max_buffer=9)
    with pytest.raises(ValueError, match=r"got 76499"):
        SnappyFrameDecoder(max_buffer=76499)


def test_corrupt_compressed_payload() -> None:
    # A valid length (5) followed by a copy whose offset points before the start of the output.
    payload = b"\x05" + b"\x01\x10"
    wire = STREAM_IDENTIFIER + data_chunk(0x00, payload, b"hello")
    expect_error(wire, r"offset 10: expected a valid snappy block of 3 bytes, got one that does")


def test_compressed_chunk_too_large_when_decoded() -> None:
    payload = b"\x81\x80\x04" + b"\x00" * 10  # uvarint 65537
    expect_error(
        STREAM_IDENTIFIER + chunk(0x00, b"\0\0\0\0" + payload),
        r"decompresses to 65537 bytes, at most 65536 allowed",
    )
    expect_error(
        STREAM_IDENTIFIER + chunk(0x00, b"\0\0\0\0" + b"\xff" * 10),
        r"expected a block length varint, got ffffffffffffffffffff",
    )
    expect_error(STREAM_IDENTIFIER + chunk(0x00, b"\0\0\0\0"), r"varint, got nothing")


def test_raw_chunk_too_large() -> None:
    body = bytes(4 + MAX_BLOCK_SIZE + 1)
    expect_error(STREAM_IDENTIFIER + chunk(0x01, body), r"65537 data bytes, at most 65536")


@pytest.mark.parametrize("kind", [0x00, 0x01])
def test_data_chunk_shorter_than_checksum(kind: int) -> None:
    expect_error(STREAM_IDENTIFIER + chunk(kind, b"abc"), r"length 3 is shorter than its 4-byte")


def test_errors_are_sticky() -> None:
    dec = SnappyFrameDecoder()
    with pytest.raises(CryptoError):
        dec.decode(b"\x01\x00\x00\x00")
    with pytest.raises(CryptoError, match=r"already failed: .*must start with"):
        dec.decode(HELLO_STREAM)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(0, 400), max_size=5))
def test_garbage_raises_only_crypto_error(body: bytes, cuts: list[int]) -> None:
    dec = SnappyFrameDecoder()
    try:
        decode_all(split(STREAM_IDENTIFIER + body, cuts), dec)
    except CryptoError:
        pass


@settings(max_examples=100, deadline=None)
@given(seed=seeds, size=st.integers(1, 20_000), flips=st.lists(st.integers(0), min_size=1))
def test_corrupted_stream_raises_only_crypto_error(seed: int, size: int, flips: list[int]) -> None:
    data = compressible_bytes(seed, size)
    wire = bytearray(SnappyFrameEncoder().encode(data))
    for flip in flips:
        wire[flip % len(wire)] ^= 1 << (flip // len(wire) % 8)
    try:
        out = SnappyFrameDecoder().decode(wire)
    except CryptoError:
        return
    assert len(out) <= len(data) + MAX_BLOCK_SIZE
