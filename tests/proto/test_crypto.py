"""AES-128-CFB stream with a lazy IV (golib crypto), checked against doc §5.1 vectors."""

from __future__ import annotations

import itertools
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from pyfrp.proto.crypto import (
    ITERATIONS,
    IV_SIZE,
    KEY_SIZE,
    SALT,
    StreamDecryptor,
    StreamEncryptor,
    derive_key,
)

IV = bytes(range(16))
PING_FRAME = bytes.fromhex("6800000000000000027b7d")  # v1 frame of an empty Ping
PING_CIPHERTEXT = bytes.fromhex("4498a24026e4cf47613434")


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given points (taken modulo len + 1, any order, repeats allowed)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def cfb128_oracle(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """CFB with full-block feedback built from raw AES blocks: keystream_i = E(c_{i-1})."""
    block = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    out = bytearray()
    feedback = iv
    for i in range(0, len(plaintext), 16):
        stream = block.update(feedback)
        chunk = bytes(p ^ s for p, s in zip(plaintext[i : i + 16], stream, strict=False))
        out += chunk
        feedback = chunk
    return bytes(out)


def test_constants() -> None:
    assert (SALT, ITERATIONS, KEY_SIZE, IV_SIZE) == (b"frp", 64, 16, 16)


@pytest.mark.parametrize(
    ("token", "key_hex"),
    [
        ("12345678", "b7eac3f66310824c114f56f8274fdfea"),
        (b"12345678", "b7eac3f66310824c114f56f8274fdfea"),
        ("", "cdc9dc4c472c37331281df4c232a8407"),
    ],
)
def test_derive_key_vectors(token: str | bytes, key_hex: str) -> None:
    assert derive_key(token) == bytes.fromhex(key_hex)


def test_derive_key_encodes_str_as_utf8_and_is_cached() -> None:
    assert derive_key("pässwörd") == derive_key("pässwörd".encode())
    before = derive_key.cache_info().hits
    derive_key("pässwörd")
    assert derive_key.cache_info().hits == before + 1


def test_ping_vector_encrypts() -> None:
    enc = StreamEncryptor(derive_key("12345678"), iv=IV)
    assert enc.encrypt(PING_FRAME) == IV + PING_CIPHERTEXT


def test_ping_vector_decrypts() -> None:
    dec = StreamDecryptor(derive_key("12345678"))
    assert dec.decrypt(IV + PING_CIPHERTEXT) == PING_FRAME


def test_is_cfb128_not_cfb8() -> None:
    key = derive_key("12345678")
    plaintext = os.urandom(100)
    got = StreamEncryptor(key, iv=IV).encrypt(plaintext)
    assert got == IV + cfb128_oracle(key, IV, plaintext)


def test_iv_sent_lazily_with_first_write_only() -> None:
    key = derive_key("t")
    enc = StreamEncryptor(key, iv=IV)
    assert enc.encrypt(b"") == b""
    assert enc.encrypt(memoryview(b"")) == b""
    first = enc.encrypt(b"ab")
    assert first[:IV_SIZE] == IV
    assert len(first) == IV_SIZE + 2
    assert enc.encrypt(b"") == b""
    assert len(enc.encrypt(bytearray(b"cd"))) == 2


def test_random_iv_by_default() -> None:
    key = derive_key("t")
    a = StreamEncryptor(key).encrypt(b"x")
    b = StreamEncryptor(key).encrypt(b"x")
    assert len(a) == len(b) == IV_SIZE + 1
    assert a[:IV_SIZE] != b[:IV_SIZE]


def test_decrypt_returns_nothing_until_iv_complete() -> None:
    key = derive_key("t")
    wire = StreamEncryptor(key, iv=IV).encrypt(b"hello")
    dec = StreamDecryptor(key)
    assert dec.decrypt(wire[:5]) == b""
    assert dec.decrypt(b"") == b""
    assert dec.decrypt(wire[5:16]) == b""
    assert dec.decrypt(memoryview(wire)[16:18]) == b"he"
    assert dec.decrypt(bytearray(wire[18:])) == b"llo"


def test_directions_are_independent() -> None:
    key = derive_key("t")
    client_out, server_out = StreamEncryptor(key), StreamEncryptor(key)
    client_in, server_in = StreamDecryptor(key), StreamDecryptor(key)
    # Both sides write before reading anything: neither waits for the other's IV.
    c2s = client_out.encrypt(b"NewProxy")
    s2c = server_out.encrypt(b"ReqWorkConn")
    assert server_in.decrypt(c2s) == b"NewProxy"
    assert client_in.decrypt(s2c) == b"ReqWorkConn"


@pytest.mark.parametrize("bad", [b"", b"k" * 15, b"k" * 17, b"k" * 32])
def test_bad_key_length(bad: bytes) -> None:
    with pytest.raises(ValueError, match=rf"16 bytes, got {len(bad)}"):
        StreamEncryptor(bad)
    with pytest.raises(ValueError, match=rf"16 bytes, got {len(bad)}"):
        StreamDecryptor(bad)


def test_bad_iv_length() -> None:
    with pytest.raises(ValueError, match=r"IV must be 16 bytes, got 8"):
        StreamEncryptor(derive_key("t"), iv=b"12345678")


@given(
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_encrypt_any_chunking_equals_whole(data: bytes, cuts: list[int]) -> None:
    key = derive_key("chunking")
    whole = StreamEncryptor(key, iv=IV).encrypt(data)
    enc = StreamEncryptor(key, iv=IV)
    pieces = b"".join(enc.encrypt(piece) for piece in split(data, cuts))
    assert pieces == whole
    assert whole == (IV + cfb128_oracle(key, IV, data) if data else b"")


@given(
    data=st.binary(max_size=2000),
    write_cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
    read_cuts=st.lists(st.integers(min_value=0, max_value=2100), max_size=20),
)
def test_decrypt_inverts_encrypt_under_any_rechunking(
    data: bytes, write_cuts: list[int], read_cuts: list[int]
) -> None:
    key = derive_key("roundtrip")
    enc = StreamEncryptor(key)
    wire = b"".join(enc.encrypt(piece) for piece in split(data, write_cuts))
    dec = StreamDecryptor(key)
    assert b"".join(dec.decrypt(piece) for piece in split(wire, read_cuts)) == data
