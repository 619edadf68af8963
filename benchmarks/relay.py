"""The relay benchmark: throughput, connection rate, latency and memory through a tcp proxy.

Every configuration is started fresh in the same run and compared with the ceilings measured in
that run (direct loopback, a two-hop socat chain, and native Go frp: by default the 0.70.1 that
../shared/peers/native builds, when it is there).
pyfrp and Go frp with the same settings run side by side and take turns for every repetition,
so the machine's drift during a run hits both alike:

    python benchmarks/relay.py --size-mib 1024 --repeat 3 --json results.json
    python benchmarks/relay.py --frps-go /path/to/frps --frpc-go /path/to/frpc   # another Go frp

Only 127.0.0.1 is ever used. The wine/qemu peers in ../shared/peers are not a speed reference.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.native import native_go
from tests.harness import HOST, free_ports  # ports no connection can take

HERE = Path(__file__).resolve().parent
CHUNK = 1024 * 1024


def wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} not up after {timeout}s")


def children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants (pyfrps with workers is a supervisor and one
    process per worker: the relay's memory is theirs together)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total = int(line.split()[1])
                    break
    except OSError:
        return 0
    return total + sum(rss_kib(c) for c in children(pid))


@dataclass
class Setup:
    """A running path from the load generator to the backend: connect to ``port``."""

    name: str
    port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    rss_pids: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------- load


def _recv_exact(s: socket.socket, n: int, buf: bytearray) -> None:
    view = memoryview(buf)
    while n > 0:
        got = s.recv_into(view, min(n, len(buf)))
        if not got:
            raise ConnectionError("closed early")
        n -= got


def upload(port: int, size: int, payload: bytes) -> None:
    with socket.create_connection((HOST, port)) as s:
        s.sendall(b"U" + struct.pack(">Q", size))
        left = size
        while left > 0:
            n = min(left, len(payload))
            s.sendall(payload[:n] if n < len(payload) else payload)
            left -= n
        if s.recv(1) != b"K":
            raise ConnectionError("no ack")


def download(port: int, size: int) -> None:
    with socket.create_connection((HOST, port)) as s:
        s.sendall(b"D" + struct.pack(">Q", size))
        _recv_exact(s, size, bytearray(CHUNK))


def throughput(port: int, size: int, streams: int, direction: str, payload: bytes) -> float:
    """MB/s (10^6) moved by ``streams`` parallel connections of ``size`` bytes each."""
    fn: Callable[[], None] = (
        (lambda: upload(port, size, payload))
        if direction == "up"
        else (lambda: download(port, size))
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return size * streams / dt / 1e6


def conn_rate(port: int, seconds: float, workers: int = 8) -> float:
    """New tunnelled connections per second, each a 64-byte echo then close."""
    msg = os.urandom(64)
    count = [0] * workers
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        while time.perf_counter() < stop:
            with socket.create_connection((HOST, port)) as s:
                s.sendall(b"E" + msg)
                got = b""
                while len(got) < 64:
                    d = s.recv(64 - len(got))
                    if not d:
                        raise ConnectionError("closed early")
                    got += d
            count[i] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count) / (time.perf_counter() - t0)


def latency(port: int, n: int) -> tuple[float, float]:
    """p50, p99 in microseconds of 64-byte round trips over one connection."""
    msg = os.urandom(64)
    out = []
    with socket.create_connection((HOST, port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"E")
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < 64:
                got += len(s.recv(64 - got))
            out.append((time.perf_counter() - t0) * 1e6)
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.99)]


@contextlib.contextmanager
def idle_conns(port: int, n: int) -> Iterator[int]:
    """Hold ``n`` tunnelled connections open, each proven end to end by a 1-byte echo; yields
    how many made it."""
    socks = []
    try:
        for _ in range(n):
            try:
                s = socket.create_connection((HOST, port), timeout=10)
                socks.append(s)
                s.sendall(b"Ex")
                if s.recv(1) != b"x":
                    break
            except OSError:
                break
        yield len(socks)
    finally:
        for s in socks:
            s.close()


def raise_fd_limit(want: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE (children inherit it); the product never does."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(hard, max(soft, want)) if hard != resource.RLIM_INFINITY else max(soft, want)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


# ---------------------------------------------------------------------------- setups


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="pyfrp-bench-"))
        self.backend_port = free_ports(1)[0]
        self.backend = self._spawn(
            [sys.executable, str(HERE / "backend.py"), str(self.backend_port), "--uvloop"],
            "backend",
        )
        wait_port(self.backend_port)

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)

    def close(self) -> None:
        self.backend.terminate()
        self.backend.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @contextlib.contextmanager
    def direct(self) -> Iterator[Setup]:
        yield Setup("direct", self.backend_port)

    @contextlib.contextmanager
    def socat(self) -> Iterator[Setup]:
        if not shutil.which("socat"):
            raise RuntimeError("socat not installed")
        a, b = free_ports(2)
        hop2 = self._spawn(
            [
                "socat",
                f"TCP-LISTEN:{b},bind={HOST},reuseaddr,fork",
                f"TCP:{HOST}:{self.backend_port}",
            ],
            "socat2",
        )
        hop1 = self._spawn(
            ["socat", f"TCP-LISTEN:{a},bind={HOST},reuseaddr,fork", f"TCP:{HOST}:{b}"], "socat1"
        )
        try:
            wait_port(b)
            wait_port(a)
            yield Setup("socat x2", a, [hop1, hop2])
        finally:
            for p in (hop1, hop2):
                p.terminate()
                p.wait()

    @contextlib.contextmanager
    def frp(
        self, name: str, frps: list[str], frpc: list[str], opts: dict[str, str], toml: bool
    ) -> Iterator[Setup]:
        bind, remote = free_ports(2)
        tls = opts.get("tls", "true")
        mux = opts.get("mux", "true")
        enc = opts.get("enc", "false")
        comp = opts.get("comp", "false")
        if toml:
            s_cfg = (
                f'bindAddr = "{HOST}"\nbindPort = {bind}\nauth.token = "bench"\n'
                f'transport.tcpMux = {mux}\nlog.level = "warn"\n'
            )
            c_cfg = (
                f'serverAddr = "{HOST}"\nserverPort = {bind}\nauth.token = "bench"\n'
                f"transport.tcpMux = {mux}\ntransport.tls.enable = {tls}\ntransport.poolCount = 8\n"
                f'log.level = "warn"\n[[proxies]]\nname = "b"\ntype = "tcp"\nlocalIP = "{HOST}"\n'
                f"localPort = {self.backend_port}\nremotePort = {remote}\n"
                f"transport.useEncryption = {enc}\ntransport.useCompression = {comp}\n"
            )
            ext = ".toml"
        else:
            s_cfg = (
                f"[common]\nbind_addr = {HOST}\nbind_port = {bind}\ntoken = bench\n"
                f"tcp_mux = {mux}\nlog_level = warn\n"
            )
            c_cfg = (
                f"[common]\nserver_addr = {HOST}\nserver_port = {bind}\ntoken = bench\n"
                f"tcp_mux = {mux}\ntls_enable = {tls}\npool_count = 8\nlog_level = warn\n"
                f"[b]\ntype = tcp\nlocal_ip = {HOST}\n"
                f"local_port = {self.backend_port}\nremote_port = {remote}\n"
                f"use_encryption = {enc}\nuse_compression = {comp}\n"
            )
            ext = ".ini"
        tag = name.replace(" ", "_")
        (self.tmp / f"{tag}-s{ext}").write_text(s_cfg)
        (self.tmp / f"{tag}-c{ext}").write_text(c_cfg)
        ps = self._spawn([*frps, "-c", str(self.tmp / f"{tag}-s{ext}")], f"{tag}-frps")
        try:
            wait_port(bind)
            pc = self._spawn([*frpc, "-c", str(self.tmp / f"{tag}-c{ext}")], f"{tag}-frpc")
            try:
                wait_port(remote)
                # the tunnel is up end to end once an echo passes
                end = time.monotonic() + 20
                while True:
                    try:
                        with socket.create_connection((HOST, remote), 2) as s:
                            s.settimeout(2)
                            s.sendall(b"Eok")
                            if s.recv(2) == b"ok":
                                break
                    except OSError:
                        if time.monotonic() > end:
                            raise
                    time.sleep(0.05)
                yield Setup(name, remote, [ps, pc], {"server": ps.pid, "client": pc.pid})
            finally:
                pc.terminate()
                pc.wait()
        finally:
            ps.terminate()
            ps.wait()


# ---------------------------------------------------------------------------- main


VARIANTS: dict[str, dict[str, str]] = {
    "default": {},  # TLS on, tcp_mux on
    "no-tls": {"tls": "false"},
    "no-mux": {"mux": "false"},  # TLS on: every work connection is its own TLS connection
    "no-tls-no-mux": {"tls": "false", "mux": "false"},
    "encryption": {"enc": "true"},
    "compression": {"comp": "true"},
}


Group = list[tuple[str, Callable[[], contextlib.AbstractContextManager[Setup]], bool]]


def frp_groups(runner: Runner, variants: list[str], args: argparse.Namespace) -> list[Group]:
    """One group per variant: pyfrp and, when ``args.frps_go``/``args.frpc_go`` are set, Go frp
    with the same settings. Setups in one group run side by side and take turns for every
    repetition, so that the machine's drift (large on a shared VM) hits pyfrp and Go alike."""
    py = sys.executable
    # (name, frps argv, frpc argv, TOML configs)
    impls: list[tuple[str, list[str], list[str], bool]] = [
        ("pyfrp", [py, "-m", "pyfrp.server"], [py, "-m", "pyfrp.client"], False)
    ]
    if args.frps_go and args.frpc_go:
        impls.append(("go-frp", [args.frps_go], [args.frpc_go], True))
    groups: list[Group] = []
    for v in variants:
        group: Group = []
        for name, frps, frpc, toml in impls:
            make = functools.partial(runner.frp, f"{name} {v}", frps, frpc, VARIANTS[v], toml)
            group.append((f"{name} {v}", make, True))
        groups.append(group)
    return groups


def median_spread(xs: list[float]) -> tuple[float, float]:
    return statistics.median(xs), (max(xs) - min(xs))


def measure_group(
    group: Group,
    args: argparse.Namespace,
    skip: set[str],
    size: int,
    streams: list[int],
    random_payload: bytes,
    text_payload: bytes,
    split: bool = False,
) -> list[dict[str, object]]:
    """Start every setup of ``group``, then run each timed measurement ``args.repeat`` times,
    the setups taking turns; memory and concurrency are measured one setup at a time.
    ``size`` is per stream, or with ``split`` per row, shared by its streams (so that 64 streams
    take no longer than one). The idle RSS is taken once every setup is up and has settled."""
    rows: dict[str, dict[str, object]] = {name: {"setup": name} for name, _, _ in group}
    live: list[tuple[Setup, bool]] = []

    def each(
        measure: Callable[[Setup], Any], want: Callable[[Setup], bool] = lambda st: True
    ) -> dict[str, list[Any]]:
        got: dict[str, list[Any]] = {}
        for _ in range(args.repeat):
            for entry in list(live):
                st = entry[0]
                if not want(st):
                    continue
                try:
                    got.setdefault(st.name, []).append(measure(st))
                except Exception as exc:  # a broken setup must not hide the others
                    rows[st.name]["error"] = repr(exc)
                    live.remove(entry)
        return got

    with contextlib.ExitStack() as stack:
        for name, make, is_frp in group:
            try:
                st = stack.enter_context(make())
            except Exception as exc:
                rows[name]["error"] = repr(exc)
                continue
            live.append((st, is_frp))
        time.sleep(1.0)  # pools filled, the start-up's garbage collected
        for st, _ in live:
            for role, pid in st.rss_pids.items():
                rows[st.name][f"{role} rss start KiB"] = rss_kib(pid)
        if "throughput" not in skip:
            for n in streams:
                for direction in ("up", "down"):
                    cases: list[tuple[str, bytes, Callable[[Setup], bool]]] = [
                        (f"{direction} x{n}", random_payload, lambda st: True)
                    ]
                    if direction == "up":  # compressible data matters with use_compression only
                        cases.append(
                            (f"up x{n} text", text_payload, lambda st: "compression" in st.name)
                        )
                    for key, payload, want in cases:

                        def run(
                            st: Setup, n: int = n, d: str = direction, p: bytes = payload
                        ) -> float:
                            return throughput(st.port, size // n if split else size, n, d, p)

                        for name, xs in each(run, want).items():
                            rows[name][key] = median_spread(xs)
            for st, _ in live:
                for role, pid in st.rss_pids.items():
                    rows[st.name][f"{role} rss after throughput KiB"] = rss_kib(pid)
        if "rate" not in skip:
            for name, xs in each(lambda st: conn_rate(st.port, args.rate_seconds)).items():
                rows[name]["conn/s"] = median_spread(xs)
        if "latency" not in skip:
            for name, lat in each(lambda st: latency(st.port, args.latency_n)).items():
                rows[name]["p50 us"] = median_spread([a for a, _ in lat])
                rows[name]["p99 us"] = median_spread([b for _, b in lat])
        for st, is_frp in live:
            row = rows[st.name]
            if is_frp and "memory" not in skip:
                before = {role: rss_kib(pid) for role, pid in st.rss_pids.items()}
                with idle_conns(st.port, args.idle_conns) as held:
                    time.sleep(0.5)
                    for role, pid in st.rss_pids.items():
                        loaded = rss_kib(pid)
                        row[f"{role} rss +{held} conns KiB"] = loaded
                        row[f"{role} KiB/conn"] = round((loaded - before[role]) / held, 2)
            if is_frp and args.concurrent and "concurrent" not in skip:
                with idle_conns(st.port, args.concurrent) as held:
                    row["concurrent held"] = held
    return list(rows.values())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--size-mib", type=int, default=256, help="bytes per stream per direction (MiB)"
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--streams", default="1,8")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="pyfrp/Go frp settings to run")
    frps_go, frpc_go = native_go()
    ap.add_argument(
        "--frps-go", default=frps_go, help=f"native Go frps binary (default: {frps_go or 'none'})"
    )
    ap.add_argument(
        "--frpc-go", default=frpc_go, help=f"native Go frpc binary (default: {frpc_go or 'none'})"
    )
    ap.add_argument("--no-go", action="store_true", help="leave the Go baseline out")
    ap.add_argument("--rate-seconds", type=float, default=3.0)
    ap.add_argument("--latency-n", type=int, default=2000)
    ap.add_argument("--idle-conns", type=int, default=1000)
    ap.add_argument(
        "--concurrent", type=int, default=10000, help="idle tunnelled connections to hold at once"
    )
    ap.add_argument(
        "--skip",
        default="",
        help="comma list of: throughput,rate,latency,memory,concurrent,vhost",
    )
    ap.add_argument("--json", default="", help="write results here")
    args = ap.parse_args()
    if args.no_go:
        args.frps_go = args.frpc_go = ""
    # pyfrps/pyfrpc are run as ``python -m``: measure this checkout, whatever is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
    )
    skip = set(filter(None, args.skip.split(",")))
    size = args.size_mib * 1024 * 1024
    streams = [int(x) for x in args.streams.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    random_payload = os.urandom(CHUNK)
    text_payload = (b"The quick brown fox jumps over the lazy dog. " * 30000)[:CHUNK]

    # 3 fds per tunnelled connection in this process and the backend's, more in the relays.
    raise_fd_limit(4 * args.concurrent + 1024)
    runner = Runner(args)
    groups: list[Group] = [[("direct", runner.direct, False)], [("socat x2", runner.socat, False)]]
    groups += frp_groups(runner, variants, args)
    results: list[dict[str, object]] = []
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"{args.size_mib} MiB per stream per direction, repeat {args.repeat}"
    )
    try:
        for group in groups:
            rows = measure_group(group, args, skip, size, streams, random_payload, text_payload)
            for row in rows:
                results.append(row)
                print_row(row)
    finally:
        runner.close()
    print()
    print_table(results)
    vhost: list[dict[str, object]] = []
    if "vhost" not in skip:
        vhost = vhost_rows(args)
    if args.json:
        doc = {"when": time.time(), "args": vars(args), "results": results, "vhost": vhost}
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str))


def vhost_rows(args: argparse.Namespace) -> list[dict[str, object]]:
    """The HTTP vhost req/s and latency (benchmarks/vhost.py), printed under the relay table."""
    cmd = [sys.executable, str(HERE / "vhost.py"), "--json", "--duration", str(args.rate_seconds)]
    if args.frps_go and args.frpc_go:
        cmd += ["--frps", args.frps_go, "--frpc", args.frpc_go]
    else:
        cmd.append("--no-go")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"vhost benchmark failed: {out.stderr.strip()[-500:]}")
        return []
    rows: list[dict[str, object]] = json.loads(out.stdout)
    print("\nHTTP vhost, 8 clients (-new: a connection per request; ws: WebSocket messages)")
    print(f"{'target':8} {'test':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(
            f"{r['target']!s:8} {r['test']!s:10} {float(r['rps']):9.0f} "  # type: ignore[arg-type]
            f"{float(r['p50_ms']):8.2f} {float(r['p99_ms']):8.2f}"  # type: ignore[arg-type]
        )
    return rows


def _fmt(v: object) -> str:
    if isinstance(v, tuple):
        return f"{v[0]:.0f} ±{v[1] / 2:.0f}"
    return str(v)


def print_row(row: dict[str, object]) -> None:
    print(
        f"{row['setup']}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "setup"),
        flush=True,
    )


def print_table(results: list[dict[str, object]]) -> None:
    """One row per setup; pyfrp rows show their ratio to Go frp with the same settings when it
    ran, otherwise to direct loopback (higher is better for MB/s and conn/s, lower for latency
    and memory)."""
    keys: list[str] = []
    for r in results:
        keys.extend(k for k in r if k not in keys and k != "setup")
    by_name = {str(r["setup"]): r for r in results}
    width = max(len(str(r["setup"])) for r in results)
    print("setup".ljust(width) + " | " + " | ".join(keys))
    for r in results:
        name = str(r["setup"])
        ref, ref_tag = by_name.get(name.replace("pyfrp ", "go-frp ", 1)), "go"
        if ref is None or not name.startswith("pyfrp "):
            ref, ref_tag = (by_name.get("direct"), "direct") if name != "direct" else (None, "")
        cells = []
        for k in keys:
            v = r.get(k, "")
            cell = _fmt(v)
            base = ref.get(k) if ref is not None else None
            a, b = _num(v), _num(base)
            if a is not None and b:
                cell += f" ({a / b:.2f}x {ref_tag})"
            cells.append(cell)
        print(name.ljust(width) + " | " + " | ".join(cells))
    print("MB/s = 10^6 bytes/s; values are medians with ± half the spread of the repeats")


def _num(v: object) -> float | None:
    if isinstance(v, tuple):
        return float(v[0])
    if isinstance(v, int | float):
        return float(v)
    return None


if __name__ == "__main__":
    main()
