"""``transport.bandwidthLimit``: a token bucket per proxy, shared by all its connections and both
directions (frp: one ``rate.Limiter(limit, burst = limit)`` wrapping each work connection's
reads and writes), applied as a Layer that delays instead of buffering.

Bytes pass at once and are debited; when the bucket goes below zero, the side that produced them
is paused until the debt is paid: reading from the lower transport (bytes arriving), or the
upper protocol's writing (bytes leaving, so a splice stops reading its other end). The average
rate is the limit; memory stays bounded by the usual flow control.
"""

from __future__ import annotations

import asyncio
import collections
import re

from pyfrp.net.layer import Layer

_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(MB|KB)\s*$")


def bandwidth_bytes(text: str) -> int:
    """frp's BandwidthQuantity: ``10KB`` = 10240 bytes a second, ``1.5MB`` = 1572864; 0 for
    "" or anything else (no limit)."""
    m = _QUANTITY.match(text)
    if m is None:
        return 0
    unit = 1024 if m.group(2) == "KB" else 1024 * 1024
    return int(float(m.group(1)) * unit)


def bucket_for(limit: str) -> TokenBucket | None:
    """A proxy's bucket (burst = one second's worth, as frp), None without a limit."""
    rate = bandwidth_bytes(limit)
    return TokenBucket(rate) if rate > 0 else None


class TokenBucket:
    """``rate`` bytes per second, at most ``burst`` saved up; the balance may go negative."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self.tokens = self.burst
        self.last: float | None = None

    def take(self, n: int, now: float) -> float:
        """Debit ``n``; the seconds until the balance is back to zero (0 if it is not below)."""
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        return -self.tokens / self.rate if self.tokens < 0 else 0.0


class RateLayer(Layer):
    """Bytes each way wait until the bucket has paid for them (frp's limit.Reader/Writer wait
    before handing bytes on). While bytes wait, the side they come from is paused, so at most
    what was in flight is held here."""

    def __init__(self, lower: asyncio.Transport, bucket: TokenBucket) -> None:
        super().__init__(lower)
        self._bucket = bucket
        self._loop = asyncio.get_running_loop()
        self._read_holds: set[str] = set()  # "rate", "upper": why the lower one is paused
        self._write_holds: set[str] = set()  # "rate", "lower": why the upper one is paused
        self._inq: collections.deque[bytes] = collections.deque()
        self._outq: collections.deque[bytes] = collections.deque()
        self._queued_out = 0
        self._in_timer: asyncio.TimerHandle | None = None
        self._out_timer: asyncio.TimerHandle | None = None
        self._eof_in = False  # the lower side ended behind queued bytes
        self._eof_out = False  # write_eof() behind queued bytes
        self._close_out = False  # close() behind queued bytes

    def decode(self, data: bytes | memoryview) -> bytes:
        # Bytes read before the layer existed (wrap_work_transport): paid for, not delayed.
        self._bucket.take(len(data), self._loop.time())
        return bytes(data)

    # -- bytes arriving
    def data_received(self, data: bytes) -> None:
        delay = self._bucket.take(len(data), self._loop.time())
        if delay <= 0 and not self._inq:
            if self._upper is not None:
                self._upper.data_received(data)  # type: ignore[attr-defined]
            return
        self._inq.append(bytes(data))
        self._hold_read("rate")
        if self._in_timer is not None:
            self._in_timer.cancel()
        self._in_timer = self._loop.call_later(delay, self._flush_in)

    def _flush_in(self) -> None:
        self._in_timer = None
        upper = self._upper
        while self._inq and upper is not None:
            upper.data_received(self._inq.popleft())  # type: ignore[attr-defined]
        if self._eof_in:
            self._eof_in = False
            if upper is not None and not upper.eof_received():  # type: ignore[attr-defined]
                self._lower.close()
        self._release_read("rate")

    def eof_received(self) -> bool | None:
        if self._inq:
            self._eof_in = True
            return True  # half open until the queued bytes are handed on
        return super().eof_received()

    def _hold_read(self, why: str) -> None:
        if not self._read_holds:
            self._lower.pause_reading()
        self._read_holds.add(why)

    def _release_read(self, why: str) -> None:
        self._read_holds.discard(why)
        if not self._read_holds and not self._lower.is_closing():
            self._lower.resume_reading()

    def pause_reading(self) -> None:
        self._hold_read("upper")

    def resume_reading(self) -> None:
        self._release_read("upper")

    def is_reading(self) -> bool:
        return not self._read_holds

    # -- bytes leaving
    def write(self, data: bytes | bytearray | memoryview) -> None:
        delay = self._bucket.take(len(data), self._loop.time())
        if delay <= 0 and not self._outq:
            self._lower.write(data)
            return
        self._outq.append(bytes(data))
        self._queued_out += len(data)
        self._hold_write("rate")
        if self._out_timer is not None:
            self._out_timer.cancel()
        self._out_timer = self._loop.call_later(delay, self._flush_out)

    def _flush_out(self) -> None:
        self._out_timer = None
        while self._outq:
            self._lower.write(self._outq.popleft())
        self._queued_out = 0
        if self._eof_out:
            self._lower.write_eof()
        if self._close_out:
            self._lower.close()
        self._release_write("rate")

    def write_eof(self) -> None:
        if self._outq:
            self._eof_out = True
        else:
            self._lower.write_eof()

    def close(self) -> None:
        if self._outq:
            self._close_out = True
        else:
            self._lower.close()

    def abort(self) -> None:
        self._cancel()
        self._lower.abort()

    def get_write_buffer_size(self) -> int:
        return self._lower.get_write_buffer_size() + self._queued_out

    def _hold_write(self, why: str) -> None:
        if not self._write_holds and self._upper is not None:
            self._upper.pause_writing()
        self._write_holds.add(why)

    def _release_write(self, why: str) -> None:
        self._write_holds.discard(why)
        if not self._write_holds and self._upper is not None:
            self._upper.resume_writing()

    def pause_writing(self) -> None:
        self._hold_write("lower")

    def resume_writing(self) -> None:
        self._release_write("lower")

    def _cancel(self) -> None:
        for timer in (self._in_timer, self._out_timer):
            if timer is not None:
                timer.cancel()
        self._in_timer = self._out_timer = None
        self._inq.clear()
        self._outq.clear()
        self._queued_out = 0

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upper is not None:  # what already arrived still goes up, then the end
            while self._inq:
                self._upper.data_received(self._inq.popleft())  # type: ignore[attr-defined]
        self._cancel()
        super().connection_lost(exc)
