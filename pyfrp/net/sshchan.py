"""An asyncssh channel seen as an asyncio transport, so that :func:`pyfrp.net.splice.join` can
splice it with a work connection like any socket (frp: ``libio.Join(channel, workConn)``).

Imported only by the SSH tunnel gateway, which loads asyncssh when it is configured.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh


class ChannelTransport(asyncio.Transport):
    """The transport side; ``session`` is what asyncssh's ``session_factory`` must return."""

    def __init__(self) -> None:
        super().__init__()
        self.session = _Session(self)
        self.chan: asyncssh.SSHTCPChannel[bytes] | None = None
        self._protocol: asyncio.BaseProtocol | None = None
        self._closing = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.chan is not None and not self._closing:
            self.chan.write(bytes(data))  # the buffer may be lent (recvbuf): copy it

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self.chan is not None:
            self.chan.write_eof()

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            if self.chan is not None:
                self.chan.close()  # asyncssh sends what is buffered first

    def abort(self) -> None:
        self._closing = True
        if self.chan is not None:
            self.chan.abort()

    def is_closing(self) -> bool:
        return self._closing or (self.chan is not None and self.chan.is_closing())

    def pause_reading(self) -> None:
        if self.chan is not None:
            self.chan.pause_reading()

    def resume_reading(self) -> None:
        if self.chan is not None:
            self.chan.resume_reading()

    def is_reading(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self.chan.get_write_buffer_size() if self.chan is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self.chan is not None:
            self.chan.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self.chan is None:
            return default
        return self.chan.get_extra_info(name, default)


class _Session(asyncssh.SSHTCPSession[bytes]):
    """asyncssh's callbacks, handed on to the transport's current protocol."""

    def __init__(self, transport: ChannelTransport) -> None:
        self.transport = transport

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self.transport.chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        protocol = self.transport._protocol
        if isinstance(protocol, asyncio.Protocol):
            protocol.data_received(data)
        elif protocol is not None:
            protocol.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool:
        protocol = self.transport._protocol
        if protocol is not None:
            return bool(protocol.eof_received())  # type: ignore[attr-defined]
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport._closing = True
        if self.transport._protocol is not None:
            self.transport._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.transport._protocol is not None:
            self.transport._protocol.pause_writing()

    def resume_writing(self) -> None:
        if self.transport._protocol is not None:
            self.transport._protocol.resume_writing()
