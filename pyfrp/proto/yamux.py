"""yamux sessions, sans-IO (hashicorp/yamux spec.md, as frp runs it through fatedier/yamux).

``Session`` is the whole protocol engine of one multiplexed connection: feed it the bytes read from
the socket with ``receive_data()`` and act on the events it returns; call ``open_stream()``,
``send_data()``, ``consumed()``, ``close_stream()``, ``reset_stream()``, ``ping()`` and
``go_away()`` for what the application wants; then write ``data_to_send()`` to the socket. It does
no IO, keeps no clock and never logs. Timers (keepalive pings, open and close timeouts) belong to
the adapter.
"""

# Theory of operation
# -------------------
#
# Frames. Every frame starts with a 12-byte header: version (always 0), type, flags, stream id and
# a 32-bit length. Only Data frames carry a payload ("length" bytes of it). For WindowUpdate the
# length is a window delta, for Ping an opaque value echoed back, for GoAway a reason code. Ping
# and GoAway belong to the session (stream 0). The SYN/ACK/FIN/RST flags work the same on Data
# and WindowUpdate frames (fatedier/yamux session.go handleStreamMessage).
#
# Zero copy. The parser never collects payload. When a header announces N payload bytes, the next
# N input bytes are handed out as ``StreamData`` memoryview slices of whatever chunk they arrived
# in: several events when the frame is split across ``receive_data`` calls. Only a header split
# across calls is buffered (at most 11 bytes). On output, ``send_data`` keeps references to
# read-only payloads; ``buffers_to_send`` joins the small pieces (headers, control frames) and
# leaves large payloads as those views, for a vectored write.
#
# Stream states (stream.go). The Go states map onto three booleans of ``_Stream``:
#
#     Go state              ours     acked   local_closed   remote_closed
#     SYNSent               True     False   False          False
#     Established           -        True    False          False
#     LocalClose            -        -       True           False
#     RemoteClose           -        -       False          True
#     Closed, Reset         (removed from the table)
#
# There is no SYNReceived: a peer's SYN is ACKed at once, so an accepted stream starts out
# established. A stream leaves the table when both FINs have passed (either order) or when an RST
# is sent or received. From then on frames for its id are dropped in silence, as Go drops frames
# for unknown streams: they are ordinary races. A frame for an id that was never opened is
# different (wrong id arithmetic on the peer's side), so it is a protocol error here.
#
# Ordering within a frame matches readData in stream.go: ACK and RST act first, then the payload
# is delivered, and a FIN riding on a Data frame is reported only after its last payload byte.
#
# Flow control. Both directions of a stream start with the 256 KiB window the spec fixes. The
# opener's SYN and the acceptor's ACK each carry a delta that raises the window the sender of the
# frame will accept to ``max_window`` (6 MiB in frp since v0.50). Because this engine queues that
# delta at once, each stream's receive window is ``max_window`` from birth. The send window grows
# by every WindowUpdate length received and shrinks by every Data payload byte sent;
# ``send_data`` never exceeds it. Credit returns to the peer only when the application reports,
# through ``consumed()``, that it has used delivered bytes, and only in steps of at least half the
# window, like Go's sendWindowUpdate. The adapter gets backpressure per stream by calling
# ``consumed()`` late, and never has to stop reading the shared socket.
#
# Errors. Anything the peer gets wrong raises ``YamuxError`` from ``receive_data``. The error
# carries the GoAway code to send. The session is then dead: every later ``receive_data`` raises
# again. Mistakes of the local caller (sending on a closed stream, consuming more than was
# delivered) raise ``ValueError``.

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeAlias

from pyfrp.errors import YamuxError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "FLAG_ACK",
    "FLAG_FIN",
    "FLAG_RST",
    "FLAG_SYN",
    "FRP_MAX_WINDOW",
    "GO_AWAY_INTERNAL_ERROR",
    "GO_AWAY_NORMAL",
    "GO_AWAY_PROTOCOL_ERROR",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "TYPE_DATA",
    "TYPE_GO_AWAY",
    "TYPE_PING",
    "TYPE_WINDOW_UPDATE",
    "Event",
    "GoAwayReceived",
    "Header",
    "PingReceived",
    "PongReceived",
    "Session",
    "StreamAcked",
    "StreamData",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "StreamWindowUpdated",
    "decode_header",
    "encode_header",
]

HEADER_SIZE = 12

TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3

FLAG_SYN = 1
FLAG_ACK = 2
FLAG_FIN = 4
FLAG_RST = 8

GO_AWAY_NORMAL = 0
GO_AWAY_PROTOCOL_ERROR = 1
GO_AWAY_INTERNAL_ERROR = 2

INITIAL_WINDOW = 256 * 1024  # const.go initialStreamWindow, fixed by the spec
FRP_MAX_WINDOW = 6 * 1024 * 1024  # frp client/connector.go MaxStreamWindowSize since v0.50
DEFAULT_MAX_FRAME = 256 * 1024
# buffers_to_send: output pieces shorter than this are joined; longer ones leave as they are.
_JOIN_BELOW = 32 * 1024
_RECORD = 16 * 1024  # TLS's largest record payload

_HEADER = struct.Struct(">BBHII")
_MAX_U32 = 0xFFFF_FFFF
_TYPE_NAMES = ("data", "window update", "ping", "go away")


@dataclass(frozen=True, slots=True)
class Header:
    """One decoded 12-byte frame header."""

    version: int
    type: int
    flags: int
    stream_id: int
    length: int


def encode_header(type: int, flags: int, stream_id: int, length: int) -> bytes:
    """The 12 header bytes of a version-0 frame."""
    return _HEADER.pack(0, type, flags, stream_id, length)


def decode_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> Header:
    """Decode the header at ``buf[offset:offset + 12]``.

    Raises YamuxError (protocol error) for a short buffer, a version other than 0 or a type over 3.
    """
    available = len(buf) - offset
    if offset < 0 or available < HEADER_SIZE:
        raise YamuxError(f"yamux header of {max(available, 0)} bytes, expected {HEADER_SIZE}")
    version, type_, flags, stream_id, length = _HEADER.unpack_from(buf, offset)
    _check_version_and_type(version, type_)
    return Header(version, type_, flags, stream_id, length)


def _check_version_and_type(version: int, type_: int) -> None:
    if version != 0:
        raise YamuxError(f"yamux version {version}, expected 0")
    if type_ > TYPE_GO_AWAY:
        raise YamuxError(f"yamux frame type {type_}, expected 0 to 3")


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream (SYN). Its ACK is already queued."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAcked:
    """The peer ACKed a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamData:
    """Payload bytes of one Data frame, or of the part of it that has arrived so far.

    ``data`` is usually a memoryview over the bytes passed to ``receive_data``. Call
    ``Session.consumed()`` once the application has used them, or the peer runs out of window.
    """

    stream_id: int
    data: memoryview | bytes


@dataclass(frozen=True, slots=True)
class StreamWindowUpdated:
    """Our send window on the stream grew: queued data may be flushed with ``send_data``."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer sent FIN: no more data will arrive on the stream. Sending may continue."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer sent RST. The stream is gone in both directions."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged us. The reply is already queued."""

    opaque: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The peer answered a ``Session.ping(opaque)``."""

    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer sent GoAway: no new streams. Code 0 is a normal shutdown; 1 and 2 end it."""

    code: int


Event: TypeAlias = (
    StreamOpened
    | StreamAcked
    | StreamData
    | StreamWindowUpdated
    | StreamEnded
    | StreamReset
    | PingReceived
    | PongReceived
    | GoAwayReceived
)


# --- session --------------------------------------------------------------------------------------


class _Stream:
    """Per-stream state; see the table in the theory of operation."""

    __slots__ = (
        "acked",
        "id",
        "local_closed",
        "ours",
        "pending_credit",
        "recv_window",
        "remote_closed",
        "send_window",
    )

    def __init__(self, stream_id: int, *, ours: bool, recv_window: int) -> None:
        self.id = stream_id
        self.ours = ours
        self.acked = not ours
        self.local_closed = False
        self.remote_closed = False
        self.send_window = INITIAL_WINDOW
        self.recv_window = recv_window  # bytes the peer may still send us
        self.pending_credit = 0  # consumed by the application, not yet granted back


class Session:
    """One yamux session. ``client=True`` for frpc's side (odd stream ids), False for frps."""

    __slots__ = (
        "_client",
        "_error",
        "_grant_threshold",
        "_hdr_buf",
        "_local_go_away",
        "_max_frame",
        "_max_window",
        "_next_id",
        "_out",
        "_parity",
        "_payload_fin",
        "_payload_left",
        "_payload_stream",
        "_peer_max_id",
        "_remote_go_away",
        "_streams",
        "_window_delta",
    )

    def __init__(
        self,
        *,
        client: bool,
        max_window: int = FRP_MAX_WINDOW,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        if not INITIAL_WINDOW <= max_window <= _MAX_U32:
            raise ValueError(
                f"max_window {max_window} must be between {INITIAL_WINDOW} and 2**32-1"
            )
        if not 0 < max_frame <= _MAX_U32:
            raise ValueError(f"max_frame {max_frame} must be between 1 and 2**32-1")
        self._client = client
        self._parity = 1 if client else 0  # low bit of the ids we allocate
        self._next_id = 1 if client else 2
        self._peer_max_id = 0  # highest id the peer has opened
        self._max_window = max_window
        self._max_frame = max_frame
        self._window_delta = max_window - INITIAL_WINDOW
        self._grant_threshold = max_window // 2
        self._streams: dict[int, _Stream] = {}
        self._out: list[bytes | memoryview] = []
        self._hdr_buf = bytearray()
        self._payload_left = 0  # payload bytes of the current Data frame still to come
        self._payload_stream: _Stream | None = None  # where they go; None = discard
        self._payload_fin = False  # the current Data frame carries FIN
        self._local_go_away = False
        self._remote_go_away = False
        self._error: YamuxError | None = None

    # --- input ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes read from the connection; returns the events they complete, in order.

        ``StreamData.data`` may be a view over ``data``: pass immutable bytes, or do not touch the
        buffer again while those events are in use. Afterwards write out ``data_to_send()``: ACKs
        and ping replies are queued here.

        Raises YamuxError if the peer broke the protocol. Then send ``go_away(exc.go_away_code)``,
        flush ``data_to_send()`` and close the connection; the session accepts no more input.
        """
        if self._error is not None:
            raise YamuxError(
                f"yamux session already failed: {self._error}", self._error.go_away_code
            )
        events: list[Event] = []
        try:
            self._parse(memoryview(data), events)
        except YamuxError as exc:
            self._error = exc
            raise
        return events

    def _parse(self, view: memoryview, events: list[Event]) -> None:
        end = len(view)
        pos = 0
        hdr_buf = self._hdr_buf
        unpack_from = _HEADER.unpack_from
        while pos < end:
            left = self._payload_left
            if left:
                take = end - pos
                if take > left:
                    take = left
                stream = self._payload_stream
                if stream is not None:
                    events.append(StreamData(stream.id, view[pos : pos + take]))
                pos += take
                left -= take
                self._payload_left = left
                if not left:
                    self._payload_done(events)
                continue
            if hdr_buf:
                piece = view[pos : pos + HEADER_SIZE - len(hdr_buf)]
                hdr_buf += piece
                pos += len(piece)
                if len(hdr_buf) < HEADER_SIZE:
                    return
                version, type_, flags, stream_id, length = unpack_from(hdr_buf)
                hdr_buf.clear()
            elif end - pos >= HEADER_SIZE:
                version, type_, flags, stream_id, length = unpack_from(view, pos)
                pos += HEADER_SIZE
            else:
                hdr_buf += view[pos:]
                return
            self._on_frame(version, type_, flags, stream_id, length, events)

    def _on_frame(
        self, version: int, type_: int, flags: int, stream_id: int, length: int, events: list[Event]
    ) -> None:
        if version != 0 or type_ > TYPE_GO_AWAY:
            _check_version_and_type(version, type_)
        if type_ <= TYPE_WINDOW_UPDATE:
            self._on_stream_frame(type_, flags, stream_id, length, events)
        elif type_ == TYPE_PING:
            if flags & FLAG_SYN:
                self._out.append(_HEADER.pack(0, TYPE_PING, FLAG_ACK, 0, length))
                events.append(PingReceived(length))
            else:
                events.append(PongReceived(length))
        else:
            self._remote_go_away = True
            events.append(GoAwayReceived(length))

    def _on_stream_frame(
        self, type_: int, flags: int, stream_id: int, length: int, events: list[Event]
    ) -> None:
        if stream_id == 0:
            raise YamuxError(f"yamux {_TYPE_NAMES[type_]} frame on stream 0, expected a stream id")
        if flags & FLAG_SYN:
            stream = self._accept(stream_id, events)
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                self._check_was_opened(type_, stream_id)
        if stream is None:  # closed, reset, or refused after our GoAway: drop the frame
            if type_ == TYPE_DATA and length:
                self._payload_left = length
                self._payload_stream = None
            return

        if flags & FLAG_ACK and not stream.acked:
            stream.acked = True
            events.append(StreamAcked(stream_id))
        if flags & FLAG_RST:
            del self._streams[stream_id]
            events.append(StreamReset(stream_id))
            if type_ == TYPE_DATA and length:
                self._payload_left = length
                self._payload_stream = None
            return

        if type_ == TYPE_WINDOW_UPDATE:
            if length:
                stream.send_window += length
                # the delta on a SYN is part of StreamOpened, not news for a blocked sender
                if not stream.local_closed and not flags & FLAG_SYN:
                    events.append(StreamWindowUpdated(stream_id))
            if flags & FLAG_FIN:
                self._remote_fin(stream, events)
            return

        if length:
            if stream.remote_closed:
                raise YamuxError(
                    f"data frame of {length} bytes on stream {stream_id} after the peer's FIN"
                )
            if length > stream.recv_window:
                raise YamuxError(
                    f"data frame of {length} bytes exceeds receive window {stream.recv_window}"
                    f" on stream {stream_id}"
                )
            stream.recv_window -= length
            self._payload_left = length
            self._payload_stream = stream
            self._payload_fin = bool(flags & FLAG_FIN)
        elif flags & FLAG_FIN:
            self._remote_fin(stream, events)

    def _accept(self, stream_id: int, events: list[Event]) -> _Stream | None:
        """Handle a SYN: the new stream, or None if it was refused with RST."""
        if stream_id in self._streams:
            raise YamuxError(f"SYN for stream {stream_id}, which is already open")
        if stream_id & 1 == self._parity:
            expected = "an even" if self._client else "an odd"
            opener = "server" if self._client else "client"
            raise YamuxError(
                f"SYN for stream {stream_id}, expected {expected} id from the yamux {opener}"
            )
        # Go allocates ids in order but may send the SYNs of concurrent Opens out of order, so
        # only the highest is kept, not a strict sequence.
        if stream_id > self._peer_max_id:
            self._peer_max_id = stream_id
        if self._local_go_away:  # session.go incomingStream: refuse once we have sent GoAway
            self._out.append(_HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0))
            return None
        stream = _Stream(stream_id, ours=False, recv_window=self._max_window)
        self._streams[stream_id] = stream
        self._out.append(
            _HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id, self._window_delta)
        )
        events.append(StreamOpened(stream_id))
        return stream

    def _check_was_opened(self, type_: int, stream_id: int) -> None:
        """Accept a frame for a stream that is gone; raise for one that never existed."""
        if stream_id & 1 == self._parity:
            if stream_id < self._next_id:
                return
            owner = "we"
        else:
            if stream_id <= self._peer_max_id:
                return
            owner = "the peer"
        raise YamuxError(
            f"yamux {_TYPE_NAMES[type_]} frame for stream {stream_id}, which {owner} never opened"
        )

    def _payload_done(self, events: list[Event]) -> None:
        stream = self._payload_stream
        fin = self._payload_fin
        self._payload_stream = None
        self._payload_fin = False
        if stream is not None and fin:
            self._remote_fin(stream, events)

    def _remote_fin(self, stream: _Stream, events: list[Event]) -> None:
        if stream.remote_closed:
            raise YamuxError(f"second FIN on stream {stream.id}, expected one")
        stream.remote_closed = True
        events.append(StreamEnded(stream.id))
        if stream.local_closed:
            del self._streams[stream.id]

    # --- output -----------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """All queued output as one bytes object (b"" if none); the queue is then empty."""
        return b"".join(self.buffers_to_send())

    def buffers_to_send(self) -> list[bytes | memoryview]:
        """All queued output, for ``writelines`` ([] if none); the queue is then empty.

        Pieces shorter than ``_JOIN_BELOW`` are joined; a longer payload stays the view queued
        by ``send_data`` (no copy), except that its first bytes top up the joined pieces before
        it to ``_RECORD`` bytes, so that a TLS layer below still writes full records.
        """
        out = self._out
        if not out:
            return []
        self._out = []
        bufs: list[bytes | memoryview] = []
        group: list[bytes | memoryview] = []
        size = 0
        for piece in out:
            n = len(piece)
            if n < _JOIN_BELOW:
                group.append(piece)
                size += n
                continue
            if group:
                view = memoryview(piece)
                head = _RECORD - size
                if head > 0:
                    group.append(view[:head])
                    piece = view[head:]
                bufs.append(b"".join(group))
                group = []
                size = 0
            bufs.append(piece)
        if group:
            bufs.append(b"".join(group))
        return bufs

    def open_stream(self) -> int:
        """Allocate the next stream id and queue its SYN. Data may be sent on it at once.

        Raises YamuxError after the peer's GoAway, after a receive error, or when ids run out.
        """
        if self._error is not None:
            raise YamuxError(
                f"yamux session already failed: {self._error}", self._error.go_away_code
            )
        if self._remote_go_away:
            raise YamuxError("yamux peer sent GoAway, no new streams may be opened", GO_AWAY_NORMAL)
        stream_id = self._next_id
        if stream_id >= _MAX_U32 - 1:
            raise YamuxError("yamux stream ids exhausted", GO_AWAY_NORMAL)
        self._next_id = stream_id + 2
        self._streams[stream_id] = _Stream(stream_id, ours=True, recv_window=self._max_window)
        self._out.append(
            _HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, self._window_delta)
        )
        return stream_id

    def send_window(self, stream_id: int) -> int:
        """How many bytes ``send_data`` would take on the stream now (0 if unknown or closed)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return 0
        return stream.send_window

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the peer's window allows; returns how many bytes that was.

        Keep the rest and offer it again after ``StreamWindowUpdated``. Read-only buffers (bytes,
        or a read-only view whose owner promises not to change it while it is referenced) are
        queued without a copy; writable ones are copied. Raises ValueError if the stream is not
        open or has been closed for sending.
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            raise ValueError(f"send_data on stream {stream_id}, which is not open")
        if stream.local_closed:
            raise ValueError(f"send_data on stream {stream_id} after close_stream")
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        take = min(view.nbytes, stream.send_window)
        if take <= 0:
            return 0
        immutable = view.readonly
        out = self._out
        pack = _HEADER.pack
        max_frame = self._max_frame
        pos = 0
        while pos < take:
            n = min(max_frame, take - pos)
            out.append(pack(0, TYPE_DATA, 0, stream_id, n))
            piece = view[pos : pos + n]
            out.append(piece if immutable else piece.tobytes())
            pos += n
        stream.send_window -= take
        return take

    def consumed(self, stream_id: int, n: int) -> None:
        """Report that the application used ``n`` delivered bytes of the stream.

        The credit goes back to the peer in one WindowUpdate once at least half of ``max_window``
        has built up. Unknown streams are ignored. Raises ValueError if ``n`` is negative or more
        than was delivered and not yet consumed.
        """
        if n < 0:
            raise ValueError(f"consumed {n} bytes on stream {stream_id}, expected n >= 0")
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:  # nothing more will arrive: no credit needed
            return
        pending = stream.pending_credit + n
        if pending + stream.recv_window > self._max_window:
            unconsumed = self._max_window - stream.recv_window - stream.pending_credit
            raise ValueError(
                f"consumed {n} bytes on stream {stream_id}, only {unconsumed} are delivered and"
                " not yet consumed"
            )
        if pending >= self._grant_threshold:
            self._out.append(_HEADER.pack(0, TYPE_WINDOW_UPDATE, 0, stream_id, pending))
            stream.recv_window += pending
            pending = 0
        stream.pending_credit = pending

    def close_stream(self, stream_id: int) -> None:
        """Half-close: queue FIN. Data may still arrive until ``StreamEnded``. Idempotent."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return
        stream.local_closed = True
        self._out.append(_HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0))
        if stream.remote_closed:
            del self._streams[stream_id]

    def reset_stream(self, stream_id: int) -> None:
        """Abort the stream both ways: queue RST and forget it. Later frames for it are dropped."""
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self._out.append(_HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0))
        if self._payload_stream is stream:  # the rest of a half-received frame is now discarded
            self._payload_stream = None
            self._payload_fin = False

    def ping(self, opaque: int) -> None:
        """Queue a Ping; the peer's answer arrives as ``PongReceived(opaque)``."""
        if not 0 <= opaque <= _MAX_U32:
            raise ValueError(f"ping opaque value {opaque} does not fit in 32 bits")
        self._out.append(_HEADER.pack(0, TYPE_PING, FLAG_SYN, 0, opaque))

    def go_away(self, code: int = GO_AWAY_NORMAL) -> None:
        """Queue GoAway. Streams the peer opens after this are refused with RST."""
        if not 0 <= code <= _MAX_U32:
            raise ValueError(f"go away code {code} does not fit in 32 bits")
        self._local_go_away = True
        self._out.append(_HEADER.pack(0, TYPE_GO_AWAY, 0, 0, code))

    def is_stream_open(self, stream_id: int) -> bool:
        """True until the stream is reset or both sides have sent FIN."""
        return stream_id in self._streams

    @property
    def stream_count(self) -> int:
        """Streams not yet fully closed or reset."""
        return len(self._streams)
