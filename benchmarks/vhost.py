"""Requests/s and latency through the HTTP vhost, beside the backend hit directly.

    python benchmarks/vhost.py [--duration 5] [--conns 8] [--frps PATH --frpc PATH | --no-go]

Three processes besides the tunnel: a minimal keep-alive HTTP/1.1 backend (``/small``: 13 bytes,
``/big``: 1 MiB, both with Content-Length), and one load generator per run that keeps ``--conns``
keep-alive connections busy for ``--duration`` seconds and reports requests/s and p50/p99 latency.
Targets: the backend directly, pyfrps + pyfrpc, and Go frps + frpc (native 0.70.1 when built)
(legacy INI configs, so any frp release since 0.18 works; ``api_enable = false`` is for the
ChmlFrp fork in ../shared/peers and ignored by upstream frps). Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.native import native_go
from tests.harness import HOST, free_port, free_ports  # ports no connection can take

SIZES = {"small": 13, "big": 1 << 20}
VHOST = "bench.example.com"


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


def serve_backend(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Backend, HOST, port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ----------------------------------------------------------------------------- load


async def _client(port: int, path: str, deadline: float, lat: list[float]) -> None:
    r, w = await asyncio.open_connection(HOST, port)
    req = f"GET /{path} HTTP/1.1\r\nHost: {VHOST}\r\n\r\n".encode()
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await r.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            lat.append(time.perf_counter() - t0)
    finally:
        w.close()


def load(port: int, path: str, conns: int, duration: float) -> dict[str, float]:
    lat: list[float] = []

    async def main() -> None:
        deadline = time.perf_counter() + duration
        await asyncio.gather(*(_client(port, path, deadline, lat) for _ in range(conns)))

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
        "mib_s": n * SIZES[path] / took / (1 << 20),
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
    tmp: Path, frps: list[str], frpc: list[str], backend: int
) -> tuple[int, list[subprocess.Popen[bytes]]]:
    bind, vhttp = free_ports(2)
    # The ChmlFrp fork in ../shared/peers needs api_enable = false; pyfrps rejects that key.
    fork = "" if "pyfrp.server" in frps else "api_enable = false\n"
    (tmp / "frps.ini").write_text(
        f"[common]\nbind_addr = {HOST}\nbind_port = {bind}\nvhost_http_port = {vhttp}\n"
        f"proxy_bind_addr = {HOST}\n{fork}"
    )
    (tmp / "frpc.ini").write_text(
        f"[common]\nserver_addr = {HOST}\nserver_port = {bind}\npool_count = 8\n\n"
        f"[bench]\ntype = http\nlocal_port = {backend}\ncustom_domains = {VHOST}\n"
    )
    log = open(tmp / "tunnel.log", "ab")  # noqa: SIM115 - lives as long as the processes
    procs = [subprocess.Popen([*frps, "-c", str(tmp / "frps.ini")], stdout=log, stderr=log)]
    time.sleep(1.0)
    procs.append(subprocess.Popen([*frpc, "-c", str(tmp / "frpc.ini")], stdout=log, stderr=log))
    wait_http(vhttp)
    return vhttp, procs


def run_load(port: int, path: str, conns: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port), path, str(conns), str(duration)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=8)
    frps_go, frpc_go = native_go()
    ap.add_argument(
        "--frps", default=frps_go, help=f"Go frps binary (default: {frps_go or 'none'})"
    )
    ap.add_argument(
        "--frpc", default=frpc_go, help=f"Go frpc binary (default: {frpc_go or 'none'})"
    )
    ap.add_argument("--no-go", action="store_true", help="leave the Go baseline out")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    # pyfrps/pyfrpc are run as ``python -m``: measure this checkout, whatever is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
    )
    if args.serve_backend:
        serve_backend(args.serve_backend)
        return
    if args.load:
        port, path, conns, duration = args.load
        print(json.dumps(load(int(port), path, int(conns), float(duration))))
        return

    backend_port = free_port()
    backend = subprocess.Popen([sys.executable, __file__, "--serve-backend", str(backend_port)])
    procs: list[subprocess.Popen[bytes]] = [backend]
    results: list[dict[str, object]] = []
    try:
        wait_http(backend_port)
        targets: list[tuple[str, int]] = [("direct", backend_port)]
        with tempfile.TemporaryDirectory() as d:
            py = Path(d) / "py"
            py.mkdir()
            port, ps = start_tunnel(
                py,
                [sys.executable, "-m", "pyfrp.server"],
                [sys.executable, "-m", "pyfrp.client"],
                backend_port,
            )
            procs += ps
            targets.append(("pyfrp", port))
            if args.frps and args.frpc and not args.no_go:
                go = Path(d) / "go"
                go.mkdir()
                port, ps = start_tunnel(go, [args.frps], [args.frpc], backend_port)
                procs += ps
                targets.append(("go-frp", port))
            for name, port in targets:
                for path in SIZES:
                    row: dict[str, object] = {"target": name, "response": path}
                    row.update(run_load(port, path, args.conns, args.duration))
                    results.append(row)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{args.conns} keep-alive connections, {args.duration:.0f} s per row")
    print(f"{'target':8} {'response':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'MiB/s':>8}")
    for r in results:
        print(
            f"{r['target']:8} {r['response']:8} {r['rps']:9.0f} {r['p50_ms']:8.2f} "
            f"{r['p99_ms']:8.2f} {r['mib_s']:8.1f}"
        )


if __name__ == "__main__":
    main()
