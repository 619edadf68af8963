"""The soak: what a long-lived relay must keep flat, for pyfrp and native Go frp side by side.

    python benchmarks/soak.py                       # 10^5 connections, defaults below
    python benchmarks/soak.py --connections 1000000 --json soak.json

Phases, each on a fresh frps + frpc (TLS and tcp_mux on, frp's defaults) with one tcp proxy:

* ``churn``: N short connections through the tunnel (64-byte echo, then close), W at a time;
  frps's and frpc's RSS and open fds sampled every N/10: they must end where they were after
  the first tenth (no leak per connection).
* ``slow reader``: one user asks the backend for 1 GiB and never reads; for 20 s the RSS of frps
  and frpc must not grow by more than the flow-control windows (yamux 6 MiB, socket buffers).
* ``idle``: 10 000 tunnelled connections held open, each proven by a 1-byte echo; RSS per
  connection.
* ``burst``: 1000 connections opened at once, each echoing 1 KiB: how many fail.

Only 127.0.0.1 is used. Not part of the test suite: it takes minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.native import native_go
from benchmarks.relay import Runner, Setup, idle_conns, raise_fd_limit, rss_kib
from tests.harness import HOST

MIB = 1024 * 1024


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sample(setup: Setup) -> dict[str, int]:
    out: dict[str, int] = {}
    for role, pid in setup.rss_pids.items():
        out[f"{role}_rss_kib"] = rss_kib(pid)
        out[f"{role}_fds"] = fds(pid)
    return out


def _echo_once(port: int, payload: bytes) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=10) as s:
            s.settimeout(10)
            s.sendall(b"E" + payload)
            got = b""
            while len(got) < len(payload):
                d = s.recv(len(payload) - len(got))
                if not d:
                    return False
                got += d
            return got == payload
    except OSError:
        return False


def churn(setup: Setup, n: int, workers: int) -> dict[str, Any]:
    msg = os.urandom(64)
    lock = threading.Lock()
    state = {"done": 0, "failed": 0}
    samples: list[dict[str, Any]] = []
    step = max(1, n // 10)
    t0 = time.perf_counter()

    def run() -> None:
        while True:
            with lock:
                if state["done"] + state["failed"] >= n:
                    return
                k = state["done"] + state["failed"]
                if k and k % step == 0:
                    samples.append(
                        {"connections": k, "seconds": round(time.perf_counter() - t0, 1)}
                        | sample(setup)
                    )
                state["done"] += 1  # counted now, corrected below on failure
            if not _echo_once(setup.port, msg):
                with lock:
                    state["done"] -= 1
                    state["failed"] += 1

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    time.sleep(1)  # let the relays close the last ones
    samples.append({"connections": n, "seconds": round(dt, 1)} | sample(setup))
    return {
        "connections": n,
        "failed": state["failed"],
        "conn_per_s": round(n / dt),
        "samples": samples,
    }


def slow_reader(setup: Setup, seconds: float) -> dict[str, Any]:
    before = sample(setup)
    peak = dict(before)
    with socket.create_connection((HOST, setup.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"D" + (1 << 30).to_bytes(8, "big"))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(1)
            now = sample(setup)
            for k, v in now.items():
                peak[k] = max(peak[k], v)
        # and the tunnel still answers others meanwhile
        alive = _echo_once(setup.port, b"still here")
    return {
        "seconds": seconds,
        "growth_kib": {k: peak[k] - before[k] for k in before if k.endswith("rss_kib")},
        "others_served": alive,
    }


def idle(setup: Setup, n: int) -> dict[str, Any]:
    before = sample(setup)
    with idle_conns(setup.port, n) as held:
        time.sleep(1)
        during = sample(setup)
    per = {
        k: round((during[k] - before[k]) / max(held, 1), 2) for k in before if k.endswith("rss_kib")
    }
    return {"held": held, "wanted": n, "rss_kib_per_conn": per}


def burst(setup: Setup, n: int) -> dict[str, Any]:
    payload = os.urandom(1024)
    results: list[bool] = []
    barrier = threading.Barrier(n)

    def one() -> None:
        barrier.wait()
        results.append(_echo_once(setup.port, payload))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"connections": n, "failed": results.count(False)}


def summary(phase: str, r: dict[str, Any]) -> str:
    """One line per phase and implementation."""
    if phase == "churn":
        first, last = r["samples"][0], r["samples"][-1]
        head = f"{r['connections']} conns, {r['failed']} failed, {r['conn_per_s']}/s;"
        return " ".join(
            [head]
            + [
                f"{role} RSS {first[f'{role}_rss_kib'] / 1024:.1f}->"
                f"{last[f'{role}_rss_kib'] / 1024:.1f} MiB, "
                f"fds {first[f'{role}_fds']}->{last[f'{role}_fds']};"
                for role in ("server", "client")
            ]
        )
    if phase == "slow":
        g = r["growth_kib"]
        return (
            f"{r['seconds']:.0f} s unread: server RSS +{g['server_rss_kib'] / 1024:.1f} MiB, "
            f"client +{g['client_rss_kib'] / 1024:.1f} MiB; others served: {r['others_served']}"
        )
    if phase == "idle":
        per = r["rss_kib_per_conn"]
        return (
            f"{r['held']}/{r['wanted']} held; RSS per connection: server "
            f"{per['server_rss_kib']:.1f} KiB, client {per['client_rss_kib']:.1f} KiB"
        )
    return f"{r['connections']} at once, {r['failed']} failed"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--slow-seconds", type=float, default=20)
    ap.add_argument("--idle", type=int, default=10_000)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--skip", default="", help="comma list of: churn,slow,idle,burst")
    ap.add_argument("--no-go", action="store_true", help="leave native Go frp out")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
    )
    raise_fd_limit(4 * max(args.idle, args.burst) + 1024)
    skip = set(filter(None, args.skip.split(",")))
    frps_go, frpc_go = ("", "") if args.no_go else native_go()
    impls: list[tuple[str, list[str], list[str], bool]] = [
        (
            "pyfrp",
            [sys.executable, "-m", "pyfrp.server"],
            [sys.executable, "-m", "pyfrp.client"],
            False,
        )
    ]
    if frps_go and frpc_go:
        impls.append(("go-frp", [frps_go], [frpc_go], True))
    phases: list[tuple[str, Callable[[Setup], dict[str, Any]]]] = [
        ("churn", lambda s: churn(s, args.connections, args.workers)),
        ("slow", lambda s: slow_reader(s, args.slow_seconds)),
        ("idle", lambda s: idle(s, args.idle)),
        ("burst", lambda s: burst(s, args.burst)),
    ]
    runner = Runner(args)
    report: dict[str, dict[str, Any]] = {}
    try:
        for phase, fn in phases:
            if phase in skip:
                continue
            for name, frps, frpc, toml in impls:
                with runner.frp(f"{name} {phase}", frps, frpc, {}, toml) as setup:
                    result = fn(setup)
                report.setdefault(phase, {})[name] = result
                print(f"{phase:6} {name:7} {summary(phase, result)}", flush=True)
    finally:
        runner.close()
    if args.json:
        Path(args.json).write_text(
            json.dumps({"when": time.time(), "args": vars(args), "report": report}, indent=1)
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
