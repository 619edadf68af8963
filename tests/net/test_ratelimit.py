"""The bandwidth limit's token bucket and its quantity parser (frp's BandwidthQuantity)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from pyfrp.net.layer import insert_layer
from pyfrp.net.ratelimit import RateLayer, TokenBucket, bandwidth_bytes
from pyfrp.net.splice import HoldProtocol


def test_bucket_burst_then_rate() -> None:
    b = TokenBucket(1000)
    assert b.take(1000, now=0.0) == 0.0  # a second's worth of burst
    assert b.take(500, now=0.0) == pytest.approx(0.5)  # in debt: half a second
    assert b.take(0, now=0.5) == 0.0  # paid off
    assert b.take(2000, now=10.0) == pytest.approx(1.0)  # the burst never exceeds a second


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10KB", 10240), ("1MB", 1048576), ("1.5MB", 1572864), (" 2KB ", 2048), ("", 0), ("9GB", 0)],
)
def test_quantities(text: str, rate: int) -> None:
    assert bandwidth_bytes(text) == rate


class _Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.eof_at: float | None = None
        self.ended = asyncio.Event()
        self.paused = 0

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof_at = time.monotonic()
        self.ended.set()
        return True

    def pause_writing(self) -> None:
        self.paused += 1


async def _pair() -> tuple[asyncio.Transport, asyncio.Transport, _Recorder]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    ta, _ = await loop.connect_accepted_socket(HoldProtocol, a)
    far = _Recorder()
    tb, _ = await loop.connect_accepted_socket(lambda: far, b)
    return ta, tb, far


async def test_arriving_bytes_wait_for_the_bucket_and_eof_stays_behind_them() -> None:
    ta, tb, _ = await _pair()
    near = _Recorder()
    layer = insert_layer(ta, RateLayer(ta, TokenBucket(20_000)))
    layer.set_protocol(near)
    ta.resume_reading()
    start = time.monotonic()
    tb.write(b"x" * 40_000)  # twice the burst: the second half waits ~1 s
    tb.write_eof()
    await asyncio.wait_for(near.ended.wait(), 10)
    assert near.eof_at is not None
    assert near.data == b"x" * 40_000
    assert 0.8 < near.eof_at - start < 2.0
    ta.close()
    tb.close()


async def test_leaving_bytes_wait_and_pause_the_writer() -> None:
    ta, tb, far = await _pair()
    layer = insert_layer(ta, RateLayer(ta, TokenBucket(20_000)))
    near = _Recorder()
    layer.set_protocol(near)
    start = time.monotonic()
    layer.write(b"a" * 20_000)  # the burst: at once
    layer.write(b"b" * 10_000)  # half a second of debt: held, the writer paused
    layer.write_eof()  # after the held bytes
    assert near.paused == 1
    assert layer.get_write_buffer_size() >= 10_000
    await asyncio.wait_for(far.ended.wait(), 10)
    assert far.eof_at is not None
    assert far.data == b"a" * 20_000 + b"b" * 10_000
    assert 0.4 < far.eof_at - start < 1.5
    ta.close()
    tb.close()
