"""frp's websocket transport (``transport.protocol = websocket | wss``) as a Layer.

frpc speaks its usual stream (optional 0x17 + TLS, then yamux or messages) inside binary
WebSocket frames on path ``/~!frp`` (pkg/util/net/websocket.go, dial.go: golang.org/x/net's
websocket, which requires an Origin header); frps's bind_port hands connections that start with
``GET /~!frp`` to it. ``wss`` is TLS first, then the websocket; frps itself only speaks ``ws``
(TLS is ended in front of it). The RFC 6455 framing and handshake are the ``websockets``
package's sans-IO protocol; this module only moves bytes between it and asyncio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Origin
from websockets.uri import parse_uri

from pyfrp.net.layer import Layer
from pyfrp.proto.detect import WEBSOCKET_PATH

log = logging.getLogger(__name__)
# websockets logs each handshake header at debug, under "websockets".
logging.getLogger("websockets").setLevel(logging.WARNING)

PATH = WEBSOCKET_PATH
HANDSHAKE_TIMEOUT = 10.0
_DATA = (Opcode.BINARY, Opcode.TEXT, Opcode.CONT)


class WebSocketLayer(Layer):
    """Bytes written become one binary frame each; frames' payloads go up as a byte stream.

    ``opened`` resolves when the handshake is done (or raises why it failed)."""

    accepts_buffer = False

    def __init__(
        self,
        lower: asyncio.Transport | None,
        ws: ClientProtocol | ServerProtocol,
        on_open: Callable[[WebSocketLayer], None] | None = None,
    ) -> None:
        super().__init__(lower)  # type: ignore[arg-type]  # the server's comes in connection_made
        self._ws = ws
        self._on_open = on_open
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._eof_sent = False

    def _flush(self) -> None:
        for chunk in self._ws.data_to_send():
            if chunk:
                self._lower.write(chunk)
            elif self._lower.can_write_eof():  # the protocol's "close the TCP side now"
                self._lower.write_eof()

    def _fail(self, exc: BaseException) -> None:
        if not isinstance(exc, OSError | TimeoutError):  # websockets' InvalidStatus and kin
            exc = ConnectionRefusedError(f"websocket handshake: {exc}")
        if not self.opened.done():
            self.opened.set_exception(exc)
        self._lower.abort()

    # -- from the lower transport
    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(
            HANDSHAKE_TIMEOUT, self._fail, TimeoutError("websocket handshake timed out")
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._lower = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        self._arm()

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Request):
                self._accept(event)
            elif isinstance(event, Response):
                if ws.handshake_exc is not None:
                    self._fail(ws.handshake_exc)
                    return
                self._open()
            elif event.opcode in _DATA:
                if event.data and self._upper is not None:
                    self._upper.data_received(event.data)  # type: ignore[attr-defined]
            elif event.opcode is Opcode.CLOSE and self._upper is not None:
                self._flush()
                if not self._upper.eof_received():  # type: ignore[attr-defined]
                    self._lower.close()
                return
        self._flush()
        if ws.handshake_exc is not None and not self.opened.done():
            self._fail(ws.handshake_exc)

    def _accept(self, request: Request) -> None:
        ws = self._ws
        assert isinstance(ws, ServerProtocol)
        if request.path.split("?", 1)[0] != PATH:
            response = ws.reject(404, "404 page not found\n")
        else:
            response = ws.accept(request)
        ws.send_response(response)
        if response.status_code == 101:
            self._flush()
            self._open()

    def _open(self) -> None:
        if self.opened.done():
            return
        self._timer.cancel()
        self.opened.set_result(None)
        if self._on_open is not None:
            self._on_open(self)

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        if not self.opened.done():
            self._fail(ConnectionResetError("connection closed during the websocket handshake"))
            return False
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("connection lost"))
        super().connection_lost(exc)

    # -- from the upper protocol
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_sent or not data:
            return
        self._ws.send_binary(bytes(data))
        self._flush()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """A close frame: a websocket has no half-close (Go's frp closes both ways anyway)."""
        if not self._eof_sent:
            self._eof_sent = True
            if self._ws.state is State.OPEN:  # else the peer's close frame is answered already
                self._ws.send_close()
            self._flush()

    def close(self) -> None:
        self.write_eof()
        self._lower.close()


def server_layer(on_open: Callable[[WebSocketLayer], None]) -> WebSocketLayer:
    """The protocol for a connection that began ``GET /~!frp`` on bind_port."""
    # Go's client offers no extensions and never sends more than one write per frame.
    return WebSocketLayer(None, ServerProtocol(max_size=None), on_open)


async def client_layer(lower: asyncio.Transport, host: str) -> WebSocketLayer:
    """The handshake as frpc's: ``ws://host/~!frp`` with Origin ``http://host``, then binary
    frames. ``host`` is server_addr:server_port for websocket, the TLS server name for wss."""
    ws = ClientProtocol(
        parse_uri(f"ws://{host}{PATH}"), origin=Origin(f"http://{host}"), max_size=None
    )
    layer = WebSocketLayer(lower, ws)
    layer._arm()
    upper = lower.get_protocol()
    lower.set_protocol(layer)
    layer.set_protocol(upper)
    request = ws.connect()
    request.headers = Headers(
        [(k, v) for k, v in request.headers.raw_items() if k.lower() != "user-agent"]
    )
    ws.send_request(request)
    layer._flush()
    await layer.opened
    return layer
