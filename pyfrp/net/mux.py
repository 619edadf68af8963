"""asyncio adapter for the sans-IO yamux session (pyfrp.proto.yamux).

``MuxSession`` is the protocol of the TCP/TLS transport to the peer; each yamux stream is exposed
as a ``MuxStream``, an ``asyncio.Transport``, so the same splice and message code serves raw
connections and streams alike.

Flow control is per stream, never per session:
- reading: a paused stream buffers what arrives (at most the window it granted) and grants no
  credit until its protocol resumes and consumes it; other streams keep flowing.
- writing: a write is framed at once as far as the peer's window and the session transport allow;
  the rest waits in the stream's own buffer, whose size drives the protocol's pause_writing /
  resume_writing like any transport's.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, cast

from pyfrp.errors import YamuxError
from pyfrp.net import recvbuf
from pyfrp.proto import yamux

log = logging.getLogger(__name__)

DEFAULT_HIGH_WATER = 256 * 1024
# Deferred output is written at once when it reaches this many payload bytes.
FLUSH_AT = 256 * 1024
# Go's ConnectionWriteTimeout doubles as the ping-reply timeout.
PING_TIMEOUT = 10.0


class MuxStream(asyncio.Transport):
    __slots__ = (
        "_closing",
        "_eof_pending",
        "_eof_requested",
        "_fin_sent",
        "_high",
        "_lost",
        "_low",
        "_pending",
        "_pending_size",
        "_protocol",
        "_reading_paused",
        "_recv_queue",
        "_write_paused",
        "session",
        "stream_id",
    )

    def __init__(self, session: MuxSession, stream_id: int) -> None:
        super().__init__()
        self.session = session
        self.stream_id = stream_id
        self._protocol: asyncio.BaseProtocol | None = None
        self._pending: collections.deque[bytes | memoryview] = collections.deque()
        self._pending_size = 0
        self._recv_queue: collections.deque[bytes] = collections.deque()
        self._reading_paused = False
        self._write_paused = False
        self._eof_pending = False
        self._closing = False
        self._eof_requested = False
        self._fin_sent = False
        self._lost = False
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4

    # -- transport API
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "stream_id":
            return self.stream_id
        return self.session.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost or self._eof_requested:
            return
        if not data:
            return
        if isinstance(data, bytearray):
            data = bytes(data)  # the caller may reuse it
        if not self._pending:
            n = self.session.send_stream_data(self.stream_id, data)
            if n == len(data):
                return
            data = memoryview(data)[n:]
        data = recvbuf.for_queue(data)
        self._pending.append(data)
        self._pending_size += len(data)
        if not self._write_paused and self._pending_size > self._high and self._protocol:
            self._write_paused = True
            self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Half-close: FIN once pending data is out; reading goes on until the peer's FIN."""
        if self._closing or self._lost or self._eof_requested:
            return
        self._eof_requested = True
        self._maybe_finish()

    def close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        self._maybe_finish()

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = True
        self._pending.clear()
        self._pending_size = 0
        self.session.reset_stream(self.stream_id)
        self._connection_lost(None)

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        consumed = 0
        while self._recv_queue and not self._reading_paused and not self._lost:
            data = self._recv_queue.popleft()
            consumed += len(data)
            self._protocol.data_received(data)  # type: ignore[union-attr]
        if consumed:
            self.session.consumed(self.stream_id, consumed)
        if self._eof_pending and not self._recv_queue and not self._reading_paused:
            self._eof_pending = False
            self._deliver_eof()

    def is_reading(self) -> bool:
        return not self._reading_paused

    def get_write_buffer_size(self) -> int:
        return self._pending_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        self._high, self._low = high, low

    # -- driven by MuxSession
    def _flush(self) -> None:
        """Send pending data as far as the window and the session allow."""
        pending = self._pending
        session = self.session
        while pending and not session.write_blocked:
            data = pending[0]
            n = session.send_stream_data(self.stream_id, data)
            if n == 0:
                break
            self._pending_size -= n
            if n == len(data):
                pending.popleft()
            else:
                pending[0] = memoryview(data)[n:]
        if self._write_paused and self._pending_size <= self._low and self._protocol:
            self._write_paused = False
            self._protocol.resume_writing()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._lost or self._pending:
            return
        if (self._closing or self._eof_requested) and not self._fin_sent:
            self._fin_sent = True
            self.session.close_stream(self.stream_id)
        if self._closing:
            self._connection_lost(None)

    def _data(self, data: bytes | memoryview) -> None:
        if self._lost:
            return
        if self._reading_paused or self._recv_queue:
            # A copy: a queued slice must not pin the whole receive chunk it came from.
            self._recv_queue.append(bytes(data))
            return
        if not getattr(self._protocol, "accepts_buffer", False):
            data = bytes(data)  # asyncio promises bytes; only opted-in protocols get the view
        self._protocol.data_received(data)  # type: ignore[union-attr]
        self.session.consumed(self.stream_id, len(data))

    def _ended(self) -> None:
        if self._reading_paused or self._recv_queue:
            self._eof_pending = True
        else:
            self._deliver_eof()

    def _deliver_eof(self) -> None:
        if self._lost:
            return
        keep_open = self._protocol.eof_received()  # type: ignore[union-attr]
        if not keep_open or self._fin_sent:  # FIN both ways: the stream is over
            self.close()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._recv_queue.clear()
        self.session._forget(self.stream_id)
        if self._protocol is not None:
            asyncio.get_running_loop().call_soon(self._protocol.connection_lost, exc)


class MuxSession(asyncio.BufferedProtocol):
    """A yamux session over one transport. frpc is the client (odd ids), frps the server.

    The transport reads (and under TLS decrypts) straight into a lent receive buffer
    (:mod:`pyfrp.net.recvbuf`); stream payloads are views of it."""

    def __init__(
        self,
        *,
        client: bool,
        on_stream: Callable[[MuxStream], None] | None = None,
        keepalive_interval: float = 30.0,
        max_window: int = yamux.FRP_MAX_WINDOW,
    ) -> None:
        self.core = yamux.Session(client=client, max_window=max_window)
        self.on_stream = on_stream
        self.keepalive_interval = keepalive_interval
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, MuxStream] = {}
        self.write_blocked = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ping_id = 0
        self._ping_handle: asyncio.TimerHandle | None = None
        self._ping_deadline: asyncio.TimerHandle | None = None
        self._go_away = False
        self._flush_scheduled = False
        self._unflushed = 0

    # -- protocol side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses
        self.transport = transport
        transport.set_write_buffer_limits(high=DEFAULT_HIGH_WATER * 4)
        self._schedule_ping()

    def get_buffer(self, sizehint: int) -> memoryview:
        return recvbuf.lend()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(recvbuf.filled(nbytes))

    def data_received(self, data: bytes | memoryview) -> None:
        """Process bytes from the peer; ``data`` must not change while streams hold views of it."""
        try:
            events = self.core.receive_data(data)
        except YamuxError as exc:
            log.warning("yamux session with %s: %s", self.get_extra_info("peername"), exc)
            self.core.go_away(exc.go_away_code)
            self.close()  # flushes the GoAway first
            return
        streams = self.streams
        for ev in events:
            if type(ev) is yamux.StreamData:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s._data(ev.data)
            elif type(ev) is yamux.StreamWindowUpdated:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s._flush()
            elif type(ev) is yamux.StreamOpened:
                self._accept(ev.stream_id)
            elif type(ev) is yamux.StreamEnded:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s._ended()
            elif type(ev) is yamux.StreamReset:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s._connection_lost(ConnectionResetError("stream reset by peer"))
            elif type(ev) is yamux.PongReceived:
                if self._ping_deadline is not None:
                    self._ping_deadline.cancel()
                    self._ping_deadline = None
            elif type(ev) is yamux.GoAwayReceived:
                self._go_away = True
                if ev.code != yamux.GO_AWAY_NORMAL:
                    log.warning("yamux peer sent go-away code %d", ev.code)
                    self.close()
        self._flush_out()

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.write_blocked = True

    def resume_writing(self) -> None:
        self.write_blocked = False
        for s in list(self.streams.values()):
            if s._pending:
                s._flush()
                if self.write_blocked:
                    break

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        err = exc or ConnectionResetError("yamux session closed")
        for s in list(self.streams.values()):
            s._connection_lost(err)
        self.streams.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- session API
    def open_stream(self) -> MuxStream:
        if self.transport is None or self.transport.is_closing() or self._go_away:
            raise ConnectionResetError("yamux session is closed")
        sid = self.core.open_stream()
        stream = self.streams[sid] = MuxStream(self, sid)
        self._flush_out()
        return stream

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)

    def close(self) -> None:
        if self.transport is not None:
            self._flush_now()  # a GoAway or FIN queued just before must still leave
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def is_closed(self) -> bool:
        return self.closed.done() or self.transport is None or self.transport.is_closing()

    # -- used by MuxStream
    def send_stream_data(self, stream_id: int, data: bytes | memoryview) -> int:
        if self.write_blocked:
            return 0
        n = self.core.send_data(stream_id, data)
        if n:
            self._unflushed += n
            if self._unflushed >= FLUSH_AT:  # bulk data: write now, so backpressure is prompt
                self._flush_now()
            else:
                self._flush_out()
        return n

    def consumed(self, stream_id: int, n: int) -> None:
        self.core.consumed(stream_id, n)
        self._flush_out()

    def close_stream(self, stream_id: int) -> None:
        self.core.close_stream(stream_id)
        self._flush_out()

    def reset_stream(self, stream_id: int) -> None:
        self.core.reset_stream(stream_id)
        self._flush_out()

    def _forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)

    # -- internals
    def _flush_out(self) -> None:
        # Frames queued during one pass of the event loop leave in one write: a new stream's
        # SYN and first message, or data for many streams, share a TLS record and a syscall.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        self._unflushed = 0
        bufs = self.core.buffers_to_send()
        if bufs and self.transport is not None and not self.transport.is_closing():
            if len(bufs) == 1:
                self.transport.write(bufs[0])
            else:
                self.transport.writelines(bufs)

    def _accept(self, stream_id: int) -> None:
        stream = self.streams[stream_id] = MuxStream(self, stream_id)
        if self.on_stream is None:
            stream.abort()
            return
        self.on_stream(stream)

    def _schedule_ping(self) -> None:
        if self.keepalive_interval > 0:
            loop = asyncio.get_running_loop()
            self._ping_handle = loop.call_later(self.keepalive_interval, self._send_ping)

    def _send_ping(self) -> None:
        if self.is_closed:
            return
        self._ping_id = (self._ping_id + 1) & 0xFFFFFFFF
        self.core.ping(self._ping_id)
        self._flush_out()
        if self._ping_deadline is None:
            loop = asyncio.get_running_loop()
            self._ping_deadline = loop.call_later(PING_TIMEOUT, self._ping_timed_out)
        self._schedule_ping()

    def _ping_timed_out(self) -> None:
        log.warning("yamux keepalive timeout with %s", self.get_extra_info("peername"))
        self.abort()

    def _cancel_timers(self) -> None:
        for h in (self._ping_handle, self._ping_deadline):
            if h is not None:
                h.cancel()
        self._ping_handle = self._ping_deadline = None
