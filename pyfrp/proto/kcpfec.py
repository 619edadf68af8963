"""kcp-go's forward error correction layer, which frp turns on with 10 data and 3 parity shards.

Every KCP packet goes out as a data shard: seqid u32, type u16 (0xf1), size u16 (2 + the KCP
packet's length), the KCP packet. After each ``data_shards`` data shards the encoder sends
``parity_shards`` parity shards: seqid u32, type u16 (0xf2), then Reed-Solomon parity over the
data shards' bytes from the size field on, each zero-padded to the longest. Seqids count up
through both kinds, so a shard's place in its group is ``seqid % (data + parity)``.

The code is klauspost/reedsolomon's default: GF(2^8) with polynomial 0x11d, a 13x10 Vandermonde
matrix (row r, column c = r^c) times the inverse of its top square, so that the data shards pass
through unchanged and any 10 shards of a group give back the other 3.

kcp-go skips the parity of a group whose data trickled in (more than 500 ms between shards) and,
doing so, shifts every later group's seqids; its decoder notices and stops recovering. Ours keeps
groups aligned by skipping those seqids instead, and decodes defensively: a group is recovered
only from shards whose type matches their place, and the caller checks the recovered packet's
KCP conversation before trusting it.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

TYPE_DATA = 0xF1
TYPE_PARITY = 0xF2
HEADER_SIZE = 6  # seqid + type
HEADER_SIZE_PLUS2 = 8  # ... + size, on data shards
ENCODE_LATENCY = 500  # ms: kcp-go's maxFECEncodeLatency
GROUPS_KEPT = 3  # kcp-go keeps 3 groups' worth of shards for recovery

_DATA_HEADER = struct.Struct("<IHH")
_PARITY_HEADER = struct.Struct("<IH")

# GF(2^8), generator 2, polynomial x^8+x^4+x^3+x^2+1.
_EXP = [0] * 510
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D
for _i in range(255, 510):
    _EXP[_i] = _EXP[_i - 255]
del _x, _i


def gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def gf_div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("gf(256) division by zero")
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


def _gf_pow(a: int, n: int) -> int:
    if n == 0:
        return 1
    if a == 0:
        return 0
    return _EXP[(_LOG[a] * n) % 255]


Matrix = list[list[int]]


def _mat_mul(a: Matrix, b: Matrix) -> Matrix:
    out = []
    for row in a:
        new = []
        for c in range(len(b[0])):
            acc = 0
            for k, v in enumerate(row):
                acc ^= gf_mul(v, b[k][c])
            new.append(acc)
        out.append(new)
    return out


def _mat_invert(m: Matrix) -> Matrix:
    """Gauss-Jordan inverse of a square matrix over GF(2^8); ValueError when singular."""
    n = len(m)
    work = [list(row) + [1 if i == j else 0 for j in range(n)] for i, row in enumerate(m)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if work[r][col]), None)
        if pivot is None:
            raise ValueError("singular matrix")
        work[col], work[pivot] = work[pivot], work[col]
        inv = gf_div(1, work[col][col])
        work[col] = [gf_mul(v, inv) for v in work[col]]
        for r in range(n):
            f = work[r][col]
            if r != col and f:
                src = work[col]
                work[r] = [v ^ gf_mul(f, s) for v, s in zip(work[r], src, strict=True)]
    return [row[n:] for row in work]


@functools.cache
def coding_matrix(data_shards: int, parity_shards: int) -> Matrix:
    """klauspost/reedsolomon's default encoding matrix (data rows are the identity).

    Cached (every KCP session builds an encoder and a decoder): callers must not modify it."""
    total = data_shards + parity_shards
    vm = [[_gf_pow(r, c) for c in range(data_shards)] for r in range(total)]
    return _mat_mul(vm, _mat_invert(vm[:data_shards]))


_TABLES: dict[int, bytes] = {}


def _mul_table(c: int) -> bytes:
    """``bytes.translate`` table multiplying every byte by ``c``."""
    table = _TABLES.get(c)
    if table is None:
        table = _TABLES[c] = bytes(gf_mul(c, x) for x in range(256))
    return table


def _combine(coefs: list[int], shards: list[bytes], size: int) -> bytes:
    """sum(coef * shard) over GF(2^8), byte-wise, with shards as equal-length bytes."""
    acc = 0
    for c, shard in zip(coefs, shards, strict=True):
        if c == 0:
            continue
        if c != 1:
            shard = shard.translate(_mul_table(c))
        acc ^= int.from_bytes(shard, "little")
    return acc.to_bytes(size, "little")


class ReedSolomon:
    def __init__(self, data_shards: int, parity_shards: int) -> None:
        self.data_shards = data_shards
        self.parity_shards = parity_shards
        self.matrix = coding_matrix(data_shards, parity_shards)
        self._inverses: dict[tuple[int, ...], Matrix] = {}

    def parity(self, shards: list[bytes]) -> list[bytes]:
        """Parity shards for ``data_shards`` equal-length data shards."""
        size = len(shards[0])
        rows = self.matrix[self.data_shards :]
        return [_combine(row, shards, size) for row in rows]

    def reconstruct_data(self, present: dict[int, bytes]) -> dict[int, bytes]:
        """The missing data shards from at least ``data_shards`` equal-length present ones
        (index → shard, parity indexes after the data ones)."""
        k = self.data_shards
        if len(present) < k:
            raise ValueError("too few shards to reconstruct")
        used = tuple(sorted(present)[:k])
        inverse = self._inverses.get(used)
        if inverse is None:
            inverse = _mat_invert([self.matrix[i] for i in used])
            self._inverses[used] = inverse
        shards = [present[i] for i in used]
        size = len(shards[0])
        return {i: _combine(inverse[i], shards, size) for i in range(k) if i not in present}


class FecEncoder:
    """Wraps outgoing KCP packets in data shards and adds the parity shards."""

    def __init__(self, data_shards: int = 10, parity_shards: int = 3) -> None:
        self.rs = ReedSolomon(data_shards, parity_shards)
        self.data_shards = data_shards
        self.parity_shards = parity_shards
        total = data_shards + parity_shards
        self._paws = 0xFFFFFFFF // total * total  # seqids wrap on a group boundary
        self.next = 0
        self._shards: list[bytes] = []  # this group's data shards, from the size field on
        self._last_ms: int | None = None

    def encode(self, packet: bytes, now: int) -> list[bytes]:
        """The datagrams carrying ``packet``: its data shard, then any parity now due."""
        body = struct.pack("<H", len(packet) + 2) + packet
        out = [_PARITY_HEADER.pack(self.next, TYPE_DATA) + body]
        self.next += 1
        self._shards.append(body)
        if len(self._shards) == self.data_shards:
            recent = self._last_ms is not None and ((now - self._last_ms) & 0xFFFFFFFF) < (
                ENCODE_LATENCY
            )
            if recent:
                size = max(len(s) for s in self._shards)
                padded = [s.ljust(size, b"\0") for s in self._shards]
                for p in self.rs.parity(padded):
                    out.append(_PARITY_HEADER.pack(self.next, TYPE_PARITY) + p)
                    self.next = (self.next + 1) % self._paws
            else:
                self.next = (self.next + self.parity_shards) % self._paws
            self._shards = []
        self._last_ms = now
        return out


class FecDecoder:
    """Collects shards by group and recovers lost data shards from parity.

    ``decode`` returns the KCP packet a data shard carries (None for parity) plus any KCP
    packets recovered by this shard."""

    def __init__(self, data_shards: int = 10, parity_shards: int = 3) -> None:
        self.rs = ReedSolomon(data_shards, parity_shards)
        self.data_shards = data_shards
        self.total = data_shards + parity_shards
        # group base seqid → {index: shard from the size field on} or None once settled
        self._groups: dict[int, dict[int, bytes] | None] = {}
        self.recovered = 0

    def decode(
        self, datagram: bytes, check: Callable[[bytes], bool] | None = None
    ) -> tuple[bytes | None, list[bytes]]:
        seqid, kind = _PARITY_HEADER.unpack_from(datagram)
        body = datagram[HEADER_SIZE:]
        packet: bytes | None = None
        if kind == TYPE_DATA:
            size = int.from_bytes(body[:2], "little")
            if size < 2 or size > len(body):
                raise ValueError("fec data shard with a bad size")
            packet = body[2:size]
        index = seqid % self.total
        if (kind == TYPE_DATA) != (index < self.data_shards):
            return packet, []  # out of step with its place (a kcp-go peer skipped parity)
        base = seqid - index
        groups = self._groups
        if base not in groups:
            groups[base] = {}
            while len(groups) > GROUPS_KEPT:
                del groups[next(iter(groups))]
        group = groups[base]
        if group is None or index in group:
            return packet, []
        group[index] = body
        k = self.data_shards
        if sum(1 for i in group if i < k) == k:
            groups[base] = None  # nothing lost
            return packet, []
        if len(group) < k:
            return packet, []
        groups[base] = None
        size = max(len(s) for s in group.values())
        present = {i: s.ljust(size, b"\0") for i, s in group.items()}
        recovered = []
        for shard in self.rs.reconstruct_data(present).values():
            n = int.from_bytes(shard[:2], "little")
            if n < 2 or n > len(shard):
                continue
            kcp = shard[2:n]
            if check is None or check(kcp):
                recovered.append(kcp)
        self.recovered += len(recovered)
        return packet, recovered


def encode_data_shard(seqid: int, packet: bytes) -> bytes:
    """One data shard (for tests and tools)."""
    return _DATA_HEADER.pack(seqid, TYPE_DATA, len(packet) + 2) + packet


def shard_type(datagram: bytes | memoryview) -> int:
    """The FEC type field (0xf1/0xf2), or something else for a bare KCP packet."""
    return int.from_bytes(datagram[4:6], "little")
