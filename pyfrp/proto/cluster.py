"""The messages pyfrps's worker processes and their supervisor exchange (a pyfrp extension:
``pyfrp.workers``; Go frps is one process and has no equivalent).

One message is one datagram of a SOCK_SEQPACKET Unix socket: a 4-byte big-endian length, that
many bytes of a JSON object (its ``op`` says what it is), then raw bytes (``data``: the bytes
already read from a connection handed over with it). File descriptors travel beside the
datagram (SCM_RIGHTS), never inside it. IO-free.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from pyfrp.errors import FrameError

_LEN = struct.Struct(">I")
# What one datagram may carry: a handed-over connection with more bytes already read goes
# through a bridge instead (server/cluster.py), so a message never needs more.
MAX_DATAGRAM = 256 * 1024
MAX_JSON = 64 * 1024


def encode(msg: dict[str, Any], data: bytes = b"") -> bytes:
    """One datagram; ValueError when it would not fit in MAX_DATAGRAM."""
    head = json.dumps(msg, separators=(",", ":")).encode()
    if len(head) > MAX_JSON or _LEN.size + len(head) + len(data) > MAX_DATAGRAM:
        raise ValueError(f"cluster message too large: {len(head)} + {len(data)} bytes")
    return _LEN.pack(len(head)) + head + data


def decode(datagram: bytes) -> tuple[dict[str, Any], bytes]:
    """The message and its trailing bytes; FrameError for anything malformed."""
    if len(datagram) < _LEN.size:
        raise FrameError(f"cluster datagram of {len(datagram)} bytes has no header")
    (n,) = _LEN.unpack_from(datagram)
    if n > MAX_JSON or _LEN.size + n > len(datagram):
        raise FrameError(f"cluster message length {n} does not fit its datagram")
    try:
        msg = json.loads(datagram[_LEN.size : _LEN.size + n])
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"cluster message is not JSON: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
        raise FrameError("cluster message is not an object with an op")
    return msg, datagram[_LEN.size + n :]
