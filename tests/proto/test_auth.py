"""frp token auth (pyfrp.proto.auth): privilege_key = md5hex(token + decimal timestamp)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfrp.proto.auth import privilege_key, verify_privilege_key

KEY_12345678 = "3d8aac6cc09d79da303be74c311e5808"
KEY_EMPTY = "24920decf83f6960b80f737a28eeafc1"


@pytest.mark.parametrize(
    ("token", "timestamp", "key"),
    [
        ("12345678", 1700000000, KEY_12345678),
        ("", 1700000000, KEY_EMPTY),
        # captured from frpc 0.65.0 (tests/vectors/frpc-0.65.0.json)
        ("tok123", 1795902895, "998bcf00ac5279087d163db0af022c75"),
        ("tok123", 1795902898, "33e27137509fd1fe0480aedabb2383ba"),
    ],
)
def test_vectors(token: str, timestamp: int, key: str) -> None:
    assert privilege_key(token, timestamp) == key
    assert verify_privilege_key(token, timestamp, key)


@pytest.mark.parametrize(
    ("token", "timestamp", "key"),
    [
        ("12345678", 1700000001, KEY_12345678),  # another timestamp
        ("12345679", 1700000000, KEY_12345678),  # another token
        ("12345678", 1700000000, KEY_12345678.upper()),  # Go compares the exact string
        ("12345678", 1700000000, KEY_12345678[:-1]),
        ("12345678", 1700000000, KEY_12345678 + "0"),
        ("12345678", 1700000000, ""),
        ("", 1700000000, ""),
        ("12345678", 1700000000, "é" * 32),
    ],
)
def test_verify_rejects(token: str, timestamp: int, key: str) -> None:
    assert not verify_privilege_key(token, timestamp, key)


def test_zero_timestamp_is_hashed_as_zero() -> None:
    """omitempty drops timestamp 0 on the wire; frps then verifies against "0"."""
    assert privilege_key("t", 0) == hashlib.md5(b"t0").hexdigest()


def test_token_is_utf8() -> None:
    assert privilege_key("pässwörd€", 5) == hashlib.md5("pässwörd€5".encode()).hexdigest()


def test_verify_rejects_a_key_with_a_lone_surrogate() -> None:
    """JSON "\\ud800" decodes to a lone surrogate; the check must say no, not raise."""
    assert verify_privilege_key("12345678", 1700000000, "\ud800") is False


@settings(derandomize=True, database=None)  # same examples on every run
@given(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1))
def test_key_shape_and_self_verification(token: str, timestamp: int) -> None:
    key = privilege_key(token, timestamp)
    assert len(key) == 32
    assert key == key.lower()
    int(key, 16)
    assert verify_privilege_key(token, timestamp, key)
    assert not verify_privilege_key(token + "x", timestamp, key)


def test_same_secret_compares_any_text() -> None:
    from pyfrp.proto.auth import same_secret

    assert same_secret("pa55", "pa55")
    assert not same_secret("pa55", "pa56")
    assert not same_secret("", "x")
    assert not same_secret("\udcff", "x")  # undecodable bytes from the wire do not raise
