"""frp's own end-to-end suite (frp 0.70.1 ``test/e2e``) run against pyfrp: the conformance gate.

    python -m tests.conformance.run                    # pyfrps + pyfrpc, every spec
    python -m tests.conformance.run --pair go-frps     # native Go frps + pyfrpc, the listed specs
    python -m tests.conformance.run --pair all         # the three pairs, one after the other
    python -m tests.conformance.run --update           # add new passes to the list

The suite is frp's compiled ``e2e.test``, built with native frps/frpc 0.70.1 by
``../shared/peers/native``; it starts whatever binaries it is given (here: wrappers around this
Python's pyfrps/pyfrpc, or the native ones) and checks them from outside. Specs run in parallel
through the ginkgo CLI (built from the Go module proxy at the version frp pins), each process on
its own port range. A table per area (legacy INI / v1 TOML x ``[Feature: ...]``) is printed, and
the passing specs are compared with ``passing.txt``: a listed spec that fails, after one serial
retry of the failures (the suite's timings are tight for a busy 2-core machine), fails the run;
a new pass is printed so that the list only grows. Without Go on the machine the run says so and
exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PASSING = HERE / "passing.txt"

# pair -> (frps, frpc): "py" is pyfrp, "go" native Go frp 0.70.1.
PAIRS = {
    "pyfrp": ("py", "py"),
    "go-frps": ("go", "py"),
    "go-frpc": ("py", "go"),
    "go": ("go", "go"),
}


@dataclass(frozen=True, slots=True)
class Spec:
    id: str  # "v1: [Feature: Basic] TCP Expose a TCP echo server"
    area: tuple[str, str]  # ("v1", "[Feature: Basic]")
    state: str  # passed, failed, skipped, ...
    failure: str


def say(text: str) -> None:
    print(f"conformance: {text}", flush=True)


def native_bin() -> Path | None:
    """Where ``../shared/peers/native`` built frps, frpc and e2e.test (it builds them if needed)."""
    env = os.environ.get("FRP_NATIVE_BIN")
    if env:
        return Path(env)
    script = REPO.parent / "shared" / "peers" / "native"
    if not script.exists():
        say(f"skipped: {script} not found")
        return None
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        say("skipped: Go is not installed, so frp's e2e suite cannot be built")
        return None
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        say("skipped: ../shared/peers/native failed (see above)")
        return None
    return Path(proc.stdout.strip().splitlines()[-1])


def go_env() -> dict[str, str]:
    env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0")
    env["PATH"] = env.get("PATH", "") + ":/usr/local/go/bin"
    return env


def ginkgo_cli(src: Path) -> Path | None:
    """The ginkgo CLI at the version frp's go.mod pins, built once (it runs specs in parallel)."""
    m = re.search(r"github.com/onsi/ginkgo/v2 (v[\w.\-]+)", (src / "go.mod").read_text())
    if not m:
        return None
    out = Path.home() / ".cache" / "pyfrp-conformance" / f"ginkgo-{m.group(1)}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["go", "build", "-o", str(out), "github.com/onsi/ginkgo/v2/ginkgo"],
        cwd=src,
        env=go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        say(f"cannot build the ginkgo CLI, running serially: {proc.stderr.strip()[-300:]}")
        return None
    return out


def wrappers(d: Path) -> tuple[Path, Path]:
    """Executables for e2e.test, which starts them with an empty environment."""
    out = []
    for name, module in (("pyfrps", "pyfrp.server"), ("pyfrpc", "pyfrp.client")):
        path = d / name
        path.write_text(
            f"#!/bin/sh\nPYTHONPATH={REPO}\nexport PYTHONPATH\n"
            f'exec {sys.executable} -m {module} "$@"\n'
        )
        path.chmod(0o755)
        out.append(path)
    return out[0], out[1]


def read_report(path: Path) -> list[Spec]:
    specs = []
    for suite in json.loads(path.read_text()):
        for s in suite.get("SpecReports") or []:
            if s.get("LeafNodeType") != "It":
                continue
            f = s["LeafNodeLocation"]["FileName"]
            kind = "legacy" if "/legacy/" in f else "v1" if "/v1/" in f else "other"
            texts = s.get("ContainerHierarchyTexts") or []
            ident = f"{kind}: {' '.join([*texts, s['LeafNodeText']])}"
            failure = (s.get("Failure") or {}).get("Message", "")
            area = (kind, texts[0] if texts else "")
            specs.append(Spec(ident, area, s["State"], failure))
    return specs


def focus_args(ids: list[str]) -> list[str]:
    """ginkgo focus regexes matching exactly these specs' texts (any kind prefix dropped)."""
    texts = sorted({i.split(": ", 1)[1] for i in ids})
    return [f"--focus={_go_escape(t)}$" for t in texts]  # ginkgo prefixes the text


def _go_escape(text: str) -> str:
    """Like re.escape, for Go's RE2, which rejects escaped spaces and ampersands."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def run_suite(
    bin_dir: Path,
    src: Path,
    frps: Path,
    frpc: Path,
    procs: int,
    report: Path,
    log: Path,
    focus: list[str] | None,
) -> list[Spec]:
    ginkgo = ginkgo_cli(src) if procs > 1 else None
    suite = bin_dir / "e2e.test"
    binaries = ["-frps-path", str(frps), "-frpc-path", str(frpc)]
    if ginkgo is not None:
        cmd = [
            str(ginkgo),
            "run",
            f"--procs={procs}",
            "--no-color",
            "--timeout=3h",
            f"--json-report={report}",
            *(focus or []),
            str(suite),
            "--",
            *binaries,
        ]
    else:
        flags = [f.replace("--", "-ginkgo.", 1) for f in focus or []]
        cmd = [str(suite), *binaries, "-ginkgo.no-color", f"-ginkgo.json-report={report}", *flags]
    with log.open("wb") as out:
        subprocess.run(
            cmd, cwd=src / "test" / "e2e", stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if not report.exists():
        raise SystemExit(f"conformance: the suite wrote no report; see {log}")
    return read_report(report)


def table(specs: list[Spec]) -> str:
    rows: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for s in specs:
        rows[s.area][s.state] += 1
    total: Counter[str] = Counter()
    lines = [f"{'area':<48} {'passed':>6} {'failed':>6} {'skipped':>7}"]
    for (kind, feature), c in sorted(rows.items()):
        failed = sum(v for k, v in c.items() if k not in ("passed", "skipped"))
        lines.append(f"{kind + ' ' + feature:<48} {c['passed']:>6} {failed:>6} {c['skipped']:>7}")
        total.update(c)
    failed = sum(v for k, v in total.items() if k not in ("passed", "skipped"))
    lines.append(f"{'total':<48} {total['passed']:>6} {failed:>6} {total['skipped']:>7}")
    return "\n".join(lines)


def load_list() -> list[str]:
    if not PASSING.exists():
        return []
    lines = (line.strip() for line in PASSING.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def save_list(ids: list[str]) -> None:
    head = [
        line
        for line in PASSING.read_text().splitlines()
        if line.startswith("#") or not line.strip()
    ][:20]
    PASSING.write_text("\n".join([*head, *sorted(set(ids))]) + "\n")


def run_pair(
    pair: str, bin_dir: Path, procs: int, out_dir: Path, listed: list[str], focus: str = ""
) -> tuple[bool, list[str]]:
    """Run one pair: whether every listed spec passed (on the first run or the retry), and the
    passing specs not listed yet. ``focus``: a regex: only the specs it matches run."""
    src = bin_dir.parent / "src"
    py_frps, py_frpc = wrappers(out_dir)
    server, client = PAIRS[pair]
    frps = py_frps if server == "py" else bin_dir / "frps"
    frpc = py_frpc if client == "py" else bin_dir / "frpc"
    full = pair == "pyfrp" or bool(focus)
    if focus:
        listed = [i for i in listed if re.search(focus, i)]
    say(f"{pair}: frps={frps} frpc={frpc}, {'every spec' if full else 'the listed specs'}")
    started = time.monotonic()
    focused = [f"--focus={focus}"] if focus else None if full else focus_args(listed)
    log = out_dir / f"{pair}.log"
    specs = run_suite(bin_dir, src, frps, frpc, procs, out_dir / f"{pair}.json", log, focused)
    if not specs:
        # A report without a single spec: the ginkgo run itself broke down (seen once in CI,
        # after a full-length run). Show why, and run the pair once more.
        tail = log.read_text(errors="replace").splitlines()[-40:]
        say(f"{pair}: the suite reported no spec; the end of its log:\n" + "\n".join(tail))
        say(f"{pair}: running it once more")
        log = out_dir / f"{pair}-again.log"
        specs = run_suite(
            bin_dir, src, frps, frpc, procs, out_dir / f"{pair}-again.json", log, focused
        )
    seconds = time.monotonic() - started
    state = {s.id: s for s in specs}
    print(table(specs if full else [s for s in specs if s.id in set(listed)]), flush=True)
    failed = [i for i in listed if i in state and state[i].state != "passed"]
    missing = [i for i in listed if i not in state]
    if failed:
        say(f"{pair}: {len(failed)} listed spec(s) failed; retrying them serially once")
        retry = run_suite(
            bin_dir,
            src,
            frps,
            frpc,
            1,
            out_dir / f"{pair}-retry.json",
            out_dir / f"{pair}-retry.log",
            focus_args(failed),
        )
        passed_now = {s.id for s in retry if s.state == "passed"}
        for i in failed:
            if i in passed_now:
                say(f"{pair}: FLAKY (passed on retry): {i}")
        failed = [i for i in failed if i not in passed_now]
    for i in failed:
        say(f"{pair}: REGRESSION: {i}\n    {state[i].failure.strip()[:600]}")
    for i in missing[:20]:
        say(f"{pair}: MISSING from the suite: {i}")
    if len(missing) > 20:
        say(f"{pair}: ... and {len(missing) - 20} more listed specs missing from the suite")
    new = sorted(s.id for s in specs if s.state == "passed" and s.id not in set(listed))
    for i in new:
        say(f"{pair}: new pass, not listed yet: {i}")
    passed = sum(s.state == "passed" for s in specs)
    say(
        f"{pair}: {passed} passed of {len(specs)} run in {seconds:.0f} s; "
        f"{len(listed) - len(failed) - len(missing)} of {len(listed)} listed specs pass"
        f" (logs: {out_dir})"
    )
    return not failed and not missing, new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", choices=[*PAIRS, "all", "mixed"], default="pyfrp")
    ap.add_argument("--procs", type=int, default=4, help="ginkgo processes (default 4)")
    ap.add_argument("--out", type=Path, help="where logs and reports go (default: a temp dir)")
    ap.add_argument(
        "--update", action="store_true", help="add the new pyfrp/pyfrp passes to passing.txt"
    )
    ap.add_argument("--focus", default="", help="run only the specs this regex (Go RE2) matches")
    args = ap.parse_args(argv)
    bin_dir = native_bin()
    if bin_dir is None:
        return 0
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="pyfrp-conformance-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = {"all": ["pyfrp", "go-frps", "go-frpc"], "mixed": ["go-frps", "go-frpc"]}.get(
        args.pair, [args.pair]
    )
    listed = load_list()
    ok, new = True, list[str]()
    for pair in pairs:
        passed, fresh = run_pair(pair, bin_dir, args.procs, out_dir, listed, args.focus)
        ok = ok and passed
        new = fresh if pair == "pyfrp" else new
    if args.update and new:
        save_list([*listed, *new])
        say(f"added {len(new)} spec(s) to {PASSING.relative_to(REPO)}")
    say("PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
