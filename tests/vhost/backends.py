"""Local services and clients for the vhost tests: an HTTP/1.1 echo backend, a WebSocket echo,
a TLS backend that reports the SNI it saw, and small raw HTTP client helpers.

The HTTP backend answers every request with JSON describing it, except:
``/download/N`` (N bytes, Content-Length), ``/chunked/N`` (N bytes, chunked), ``/close/N``
(N bytes, ended by closing), ``/slow/S`` (answers after S seconds) and ``/upload`` (reads the body
and answers its length and SHA-256). Downloads repeat one fixed 1 MiB block, so a client checks
them with ``expected_sha256(n)``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.harness import HOST, serving

MiB = 1 << 20
BLOCK = random.Random(42).randbytes(MiB)


def pattern(n: int) -> Iterator[bytes]:
    while n > 0:
        k = min(n, MiB)
        yield BLOCK[:k]
        n -= k


def expected_sha256(n: int) -> str:
    h = hashlib.sha256()
    for b in pattern(n):
        h.update(b)
    return h.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Backend

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, MiB))
                    if not data:
                        return
                    left -= len(data)
                    yield data
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            data = self.rfile.read(min(left, MiB))
            if not data:
                return
            left -= len(data)
            yield data

    def _handle(self) -> None:
        path = self.path
        if path.startswith("/slow/"):
            time.sleep(float(path.split("/")[2]))
        if path.startswith(("/download/", "/chunked/", "/close/")):
            kind, n = path.split("/")[1], int(path.split("/")[2])
            for _ in self._body():
                pass
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if kind == "download":
                self.send_header("Content-Length", str(n))
            elif kind == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            for block in pattern(n):
                if kind == "chunked":
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                else:
                    self.wfile.write(block)
            if kind == "chunked":
                self.wfile.write(b"0\r\n\r\n")
            return
        h = hashlib.sha256()
        size = 0
        for data in self._body():
            h.update(data)
            size += len(data)
        out = json.dumps(
            {
                "backend": self.server.name,
                "method": self.command,
                "path": path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_len": size,
                "body_sha256": h.hexdigest(),
                "peer": self.client_address[0],
                "peer_port": self.client_address[1],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle


class _Backend(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    name = "backend"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that go away early (504 tests, resets) are expected here


@contextmanager
def http_backend(name: str = "backend") -> Iterator[int]:
    srv = _Backend((HOST, 0), _Handler)
    srv.name = name
    with serving(srv) as port:
        yield port


@contextmanager
def ws_echo_backend() -> Iterator[int]:
    from websockets.sync.server import ServerConnection, serve

    def echo(ws: ServerConnection) -> None:
        try:
            for message in ws:
                ws.send(message)
        except Exception:
            pass

    with serve(echo, HOST, 0, max_size=None, compression=None) as server:
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        try:
            yield int(server.socket.getsockname()[1])
        finally:
            server.shutdown()


def self_signed(tmp: Path, name: str = "*.example.com") -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp / "backend.crt", tmp / "backend.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem


@contextmanager
def tls_backend(tmp: Path, name: str) -> Iterator[int]:
    """A TLS server that answers each connection's first line with ``name sni``."""
    crt, pem = self_signed(tmp)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, pem)
    seen = threading.local()  # the handshake runs in the connection's own thread

    def on_sni(sock: ssl.SSLObject | ssl.SSLSocket, sni: str | None, _: ssl.SSLContext) -> None:
        seen.name = sni or "-"

    ctx.sni_callback = on_sni
    lsock = socket.create_server((HOST, 0))
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(10)
                line = tls.recv(1024)
                if line:
                    sni = getattr(seen, "name", "?")
                    tls.sendall(f"{name} {sni} {line.decode().strip()}\n".encode())
        except OSError:
            pass

    def loop() -> None:
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield int(lsock.getsockname()[1])
    finally:
        stop.set()
        t.join(2)
        lsock.close()


def tls_ask(port: int, sni: str | None, line: str = "hello", timeout: float = 10.0) -> str:
    """Connect to the vhost https port with ``sni`` and return the backend's answer line."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((HOST, port), timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        tls.sendall(line.encode() + b"\n")
        return tls.recv(4096).decode().strip()


# ----------------------------------------------------------------------------- HTTP client


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def sent(self, name: str) -> list[str]:
        """Values of a request header as the backend received it."""
        return [v for k, v in self.json["headers"] if k.lower() == name.lower()]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(
    port: int,
    host: str,
    path: str = "/",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: Any = None,
    auth: tuple[str, str] | None = None,
    timeout: float = 20.0,
    conn: http.client.HTTPConnection | None = None,
    chunked: bool = False,
) -> Answer:
    """One request to the vhost port with ``Host: host`` (a new connection unless ``conn``)."""
    c = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    h = {"Host": host, **(headers or {})}
    if auth is not None:
        h["Authorization"] = basic(*auth)
    try:
        c.request(method, path, body=body, headers=h, encode_chunked=chunked)
        r = c.getresponse()
        data = r.read()
        return Answer(r.status, r.getheaders(), data)
    finally:
        if conn is None:
            c.close()


def route_of(answer: Answer) -> str:
    """Which proxy answered (its X-Route header, set by header_X-Route), else the status."""
    if answer.status == 200:
        routes = answer.sent("X-Route")
        return routes[0] if routes else "?"
    return str(answer.status)
