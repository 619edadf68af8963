"""Throughput through a tcp proxy over a long, lossy path: pyfrp vs native Go frp 0.70.1.

frps and frpc live in two network namespaces of their own joined by the delaying wire of
tests/netns.py (the kernel here has no netem: every IP packet is held for half the RTT by a
user-space forwarder; loss is the kernel's, an nftables random drop on both ends). The user
(frps's namespace) pushes N MiB to a sink behind frpc ("up") and pulls N MiB from a source
("down"). Every configuration is started fresh and they take turns in every repetition:

- ``direct``: plain TCP across the same wire, no frp (the wire's own ceiling);
- ``go`` / ``pyfrp``: frps + frpc with tcp_mux (or without, ``--no-mux`` adds those).

    sudo python benchmarks/rtt.py --rtt-ms 50 --size-mib 64 --repeat 3 --json rtt.json
    sudo python benchmarks/rtt.py --rtt-ms 50 --loss 1 --size-mib 16

Needs root, ``ip`` and nftables; only our own namespaces carry traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.native import native_go
from tests.harness import Proc
from tests.netns import CLI_IP, NetPair, in_netns, skip_reason

ROOT = Path(__file__).resolve().parent.parent
BIND, REMOTE, BACKEND = 7000, 6000, 5201  # inside our namespaces only
TOKEN = "rtt-bench"
CHUNK = 1 << 20


def backend(ns: str) -> socket.socket:
    """In ``ns``: 'U'+size reads size bytes then answers 'k'; 'D'+size sends size bytes."""
    with in_netns(ns):
        srv = socket.create_server(("0.0.0.0", BACKEND), backlog=64)

    def serve(c: socket.socket) -> None:
        with c:
            head = b""
            while len(head) < 9:
                d = c.recv(9 - len(head))
                if not d:
                    return
                head += d
            op, size = head[:1], struct.unpack("!Q", head[1:])[0]
            if op == b"U":
                left = size
                while left > 0:
                    d = c.recv(min(CHUNK, left))
                    if not d:
                        return
                    left -= len(d)
                c.sendall(b"k")
            else:
                buf = b"\x5a" * CHUNK
                left = size
                while left > 0:
                    n = min(CHUNK, left)
                    c.sendall(buf[:n])
                    left -= n
                c.recv(1)  # the user closes when it has everything

    def accept() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv


def transfer(ns: str, host: str, port: int, op: bytes, size: int) -> float:
    """MB/s of one ``op`` transfer of ``size`` bytes, as the user in ``ns`` sees it."""
    with in_netns(ns):
        c = socket.create_connection((host, port), 30)
    with c:
        c.settimeout(120)
        t0 = time.monotonic()
        c.sendall(op + struct.pack("!Q", size))
        if op == b"U":
            buf = b"\xa5" * CHUNK
            left = size
            while left > 0:
                n = min(CHUNK, left)
                c.sendall(buf[:n])
                left -= n
            if c.recv(1) != b"k":
                raise RuntimeError("the sink did not confirm")
        else:
            left = size
            while left > 0:
                d = c.recv(CHUNK)
                if not d:
                    raise RuntimeError(f"EOF with {left} bytes to go")
                left -= len(d)
        took = time.monotonic() - t0
    return size / took / 1e6


def wait_tunnel(ns: str, port: int, procs: list[Proc], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited:\n{p.log()[-2000:]}")
        try:
            transfer(ns, "127.0.0.1", port, b"U", 16)
            return
        except (OSError, RuntimeError):
            time.sleep(0.2)
    raise RuntimeError(f"tunnel on {port} not up after {timeout}s")


def ini(mux: bool) -> tuple[str, str]:
    frps = f"[common]\nbind_port = {BIND}\ntoken = {TOKEN}\ntcp_mux = {mux}\n"
    frpc = (
        f"[common]\nserver_addr = 10.77.0.1\nserver_port = {BIND}\ntoken = {TOKEN}\n"
        f"tcp_mux = {mux}\n[bench]\ntype = tcp\nlocal_port = {BACKEND}\nremote_port = {REMOTE}\n"
    )
    return frps, frpc


def run_pair(
    net: NetPair, tmp: Path, impl: str, mux: bool, go: tuple[str, str], measure: Callable[[], Any]
) -> Any:
    frps_text, frpc_text = ini(mux)
    procs: list[Proc] = []
    for side, ns, text in (("s", net.srv, frps_text), ("c", net.cli, frpc_text)):
        cfg = tmp / f"{impl}-frp{side}.ini"
        cfg.write_text(text)
        if impl == "go":
            exe = [go[0] if side == "s" else go[1]]
        else:
            exe = [sys.executable, "-m", "pyfrp.server" if side == "s" else "pyfrp.client"]
        argv = [*net.exec_argv(ns), *exe, "-c", str(cfg)]
        procs.append(Proc(f"{impl}-frp{side}", argv, tmp / f"{impl}-frp{side}.log", ROOT))
        if side == "s":
            time.sleep(0.5)  # frps listening before frpc's first login
    try:
        wait_tunnel(net.srv, REMOTE, procs)
        return measure()
    finally:
        for p in reversed(procs):
            p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rtt-ms", type=float, default=50.0)
    ap.add_argument("--loss", type=float, default=0.0, help="percent dropped at each end")
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--no-mux", action="store_true", help="also tcp_mux = false for both")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    why = skip_reason()
    if why:
        sys.exit(f"cannot run: {why}")
    os.environ["PYTHONPATH"] = str(ROOT)
    go = native_go()
    size = args.size_mib << 20
    net = NetPair(delay_ms=args.rtt_ms / 2, mtu=args.mtu)
    configs: list[tuple[str, str, bool]] = [("direct", "direct", True)]
    for mux in (True, False) if args.no_mux else (True,):
        tag = "" if mux else "-nomux"
        if all(go):
            configs.append((f"go{tag}", "go", mux))
        configs.append((f"pyfrp{tag}", "pyfrp", mux))
    results: dict[str, dict[str, list[float]]] = {c[0]: {"up": [], "down": []} for c in configs}
    try:
        if args.loss:
            net.loss(args.loss)
        srv = backend(net.cli)
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            for rep in range(args.repeat):
                for name, impl, mux in configs:

                    def measure(port: int = REMOTE, host: str = "127.0.0.1") -> tuple[float, float]:
                        return (
                            transfer(net.srv, host, port, b"U", size),
                            transfer(net.srv, host, port, b"D", size),
                        )

                    if impl == "direct":
                        up, down = measure(BACKEND, CLI_IP)
                    else:
                        up, down = run_pair(net, tmp, impl, mux, go, measure)
                    results[name]["up"].append(up)
                    results[name]["down"].append(down)
                    print(f"rep {rep + 1} {name:12s} up {up:7.1f} MB/s  down {down:7.1f} MB/s")
        srv.close()
    finally:
        net.close()
    print(f"\n{args.rtt_ms:g} ms RTT, {args.loss:g} % loss, {args.size_mib} MiB, median MB/s:")
    summary = {}
    for name, r in results.items():
        summary[name] = {k: statistics.median(v) for k, v in r.items()}
        print(f"  {name:12s} up {summary[name]['up']:7.1f}  down {summary[name]['down']:7.1f}")
    if args.json:
        out = {
            "rtt_ms": args.rtt_ms,
            "loss_percent": args.loss,
            "size_mib": args.size_mib,
            "mtu": args.mtu,
            "go": go[0] or None,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "runs": results,
            "median_mb_s": summary,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
