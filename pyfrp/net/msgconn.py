"""A connection in "message mode": frp v1 frames in both directions until it is handed on.

Every frp connection starts this way (control, work and visitor connections alike) over whatever
carries it: a TCP or TLS transport, or a yamux stream. Messages are decoded lazily, one per
``recv()``, so that nothing past the message the caller asked for is interpreted: after LoginResp
the byte stream becomes ciphertext, after StartWorkConn it becomes proxied data. ``detach()`` then
hands the transport and the bytes already read to the next owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar, cast

from pyfrp.net.layer import Layer, insert_layer
from pyfrp.proto import wire2
from pyfrp.proto.framing import MAX_BODY, MessageDecoder, encode_message
from pyfrp.proto.msg import Message

_M = TypeVar("_M", bound=Message)

# Stop reading from a peer that sends far more than one frame before we ask for it.
_READ_HIGH_WATER = 4 * (MAX_BODY + 9)


class MessageConn(asyncio.Protocol):
    __slots__ = (
        "_closed", "_decoder", "_encode", "_eof", "_paused", "_waiter", "remote", "transport", "v2",
    )  # fmt: skip

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._decoder: MessageDecoder | wire2.FrameDecoder = MessageDecoder()
        self._encode: Callable[[Message], bytes] = encode_message
        self.v2 = False  # frames in wire protocol v2 (after its magic)
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._closed = False
        self._paused = False
        # the far end's address when the transport is a bridge from another process
        self.remote: tuple[str, int] | None = None

    @classmethod
    def attach(cls, transport: asyncio.Transport, v2: bool = False) -> MessageConn:
        """Make a new MessageConn the protocol of an existing transport."""
        conn = cls.speaking(v2)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        return conn

    @classmethod
    def speaking(cls, v2: bool) -> MessageConn:
        """A new MessageConn, in wire protocol v2 from the start if ``v2``."""
        conn = cls()
        if v2:
            conn.use_v2()
        return conn

    def use_v2(self) -> None:
        """Speak wire protocol v2 frames from here on (the magic is already sent or consumed)."""
        self._decoder = wire2.FrameDecoder(self._decoder.take_remaining())
        self._encode = wire2.encode_message
        self.v2 = True

    def send_raw(self, data: bytes) -> None:
        """Bytes outside any message (v2's magic and hello frames)."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        self.transport.write(data)

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        if self._decoder.buffered > _READ_HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- API
    @property
    def peername(self) -> tuple[str, int] | None:
        if self.remote is not None or self.transport is None:
            return self.remote
        peer = self.transport.get_extra_info("peername")
        return (peer[0], peer[1]) if peer else None

    def send(self, msg: Message) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        self.transport.write(self._encode(msg))

    async def recv(self) -> Message:
        """The next message. Raises ConnectionError at EOF/close, ProtocolError on bad bytes."""
        while True:
            msg = self._decoder.next_message()
            if msg is not None:
                if self._paused and self._decoder.buffered < _READ_HIGH_WATER and self.transport:
                    self._paused = False
                    self.transport.resume_reading()
                return msg
            if self._eof or self._closed:
                left = self._decoder.buffered
                raise ConnectionResetError(
                    "connection closed"
                    + (f" inside a message ({left} bytes pending)" if left else "")
                )
            if self._paused and self.transport:  # a partial frame larger than the high water
                self._paused = False
                self.transport.resume_reading()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def recv_frame(self) -> tuple[int, bytes]:
        """The next raw v2 frame (type, payload): the ServerHello a v2 client waits for."""
        assert isinstance(self._decoder, wire2.FrameDecoder)
        while True:
            frame = self._decoder.next_frame()
            if frame is not None:
                return frame
            if self._eof or self._closed:
                raise ConnectionResetError("connection closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def recv_as(self, cls: type[_M]) -> _M:
        msg = await self.recv()
        if not isinstance(msg, cls):
            raise ConnectionResetError(f"expected {cls.__name__}, got {type(msg).__name__}")
        return msg

    def push_layer(self, layer_factory: type[Layer] | object, *args: object) -> None:
        """Insert a filter layer under this connection; bytes already read pass through it."""
        assert self.transport is not None
        layer = layer_factory(self.transport, *args)  # type: ignore[operator]
        pending = self._decoder.take_remaining()
        self.transport = insert_layer(self.transport, layer, pending)

    def detach(self) -> tuple[asyncio.Transport, bytes, bool]:
        """Give up the transport (for splicing).

        Returns it with the bytes read past the last message and whether the peer already ended.
        """
        assert self.transport is not None
        transport, self.transport = self.transport, None
        return transport, self._decoder.take_remaining(), self._eof or self._closed

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
