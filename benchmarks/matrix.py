"""The whole performance matrix of pyfrp beside native Go frp 0.70.1, in one command.

    python benchmarks/matrix.py --json out.json [--quick]   # run it all (--quick: a smoke run)
    python benchmarks/matrix.py --markdown out.json         # the README's tables from a run

Sections: tcp proxy throughput (1, 8 and 64 parallel streams, up and down, for every setting of
relay.py's VARIANTS; a fixed total per row, shared by its streams), connections/s and the p50/p99
of 64-byte round trips per setting, the HTTP vhost (13-byte and 1 MiB responses over keep-alive
connections and over a new connection per request, WebSocket messages echoed through it), and
memory (frps's and frpc's RSS once started and idle, RSS per idle tunnelled connection; both on
setups that have carried no load). It reuses relay.py and vhost.py: pyfrp and Go frp with the
same settings run side by side and take turns for every repetition. Every row has pyfrp, Go and
the ratio oriented so that >= 1.0 means pyfrp is as good or better (pyfrp/Go for rates,
Go/pyfrp for latency and memory), and where it was measured the direct loopback ceiling. Only
127.0.0.1 is ever a target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import vhost
from benchmarks.native import native_go
from benchmarks.relay import (
    CHUNK,
    HERE,
    VARIANTS,
    Group,
    Runner,
    frp_groups,
    measure_group,
    raise_fd_limit,
)

STREAMS = [1, 8, 64]
LABELS = {
    "default": "default (TLS, tcp_mux)",
    "no-mux": "tcp_mux=false",
    "no-tls": "tls_enable=false",
    "no-tls-no-mux": "both off",
    "encryption": "use_encryption",
    "compression": "use_compression",
}
# how much each run measures: the full run stays within about 15 minutes on 2 cores
FULL = {
    "total_mib": 256,  # per throughput row, shared by its streams
    "repeat": 3,
    "rate_seconds": 2.0,
    "latency_n": 2000,
    "idle_conns": 1000,
    "vhost_seconds": 3.0,
    "vhost_repeat": 3,
    "vhost_conns": 8,
}
QUICK = {
    "total_mib": 16,
    "repeat": 1,
    "rate_seconds": 0.5,
    "latency_n": 200,
    "idle_conns": 100,
    "vhost_seconds": 0.5,
    "vhost_repeat": 1,
    "vhost_conns": 8,
}
VHOST_TESTS = {
    "small": "13 B, keep-alive",
    "big": "1 MiB, keep-alive",
    "small-new": "13 B, new connection each",
    "big-new": "1 MiB, new connection each",
    "ws": "WebSocket 32 B messages",
}


# ---------------------------------------------------------------------------- rows


def row(
    test: str,
    unit: str,
    better: str,
    py: Any,
    go: Any,
    direct: Any = None,
    scale: float = 1.0,
) -> dict[str, Any]:
    """One matrix row. ``py``/``go``/``direct`` are numbers or relay.py's (median, spread)
    pairs; ``better`` is "higher" or "lower"."""

    def split(v: Any) -> tuple[float | None, float | None]:
        if isinstance(v, list | tuple):
            return float(v[0]) * scale, float(v[1]) * scale
        if isinstance(v, int | float):
            return float(v) * scale, None
        return None, None

    out: dict[str, Any] = {"test": test, "unit": unit, "better": better}
    for key, v in (("pyfrp", py), ("go", go), ("direct", direct)):
        out[key], spread = split(v)
        if spread is not None:
            out[f"{key}_spread"] = spread
    return out


def ratio(r: dict[str, Any]) -> float | None:
    """>= 1.0 means pyfrp is as good as Go or better."""
    py, go = r.get("pyfrp"), r.get("go")
    if not py or not go:
        return None
    return float(py / go if r["better"] == "higher" else go / py)


def relay_sections(relay: dict[str, dict[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    direct = relay.get("direct", {})
    tput: list[dict[str, Any]] = []
    lat: list[dict[str, Any]] = []
    mem: list[dict[str, Any]] = []

    def add(to: list[dict[str, Any]], v: str, key: str, *head: str, **kw: Any) -> None:
        """``head``: test, unit, better; ``kw``: ceiling=False (no direct value), scale."""
        py, go = relay.get(f"pyfrp {v}", {}).get(key), relay.get(f"go-frp {v}", {}).get(key)
        ceiling = direct.get(key) if kw.get("ceiling", True) else None
        test, unit, better = head
        to.append(row(test, unit, better, py, go, ceiling, kw.get("scale", 1.0)))

    for v in variants:
        name = LABELS[v]
        for n in STREAMS:
            for d in ("up", "down"):
                add(tput, v, f"{d} x{n}", f"{name}, {d} x{n}", "MB/s", "higher")
                if v == "compression" and d == "up":
                    text = f"{name}, up x{n}, English text"
                    add(tput, v, f"up x{n} text", text, "MB/s", "higher", ceiling=False)
        add(lat, v, "conn/s", f"{name}, connections/s", "conn/s", "higher")
        add(lat, v, "p50 us", f"{name}, p50 round trip", "µs", "lower")
        add(lat, v, "p99 us", f"{name}, p99 round trip", "µs", "lower")
    for role, proc in (("server", "frps"), ("client", "frpc")):
        test = f"{proc} idle RSS, {LABELS['default']}"
        add(
            mem,
            "default",
            f"{role} rss start KiB",
            test,
            "MiB",
            "lower",
            ceiling=False,
            scale=1 / 1024,
        )
    for v in variants:
        for role, proc in (("server", "frps"), ("client", "frpc")):
            test = f"{proc} RSS per idle connection, {LABELS[v]}"
            add(mem, v, f"{role} KiB/conn", test, "KiB", "lower", ceiling=False)
    return [
        {"title": "tcp proxy throughput", "rows": tput},
        {"title": "Connections and latency", "rows": lat},
        {"title": "Memory", "rows": mem},
    ]


def vhost_section(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["target"], r["test"]): r for r in rows}
    out = []
    for test, label in VHOST_TESTS.items():
        unit = "msg/s" if test == "ws" else "req/s"
        py, go, direct = (by.get((t, test), {}) for t in ("pyfrp", "go-frp", "direct"))
        for key, test_name, u, better in (
            ("rps", label, unit, "higher"),
            ("p50_ms", f"{label}, p50", "ms", "lower"),
            ("p99_ms", f"{label}, p99", "ms", "lower"),
        ):
            out.append(row(test_name, u, better, py.get(key), go.get(key), direct.get(key)))
    return {"title": "HTTP vhost", "rows": out}


# ---------------------------------------------------------------------------- output


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio_text(r: dict[str, Any]) -> str:
    x = ratio(r)
    return "-" if x is None else f"{x:.2f}x"


def cells(r: dict[str, Any]) -> list[str]:
    return [
        r["test"],
        r["unit"],
        fmt(r.get("pyfrp")),
        fmt(r.get("go")),
        ratio_text(r),
        fmt(r.get("direct")),
    ]


HEAD = ["test", "unit", "pyfrp", "Go frp", "pyfrp vs Go", "direct"]


def print_tables(doc: dict[str, Any]) -> None:
    for section in doc["sections"]:
        table = [HEAD] + [cells(r) for r in section["rows"]]
        widths = [max(len(line[i]) for line in table) for i in range(len(HEAD))]
        print(f"\n{section['title']}")
        for line in table:
            print(
                "  ".join(
                    c.ljust(w) if i < 2 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(line, widths, strict=True))
                )
            )
    below = [(s["title"], r) for s in doc["sections"] for r in s["rows"]]
    below = [(t, r) for t, r in below if (x := ratio(r)) is not None and x < 1.0]
    print(f"\nbelow 1.0x ({len(below)}):")
    for title, r in below:
        print(f"  {title}: {r['test']}: {ratio_text(r)}")


def markdown(doc: dict[str, Any]) -> str:
    m = doc["meta"]
    p = m["params"]
    intro = (
        f"Run {m['date']} on {m['machine']}, {m['cores']} cores, Python {m['python']}; "
        f"Go frp {m['go_version']}. pyfrp vs Go: pyfrp/Go for rates, Go/pyfrp for latency and "
        f"memory, so >= 1.00x means pyfrp is as good or better. Throughput: {p['total_mib']} MiB "
        f"per row, shared by its streams; median of {p['repeat']} (vhost: {p['vhost_repeat']} "
        f"runs of {p['vhost_seconds']:g} s, {p['vhost_conns']} clients)."
    )
    out = textwrap.wrap(intro, 100)
    for section in doc["sections"]:
        out += ["", f"**{section['title']}**", ""]
        out.append("| " + " | ".join(HEAD) + " |")
        out.append("|---|---" + "|---:" * (len(HEAD) - 2) + "|")
        out += ["| " + " | ".join(cells(r)) + " |" for r in section["rows"]]
    return "\n".join(out)


# ---------------------------------------------------------------------------- run


def run(params: dict[str, Any], frps_go: str, frpc_go: str, variants: list[str]) -> dict[str, Any]:
    t0 = time.monotonic()
    # pyfrps/pyfrpc are run as ``python -m``: measure this checkout, whatever is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
    )
    args = argparse.Namespace(
        repeat=params["repeat"],
        rate_seconds=params["rate_seconds"],
        latency_n=params["latency_n"],
        idle_conns=params["idle_conns"],
        concurrent=0,
        frps_go=frps_go,
        frpc_go=frpc_go,
    )
    raise_fd_limit(4 * args.idle_conns + 1024)
    size = params["total_mib"] * 1024 * 1024
    random_payload = os.urandom(CHUNK)
    text_payload = (b"The quick brown fox jumps over the lazy dog. " * 30000)[:CHUNK]
    relay: dict[str, dict[str, Any]] = {}
    runner = Runner(args)
    # Memory first, on setups that have carried no load: after the throughput runs the heaps'
    # high-water marks would absorb the idle connections. The first values of a key win.
    memory_only = {"throughput", "rate", "latency", "concurrent"}
    plan: list[tuple[Group, set[str]]] = [
        (g, memory_only) for g in frp_groups(runner, variants, args)
    ]
    plan.append(([("direct", runner.direct, False)], {"concurrent"}))
    plan += [(g, {"memory", "concurrent"}) for g in frp_groups(runner, variants, args)]
    try:
        for group, skip in plan:
            what = "memory" if skip is memory_only else "load"
            print(f"relay {what}: {', '.join(name for name, _, _ in group)}", flush=True)
            for r in measure_group(
                group, args, skip, size, STREAMS, random_payload, text_payload, split=True
            ):
                for k, v in r.items():
                    relay.setdefault(str(r["setup"]), {}).setdefault(k, v)
                if "error" in r:
                    print(f"  {r['setup']}: {r['error']}", flush=True)
    finally:
        runner.close()
    print("vhost", flush=True)
    try:
        vrows = vhost.run_all(
            frps_go,
            frpc_go,
            list(VHOST_TESTS),
            params["vhost_conns"],
            params["vhost_seconds"],
            params["vhost_repeat"],
        )
    except Exception as exc:  # keep the relay's numbers
        print(f"vhost failed: {exc!r}", flush=True)
        vrows = []
    go_version = ""
    if frps_go:
        go_version = subprocess.run([frps_go, "-v"], capture_output=True, text=True).stdout.strip()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "go_version": go_version or "absent",
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip(),
        "params": params,
        "variants": variants,
        "seconds": round(time.monotonic() - t0),
    }
    sections = relay_sections(relay, variants)
    sections.insert(2, vhost_section(vrows))
    return {"meta": meta, "sections": sections, "raw": {"relay": relay, "vhost": vrows}}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", default="", help="write the run's results here")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and durations: a smoke run")
    ap.add_argument("--markdown", default="", metavar="JSON", help="print a run's tables, no run")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="tcp proxy settings to run")
    frps_go, frpc_go = native_go()
    ap.add_argument("--frps-go", default=frps_go, help=f"Go frps (default: {frps_go or 'none'})")
    ap.add_argument("--frpc-go", default=frpc_go, help=f"Go frpc (default: {frpc_go or 'none'})")
    ap.add_argument("--total-mib", type=int, help="bytes per throughput row (MiB)")
    ap.add_argument("--repeat", type=int, help="repetitions of every measurement")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    params = dict(QUICK if args.quick else FULL)
    if args.total_mib:
        params["total_mib"] = args.total_mib
    if args.repeat:
        params["repeat"] = params["vhost_repeat"] = args.repeat
    doc = run(params, args.frps_go, args.frpc_go, variants)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
    print_tables(doc)
    print(f"\n{doc['meta']['seconds']} s" + (f"; JSON: {args.json}" if args.json else ""))


if __name__ == "__main__":
    main()
