"""Per-proxy wrapping of a work connection (client/proxy/proxy.go, server/proxy/proxy.go).

After StartWorkConn the bytes are: app -> snappy (use_compression) -> AES-CFB keyed by the token
(use_encryption) -> the work connection.
"""

from __future__ import annotations

import asyncio

from pyfrp.net.layer import CompressLayer, CryptoLayer, Layer
from pyfrp.net.ratelimit import RateLayer, TokenBucket
from pyfrp.proto.crypto import derive_key


def wrap_work_transport(
    transport: asyncio.Transport,
    pending: bytes,
    *,
    token: str,
    use_encryption: bool,
    use_compression: bool,
    bucket: TokenBucket | None = None,
) -> tuple[asyncio.Transport, bytes]:
    """Stack the proxy's layers on ``transport``; returns the top transport and ``pending`` decoded.
    ``bucket`` (a bandwidth limit) meters the bytes on the wire, below the other layers.

    The caller must give the top transport a protocol before control returns to the loop.
    """
    layers: list[Layer] = []
    top = transport
    if bucket is not None:
        layers.append(RateLayer(top, bucket))
        top = layers[-1]
    if use_encryption:
        layers.append(CryptoLayer(top, derive_key(token)))
        top = layers[-1]
    if use_compression:
        layers.append(CompressLayer(top))
        top = layers[-1]
    lower = transport
    for layer in layers:
        lower.set_protocol(layer)
        pending = layer.decode(pending) if pending else b""
        lower = layer
    return top, pending
