"""Filter transports: a Layer sits between a lower transport and an upper protocol.

This is golib's ``io.WithEncryption`` / ``io.WithCompression`` done the asyncio way: the Layer is
the lower transport's protocol and the upper protocol's transport, transforming bytes each way and
passing flow control straight through. Stacking two layers gives frp's per-proxy order
(app -> snappy -> AES-CFB -> socket).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pyfrp.errors import ProtocolError
from pyfrp.proto import wire2
from pyfrp.proto.crypto import StreamDecryptor, StreamEncryptor

log = logging.getLogger(__name__)


class Layer(asyncio.Transport, asyncio.Protocol):
    """Pass-through layer; subclasses override ``encode`` and ``decode``."""

    # decode() takes any buffer (a yamux payload view) and returns fresh bytes.
    accepts_buffer = True

    def __init__(self, lower: asyncio.Transport) -> None:
        super().__init__()
        self._lower = lower
        self._upper: asyncio.BaseProtocol | None = None

    # -- transport side (towards the upper protocol)
    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        return bytes(data)

    def decode(self, data: bytes | memoryview) -> bytes:
        return bytes(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        out = self.encode(data)
        if out:
            self._lower.write(out)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._upper = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._upper is not None
        return self._upper

    def is_closing(self) -> bool:
        return self._lower.is_closing()

    def close(self) -> None:
        self._lower.close()

    def abort(self) -> None:
        self._lower.abort()

    def can_write_eof(self) -> bool:
        return self._lower.can_write_eof()

    def write_eof(self) -> None:
        self._lower.write_eof()

    def pause_reading(self) -> None:
        self._lower.pause_reading()

    def resume_reading(self) -> None:
        self._lower.resume_reading()

    def is_reading(self) -> bool:
        return self._lower.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._lower.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._lower.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._lower.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._lower.get_extra_info(name, default)

    # -- protocol side (events from the lower transport)
    def data_received(self, data: bytes) -> None:
        try:
            out = self.decode(data)
        except ProtocolError as exc:
            log.warning("closing connection from %s: %s", self.get_extra_info("peername"), exc)
            self._lower.abort()
            return
        if out and self._upper is not None:
            self._upper.data_received(out)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        if self._upper is not None:
            return self._upper.eof_received()  # type: ignore[attr-defined, no-any-return]
        return None

    def pause_writing(self) -> None:
        if self._upper is not None:
            self._upper.pause_writing()

    def resume_writing(self) -> None:
        if self._upper is not None:
            self._upper.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upper is not None:
            self._upper.connection_lost(exc)


class CryptoLayer(Layer):
    """frp's AES-128-CFB stream (golib crypto): IV lazily with the first write, each direction."""

    def __init__(self, lower: asyncio.Transport, key: bytes) -> None:
        super().__init__(lower)
        self._enc = StreamEncryptor(key)
        self._dec = StreamDecryptor(key)

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._enc.encrypt(data)

    def decode(self, data: bytes | memoryview) -> bytes:
        return self._dec.decrypt(data)


class AeadLayer(Layer):
    """Wire protocol v2's control channel: one golib AEAD stream each way (see proto/wire2)."""

    def __init__(
        self, lower: asyncio.Transport, ctx: tuple[str, bytes], token: str, client: bool
    ) -> None:
        super().__init__(lower)
        algorithm, transcript = ctx
        c2s, s2c = wire2.control_keys(token.encode(), algorithm, transcript)
        self._enc = wire2.AeadStreamWriter(algorithm, c2s if client else s2c)
        self._dec = wire2.AeadStreamReader(algorithm, s2c if client else c2s)

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._enc.seal(data)

    def decode(self, data: bytes | memoryview) -> bytes:
        return self._dec.feed(data)


class CompressLayer(Layer):
    """Snappy framing format, unbuffered like golang/snappy's Writer."""

    def __init__(self, lower: asyncio.Transport) -> None:
        # cramjam and google-crc32c (~2.4 MiB of RSS) load with the first compressed connection
        from pyfrp.proto.snappy import SnappyFrameDecoder, SnappyFrameEncoder

        super().__init__(lower)
        self._enc = SnappyFrameEncoder()
        self._dec = SnappyFrameDecoder()

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._enc.encode(data)

    def decode(self, data: bytes | memoryview) -> bytes:
        return self._dec.decode(data)


def insert_layer(transport: asyncio.Transport, layer: Layer, pending: bytes = b"") -> Layer:
    """Put ``layer`` on top of ``transport``, taking over its protocol; feed bytes already read."""
    upper = transport.get_protocol()
    transport.set_protocol(layer)
    layer.set_protocol(upper)
    if pending:
        layer.data_received(pending)
    return layer
