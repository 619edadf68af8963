"""The short fuzzing run, in the default suite: every target (tests/fuzz/targets.py) gets random
bytes and mutated seeds from hypothesis. A failure here is a crasher: add its bytes to
test_crashers.py and fix the parser. ``PYFRP_FUZZ_PROFILE=fuzz-long`` runs 100x more examples;
the real long run is ``python3 -m tests.fuzz.run``."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import TARGETS, Target

settings.register_profile(
    "fuzz-ci",
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("fuzz-long", settings.get_profile("fuzz-ci"), max_examples=12000)
PROFILE = settings.get_profile(os.environ.get("PYFRP_FUZZ_PROFILE", "fuzz-ci"))

NAMES = sorted(TARGETS)
SEEDS = {name: TARGETS[name].seeds() for name in NAMES}

_edit = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]),
    st.floats(0, 1),
    st.binary(min_size=1, max_size=8),
)


@st.composite
def mutated_seed(draw: st.DrawFn, target: Target) -> bytes:
    buf = bytearray(draw(st.sampled_from(SEEDS[target.name])))
    for op, where, piece in draw(st.lists(_edit, min_size=1, max_size=5)):
        pos = int(where * len(buf))
        if op == "flip" and buf:
            buf[min(pos, len(buf) - 1)] ^= piece[0] or 1
        elif op == "set":
            buf[pos : pos + len(piece)] = piece
        elif op == "insert":
            buf[pos:pos] = piece
        elif op == "delete":
            del buf[pos : pos + piece[0] % 16 + 1]
        elif op == "truncate":
            del buf[pos:]
        elif op == "dup":
            buf[pos:pos] = buf[pos : pos + piece[0] % 64 + 1]
    return bytes(buf[: target.max_len])


@pytest.mark.parametrize("name", NAMES)
def test_seeds_are_accepted(name: str) -> None:
    """The seeds are valid input: the targets run them without a crash."""
    for seed in SEEDS[name]:
        TARGETS[name].run(seed)


@pytest.mark.parametrize("name", NAMES)
def test_random_bytes(name: str) -> None:
    target = TARGETS[name]

    @PROFILE
    @given(st.binary(max_size=min(target.max_len, 1024)))
    def check(data: bytes) -> None:
        target.run(data)

    check()


@pytest.mark.parametrize("name", NAMES)
def test_mutated_seeds(name: str) -> None:
    target = TARGETS[name]

    @PROFILE
    @given(mutated_seed(target))
    def check(data: bytes) -> None:
        target.run(data)

    check()
