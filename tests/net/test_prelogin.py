"""The bound on connections pending login (pyfrp.net.prelogin): who is closed, and when."""

from __future__ import annotations

import functools
import resource
import time

import pytest

from pyfrp.net import prelogin
from pyfrp.net.prelogin import PreLoginPool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(time, "monotonic", c)
    return c


def test_the_oldest_silent_connection_makes_room(clock: Clock) -> None:
    closed: list[int] = []
    pool = PreLoginPool(limit=3, grace=5)
    for i in range(3):
        pool.admit(i, functools.partial(closed.append, i))
        clock.now += 1
    clock.now += 5  # connection 0 has been pending 8 s
    pool.admit(3, lambda: closed.append(3))
    assert closed == [0]
    assert len(pool) == 3
    assert pool.evicted == 1


def test_a_young_burst_is_let_in_up_to_twice_the_limit(clock: Clock) -> None:
    """A legitimate burst (every connection a few ms old) is not cut below twice the limit."""
    closed: list[int] = []
    pool = PreLoginPool(limit=3, grace=5)
    for i in range(6):
        pool.admit(i, functools.partial(closed.append, i))
    assert closed == []
    pool.admit(6, lambda: closed.append(6))
    assert closed == [0]
    assert len(pool) == 6


def test_released_and_attached_connections(clock: Clock) -> None:
    closed: list[str] = []
    pool = PreLoginPool(limit=2, grace=0)
    pool.admit("a", lambda: closed.append("a-task"))
    pool.attach("a", lambda: closed.append("a-transport"))  # its protocol took the socket
    pool.admit("b", lambda: closed.append("b"))
    pool.release("b")  # logged in
    pool.release("b")  # and closed later: no error
    pool.attach("gone", lambda: closed.append("x"))  # not pending: nothing to attach
    pool.admit("c", lambda: closed.append("c"))
    pool.admit("d", lambda: closed.append("d"))
    assert closed == ["a-transport"]
    assert len(pool) == 2


def test_default_limit_follows_the_fd_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (1024, 4096))
    assert prelogin.default_limit() == 256
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (100, 4096))
    assert prelogin.default_limit() == 64
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (1 << 20, 1 << 20))
    assert prelogin.default_limit() == 4096
