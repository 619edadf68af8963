"""The long fuzzing run: ``python3 -m tests.fuzz.run [--target NAME] [--inputs N]``.

Each target runs in a child process, one after the other. With atheris installed (the ``fuzz``
extra) the child is coverage-guided: libFuzzer mutates a corpus seeded from pyfrp's encoders,
with pyfrp's modules instrumented. Without it (or ``--engine mutate``) a havoc-style mutation
loop over the same seeds runs instead. Either way every exception that escapes a target is
counted, not fatal; each distinct one is stored under ``--crash-dir/TARGET/`` with its traceback,
ready to become a regression test. Prints one line per target, then a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                0x80000000, 0xFFFFFFFF, 12, 16, 24, 4096, 10240, 65536)  # fmt: skip


def mutate(data: bytes, rng: random.Random, corpus: list[bytes], words: tuple[bytes, ...],
           max_len: int) -> bytes:  # fmt: skip
    """1 to 6 stacked edits: flips, interesting integers, inserts, deletes, splices."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(11)
        n = len(buf)
        pos = rng.randrange(n + 1)
        if op == 0 and n:
            buf[min(pos, n - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[min(pos, n - 1)] = rng.randrange(256)
        elif op == 2:
            size = rng.choice((1, 2, 4, 8))
            value = rng.choice(_INTERESTING) & ((1 << (8 * size)) - 1)
            if rng.random() < 0.3:
                value = (n + rng.randint(-4, 4)) & ((1 << (8 * size)) - 1)
            raw = value.to_bytes(size, rng.choice(("big", "little")))
            buf[pos : pos + size] = raw
        elif op == 3:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 4 and n:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 5 and n:
            start = rng.randrange(n)
            piece = buf[start : start + rng.randint(1, 64)]
            buf[pos:pos] = piece
        elif op == 6 and words:
            word = rng.choice(words)
            if rng.random() < 0.5:
                buf[pos:pos] = word
            else:
                buf[pos : pos + len(word)] = word
        elif op == 7 and corpus:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == 8 and n:
            del buf[pos:]
        elif op == 9 and n:
            buf[pos:pos] = bytes([rng.randrange(256)]) * rng.randint(1, 300)
        elif op == 10 and n > 1:  # swap two bytes
            a, b = rng.randrange(n), rng.randrange(n)
            buf[a], buf[b] = buf[b], buf[a]
    return bytes(buf[:max_len])


class Recorder:
    """Counts inputs and unhandled exceptions; stores each distinct crasher once."""

    def __init__(self, target: str, crash_dir: Path, stats_file: Path, inputs: int) -> None:
        self.target = target
        self.crash_dir = crash_dir / target
        self.stats_file = stats_file
        self.inputs = inputs
        self.count = 0
        self.crashes = 0
        self.kinds: dict[str, str] = {}
        self.start = time.monotonic()
        self.last_write = self.start

    def run(self, fn: Callable[[bytes], None], data: bytes) -> None:
        self.count += 1
        try:
            fn(data)
        except Exception as exc:
            self.crashes += 1
            frames = traceback.extract_tb(exc.__traceback__)
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
            kind = f"{type(exc).__name__} at {where}"
            if kind not in self.kinds:
                self.crash_dir.mkdir(parents=True, exist_ok=True)
                name = hashlib.sha1(data).hexdigest()[:16]
                (self.crash_dir / name).write_bytes(data)
                text = "".join(traceback.format_exception(exc))
                (self.crash_dir / f"{name}.txt").write_text(f"input: {data!r}\n\n{text}")
                self.kinds[kind] = name
        now = time.monotonic()
        if now - self.last_write > 5 or self.count >= self.inputs:
            self.write()

    def write(self) -> None:
        self.last_write = time.monotonic()
        elapsed = self.last_write - self.start
        stats = {"target": self.target, "inputs": self.count, "seconds": round(elapsed, 1),
                 "per_second": round(self.count / elapsed) if elapsed else 0,
                 "crashes": self.crashes, "kinds": self.kinds}  # fmt: skip
        tmp = self.stats_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        tmp.replace(self.stats_file)


def _child_mutate(args: argparse.Namespace) -> None:
    from tests.fuzz.targets import TARGETS

    t = TARGETS[args.child]
    rec = Recorder(t.name, Path(args.crash_dir), Path(args.stats), args.inputs)
    rng = random.Random(args.seed)
    corpus = list(t.seeds())
    for seed in corpus:
        rec.run(t.run, seed)
    while rec.count < args.inputs:
        data = mutate(rng.choice(corpus), rng, corpus, t.dictionary, t.max_len)
        before = rec.crashes
        rec.run(t.run, data)
        # keep some variety: an occasional survivor becomes a parent
        if rec.crashes == before and rng.random() < 0.002 and len(corpus) < 2000:
            corpus.append(data)
    rec.write()


def _child_atheris(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=["pyfrp"]):
        from tests.fuzz.targets import TARGETS, cleanup

    t = TARGETS[args.child]
    rec = Recorder(t.name, Path(args.crash_dir), Path(args.stats), args.inputs)
    work = Path(tempfile.mkdtemp(prefix=f"pyfrp-fuzz-{t.name}-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(t.seeds()):
        (corpus / f"seed{i}").write_bytes(seed)
    argv = [sys.argv[0], str(corpus), f"-max_len={t.max_len}", f"-seed={args.seed}",
            f"-runs={args.inputs + 1000}", "-timeout=60", "-rss_limit_mb=4096",
            f"-artifact_prefix={work}/"]  # fmt: skip
    if t.dictionary:
        entries = "".join('"' + "".join(f"\\x{b:02x}" for b in w) + '"\n' for w in t.dictionary)
        (work / "dict").write_text(entries)
        argv.append(f"-dict={work / 'dict'}")

    def one(data: bytes) -> None:
        rec.run(t.run, data)
        if rec.count >= args.inputs:
            rec.write()
            shutil.rmtree(work, True)
            cleanup()  # os._exit skips atexit
            os._exit(0)

    atheris.Setup(argv, one)
    atheris.Fuzz()


def main() -> None:
    # A child must not import pyfrp before atheris instruments it, so names are checked later.
    p = argparse.ArgumentParser(prog="python3 -m tests.fuzz.run", description=__doc__)
    p.add_argument("--target", action="append",
                   help="fuzz only this target (repeatable); default: all")  # fmt: skip
    p.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target")
    p.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    p.add_argument("--crash-dir", default="fuzz-crashers")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--stats", help=argparse.SUPPRESS)
    args = p.parse_args()
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "mutate"
    if args.child:
        (_child_atheris if engine == "atheris" else _child_mutate)(args)
        return

    from tests.fuzz.targets import TARGETS

    unknown = set(args.target or ()) - set(TARGETS)
    if unknown:
        p.error(f"unknown target {', '.join(sorted(unknown))}; targets: {', '.join(TARGETS)}")
    rows: list[dict[str, Any]] = []
    for name in args.target or list(TARGETS):
        with tempfile.TemporaryDirectory() as d:
            stats = Path(d) / "stats.json"
            log = Path(d) / "child.log"
            cmd = [sys.executable, "-m", "tests.fuzz.run", "--child", name, "--stats", str(stats),
                   "--inputs", str(args.inputs), "--engine", engine,
                   "--crash-dir", args.crash_dir, "--seed", str(args.seed)]  # fmt: skip
            with log.open("wb") as out:
                rc = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out
                ).returncode
            row: dict[str, Any] = {"target": name, "inputs": 0, "per_second": 0, "crashes": "?"}
            with contextlib.suppress(OSError, ValueError):
                row = json.loads(stats.read_text())
            row["engine"] = engine
            if rc != 0 or row["inputs"] < args.inputs:
                row["note"] = f"child exit {rc}: " + log.read_text(errors="replace")[-400:]
        rows.append(row)
        kinds = "; ".join(f"{k} -> {v}" for k, v in row.get("kinds", {}).items())
        print(f"{name}: {row['inputs']} inputs in {row.get('seconds', '?')} s, "
              f"{row['per_second']}/s, {row['crashes']} unhandled exceptions"
              + (f" ({kinds})" if kinds else "") + (f" [{row['note']}]" if "note" in row else ""),
              flush=True)  # fmt: skip
    print("\n| target | engine | inputs | inputs/s | unhandled exceptions |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['target']} | {row['engine']} | {row['inputs']:,} | {row['per_second']:,} | "
              f"{row['crashes']} |")  # fmt: skip
    if any(r["crashes"] for r in rows):
        print(f"\ncrashers stored under {args.crash_dir}/")
        sys.exit(1)


if __name__ == "__main__":
    main()
