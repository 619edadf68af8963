"""TLS as a Layer over any transport (a yamux stream, an encrypted work connection), for the
client plugins that terminate or originate TLS on a work connection (tls2raw, https2http,
https2https). asyncio's ``start_tls`` only takes the loop's own transports; this drives an
``ssl.SSLObject`` over memory BIOs instead.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from pyfrp.net.layer import Layer

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024


class TlsLayer(Layer):
    """``handshake`` resolves once the TLS handshake is done (or raises why it failed); bytes
    written before that wait for it."""

    accepts_buffer = True

    def __init__(
        self,
        lower: asyncio.Transport,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        super().__init__(lower)
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._early: list[bytes] = []
        self._eof_after_handshake = False
        self._plain = bytearray()  # decrypted before anyone took the layer as transport

    def start(self, pending: bytes = b"") -> None:
        """Begin (a client sends its hello); ``pending``: bytes already read from the lower."""
        if pending:
            self._in.write(pending)
        self._step()

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self._lower.write(data)

    def _step(self) -> None:
        if not self.handshake.done():
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError) as exc:
                self._flush()
                self.handshake.set_exception(exc)
                self._lower.abort()
                return
            self._flush()
            self.handshake.set_result(None)
            for data in self._early:
                self.write(data)
            self._early.clear()
            if self._eof_after_handshake:
                self.write_eof()
        self._read_plain()

    def _read_plain(self) -> None:
        upper = self._upper
        while True:
            try:
                data = self._obj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                if upper is not None and not upper.eof_received():  # type: ignore[attr-defined]
                    self._lower.close()
                break
            except ssl.SSLError as exc:
                log.debug("tls error: %s", exc)
                self._lower.abort()
                break
            if not data:
                break
            if upper is not None:
                upper.data_received(data)  # type: ignore[attr-defined]
            else:
                self._plain += data
        self._flush()  # alerts, session tickets

    def take(self) -> bytes:
        """Plaintext that arrived with the end of the handshake, before there was an upper
        protocol to give it to (the caller feeds it after its connection_made)."""
        out = bytes(self._plain)
        self._plain.clear()
        return out

    # -- from the lower transport
    def data_received(self, data: bytes) -> None:
        self._in.write(data)
        self._step()

    def eof_received(self) -> bool | None:
        self._in.write_eof()
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionResetError("closed during the TLS handshake"))
            return False
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("connection lost"))
        super().connection_lost(exc)

    # -- from the upper protocol
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.handshake.done():
            self._early.append(bytes(data))
            return
        view = memoryview(data)
        while view:
            n = self._obj.write(view)
            view = view[n:]
        self._flush()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self.handshake.done():
            self._eof_after_handshake = True
            return
        try:
            self._obj.unwrap()  # close_notify; the peer's reply may never come
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self._flush()
        self._lower.write_eof()
