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

Implementation: the framing, chunking and 1/8 decision are done here, byte for byte as Go's
writer does them; cramjam's raw snappy codec (the Rust ``snap`` crate) compresses and decompresses
one block at a time, and google-crc32c computes the checksums (hardware CRC-32C, ~19 GB/s here:
cramjam's framed codec spends more time in its table-driven CRC than in snappy itself). The
decoder checks every chunk header before it waits for the chunk's body, so limits, chunk types
and the identifier follow Go's reader exactly and memory stays bounded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

import cramjam
import google_crc32c

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
_CHUNK_HEAD: Final = struct.Struct("<II")  # type | length << 8, then the masked checksum
_snappy = cramjam.snappy
# CRC-32C of a bytes object (not other buffers); the library's C extension.
_crc32c: Callable[[bytes], int] = google_crc32c.value


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """Return the chunk checksum of ``data``: CRC-32C, rotated right by 15, plus 0xa282ead8.

    ``data`` is one chunk's uncompressed bytes, at most :data:`MAX_BLOCK_SIZE` long.
    """
    raw = bytes(memoryview(data).cast("B"))
    if len(raw) > MAX_BLOCK_SIZE:
        raise ValueError(f"a chunk holds at most {MAX_BLOCK_SIZE} bytes, got {len(raw)}")
    return _mask(_crc32c(raw))


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
        if not isinstance(data, bytes):
            data = bytes(memoryview(data).cast("B"))  # the checksum wants bytes
        out: list[bytes | cramjam.Buffer] = []
        if not self._started:
            self._started = True
            out.append(STREAM_IDENTIFIER)
        n = len(data)
        for i in range(0, n, MAX_BLOCK_SIZE):
            block = data if n <= MAX_BLOCK_SIZE else data[i : i + MAX_BLOCK_SIZE]
            crc = _mask(_crc32c(block))
            compressed = _snappy.compress_raw(block)
            size = len(block)
            if len(compressed) >= size - size // 8:  # saves less than 1/8: send it raw
                out += (_CHUNK_HEAD.pack(CHUNK_UNCOMPRESSED | (size + 4) << 8, crc), block)
            else:
                head = _CHUNK_HEAD.pack(CHUNK_COMPRESSED | (len(compressed) + 4) << 8, crc)
                out += (head, compressed)
        return b"".join(out)


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
            end, chunks = self._scan(mv)
            if len(chunks) == 1:
                out = self._chunk_data(mv, *chunks[0])
            else:
                out = b"".join([self._chunk_data(mv, *c) for c in chunks])
            if not buffered:
                self._buf = bytearray(mv[end:])
        if buffered:
            del self._buf[:end]  # all views on it are gone now, so it may shrink
        self._offset += end
        return out

    def _scan(self, mv: memoryview) -> tuple[int, list[tuple[int, int, int]]]:
        """Check the chunk headers in ``mv``.

        Returns the end of the last complete chunk, and the complete data chunks as (start,
        stop, uncompressed length, or -1 for a raw chunk). A bad header raises at once, even if
        the rest of its chunk has not arrived.
        """
        n = len(mv)
        pos = 0
        chunks: list[tuple[int, int, int]] = []
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
            if kind == CHUNK_COMPRESSED:
                chunks.append((pos, stop, self._decoded_len(mv, pos, stop)))
            elif kind == CHUNK_UNCOMPRESSED:
                chunks.append((pos, stop, -1))
            elif kind == CHUNK_STREAM_IDENTIFIER:
                body = bytes(mv[pos + HEADER_SIZE : stop])
                if body != _IDENTIFIER_BODY:
                    raise CryptoError(
                        f"snappy stream identifier at offset {self._offset + pos}: body {body!r}, "
                        f"expected {_IDENTIFIER_BODY!r}"
                    )
                self._started = True
            pos = stop
        return pos, chunks

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

    def _chunk_data(self, mv: memoryview, pos: int, stop: int, decoded_len: int) -> bytes:
        """The data of the complete data chunk ``mv[pos:stop]`` (its header already checked),
        verified against its checksum; ``decoded_len`` is -1 for a raw chunk."""
        where = self._offset + pos
        (expected,) = _U32.unpack_from(mv, pos + HEADER_SIZE)
        payload = mv[pos + HEADER_SIZE + CHECKSUM_SIZE : stop]
        if decoded_len < 0:
            data = bytes(payload)
        else:
            try:
                data = bytes(_snappy.decompress_raw(payload))
            except cramjam.DecompressionError as exc:
                raise CryptoError(
                    f"snappy compressed chunk at offset {where}: expected a valid snappy "
                    f"block of {len(payload)} bytes, got one that does not decode ({exc})"
                ) from exc
            if len(data) != decoded_len:
                raise CryptoError(
                    f"snappy compressed chunk at offset {where}: decoded {len(data)} bytes, "
                    f"its block header promised {decoded_len}"
                )
        actual = _mask(_crc32c(data))
        if actual != expected:
            raise CryptoError(
                f"snappy chunk at offset {where}: checksum mismatch, the chunk says "
                f"{expected:#010x} but its {len(data)} data bytes give {actual:#010x}"
            )
        return data
