"""Throughput of the work-connection codecs: AES-128-CFB and snappy framing.

Usage: python benchmarks/codecs.py [--sizes 16384 65536 262144] [--total-mb 64] [--repeat 3]

Each case pushes --total-mb of data through one codec object in writes of the given size, as a
splice would, and prints the best of --repeat runs in MB/s of plaintext. Decoders are fed the
encoded stream re-cut into pieces of the same size, as a socket would deliver it. "random" is
incompressible (snappy stores it raw); "text" is log-like and shrinks to about 0.4 of its size.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable, Sequence

from pyfrp.proto.crypto import StreamDecryptor, StreamEncryptor, derive_key
from pyfrp.proto.snappy import SnappyFrameDecoder, SnappyFrameEncoder

Codec = Callable[[bytes], bytes]


def text_bytes(size: int, seed: int = 1) -> bytes:
    """Log-like lines: timestamps, a few levels and words, counters."""
    rng = random.Random(seed)
    words = ["proxy", "work", "conn", "stream", "login", "ok", "closed", "bytes", "user", "tcp"]
    levels = ["I", "W", "D"]
    out = bytearray()
    while len(out) < size:
        line = (
            f"2026-11-28 12:{rng.randrange(60):02d}:{rng.randrange(60):02d} "
            f"[{rng.choice(levels)}] [{rng.choice(words)}] "
            f"{' '.join(rng.choices(words, k=rng.randint(2, 8)))} {rng.randrange(1 << 20)}\n"
        )
        out += line.encode()
    return bytes(out[:size])


def recut(pieces: Sequence[bytes], size: int) -> list[bytes]:
    stream = b"".join(pieces)
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def run(make: Callable[[], Codec], inputs: Sequence[bytes], plain_bytes: int, repeat: int) -> float:
    """Best MB/s over ``repeat`` runs of a fresh codec over all ``inputs``."""
    best = float("inf")
    for _ in range(repeat):
        codec = make()
        start = time.perf_counter()
        for piece in inputs:
            codec(piece)
        best = min(best, time.perf_counter() - start)
    return plain_bytes / best / 1e6


def bench(size: int, total: int, repeat: int) -> list[tuple[str, float]]:
    key = derive_key("benchmark-token")
    count = max(1, total // size)
    results: list[tuple[str, float]] = []
    for label, write in [("random", os.urandom(size)), ("text", text_bytes(size))]:
        writes = [write] * count
        plain = size * count

        enc = StreamEncryptor(key)
        ciphertext = recut([enc.encrypt(w) for w in writes], size)
        results.append(
            (f"encrypt {label}", run(lambda: StreamEncryptor(key).encrypt, writes, plain, repeat))
        )
        results.append(
            (
                f"decrypt {label}",
                run(lambda: StreamDecryptor(key).decrypt, ciphertext, plain, repeat),
            )
        )

        senc = SnappyFrameEncoder()
        framed = [senc.encode(w) for w in writes]
        ratio = sum(map(len, framed)) / plain
        results.append(
            (
                f"snappy encode {label} ({ratio:.2f}x)",
                run(lambda: SnappyFrameEncoder().encode, writes, plain, repeat),
            )
        )
        results.append(
            (
                f"snappy decode {label}",
                run(lambda: SnappyFrameDecoder().decode, recut(framed, size), plain, repeat),
            )
        )

        def pipeline_out() -> Codec:
            s, e = SnappyFrameEncoder(), StreamEncryptor(key)
            return lambda data: e.encrypt(s.encode(data))

        def pipeline_in() -> Codec:
            d, s = StreamDecryptor(key), SnappyFrameDecoder()
            return lambda data: s.decode(d.decrypt(data))

        out = pipeline_out()
        wire = recut([out(w) for w in writes], size)
        results.append((f"snappy+encrypt {label}", run(pipeline_out, writes, plain, repeat)))
        results.append((f"decrypt+snappy {label}", run(pipeline_in, wire, plain, repeat)))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[16384, 65536, 262144], help="write sizes in bytes"
    )
    parser.add_argument("--total-mb", type=float, default=64.0, help="data per case, in MB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts")
    args = parser.parse_args(argv)
    total = int(args.total_mb * 1e6)
    print(f"{'case':40s} {'write':>8s} {'MB/s':>9s}")
    for size in args.sizes:
        for name, mbps in bench(size, total, args.repeat):
            print(f"{name:40s} {size:8d} {mbps:9.0f}")


if __name__ == "__main__":
    main()
