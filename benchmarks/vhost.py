"""Requests/s and latency through the HTTP vhost, beside the backend hit directly.

    python benchmarks/vhost.py [--duration 5] [--conns 8] [--repeat 1] [--tests LIST]
                               [--frps PATH --frpc PATH | --no-go]

Three processes besides the tunnel: a minimal keep-alive HTTP/1.1 backend (``/small``: 13 bytes,
``/big``: 1 MiB, both with Content-Length) beside a WebSocket echo server, and one load generator
per run that keeps ``--conns`` clients busy for ``--duration`` seconds and reports requests/s and
p50/p99 latency. Tests (``--tests``): ``small``/``big`` over keep-alive connections,
``small-new``/``big-new`` with a new connection for every request, ``ws``: 32-byte messages each
echoed through one WebSocket connection per client (messages/s, the round trip's latency).
Targets: the backend directly, pyfrps + pyfrpc, and Go frps + frpc (native 0.70.1 when built)
(legacy INI configs, so any frp release since 0.18 works; ``api_enable = false`` is for the
ChmlFrp fork in ../shared/peers and ignored by upstream frps); the tunnels take turns for every
repetition. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.native import native_go
from tests.harness import HOST, free_ports  # ports no connection can take

SIZES = {"small": 13, "big": 1 << 20}
VHOST = "bench.example.com"
WS_VHOST = "ws.example.com"
WS_MESSAGE = 32
# test name -> (path, mode); mode: keep-alive, one connection per request, or WebSocket
TESTS: dict[str, tuple[str, str]] = {
    "small": ("small", "keep-alive"),
    "big": ("big", "keep-alive"),
    "small-new": ("small", "new-conn"),
    "big-new": ("big", "new-conn"),
    "ws": ("ws", "websocket"),
}


# ----------------------------------------------------------------------------- backend


class _Backend(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            path = head.split(b" ", 2)[1].decode()
            body = _BODIES.get(path.strip("/"), b"")
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            )


_BODIES = {name: os.urandom(n) for name, n in SIZES.items()}


def serve_backend(port: int, ws_port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Backend, HOST, port)
        async with server, serve(echo, HOST, ws_port, compression=None):
            await server.serve_forever()

    asyncio.run(main())


# ----------------------------------------------------------------------------- load


async def _response(r: asyncio.StreamReader) -> None:
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await r.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))


async def _client(port: int, path: str, deadline: float, lat: list[float]) -> None:
    """Requests one after the other over one keep-alive connection."""
    r, w = await asyncio.open_connection(HOST, port)
    req = f"GET /{path} HTTP/1.1\r\nHost: {VHOST}\r\n\r\n".encode()
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            w.write(req)
            await _response(r)
            lat.append(time.perf_counter() - t0)
    finally:
        w.close()


async def _client_new_conn(port: int, path: str, deadline: float, lat: list[float]) -> None:
    """Every request on a connection of its own (``Connection: close``); the latency includes
    the connect."""
    req = f"GET /{path} HTTP/1.1\r\nHost: {VHOST}\r\nConnection: close\r\n\r\n".encode()
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        r, w = await asyncio.open_connection(HOST, port)
        try:
            w.write(req)
            await _response(r)
        finally:
            w.close()
        lat.append(time.perf_counter() - t0)


async def _client_ws(port: int, path: str, deadline: float, lat: list[float]) -> None:
    """Messages of WS_MESSAGE bytes over one WebSocket, each waiting for its echo."""
    from websockets.asyncio.client import connect

    msg = os.urandom(WS_MESSAGE)
    # host/port go to the socket; the URI's host is the Host header the vhost routes by
    async with connect(
        f"ws://{WS_VHOST}/", host=HOST, port=port, compression=None, proxy=None
    ) as ws:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await ws.send(msg)
            if await ws.recv() != msg:
                raise RuntimeError("echo differs")
            lat.append(time.perf_counter() - t0)


CLIENTS: dict[str, Callable[[int, str, float, list[float]], Awaitable[None]]] = {
    "keep-alive": _client,
    "new-conn": _client_new_conn,
    "websocket": _client_ws,
}


def load(port: int, test: str, conns: int, duration: float) -> dict[str, float]:
    """Requests (or WebSocket messages) per second of ``conns`` clients for ``duration``."""
    path, mode = TESTS[test]
    lat: list[float] = []

    async def main() -> None:
        deadline = time.perf_counter() + duration
        await asyncio.gather(*(CLIENTS[mode](port, path, deadline, lat) for _ in range(conns)))

    t0 = time.perf_counter()
    asyncio.run(main())
    took = time.perf_counter() - t0
    lat.sort()
    n = len(lat)
    return {
        "requests": n,
        "rps": n / took,
        "p50_ms": lat[n // 2] * 1000 if n else 0.0,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        "mib_s": n * SIZES.get(path, WS_MESSAGE) / took / (1 << 20),
    }


# ----------------------------------------------------------------------------- orchestration


def wait_http(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((HOST, port), 1) as s:
                s.sendall(f"GET /small HTTP/1.1\r\nHost: {VHOST}\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers 200 on {port}")


def start_tunnel(
    tmp: Path, frps: list[str], frpc: list[str], backend: int, ws_backend: int = 0
) -> tuple[int, list[subprocess.Popen[bytes]]]:
    bind, vhttp = free_ports(2)
    # The ChmlFrp fork in ../shared/peers needs api_enable = false; pyfrps rejects that key.
    fork = "" if "pyfrp.server" in frps else "api_enable = false\n"
    (tmp / "frps.ini").write_text(
        f"[common]\nbind_addr = {HOST}\nbind_port = {bind}\nvhost_http_port = {vhttp}\n"
        f"proxy_bind_addr = {HOST}\n{fork}"
    )
    ws = f"\n[ws]\ntype = http\nlocal_port = {ws_backend}\ncustom_domains = {WS_VHOST}\n"
    (tmp / "frpc.ini").write_text(
        f"[common]\nserver_addr = {HOST}\nserver_port = {bind}\npool_count = 8\n\n"
        f"[bench]\ntype = http\nlocal_port = {backend}\ncustom_domains = {VHOST}\n"
        + (ws if ws_backend else "")
    )
    log = open(tmp / "tunnel.log", "ab")  # noqa: SIM115 - lives as long as the processes
    procs = [subprocess.Popen([*frps, "-c", str(tmp / "frps.ini")], stdout=log, stderr=log)]
    time.sleep(1.0)
    procs.append(subprocess.Popen([*frpc, "-c", str(tmp / "frpc.ini")], stdout=log, stderr=log))
    wait_http(vhttp)
    if ws_backend:  # both proxies are registered before the first run
        wait_ws(vhttp)
    return vhttp, procs


def wait_ws(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            load(port, "ws", 1, 0.01)
            return
        except Exception:
            if time.monotonic() > end:
                raise
        time.sleep(0.1)


def run_load(port: int, test: str, conns: int, duration: float) -> dict[str, float]:
    """One load generator run, in a process of its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port), test, str(conns), str(duration)],
        check=True,
        capture_output=True,
        text=True,
        timeout=duration + 60,  # a stalled connection must not stall the whole run
    )
    return dict(json.loads(out.stdout))


def run_all(
    frps_go: str, frpc_go: str, tests: list[str], conns: int, duration: float, repeat: int
) -> list[dict[str, object]]:
    """Start the backend and the tunnels (pyfrp, then Go frp when given), run every test
    ``repeat`` times with the targets taking turns, and return one row per target and test with
    the median run's numbers (by req/s) and every run's req/s."""
    # pyfrps/pyfrpc are run as ``python -m``: measure this checkout, whatever is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
    )
    backend_port, ws_port = free_ports(2)
    backend = subprocess.Popen(
        [sys.executable, __file__, "--serve-backend", str(backend_port), str(ws_port)]
    )
    procs: list[subprocess.Popen[bytes]] = [backend]
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        wait_http(backend_port)
        targets: list[tuple[str, int]] = [("direct", backend_port)]
        with tempfile.TemporaryDirectory() as d:
            py = [sys.executable, "-m"]
            tunnels = [("pyfrp", [*py, "pyfrp.server"], [*py, "pyfrp.client"])]
            if frps_go and frpc_go:
                tunnels.append(("go-frp", [frps_go], [frpc_go]))
            for name, frps, frpc in tunnels:
                (Path(d) / name).mkdir()
                port, ps = start_tunnel(Path(d) / name, frps, frpc, backend_port, ws_port)
                procs += ps
                targets.append((name, port))
            for test in tests:
                for rep in range(repeat):
                    for name, port in targets:
                        if name == "direct" and rep:  # the ceiling: once is enough
                            continue
                        # direct WebSocket: the echo server's own port
                        at = ws_port if (name, test) == ("direct", "ws") else port
                        try:
                            got = run_load(at, test, conns, duration)
                        except subprocess.SubprocessError as exc:  # the other rows still count
                            err = getattr(exc, "stderr", "") or ""
                            print(f"{name} {test}: {exc} {err[-300:]}", file=sys.stderr)
                            continue
                        runs.setdefault((name, test), []).append(got)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    results: list[dict[str, object]] = []
    for (name, test), every in runs.items():
        rps = [g["rps"] for g in every]
        mid = sorted(every, key=lambda g: g["rps"])[len(every) // 2]
        row: dict[str, object] = {"target": name, "test": test, "response": TESTS[test][0]}
        row["mode"] = TESTS[test][1]
        row.update(mid)
        row["rps"] = statistics.median(rps)
        row["rps_runs"] = rps
        results.append(row)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--tests", default=",".join(TESTS), help="comma list of: " + ",".join(TESTS))
    frps_go, frpc_go = native_go()
    ap.add_argument(
        "--frps", default=frps_go, help=f"Go frps binary (default: {frps_go or 'none'})"
    )
    ap.add_argument(
        "--frpc", default=frpc_go, help=f"Go frpc binary (default: {frpc_go or 'none'})"
    )
    ap.add_argument("--no-go", action="store_true", help="leave the Go baseline out")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--serve-backend", type=int, nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_backend:
        serve_backend(*args.serve_backend)
        return
    if args.load:
        port, test, conns, duration = args.load
        print(json.dumps(load(int(port), test, int(conns), float(duration))))
        return
    tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    if args.no_go:
        args.frps = args.frpc = ""
    results = run_all(args.frps, args.frpc, tests, args.conns, args.duration, args.repeat)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{args.conns} clients, {args.duration:.0f} s per run, median of {args.repeat}")
    print(f"{'target':8} {'test':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'MiB/s':>8}")
    for r in results:
        print(
            f"{r['target']!s:8} {r['test']!s:10} {r['rps']:9.0f} {r['p50_ms']:8.2f} "
            f"{r['p99_ms']:8.2f} {r['mib_s']:8.1f}"
        )


if __name__ == "__main__":
    main()
