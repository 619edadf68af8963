"""Hostile networks between two network namespaces we create: one for frps, one for frpc.

``NetPair`` makes the two namespaces and joins them by a link: a veth pair (kernel speed), or a
``wire``: a tun device in each namespace with this module's forwarder in between, which holds
every IP packet for half the round trip (the kernel here has no ``netem`` qdisc, so delay is
emulated per packet in user space; TCP still sees a real RTT and does its own congestion
control). Faults the kernel can do are done by the kernel, with nftables rules inside the
namespaces: random loss (``numgen random``), a black hole (every packet to and from the peer
dropped, no RST, no ICMP) and a partition (both namespaces drop).

The test process reaches into a namespace for a socket with ``in_netns`` (``setns`` on the
calling thread only); processes start under ``ip netns exec``. Nothing here touches the host's
own namespace beyond creating and deleting ours.

``Lab`` (the virtual_net tests) is a veth NetPair that also starts pyfrp, Go peers and little
services in either namespace and talks to them from there.

``python -m tests.netns wire SRV_NS CLI_NS --delay-ms 25`` runs the forwarder (``NetPair`` starts
it; it prints ``ready`` once both ends are up).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import itertools
import os
import random
import re
import select
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pyfrp.net.tun import IFF_NO_PI, IFF_TUN, TUNSETIFF
from tests.harness import Proc

SRV_IP = "10.77.0.1"  # frps's side of the link
CLI_IP = "10.77.0.2"  # frpc's side
CLONE_NEWNET = 0x40000000
_counter = itertools.count()


def skip_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` not installed (apt-get install iproute2 nftables)"
    name = f"pfprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except RuntimeError as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _sh(["ip", "netns", "exec", name, "nft", "add", "table", "inet", "probe"])
    except RuntimeError as exc:
        return f"nftables does not work in a namespace: {exc}"
    finally:
        _ip("netns", "del", name)
    return None


def wire_skip_reason() -> str | None:
    """Why the delaying wire cannot run here (on top of ``skip_reason``), or None."""
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun for the delaying wire"
    return None


def _sh(argv: Sequence[str], stdin: str | None = None) -> str:
    r = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


def _ip(*args: str) -> str:
    return _sh(["ip", *args])


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with this thread in namespace ``name``: sockets made in it stay there."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def _sweep() -> None:
    """Delete namespaces a killed run of ours left behind (their creator's pid is gone)."""
    for line in _ip("netns", "list").splitlines():
        m = re.match(r"pf(\d+)x\d+[sc]\b", line)
        if m and not os.path.exists(f"/proc/{m[1]}"):
            try:
                _ip("netns", "del", line.split()[0])
            except RuntimeError:
                pass


class NetPair:
    """Namespaces ``srv`` (address SRV_IP) and ``cli`` (CLI_IP) joined by a veth pair or, with
    ``delay_ms``, by the user-space wire (one-way delay ``delay_ms``). Always ``close()``."""

    def __init__(self, delay_ms: float = 0.0, mtu: int = 1500) -> None:
        _sweep()
        tag = f"pf{os.getpid()}x{next(_counter)}"  # <= 15 characters with a suffix
        self.srv, self.cli = f"{tag}s", f"{tag}c"
        self.wire: subprocess.Popen[str] | None = None
        self._made: list[str] = []
        try:
            for ns in (self.srv, self.cli):
                _ip("netns", "add", ns)
                self._made.append(ns)
                self.ns_ip(ns, "link", "set", "lo", "up")
            if delay_ms > 0:
                self._start_wire(delay_ms, mtu)
            else:
                self._veth(tag, mtu)
            for ns in (self.srv, self.cli):
                self.nft(ns, "add table inet pf")
        except BaseException:
            self.close()
            raise

    def _veth(self, tag: str, mtu: int) -> None:
        a, b = f"{tag}a", f"{tag}b"
        _ip("link", "add", a, "mtu", str(mtu), "type", "veth", "peer", "name", b, "mtu", str(mtu))
        _ip("link", "set", a, "netns", self.srv)
        _ip("link", "set", b, "netns", self.cli)
        self.links = {self.srv: a, self.cli: b}
        for ns, dev, addr in ((self.srv, a, SRV_IP), (self.cli, b, CLI_IP)):
            self.ns_ip(ns, "addr", "add", f"{addr}/24", "dev", dev)
            self.ns_ip(ns, "link", "set", dev, "up")

    def _start_wire(self, delay_ms: float, mtu: int) -> None:
        argv = [sys.executable, "-m", "tests.netns", "wire", self.srv, self.cli]
        argv += ["--delay-ms", str(delay_ms), "--mtu", str(mtu)]
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=root)
        # Its stdin is ours: when this process dies, the wire sees EOF and exits too.
        self.wire = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=root
        )
        assert self.wire.stdout is not None
        line = self.wire.stdout.readline().strip()
        if not line.startswith("ready"):
            self.wire.kill()
            raise RuntimeError(f"the delay wire did not start: {line!r}")
        a, b = line.split()[1:3]
        self.links = {self.srv: a, self.cli: b}

    # ------------------------------------------------------------------ running things

    def ns_ip(self, ns: str, *args: str) -> str:
        return _sh(["ip", "-n", ns, *args])

    def exec_argv(self, ns: str) -> list[str]:
        """Prefix an argv with this to run it inside ``ns``."""
        return ["ip", "netns", "exec", ns]

    def nft(self, ns: str, *commands: str) -> None:
        _sh([*self.exec_argv(ns), "nft", "-f", "-"], stdin="\n".join(commands) + "\n")

    # ------------------------------------------------------------------ faults

    def _drop_chains(self, ns: str, rule: str) -> None:
        dev = self.links[ns]
        self.nft(
            ns,
            f"add chain inet pf {rule}_in {{ type filter hook input priority -10; }}",
            f"add chain inet pf {rule}_out {{ type filter hook output priority -10; }}",
            f'add rule inet pf {rule}_in iifname "{dev}" drop',
            f'add rule inet pf {rule}_out oifname "{dev}" drop',
        )

    def blackhole_srv(self) -> None:
        """frps's host drops every packet on the link, both ways: no RST, no ICMP, silence."""
        self._drop_chains(self.srv, "hole")

    def partition(self) -> None:
        """Both sides drop every packet on the link (a cut cable that neither end sees)."""
        for ns in (self.srv, self.cli):
            self._drop_chains(ns, "cut")

    def loss(self, percent: float) -> None:
        """Each side drops ``percent`` % of the packets it receives on the link (kernel random)."""
        per_mille = round(percent * 10)
        for ns in (self.srv, self.cli):
            dev = self.links[ns]
            self.nft(
                ns,
                "add chain inet pf loss { type filter hook input priority -20; }",
                f'add rule inet pf loss iifname "{dev}" '
                f"numgen random mod 1000 < {per_mille} counter drop",
            )

    def dropped(self) -> int:
        """Packets the ``loss`` rules have dropped so far, both sides."""
        total = 0
        for ns in (self.srv, self.cli):
            text = _sh([*self.exec_argv(ns), "nft", "list", "chain", "inet", "pf", "loss"])
            total += sum(int(n) for n in re.findall(r"counter packets (\d+)", text))
        return total

    def heal(self) -> None:
        """Every nft fault gone (the link's state is left alone)."""
        for ns in (self.srv, self.cli):
            self.nft(ns, "delete table inet pf", "add table inet pf")

    def close(self) -> None:
        if self.wire is not None:
            self.wire.kill()
            self.wire.wait(5)
            for pipe in (self.wire.stdin, self.wire.stdout):
                if pipe is not None:
                    pipe.close()
            self.wire = None
        for ns in self._made:
            try:
                _ip("netns", "del", ns)
            except RuntimeError:
                pass
        self._made.clear()


# ------------------------------------------------------------------ processes (virtual_net tests)

ADDR_A, ADDR_B = SRV_IP, CLI_IP  # the virtual_net tests' names: frps and the proxy side in A


class Lab(NetPair):
    """A NetPair on a veth link whose processes the test starts and talks to by namespace: ``a``
    runs frps and the proxy side, ``b`` the visitor side (each frpc's TUN device in its own
    namespace, so a packet from B to A's virtual address really crosses the tunnel)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.a, self.b = self.srv, self.cli
        self.tmp = tmp
        self.procs: list[Proc] = []

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        super().close()

    def run(self, ns: str, name: str, argv: Sequence[str | os.PathLike[str]]) -> Proc:
        n = len(self.procs)
        proc = Proc(
            name, ["ip", "netns", "exec", ns, *argv], self.tmp / f"{name}-{n}.log", self.tmp
        )
        self.procs.append(proc)
        return proc

    def py(self, ns: str, name: str, module: str, config: str, suffix: str = ".toml") -> Proc:
        """pyfrps or pyfrpc (``module``) with ``config``, in namespace ``ns``."""
        cfg = self.tmp / f"{name}-{len(self.procs)}{suffix}"
        cfg.write_text(config)
        proc = self.run(ns, name, [sys.executable, "-m", module, "-c", str(cfg)])
        proc.config = cfg
        return proc

    def start(self, ns: str, kind: str, name: str, config: str) -> Proc:
        """pyfrps, pyfrpc or a native Go peer (``frps-native``, ``frpc-native``; skips the
        test when absent) with a TOML ``config``, in namespace ``ns``."""
        if kind in ("pyfrps", "pyfrpc"):
            module = "pyfrp.server" if kind == "pyfrps" else "pyfrp.client"
            return self.py(ns, name, module, config)
        from tests.conftest import peer_exe

        exe = peer_exe(kind)
        cfg = self.tmp / f"{name}-{len(self.procs)}.toml"
        cfg.write_text(config)
        proc = self.run(ns, name, [exe, "-c", cfg])
        proc.config = cfg
        return proc

    def stun(self, ns: str, host: str) -> tuple[Proc, int]:
        """tests.harness's STUN server on ``host`` in ``ns``; (process, its first port)."""
        root = str(Path(__file__).resolve().parent.parent)  # tests/ is not installed
        code = textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {root!r})
            import tests.harness as h
            h.HOST = {host!r}
            with h.stun_server() as port:
                print("stun", port, flush=True)
                while True:
                    time.sleep(60)
        """)
        proc = self.run(ns, "stun", [sys.executable, "-c", code])
        port = int(proc.wait_log(r"stun \d+").split("stun ")[1].split()[0])
        return proc, port

    def echo(self, ns: str, host: str, port: int) -> Proc:
        """A TCP echo service on host:port in ``ns`` (retries the bind until the address
        exists: it may be on a TUN device still being set up)."""
        code = textwrap.dedent(f"""
            import socket, threading, time
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for _ in range(400):
                try:
                    s.bind(({host!r}, {port})); break
                except OSError:
                    time.sleep(0.05)
            s.listen(16)
            print("listening", flush=True)
            def serve(c):
                with c:
                    while (d := c.recv(65536)):
                        c.sendall(d)
            while True:
                c, peer = s.accept()
                print("peer", peer[0], flush=True)
                threading.Thread(target=serve, args=(c,), daemon=True).start()
        """)
        return self.run(ns, "echo", [sys.executable, "-c", code])

    def exchange(self, ns: str, host: str, port: int, payload: bytes, timeout: float) -> bytes:
        """Connect from ``ns`` to host:port (retrying until ``timeout``), send ``payload``,
        return what comes back (as much as was sent)."""
        code = textwrap.dedent(f"""
            import socket, sys, threading, time
            data = sys.stdin.buffer.read()
            end = time.monotonic() + {timeout}
            while True:
                try:
                    c = socket.create_connection(({host!r}, {port}), 2)
                    break
                except OSError:
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.1)
            c.settimeout({timeout})
            # send while reading: an echo of more than the socket buffers would deadlock
            threading.Thread(target=c.sendall, args=(data,), daemon=True).start()
            got = bytearray()
            while len(got) < len(data) and (d := c.recv(65536)):
                got += d
            sys.stdout.buffer.write(got)
        """)
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            input=payload,
            capture_output=True,
            timeout=timeout + 10,
        )
        assert out.returncode == 0, out.stderr.decode(errors="replace")
        return out.stdout

    def connects(self, ns: str, host: str, port: int, timeout: float) -> bool:
        """Whether a TCP connection from ``ns`` to host:port opens within ``timeout``."""
        code = f"import socket; socket.create_connection(({host!r}, {port}), {timeout})"
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            capture_output=True,
            timeout=timeout + 10,
        )
        return out.returncode == 0


def skip_unless_able() -> None:
    """Skip unless this process may create namespaces and TUN devices."""
    import pytest

    reason = skip_reason() or wire_skip_reason()
    if reason:
        pytest.skip(reason)


@contextmanager
def lab(tmp: Path) -> Iterator[Lab]:
    skip_unless_able()
    la = Lab(tmp)
    try:
        yield la
    finally:
        la.close()


# ---------------------------------------------------------------------------- the delay wire


def _tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def run_wire(srv: str, cli: str, delay_ms: float, mtu: int, loss: float = 0.0) -> None:
    """Forward IP packets between a tun in ``srv`` and one in ``cli``, each held ``delay_ms``."""
    tag = f"pfw{os.getpid()}"
    ends = [(srv, f"{tag}s", SRV_IP, CLI_IP), (cli, f"{tag}c", CLI_IP, SRV_IP)]
    fds = []
    for ns, dev, here, there in ends:
        fds.append(_tun(dev))
        _ip("link", "set", dev, "netns", ns)
        _sh(["ip", "-n", ns, "link", "set", dev, "mtu", str(mtu), "up"])
        _sh(["ip", "-n", ns, "addr", "add", here, "peer", there, "dev", dev])
    print("ready", ends[0][1], ends[1][1], flush=True)
    delay = delay_ms / 1000.0
    queues: list[deque[tuple[float, bytes]]] = [deque(), deque()]  # packets bound for fds[i]
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    poller.register(sys.stdin.fileno(), select.POLLIN)
    side = {fd: i for i, fd in enumerate(fds)}
    while True:
        now = time.monotonic()
        due = [q[0][0] for q in queues if q]
        timeout = max(0.0, min(due) - now) if due else 1.0
        for fd, _ in poller.poll(timeout * 1000):
            if fd not in side:  # our parent went away (stdin at EOF): so do we
                if not os.read(fd, 4096):
                    return
                continue
            out = queues[1 - side[fd]]
            stamp = time.monotonic() + delay
            for _ in range(64):
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if loss and random.random() < loss:
                    continue
                out.append((stamp, pkt))
        now = time.monotonic()
        for i, q in enumerate(queues):
            while q and q[0][0] <= now:
                try:
                    os.write(fds[i], q.popleft()[1])
                except OSError:
                    pass  # the receiving device's queue is full: the packet is lost, as on a wire


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.netns")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wire", help="the delaying packet forwarder between two namespaces")
    w.add_argument("srv")
    w.add_argument("cli")
    w.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    w.add_argument("--mtu", type=int, default=1500)
    args = ap.parse_args()
    run_wire(args.srv, args.cli, args.delay_ms, args.mtu)


if __name__ == "__main__":
    main()
