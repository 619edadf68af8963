"""Throughput of the sans-IO yamux engine (pyfrp.proto.yamux): framing data out, parsing it in.

Usage: python benchmarks/yamux_frames.py [--sizes 65536 262144] [--total-mb 128] [--repeat 3]
                                         [--read-size 262144] [--json]

encode  Session(client=True).send_data(payload) + data_to_send(), one payload per write, as a
        MuxStream does for each transport.write(). The peer's window is topped up out of band.
decode  Session(client=False).receive_data(chunk) over a pre-built stream of data frames cut into
        --read-size pieces (what a socket read returns), calling consumed() for every StreamData
        event and draining the window updates that produces.
copy    the floor: b"".join([header, payload]), i.e. exactly one copy of each payload.

Besides MB/s (best of --repeat, payload bytes only) it reports how often each path copies payload
bytes, measured rather than assumed: encode with tracemalloc (bytes allocated per payload byte by
send_data and by data_to_send), decode by checking that every StreamData.data is a memoryview
over the very chunk passed to receive_data (0 copies).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from collections.abc import Callable

from pyfrp.proto.yamux import (
    FLAG_ACK,
    HEADER_SIZE,
    TYPE_DATA,
    TYPE_WINDOW_UPDATE,
    Session,
    StreamData,
    encode_header,
)

_TOP_UP = 2**31


def opened_client() -> tuple[Session, int]:
    """A client session with one stream whose send window is effectively unlimited."""
    client = Session(client=True)
    sid = client.open_stream()
    client.receive_data(encode_header(TYPE_WINDOW_UPDATE, FLAG_ACK, sid, _TOP_UP))
    client.data_to_send()
    return client, sid


def bench_encode(payload: bytes, total: int) -> float:
    client, sid = opened_client()
    rounds = max(1, total // len(payload))
    out = 0
    start = time.perf_counter()
    for _ in range(rounds):
        if client.send_window(sid) < len(payload):
            client.receive_data(encode_header(TYPE_WINDOW_UPDATE, 0, sid, _TOP_UP))
        client.send_data(sid, payload)
        out += len(client.data_to_send())
    elapsed = time.perf_counter() - start
    assert out == rounds * (len(payload) + HEADER_SIZE)
    return rounds * len(payload) / elapsed / 1e6


def bench_copy_floor(payload: bytes, total: int) -> float:
    rounds = max(1, total // len(payload))
    header = encode_header(TYPE_DATA, 0, 1, len(payload))
    start = time.perf_counter()
    for _ in range(rounds):
        b"".join([header, payload])
    return rounds * len(payload) / (time.perf_counter() - start) / 1e6


def frame_stream(payload: bytes, total: int, read_size: int) -> tuple[list[bytes], int]:
    """A client's bytes for one stream carrying ``total`` bytes, cut into socket-sized reads."""
    client = Session(client=True)
    sid = client.open_stream()
    client.receive_data(encode_header(TYPE_WINDOW_UPDATE, FLAG_ACK, sid, _TOP_UP))
    parts = [client.data_to_send()]
    for _ in range(max(1, total // len(payload))):
        client.send_data(sid, payload)
        parts.append(client.data_to_send())
    wire = b"".join(parts)
    return [wire[i : i + read_size] for i in range(0, len(wire), read_size)], sid


def bench_decode(chunks: list[bytes], sid: int) -> tuple[float, int, int]:
    """MB/s of payload, payload bytes delivered, and how many of them were views over the input."""
    server = Session(client=False)
    delivered = viewed = 0
    start = time.perf_counter()
    for chunk in chunks:
        for ev in server.receive_data(chunk):
            if type(ev) is StreamData:
                n = len(ev.data)
                delivered += n
                if type(ev.data) is memoryview and ev.data.obj is chunk:
                    viewed += n
                server.consumed(sid, n)
        server.data_to_send()
    elapsed = time.perf_counter() - start
    return delivered / elapsed / 1e6, delivered, viewed


def encode_allocations(payload: bytes) -> tuple[float, float]:
    """Bytes allocated per payload byte by send_data and by data_to_send (warm, one write)."""
    client, sid = opened_client()
    client.send_data(sid, payload)
    client.data_to_send()

    def allocated(step: Callable[[], object]) -> tuple[int, object]:
        tracemalloc.start()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak - before, result

    in_send, _ = allocated(lambda: client.send_data(sid, payload))
    in_flush, out = allocated(client.data_to_send)
    assert isinstance(out, bytes)
    assert out[HEADER_SIZE:] == payload
    return in_send / len(payload), in_flush / len(payload)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[65536, 262144])
    ap.add_argument("--total-mb", type=int, default=128, help="payload pushed per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--read-size", type=int, default=262144, help="decode input chunk size")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args(argv)
    total = args.total_mb * 1_000_000

    for size in args.sizes:
        payload = os.urandom(size)
        chunks, sid = frame_stream(payload, total, args.read_size)
        enc = max(bench_encode(payload, total) for _ in range(args.repeat))
        floor = max(bench_copy_floor(payload, total) for _ in range(args.repeat))
        dec_runs = [bench_decode(chunks, sid) for _ in range(args.repeat)]
        dec = max(r[0] for r in dec_runs)
        _, delivered, viewed = dec_runs[0]
        send_alloc, flush_alloc = encode_allocations(payload)
        row = {
            "payload": size,
            "encode_mb_s": round(enc, 1),
            "decode_mb_s": round(dec, 1),
            "one_copy_floor_mb_s": round(floor, 1),
            "encode_copies_in_send_data": round(send_alloc, 3),
            "encode_copies_in_data_to_send": round(flush_alloc, 3),
            "decode_bytes_as_input_views": f"{viewed}/{delivered}",
        }
        if args.json:
            print(json.dumps(row))
            continue
        kib = size // 1024
        print(f"{kib:>4} KiB payloads, {args.total_mb} MB per run, best of {args.repeat}:")
        print(f"  encode  send_data + data_to_send   {enc:9.1f} MB/s")
        print(f"  copy    one join (floor)           {floor:9.1f} MB/s")
        print(f"  decode  receive_data + consumed    {dec:9.1f} MB/s  ({args.read_size} B reads)")
        print(
            f"  encode copies: send_data {send_alloc:.3f} B/B (keeps a view),"
            f" data_to_send {flush_alloc:.3f} B/B (the one join)"
        )
        share = viewed / delivered if delivered else 0.0
        print(
            f"  decode copies: 0; {viewed} of {delivered} payload bytes ({share:.1%})"
            " arrived as memoryviews over the receive_data input"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
