"""Real processes on loopback: pyfrps/pyfrpc (and the Go peers), echo servers, byte checks."""

from __future__ import annotations

import hashlib
import http.server
import os
import random
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from pyfrp.proto import stun

HOST = "127.0.0.1"


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports for processes to listen on are drawn from below the kernel's ephemeral range: a port
# handed out by bind(0) can be taken by some outgoing connection's local end before the process
# that was given it binds (CI saw "address already in use" that way); these never are.
_PORT_RANGE = (max(1024, _ephemeral_low() // 2), _ephemeral_low())


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports nothing listens on or is connected from."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(*_PORT_RANGE)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        ports.append(port)
    return ports


def free_port() -> int:
    return free_ports(1)[0]


class Proc:
    """A child process whose output goes to a file (never a pipe: wine peers hold pipes open)."""

    def __init__(
        self, name: str, argv: Sequence[str | os.PathLike[str]], log: Path, cwd: Path
    ) -> None:
        self.name = name
        self.config: Path | None = None  # the config file it was started with, if any
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen(
            [str(a) for a in argv], stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=env
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    def log(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))

    def alive(self) -> bool:
        return self.p.poll() is None

    def wait_log(self, pattern: str, timeout: float = 20.0, count: int = 1) -> str:
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.log()
            if len(rx.findall(text)) >= count:
                return text
            if not self.alive():
                break
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name}: no log line matching {pattern!r} (x{count}) within {timeout}s; "
            f"exit={self.p.poll()}\n--- log ---\n{self.log()[-4000:]}"
        )

    def wait_port(self, port: int, timeout: float = 20.0) -> None:
        wait_port(port, timeout, self)

    def signal(self, sig: int) -> None:
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._log.close()
        return self.p.returncode

    def kill(self) -> None:
        if self.alive():
            self.p.kill()
            self.p.wait(5)


def wait_port(port: int, timeout: float = 20.0, proc: Proc | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.name} exited ({proc.p.returncode}):\n{proc.log()[-3000:]}")
        try:
            socket.create_connection((HOST, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.03)
    raise AssertionError(f"{HOST}:{port} not accepting after {timeout}s")


def wait_not_listening(port: int, timeout: float = 10.0) -> None:
    """Poll until nothing listens on ``port`` (ss), without connecting: a probe connection
    accepted as the listener closes would be a connection the server must then clean up."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(
            ["ss", "-Hltn", f"( sport = :{port} )"], capture_output=True, text=True, check=True
        ).stdout
        if not out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"{HOST}:{port} still listening after {timeout}s")


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), 0.5).close()
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"{HOST}:{port} still accepting after {timeout}s")


class Pyfrp:
    """Starts pyfrps/pyfrpc from INI text in a directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.n = 0

    def _start(
        self,
        module: str,
        name: str,
        config: str,
        suffix: str,
        extra: Sequence[str],
        prefix: Sequence[str] = (),
    ) -> Proc:
        self.n += 1
        cfg = self.tmp / f"{name}-{self.n}{suffix}"
        cfg.write_text(config)
        argv = [*prefix, sys.executable, "-m", module, "-c", str(cfg), *extra]
        proc = Proc(name, argv, self.tmp / f"{name}-{self.n}.log", self.tmp)
        proc.config = cfg
        self.procs.append(proc)
        return proc

    def frps(
        self,
        config: str,
        suffix: str = ".ini",
        extra: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> Proc:
        """``prefix``: argv run in front (``ip netns exec NS`` puts it in a namespace)."""
        return self._start("pyfrp.server", "pyfrps", config, suffix, extra, prefix)

    def frpc(
        self,
        config: str,
        suffix: str = ".ini",
        extra: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> Proc:
        return self._start("pyfrp.client", "pyfrpc", config, suffix, extra, prefix)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop()


# ---------------------------------------------------------------------------- local services


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while True:
            try:
                data = self.request.recv(262144)
            except OSError:
                return
            if not data:
                return
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 resets bursts of 50 connects


@contextmanager
def serving(srv: socketserver.BaseServer) -> Iterator[int]:
    """Run a socketserver on a daemon thread; yields its port."""
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])  # type: ignore[index]
    finally:
        srv.shutdown()
        srv.server_close()


def http_service(
    status: Callable[[str], int], body: Callable[[str], bytes] = lambda path: b""
) -> AbstractContextManager[int]:
    """A keep-alive HTTP/1.1 service answering GET ``path`` with ``status(path)`` and
    ``body(path)``; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            data = body(self.path)
            self.send_response(status(self.path))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return serving(http.server.ThreadingHTTPServer((HOST, 0), Handler))


def echo_server(port: int = 0) -> AbstractContextManager[int]:
    return serving(_Server((HOST, port), _EchoHandler))


def echo_roundtrip(port: int, payload: bytes, timeout: float = 60.0) -> bytes:
    """Send ``payload`` through ``port`` (an echo behind a tunnel) and read it all back.

    frp has no half-close, so the sender runs in a thread and we close only after reading.
    """
    with socket.create_connection((HOST, port), timeout=timeout) as c:
        c.settimeout(timeout)
        err: list[BaseException] = []

        def send() -> None:
            try:
                c.sendall(payload)
            except OSError as exc:
                err.append(exc)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        got = bytearray()
        while len(got) < len(payload):
            d = c.recv(1 << 20)
            if not d:
                break
            got += d
        t.join(timeout)
    return bytes(got)


def assert_echo(port: int, payload: bytes, timeout: float = 60.0) -> None:
    got = echo_roundtrip(port, payload, timeout)
    assert len(got) == len(payload), f"got {len(got)} of {len(payload)} bytes back"
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()


def closed_without_reply(sock: socket.socket) -> bool:
    """True when the peer closed ``sock`` without sending a byte. A close with our bytes still
    unread reaches us as a reset rather than an EOF, depending on timing: both mean closed."""
    try:
        return sock.recv(16) == b""
    except ConnectionResetError:
        return True


def wait_echo(port: int, timeout: float = 20.0, proc: Proc | None = None) -> None:
    """Poll until a small echo works through ``port`` (the tunnel is up end to end)."""
    end = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
        try:
            if echo_roundtrip(port, b"ping", 3) == b"ping":
                return
            last = "short echo"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise AssertionError(f"tunnel on {port} not working after {timeout}s: {last}")


class _UdpEchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data, self.client_address)


def udp_echo_server() -> AbstractContextManager[int]:
    """A UDP echo on 127.0.0.1: every datagram goes back to its sender."""
    return serving(socketserver.ThreadingUDPServer((HOST, 0), _UdpEchoHandler))


def udp_ask(
    port: int, payload: bytes, timeout: float = 2.0, sock: socket.socket | None = None
) -> bytes:
    """Send one datagram to ``port`` and return the first reply (TimeoutError if none)."""
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(payload, (HOST, port))
        data, _ = s.recvfrom(65536)
        return data
    finally:
        if own:
            s.close()


def assert_udp_echoes(
    port: int, sizes: tuple[int, int] = (1000, 300), timeout: float = 5.0
) -> None:
    """Two user sockets, 20 interleaved datagrams each, through ``port`` to a UDP echo: every
    reply comes back whole to its own sender."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        for i in range(20):
            for sock, size, tag in ((a, sizes[0], b"a"), (b, sizes[1], b"b")):
                data = os.urandom(size) + tag + b"%d" % i
                assert udp_ask(port, data, timeout, sock) == data


def wait_udp_echo(port: int, timeout: float = 20.0, proc: Proc | None = None) -> None:
    """Poll until a datagram comes back through ``port`` (UDP has no connect to wait for)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
        try:
            if udp_ask(port, b"ping", 0.3) == b"ping":
                return
        except OSError:
            pass
    raise AssertionError(f"no udp echo through {port} after {timeout}s")


@contextmanager
def stun_server() -> Iterator[int]:
    """A STUN server on loopback as xtcp needs one (RFC 5780): two ports; each answers a
    Binding request with the sender's address and names the other port as OTHER-ADDRESS.
    Yields the first port (``nat_hole_stun_server = 127.0.0.1:<port>``)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for s in socks:
        s.bind((HOST, 0))
        s.settimeout(0.2)
    addrs = [s.getsockname() for s in socks]
    stop = threading.Event()

    def serve(sock: socket.socket, other: tuple[str, int]) -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
                msg = stun.decode(data)
            except (TimeoutError, stun.StunError):
                continue
            except OSError:
                return
            if msg.type == stun.BINDING_REQUEST:
                sock.sendto(stun.binding_success(msg.transaction_id, peer, other), peer)

    threads = [
        threading.Thread(target=serve, args=(socks[i], addrs[1 - i]), daemon=True) for i in range(2)
    ]
    for t in threads:
        t.start()
    try:
        yield addrs[0][1]
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in socks:
            s.close()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (pyfrps with workers: the supervisor and each worker)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    return [pid] + [p for c in children for p in process_tree(c)]


def open_fds(pid: int) -> int:
    """Open fds of ``pid`` and its descendants."""
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in process_tree(pid))


# ----------------------------------------------------------------------------- wire tap

TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a handshake message
SNAPPY_MAGIC = b"sNaPpY"  # in the stream identifier that starts every snappy framing stream
PRE_SHARED_KEY_EXT = 41  # in a TLS 1.3 ServerHello: the server resumed the offered session


def server_hello_resumed(data: bytes) -> bool | None:
    """Whether the TLS ServerHello that ``data`` starts with accepted a pre-shared key (a
    resumed session); None when ``data`` does not start with a whole ServerHello."""
    if len(data) < 9 or data[0] != TLS_HANDSHAKE or data[5] != 2:  # record, then ServerHello
        return None
    body = data[9 : 9 + int.from_bytes(data[6:9], "big")]
    p = 2 + 32  # legacy_version, random
    if len(body) < p + 1:
        return None
    p += 1 + body[p] + 2 + 1  # session id, cipher suite, compression method
    end = p + 2 + int.from_bytes(body[p : p + 2], "big")
    if end > len(body):
        return None
    p += 2
    while p + 4 <= end:
        if int.from_bytes(body[p : p + 2], "big") == PRE_SHARED_KEY_EXT:
            return True
        p += 4 + int.from_bytes(body[p + 2 : p + 4], "big")
    return False


class FirstByteTap:
    """A loopback TCP relay to ``target`` that records the first byte of every connection.

    It also counts the bytes it carries (both directions), notes whether the snappy stream
    identifier ever crossed it in the clear, and whether each TLS ServerHello resumed a session.
    It forwards half-closes (a FIN one way is passed on with shutdown(SHUT_WR)) and closes both
    sockets once both directions have ended.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.first_bytes: list[int] = []
        self.bytes_moved = 0
        self.saw_snappy_magic = False
        self.resumed: list[bool | None] = []  # per connection, from the server's first bytes
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._stopping = False
        self._srv = socket.create_server((HOST, 0))
        self._srv.settimeout(0.2)
        self.port = int(self._srv.getsockname()[1])
        self._accepter = threading.Thread(target=self._accept, name="tap-accept", daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                down, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            down.settimeout(None)
            try:
                up = socket.create_connection((HOST, self.target), 10)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            with self._lock:
                self._socks.update((down, up))
            done = threading.Semaphore(0)
            for src, dst, from_client in ((down, up, True), (up, down, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, from_client, done), daemon=True
                ).start()
            threading.Thread(target=self._reap, args=(down, up, done), daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, from_client: bool, done: threading.Semaphore
    ) -> None:
        first = True
        hello = b"" if not from_client else None  # the server's first bytes, until a whole hello
        tail = b""
        try:
            while True:
                data = src.recv(1 << 18)
                if not data:
                    break
                magic = SNAPPY_MAGIC in tail + data[: len(SNAPPY_MAGIC)] or SNAPPY_MAGIC in data
                tail = data[-(len(SNAPPY_MAGIC) - 1) :]
                with self._lock:
                    if first and from_client:
                        self.first_bytes.append(data[0])
                    if hello is not None:  # a loaded machine may split the ServerHello
                        hello += data
                        resumed = server_hello_resumed(hello)
                        if resumed is not None or len(hello) > 1 << 14:
                            self.resumed.append(resumed)
                            hello = None
                    first = False
                    self.bytes_moved += len(data)
                    self.saw_snappy_magic |= magic
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            done.release()

    def _reap(self, a: socket.socket, b: socket.socket, done: threading.Semaphore) -> None:
        done.acquire()
        done.acquire()
        with self._lock:
            self._socks.difference_update((a, b))
        a.close()
        b.close()

    def close(self) -> None:
        self._stopping = True
        self._srv.close()
        self._accepter.join(5)
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
