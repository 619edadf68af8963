"""The snappy framing format, as golang/snappy's ``NewWriter`` and ``NewReader`` speak it.

frp compresses ``use_compression`` work connections with this (golib io.WithCompression; the
spec is google/snappy framing_format.txt). A stream is a sequence of chunks::

    type (1 byte) | length (3 bytes, little-endian) | length bytes of body

* 0xff stream identifier, body ``sNaPpY``. First in every stream; repeats are allowed.
* 0x00 compressed data: masked CRC-32C (4 bytes LE) of the *uncompressed* data, then one snappy
  block. 0x01 raw data: the same checksum, then the data itself. Either holds at most 65536
  uncompressed bytes.
* 0xfe padding and 0x80-0xfd reserved-skippable: ignored. 0x02-0x7f reserved-unskippable: an error.

Writing (golang/snappy encode.go ``Writer.write``): Go's ``NewWriter`` is unbuffered, so each
write becomes its own chunks at once. The identifier goes out with the first non-empty write;
each 64 KiB slice is a compressed chunk if that saves at least 1/8, else a raw chunk.

Reading (golang/snappy decode.go ``Reader.Read``): the identifier must come first, and a chunk
may be at most ``MaxEncodedLen(65536) + 4`` bytes long; everything the Go reader rejects raises
:class:`~pyfrp.errors.CryptoError` here.

Implementation: cramjam's framed snappy codec (the Rust ``snap`` crate, which makes the same
chunking and 1/8 decision as Go, byte for byte) does the compression and the CRC-32C in one call.
The decoder checks every chunk header in Python first, so limits, chunk types and the identifier
follow Go's reader exactly and memory stays bounded; it then hands all complete chunks of one
``decode`` call to cramjam, which verifies the checksums and decompresses. Only when cramjam
refuses does a slow path walk the chunks again to say which one is bad and why.
"""

from __future__ import annotations

import struct
from typing import Final

import cramjam

from pyfrp.errors import CryptoError

__all__ = [
    "MAX_BLOCK_SIZE",
    "MAX_CHUNK_LEN",
    "STREAM_IDENTIFIER",
    "SnappyFrameDecoder",
    "SnappyFrameEncoder",
    "masked_crc32c",
]

STREAM_IDENTIFIER: Final = b"\xff\x06\x00\x00sNaPpY"
MAX_BLOCK_SIZE: Final = 65536  # uncompressed bytes in one chunk
CHECKSUM_SIZE: Final = 4
HEADER_SIZE: Final = 4
# snappy.MaxEncodedLen(65536) = 32 + n + n/6, plus the checksum: the Go reader's buffer size.
MAX_CHUNK_LEN: Final = 32 + MAX_BLOCK_SIZE + MAX_BLOCK_SIZE // 6 + CHECKSUM_SIZE  # 76494

CHUNK_COMPRESSED: Final = 0x00
CHUNK_UNCOMPRESSED: Final = 0x01
CHUNK_PADDING: Final = 0xFE
CHUNK_STREAM_IDENTIFIER: Final = 0xFF

_IDENTIFIER_BODY: Final = STREAM_IDENTIFIER[HEADER_SIZE:]
_MASK_DELTA: Final = 0xA282EAD8
_U32: Final = struct.Struct("<I")
_snappy = cramjam.snappy


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """Return the chunk checksum of ``data``: CRC-32C, rotated right by 15, plus 0xa282ead8.

    ``data`` is one chunk's uncompressed bytes, at most :data:`MAX_BLOCK_SIZE` long. The CRC is
    computed in Rust by cramjam, which frames one chunk and carries it in bytes 14..18.
    """
    n = len(memoryview(data).cast("B"))
    if n > MAX_BLOCK_SIZE:
        raise ValueError(f"a chunk holds at most {MAX_BLOCK_SIZE} bytes, got {n}")
    if n == 0:
        return _MASK_DELTA  # CRC-32C of nothing is 0; cramjam frames nothing for it
    framed = memoryview(_snappy.compress(data))
    offset = len(STREAM_IDENTIFIER) + HEADER_SIZE
    (value,) = _U32.unpack_from(framed, offset)
    return int(value)


class SnappyFrameEncoder:
    """Frames outgoing writes the way golang/snappy's unbuffered ``Writer`` does.

    Call :meth:`encode` once per write and send what it returns; there is nothing to flush.
    """

    __slots__ = ("_started",)

    def __init__(self) -> None:
        self._started = False

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the chunks for one write; the first non-empty write also carries the identifier.

        ``encode(b"")`` returns ``b""`` (and does not start the stream), as Go writes nothing.
        """
        if not len(data):
            return b""
        framed = _snappy.compress(data)
        if not self._started:
            self._started = True
            return bytes(framed)
        return bytes(memoryview(framed)[len(STREAM_IDENTIFIER) :])


class SnappyFrameDecoder:
    """Turns a snappy-framed byte stream back into the original bytes, incrementally.

    Feed each received piece to :meth:`decode`, split anywhere; the concatenated results are the
    same for any split. Between calls it holds at most one incomplete chunk, which is at most
    ``max_buffer`` bytes. After a :class:`CryptoError` the stream is dead: close the connection;
    further calls raise again.
    """

    __slots__ = ("_buf", "_chunk_limit", "_error", "_offset", "_started")

    def __init__(self, max_buffer: int = HEADER_SIZE + MAX_CHUNK_LEN) -> None:
        """``max_buffer`` caps header plus body of one chunk. The default is the format's limit;
        a smaller one also refuses long chunks that Go's writer does send (up to 65544 bytes)."""
        low = len(STREAM_IDENTIFIER)
        high = HEADER_SIZE + MAX_CHUNK_LEN
        if not low <= max_buffer <= high:
            raise ValueError(f"max_buffer must be between {low} and {high}, got {max_buffer}")
        self._chunk_limit = max_buffer - HEADER_SIZE
        self._buf = bytearray()  # the incomplete chunk at the end of the input so far
        self._offset = 0  # stream offset of self._buf[0], for error messages
        self._started = False  # a stream identifier chunk has been read
        self._error: str | None = None

    def decode(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the bytes of every chunk completed by ``data``; ``b""`` if none.

        Raises :class:`CryptoError` if the stream breaks the format, as soon as the offending
        chunk header (or, for checksums and corrupt blocks, the whole chunk) has arrived.
        """
        if self._error is not None:
            raise CryptoError(f"snappy stream already failed: {self._error}")
        try:
            return self._decode(data)
        except CryptoError as exc:
            self._error = str(exc)
            raise

    def _decode(self, data: bytes | bytearray | memoryview) -> bytes:
        view = memoryview(data).cast("B")
        # Append to a pending chunk in place (amortised O(1), so a peer that trickles bytes one
        # at a time costs no quadratic copying); otherwise work on the caller's bytes directly.
        buffered = bool(self._buf)
        if buffered:
            self._buf += view
        with memoryview(self._buf if buffered else view) as mv:
            end, runs = self._scan(mv)
            if len(runs) == 1:
                out = self._decompress(mv, *runs[0])
            else:
                out = b"".join([self._decompress(mv, *run) for run in runs])
            if not buffered:
                self._buf = bytearray(mv[end:])
        if buffered:
            del self._buf[:end]  # all views on it are gone now, so it may shrink
        self._offset += end
        return out

    def _scan(self, mv: memoryview) -> tuple[int, list[tuple[int, int, int]]]:
        """Check the chunk headers in ``mv``.

        Returns the end of the last complete chunk, and the runs of consecutive complete data
        chunks as (start, stop, uncompressed length). A bad header raises at once, even if the
        rest of its chunk has not arrived.
        """
        n = len(mv)
        pos = 0
        runs: list[tuple[int, int, int]] = []
        while n - pos >= HEADER_SIZE:
            (header,) = _U32.unpack_from(mv, pos)
            kind = header & 0xFF
            length = header >> 8
            if not self._started and kind != CHUNK_STREAM_IDENTIFIER:
                raise CryptoError(
                    f"snappy stream must start with the stream identifier chunk (type 0xff), "
                    f"got chunk type {kind:#04x} at offset {self._offset + pos}"
                )
            if length > self._chunk_limit:
                limit = self._chunk_limit
                what = "the format's limit" if limit == MAX_CHUNK_LEN else "this decoder's limit"
                raise CryptoError(
                    f"snappy chunk at offset {self._offset + pos}: length {length} exceeds "
                    f"{what} {limit}"
                )
            if kind in (CHUNK_COMPRESSED, CHUNK_UNCOMPRESSED):
                if length < CHECKSUM_SIZE:
                    raise CryptoError(
                        f"snappy data chunk at offset {self._offset + pos}: length {length} is "
                        f"shorter than its {CHECKSUM_SIZE}-byte checksum"
                    )
                if kind == CHUNK_UNCOMPRESSED and length - CHECKSUM_SIZE > MAX_BLOCK_SIZE:
                    raise CryptoError(
                        f"snappy raw chunk at offset {self._offset + pos}: "
                        f"{length - CHECKSUM_SIZE} data bytes, at most {MAX_BLOCK_SIZE} allowed"
                    )
            elif kind == CHUNK_STREAM_IDENTIFIER:
                if length != len(_IDENTIFIER_BODY):
                    raise CryptoError(
                        f"snappy stream identifier at offset {self._offset + pos}: length "
                        f"{length}, expected {len(_IDENTIFIER_BODY)}"
                    )
            elif kind < 0x80:
                raise CryptoError(
                    f"snappy chunk at offset {self._offset + pos}: reserved unskippable chunk "
                    f"type {kind:#04x} (expected 0x00, 0x01 or 0x80-0xff)"
                )
            stop = pos + HEADER_SIZE + length
            if stop > n:
                break
            if kind in (CHUNK_COMPRESSED, CHUNK_UNCOMPRESSED):
                decoded = (
                    self._decoded_len(mv, pos, stop)
                    if kind == CHUNK_COMPRESSED
                    else length - CHECKSUM_SIZE
                )
                if runs and runs[-1][1] == pos:  # extends the current run
                    start, _, total = runs[-1]
                    runs[-1] = (start, stop, total + decoded)
                else:
                    runs.append((pos, stop, decoded))
            elif kind == CHUNK_STREAM_IDENTIFIER:
                body = bytes(mv[pos + HEADER_SIZE : stop])
                if body != _IDENTIFIER_BODY:
                    raise CryptoError(
                        f"snappy stream identifier at offset {self._offset + pos}: body {body!r}, "
                        f"expected {_IDENTIFIER_BODY!r}"
                    )
                self._started = True
            pos = stop
        return pos, runs

    def _decoded_len(self, mv: memoryview, pos: int, stop: int) -> int:
        """Read the uvarint length that opens the snappy block of the compressed chunk at
        ``pos`` (golang/snappy ``decodedLen``) and check it fits in a chunk."""
        value = 0
        shift = 0
        for i in range(pos + HEADER_SIZE + CHECKSUM_SIZE, min(stop, pos + 18)):
            byte = mv[i]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        else:
            raise CryptoError(
                f"snappy compressed chunk at offset {self._offset + pos}: expected a block "
                f"length varint, got {bytes(mv[pos + 8 : min(stop, pos + 18)]).hex() or 'nothing'}"
            )
        if value > MAX_BLOCK_SIZE:
            raise CryptoError(
                f"snappy compressed chunk at offset {self._offset + pos}: decompresses to "
                f"{value} bytes, at most {MAX_BLOCK_SIZE} allowed"
            )
        return value

    def _decompress(self, mv: memoryview, start: int, stop: int, out_len: int) -> bytes:
        """Verify and decompress ``mv[start:stop]``, a run of data chunks with checked headers.

        Only data chunks go to cramjam: the Rust reader refuses skippable chunks longer than
        76490 bytes, which Go accepts. A run needs a stream identifier in front; when the one
        before it in ``mv`` is not an identifier, a copy of the run gets one.
        """
        ident_len = len(STREAM_IDENTIFIER)
        framed: bytes | memoryview
        if start >= ident_len and mv[start - ident_len : start].tobytes() == STREAM_IDENTIFIER:
            framed = mv[start - ident_len : stop]
        else:
            framed = STREAM_IDENTIFIER + mv[start:stop]
        try:
            out = bytes(_snappy.decompress(framed))
        except cramjam.DecompressionError as exc:
            self._diagnose(mv, start, stop)
            raise CryptoError(
                f"snappy data at offset {self._offset + start} rejected: {exc}"
            ) from exc
        if len(out) != out_len:
            raise CryptoError(
                f"snappy data at offset {self._offset + start}: decoded {len(out)} bytes, the "
                f"chunk headers promised {out_len}"
            )
        return out

    def _diagnose(self, mv: memoryview, pos: int, stop: int) -> None:
        """Find the data chunk in ``mv[pos:stop]`` that cramjam refused and raise a CryptoError
        naming it and the reason (slow path, errors only)."""
        while pos < stop:
            (header,) = _U32.unpack_from(mv, pos)
            kind = header & 0xFF
            end = pos + HEADER_SIZE + (header >> 8)
            where = self._offset + pos
            (expected,) = _U32.unpack_from(mv, pos + HEADER_SIZE)
            payload = mv[pos + HEADER_SIZE + CHECKSUM_SIZE : end]
            if kind == CHUNK_COMPRESSED:
                try:
                    decoded = bytes(_snappy.decompress_raw(payload))
                except cramjam.DecompressionError as exc:
                    raise CryptoError(
                        f"snappy compressed chunk at offset {where}: expected a valid snappy "
                        f"block of {len(payload)} bytes, got one that does not decode ({exc})"
                    ) from exc
            else:
                decoded = bytes(payload)
            actual = masked_crc32c(decoded)
            if actual != expected:
                raise CryptoError(
                    f"snappy chunk at offset {where}: checksum mismatch, the chunk says "
                    f"{expected:#010x} but its {len(decoded)} data bytes give {actual:#010x}"
                )
            pos = end
