"""Two throwaway network namespaces joined by a veth pair, for the virtual_net tests: the host's
interfaces and routes are never touched, and everything is deleted afterwards.

``A`` (10.231.0.1) runs frps and the proxy side, ``B`` (10.231.0.2) the visitor side; each
frpc's TUN device lives in its own namespace, so a packet from B to A's virtual address really
crosses the tunnel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.harness import Proc

ADDR_A = "10.231.0.1"
ADDR_B = "10.231.0.2"


def skip_unless_able() -> None:
    """Skip unless this process may create namespaces and TUN devices."""
    if not sys.platform.startswith("linux"):
        pytest.skip("virtual_net needs Linux")
    if os.geteuid() != 0:
        pytest.skip("virtual_net needs root (network namespaces, TUN devices)")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("virtual_net needs /dev/net/tun")
    if shutil.which("ip") is None:
        pytest.skip("virtual_net tests need the ip tool (iproute2)")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Lab:
    def __init__(self, tmp: Path) -> None:
        tag = f"{os.getpid() % 100000}{int(time.monotonic() * 1000) % 1000}"
        self.a = f"pyfrpvnA{tag}"
        self.b = f"pyfrpvnB{tag}"
        self.veth = f"pvn{tag}"[:15]
        self.tmp = tmp
        self.procs: list[Proc] = []

    def up(self) -> None:
        _ip("netns", "add", self.a)
        _ip("netns", "add", self.b)
        _ip("link", "add", self.veth, "netns", self.a, "type", "veth", "peer", "name", "b0",
            "netns", self.b)  # fmt: skip
        for ns, dev, addr in ((self.a, self.veth, ADDR_A), (self.b, "b0", ADDR_B)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")

    def down(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

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
        code = textwrap.dedent(f"""
            import time
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


@contextmanager
def lab(tmp: Path) -> Iterator[Lab]:
    skip_unless_able()
    la = Lab(tmp)
    try:
        try:
            la.up()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot create network namespaces: {exc.stderr.decode().strip()}")
        yield la
    finally:
        la.down()
