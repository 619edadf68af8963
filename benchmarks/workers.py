"""How pyfrps and pyfrpc scale with ``pyfrp.workers``, beside native Go frp (one process, every
core) under the same load, in one run.

    python benchmarks/workers.py                      # pyfrps, workers 1 and 2 (the cores here)
    python benchmarks/workers.py --workers 1 2 4 --clients 8 --json out.json
    python benchmarks/workers.py --side client        # one pyfrpc carrying many streams

``--side server`` (the default): several frpc, each with its own tcp proxy, loaded at once;
every setup gets as many frpc processes (pyfrpc; Go frpc for the Go row). ``--side client``: one
frpc with one tcp proxy carrying ``--clients`` x ``--streams`` downloads at once, through native
Go frps (so that the relay is not what limits), pyfrpc with each ``--workers`` beside Go frpc.
Setups take turns for every repetition. Besides the rates it prints the CPU seconds each process
of the side under test used during the load: how the work spread over its processes.
Only 127.0.0.1 is ever a target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.native import native_go
from benchmarks.relay import (
    CHUNK,
    Runner,
    children,
    conn_rate,
    download,
    raise_fd_limit,
    wait_port,
)
from tests.harness import HOST, free_ports

VARIANTS = {"default": "true", "no-mux": "false"}  # transport.tcpMux; TLS on as frp's default


@dataclass
class Cluster:
    name: str
    remotes: list[int]
    pids: list[int]  # the processes of the side under test


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def cluster(
    runner: Runner, name: str, frps: list[str], frpc: list[str], workers: int, clients: int,
    mux: str, side: str,
) -> Iterator[Cluster]:  # fmt: skip
    bind, *remotes = free_ports(1 + clients)
    tag = name.replace(" ", "_")
    extra = f"pyfrp.workers = {workers}\n" if workers else ""
    s_cfg = runner.tmp / f"{tag}-s.toml"
    s_cfg.write_text(
        f'bindAddr = "{HOST}"\nbindPort = {bind}\nauth.token = "bench"\n'
        f'transport.tcpMux = {mux}\nlog.level = "warn"\n{"" if side == "client" else extra}'
    )
    if side == "client":  # one frpc, one proxy, every stream
        remotes = remotes[:1]
    procs = [runner._spawn([*frps, "-c", str(s_cfg)], f"{tag}-frps")]
    try:
        wait_port(bind)
        for n, remote in enumerate(remotes):
            c_cfg = runner.tmp / f"{tag}-c{n}.toml"
            c_cfg.write_text(
                f'serverAddr = "{HOST}"\nserverPort = {bind}\nauth.token = "bench"\n'
                f'transport.tcpMux = {mux}\ntransport.poolCount = 8\nlog.level = "warn"\n'
                f"{extra if side == 'client' else ''}"
                # each frpc from its own address, as on a real relay: pyfrps places a client
                # on a worker by its address
                f'transport.connectServerLocalIP = "127.0.0.{n + 2}"\n'
                f'[[proxies]]\nname = "b{n}"\ntype = "tcp"\nlocalIP = "{HOST}"\n'
                f"localPort = {runner.backend_port}\nremotePort = {remote}\n"
            )
            procs.append(runner._spawn([*frpc, "-c", str(c_cfg)], f"{tag}-frpc{n}"))
        for remote in remotes:
            _wait_echo(remote)
        if side == "server":
            pid = procs[0].pid
            yield Cluster(name, remotes, children(pid) if workers > 1 else [pid])
        else:
            pid = procs[1].pid
            yield Cluster(name, remotes * clients, [pid, *children(pid)])  # load x clients
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()


def _wait_echo(port: int) -> None:
    end = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((HOST, port), 2) as s:
                s.settimeout(2)
                s.sendall(b"Eok")
                if s.recv(2) == b"ok":
                    return
        except OSError:
            if time.monotonic() > end:
                raise
        time.sleep(0.05)


def aggregate_download(remotes: list[int], size: int, streams: int) -> float:
    """MB/s of ``streams`` downloads of ``size`` bytes through every proxy at once."""
    errors: list[BaseException] = []

    def run(port: int) -> None:
        try:
            download(port, size)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in remotes for _ in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return size * len(threads) / (time.perf_counter() - t0) / 1e6


def aggregate_conn_rate(remotes: list[int], seconds: float) -> float:
    rates: list[float] = []
    threads = [
        threading.Thread(target=lambda p=p: rates.append(conn_rate(p, seconds, 4))) for p in remotes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 2])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--streams", type=int, default=2, help="parallel downloads per proxy")
    ap.add_argument("--size-mib", type=int, default=64, help="per download")
    ap.add_argument("--seconds", type=float, default=3.0, help="of each connections/s run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--side", choices=["server", "client"], default="server")
    ap.add_argument("--json")
    args = ap.parse_args()
    raise_fd_limit(65536)
    py = sys.executable
    pyfrps, pyfrpc = [py, "-m", "pyfrp.server"], [py, "-m", "pyfrp.client"]
    go_frps, go_frpc = native_go()  # $FRPS_GO/$FRPC_GO or ../shared/peers/native's build
    setups: list[tuple[str, list[str], list[str], int]]
    if args.side == "server":
        setups = [(f"pyfrps workers={w}", pyfrps, pyfrpc, w) for w in args.workers]
        if go_frps and go_frpc:
            setups.append(("Go frps 0.70.1", [go_frps], [go_frpc], 0))
    else:  # through Go frps where it is built, so that the relay is not the limit
        relay = [go_frps] if go_frps else pyfrps
        setups = [(f"pyfrpc workers={w}", relay, pyfrpc, w) for w in args.workers]
        if go_frps and go_frpc:
            setups.append(("Go frpc 0.70.1", relay, [go_frpc], 0))
    runner = Runner(argparse.Namespace())
    size = args.size_mib * CHUNK
    results: list[dict[str, object]] = []
    try:
        for variant, mux in VARIANTS.items():
            rates: dict[str, list[float]] = {s[0]: [] for s in setups}
            conns: dict[str, list[float]] = {s[0]: [] for s in setups}
            cpu: dict[str, list[list[float]]] = {s[0]: [] for s in setups}
            for _ in range(args.repeat):
                for name, frps, frpc, workers in setups:
                    with cluster(
                        runner, name, frps, frpc, workers, args.clients, mux, args.side
                    ) as c:
                        before = [cpu_seconds(p) for p in c.pids]
                        rates[name].append(aggregate_download(c.remotes, size, args.streams))
                        conns[name].append(aggregate_conn_rate(c.remotes, args.seconds))
                        after = [cpu_seconds(p) for p in c.pids]
                        cpu[name].append([b - a for a, b in zip(before, after, strict=True)])
            for name, *_ in setups:
                row = {
                    "variant": variant,
                    "setup": name,
                    "clients": args.clients,
                    "download_MBps": statistics.median(rates[name]),
                    "conn_per_s": statistics.median(conns[name]),
                    # the median repetition's split (by its total)
                    "side": args.side,
                    "cpu_s_per_process": [
                        round(x, 2) for x in sorted(cpu[name], key=sum)[len(cpu[name]) // 2]
                    ],
                }
                results.append(row)
                print(
                    f"{variant:8} {name:20} {row['download_MBps']:8.1f} MB/s "
                    f"{row['conn_per_s']:8.0f} conn/s  {args.side} CPU s by process "
                    f"{row['cpu_s_per_process']}",
                    flush=True,
                )
    finally:
        runner.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
