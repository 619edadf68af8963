"""Many small frames, one write: the UDPPacket messages of one pass of the event loop.

A datagram is one frp message; written one by one, each becomes its own yamux frame, TLS record
and send(2). Frames added during one pass of the loop are joined and written once at its end
(``call_soon``), which keeps a burst of datagrams down to a few records.
"""

from __future__ import annotations

import asyncio


class WriteBatch:
    __slots__ = ("_frames", "_size", "_transport", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes queued (in the transport and here) beyond which frames drop
        self._frames: list[bytes] = []
        self._size = 0
        self._transport: asyncio.Transport | None = None

    def add(self, transport: asyncio.Transport, frame: bytes) -> bool:
        """Queue ``frame`` for ``transport``; False (dropped) when too much is queued already."""
        if self._transport is not transport:
            self.flush()
            self._transport = transport
        if transport.get_write_buffer_size() + self._size > self.limit:
            return False
        if not self._frames:
            asyncio.get_running_loop().call_soon(self.flush)
        self._frames.append(frame)
        self._size += len(frame)
        return True

    def flush(self) -> None:
        transport, frames = self._transport, self._frames
        if not frames or transport is None:
            return
        self._frames, self._size = [], 0
        if not transport.is_closing():
            transport.write(b"".join(frames))
