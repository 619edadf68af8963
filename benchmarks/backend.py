"""Benchmark backend: one TCP server that sinks, sources and echoes, as a separate process.

Protocol per connection (first byte): ``U`` + 8-byte size: read that many bytes, answer ``K``.
``D`` + 8-byte size: send that many bytes. ``E``: echo everything until EOF.
"""

from __future__ import annotations

import argparse
import asyncio
import struct

CHUNK = memoryview(bytes(1024 * 1024))


class Backend(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.mode = b""
        self.remaining = 0
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.resume: asyncio.Event | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.mode == b"E":
            self.transport.write(data)  # type: ignore[union-attr]
            return
        if self.mode == b"U":
            self.remaining -= len(data)
            if self.remaining <= 0:
                self.transport.write(b"K")  # type: ignore[union-attr]
                self.mode = b"-"
            return
        self.buf += data
        if not self.mode and self.buf:
            self.mode = bytes(self.buf[:1])
            if self.mode == b"E":
                rest = bytes(self.buf[1:])
                self.buf.clear()
                if rest:
                    self.transport.write(rest)  # type: ignore[union-attr]
                return
        if self.mode in (b"U", b"D") and len(self.buf) >= 9:
            (size,) = struct.unpack_from(">Q", self.buf, 1)
            extra = len(self.buf) - 9
            self.buf.clear()
            if self.mode == b"U":
                self.remaining = size - extra
                if self.remaining <= 0:
                    self.transport.write(b"K")  # type: ignore[union-attr]
            else:
                self.remaining = size
                self.resume = asyncio.Event()
                self.resume.set()
                asyncio.get_running_loop().create_task(self._source())

    async def _source(self) -> None:
        t = self.transport
        assert t is not None
        assert self.resume is not None
        while self.remaining > 0 and not t.is_closing():
            n = min(self.remaining, len(CHUNK))
            t.write(CHUNK[:n])
            self.remaining -= n
            await self.resume.wait()

    def pause_writing(self) -> None:
        if self.resume is not None:
            self.resume.clear()

    def resume_writing(self) -> None:
        if self.resume is not None:
            self.resume.set()


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        Backend, "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--uvloop", action="store_true")
    a = ap.parse_args()
    if a.uvloop:
        import uvloop

        uvloop.run(main(a.port))
    else:
        asyncio.run(main(a.port))
