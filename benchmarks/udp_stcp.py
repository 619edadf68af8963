"""udp, stcp and xtcp through frp, beside the direct path and native Go frp in the same run.

    python benchmarks/udp_stcp.py [--seconds 5] [--size-mib 128] [--xtcp-size-mib 32]
                                  [--frps-go P --frpc-go P | --no-go]

udp: ``--sockets`` user sockets each keep ``--window`` datagrams of ``--payload`` bytes in flight
to a UDP echo behind a udp proxy for ``--seconds``; printed are datagrams/s and MB/s echoed (both
ways counted once) and the share lost. stcp: a visitor's bind port -> frps -> the proxy's frpc ->
the relay benchmark's backend (benchmarks/backend.py); MB/s up and down with 1 and 4 streams.
xtcp: the same through the QUIC tunnel two frpc punch on loopback (a loopback STUN server).
Setups take turns for every repetition. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.native import native_go
from benchmarks.relay import CHUNK, throughput, wait_port
from tests.harness import HOST, free_ports, stun_server  # ports no connection can take

HERE = Path(__file__).resolve().parent


def udp_echo(port: int) -> None:
    """The UDP echo backend (run as a child process)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((HOST, port))
    while True:
        data, addr = s.recvfrom(65536)
        s.sendto(data, addr)


def udp_load(
    port: int, seconds: float, sockets: int, window: int, payload: int
) -> dict[str, float]:
    """Echoed datagrams/s, MB/s and the share lost (datagrams never answered)."""
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.connect((HOST, port))
        s.setblocking(False)
        socks.append(s)
    data = os.urandom(payload)
    sent = got = 0
    inflight = {s: 0 for s in socks}
    last_answer = {s: time.monotonic() for s in socks}
    t0 = time.perf_counter()
    end = t0 + seconds
    try:
        while time.perf_counter() < end:
            now = time.monotonic()
            for s in socks:
                if now - last_answer[s] > 0.2:  # lost datagrams: open the window again
                    inflight[s] = 0
                    last_answer[s] = now
                while inflight[s] < window:
                    try:
                        s.send(data)
                    except BlockingIOError:
                        break
                    inflight[s] += 1
                    sent += 1
            ready, _, _ = select.select(socks, [], [], 0.05)
            for s in ready:
                while True:
                    try:
                        s.recv(65536)
                    except BlockingIOError:
                        break
                    got += 1
                    inflight[s] = max(0, inflight[s] - 1)
                    last_answer[s] = time.monotonic()
        dt = time.perf_counter() - t0
    finally:
        for s in socks:
            s.close()
    return {
        "pkt/s": got / dt,
        "MB/s": got * payload / dt / 1e6,
        "lost %": 100 * (1 - got / max(sent, 1)),
    }


class Bench:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="pyfrp-bench-udp-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            p.wait()

    @contextlib.contextmanager
    def frp(
        self, name: str, frps: list[str], frpc: list[str], body: str, toml: bool = False
    ) -> Iterator[int]:
        """frps + one frpc whose proxies/visitors are ``body`` (``{bind}``, ``{x}`` filled in;
        INI, or TOML with ``toml``); yields the port ``{x}`` (a udp remote port or a visitor
        bind port)."""
        bind, x = free_ports(2)
        tag = name.replace(" ", "_")
        s_cfg = self.tmp / f"{tag}-s.ini"
        c_cfg = self.tmp / f"{tag}-c.{'toml' if toml else 'ini'}"
        s_cfg.write_text(f"[common]\nbind_addr = {HOST}\nbind_port = {bind}\nlog_level = warn\n")
        common = (
            f'serverAddr = "{HOST}"\nserverPort = {bind}\nlog.level = "warn"\n'
            if toml
            else f"[common]\nserver_addr = {HOST}\nserver_port = {bind}\nlog_level = warn\n"
        )
        c_cfg.write_text(common + body.format(bind=bind, x=x))
        ps = self.spawn([*frps, "-c", str(s_cfg)], f"{tag}-frps")
        wait_port(bind)
        pc = self.spawn([*frpc, "-c", str(c_cfg)], f"{tag}-frpc")
        try:
            yield x
        finally:
            for p in (pc, ps):
                p.terminate()
                p.wait()
                self.procs.remove(p)


def wait_udp(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < end:
            s.sendto(b"x", (HOST, port))
            try:
                s.recv(16)
                return
            except OSError:
                pass
    raise TimeoutError(f"no udp echo through {port}")


def stream_table(ports: dict[str, int], size: int, repeat: int, payload: bytes) -> None:
    """MB/s up and down with 1 and 4 streams through each setup's port, setups taking turns."""
    cases = [(d, n) for n in (1, 4) for d in ("up", "down")]
    tp: dict[str, dict[str, list[float]]] = {n: {} for n in ports}
    for _ in range(repeat):
        for d, n in cases:
            for name, port in ports.items():
                tp[name].setdefault(f"{d} x{n}", []).append(throughput(port, size, n, d, payload))
    print(f"{'setup':10} " + " ".join(f"{f'{d} x{n}':>9}" for d, n in cases))
    for name, cols in tp.items():
        print(f"{name:10} " + " ".join(f"{statistics.median(v):9.0f}" for v in cols.values()))


def wait_echo_through(port: int, timeout: float = 30.0) -> None:
    """Until a connection through ``port`` reaches the backend (the xtcp tunnel is up)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            throughput(port, 1024, 1, "up", b"x" * 1024)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing through {port} after {timeout}s")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sockets", type=int, default=8)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--payload", type=int, default=1200)
    ap.add_argument("--size-mib", type=int, default=128, help="stcp: MiB per stream per direction")
    ap.add_argument("--xtcp-size-mib", type=int, default=32, help="xtcp: the same")
    frps_go, frpc_go = native_go()
    ap.add_argument("--frps-go", default=frps_go)
    ap.add_argument("--frpc-go", default=frpc_go)
    ap.add_argument("--no-go", action="store_true")
    ap.add_argument("--serve-udp-echo", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_udp_echo:
        udp_echo(args.serve_udp_echo)
        return
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])
    )
    py = sys.executable
    impls = {"pyfrp": ([py, "-m", "pyfrp.server"], [py, "-m", "pyfrp.client"])}
    if args.frps_go and args.frpc_go and not args.no_go:
        impls["go-frp"] = ([args.frps_go], [args.frpc_go])
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    b = Bench()
    try:
        echo_port, backend = free_ports(2)
        b.spawn([py, __file__, "--serve-udp-echo", str(echo_port)], "udp-echo")
        b.spawn([py, str(HERE / "backend.py"), str(backend), "--uvloop"], "backend")
        wait_port(backend)
        wait_udp(echo_port)
        udp_body = "[u]\ntype = udp\nlocal_ip = 127.0.0.1\nlocal_port = %d\nremote_port = {x}\n"
        stcp_body = (
            "[s]\ntype = stcp\nsk = k\nlocal_ip = 127.0.0.1\nlocal_port = %d\n"
            "[v]\nrole = visitor\ntype = stcp\nserver_name = s\nsk = k\n"
            "bind_addr = 127.0.0.1\nbind_port = {x}\n"
        )
        with contextlib.ExitStack() as stack:
            stun = stack.enter_context(stun_server())
            xtcp_body = (
                f'natHoleStunServer = "{HOST}:{stun}"\n'
                '[[proxies]]\nname = "x"\ntype = "xtcp"\nsecretKey = "k"\n'
                f'localIP = "{HOST}"\nlocalPort = {backend}\n'
                "natTraversal.disableAssistedAddrs = true\n"  # loopback only
                '[[visitors]]\nname = "xv"\ntype = "xtcp"\nserverName = "x"\nsecretKey = "k"\n'
                f'bindAddr = "{HOST}"\nbindPort = {{x}}\nkeepTunnelOpen = true\n'
                "natTraversal.disableAssistedAddrs = true\n"
            )
            udp_ports = {"direct": echo_port}
            stcp_ports = {"direct": backend}
            xtcp_ports: dict[str, int] = {}
            for name, (frps, frpc) in impls.items():
                xtcp_ports[name] = stack.enter_context(
                    b.frp(f"{name} xtcp", frps, frpc, xtcp_body, toml=True)
                )
                udp_ports[name] = stack.enter_context(
                    b.frp(f"{name} udp", frps, frpc, udp_body % echo_port)
                )
                stcp_ports[name] = stack.enter_context(
                    b.frp(f"{name} stcp", frps, frpc, stcp_body % backend)
                )
            for port in udp_ports.values():
                wait_udp(port)
            for port in (*stcp_ports.values(), *xtcp_ports.values()):
                wait_port(port)
            for port in xtcp_ports.values():
                wait_echo_through(port)
            print(
                f"\nudp: {args.sockets} sockets x {args.window} in flight, {args.payload}-byte "
                f"datagrams, {args.seconds:.0f} s, median of {args.repeat}"
            )
            runs: dict[str, list[dict[str, float]]] = {n: [] for n in udp_ports}
            for _ in range(args.repeat):
                for name, port in udp_ports.items():
                    runs[name].append(
                        udp_load(port, args.seconds, args.sockets, args.window, args.payload)
                    )
            print(f"{'setup':10} {'pkt/s':>9} {'MB/s':>8} {'lost %':>7}")
            for name, rs in runs.items():
                med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                print(f"{name:10} {med['pkt/s']:9.0f} {med['MB/s']:8.1f} {med['lost %']:7.2f}")
            payload = os.urandom(CHUNK)
            for kind, ports, mib in (
                ("stcp", stcp_ports, args.size_mib),
                ("xtcp", {"direct": backend, **xtcp_ports}, args.xtcp_size_mib),
            ):
                print(
                    f"\n{kind} (visitor -> {'frps' if kind == 'stcp' else 'QUIC'} -> frpc -> "
                    f"backend), {mib} MiB per stream, MB/s"
                )
                stream_table(ports, mib << 20, args.repeat, payload)
    finally:
        b.close()


if __name__ == "__main__":
    main()
