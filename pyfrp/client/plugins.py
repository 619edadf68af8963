"""frpc's client plugins (pkg/plugin/client): what answers a work connection instead of a dial to
local_ip:local_port. Implemented: ``unix_domain_socket``, ``socks5`` (RFC 1928/1929, CONNECT),
``http_proxy`` (CONNECT and plain forwarding, Basic auth as ``Proxy-Authorization``),
``static_file`` (a directory served by aiohttp on a loopback port of its own, Basic auth,
``stripPrefix``), ``tls2raw`` (TLS ends here, the bytes go on raw), and the HTTP relays
``http2http``, ``http2https``, ``https2http``, ``https2https`` (pyfrps's own HTTP/1.1 front end
with a catch-all route to ``localAddr``: ``hostHeaderRewrite``, ``requestHeaders.set``, keep-alive
to the local service; TLS in front from ``crtPath``/``keyPath`` or a self-signed certificate, TLS
behind without verification, as frp), and ``virtual_net`` (the work connection carries IP
packets to and from the client's TUN device: pyfrp/client/vnet.py).

Each handler gets the work connection's top transport (the proxy's layers already on it), the
bytes already read from it and whether it ended, and owns it from then on.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import ssl
import struct
from typing import TYPE_CHECKING, Any

from pyfrp.client.vnet import Controller
from pyfrp.log import PrefixLogger
from pyfrp.net import resolve
from pyfrp.net.splice import HoldProtocol, splice
from pyfrp.net.tls import server_context
from pyfrp.net.tlslayer import TlsLayer
from pyfrp.proto.auth import same_secret
from pyfrp.proto.msg import StartWorkConn
from pyfrp.proto.proxyproto import header_for_user
from pyfrp.vhost.conn import WorkConn

if TYPE_CHECKING:  # the HTTP front end (~2 MiB of RSS) loads with the first http2*/https2* use
    from pyfrp.vhost.http import VhostHttpServer

DIAL_TIMEOUT = 10.0
HEAD_LIMIT = 64 * 1024


class _Reader(asyncio.Protocol):
    """Reads a handshake off a transport; what is left over goes to the splice after it."""

    def __init__(self, pending: bytes, ended: bool) -> None:
        self.buf = bytearray(pending)
        self.ended = ended
        self._wake: asyncio.Future[None] | None = None

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._notify()

    def eof_received(self) -> bool:
        self.ended = True
        self._notify()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self._notify()

    async def _more(self) -> None:
        if self.ended:
            raise ConnectionError("the user went away during the handshake")
        if len(self.buf) > HEAD_LIMIT:
            raise ConnectionError("handshake too long")
        self._wake = asyncio.get_running_loop().create_future()
        await self._wake

    async def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_until(self, sep: bytes) -> bytes:
        while (i := self.buf.find(sep)) < 0:
            await self._more()
        out = bytes(self.buf[: i + len(sep)])
        del self.buf[: i + len(sep)]
        return out


async def _dial(host: str, port: int) -> tuple[asyncio.Transport, HoldProtocol]:
    async with asyncio.timeout(DIAL_TIMEOUT):
        return await resolve.create_connection(HoldProtocol, host, port)


async def _join(
    user: asyncio.Transport, reader: _Reader, local: asyncio.Transport, held: HoldProtocol
) -> None:
    try:
        await splice(
            user, local, a_pending=bytes(reader.buf), a_ended=reader.ended,
            b_pending=held.take(), b_ended=held.ended,
        )  # fmt: skip
    finally:
        user.close()
        local.close()


async def serve(
    plugin: dict[str, Any],
    log: PrefixLogger,
    top: asyncio.Transport,
    pending: bytes,
    ended: bool,
    start: StartWorkConn,
    proxy_protocol: str,
    vnet: Controller | None = None,
    proxy: str = "",
) -> None:
    kind = plugin["type"]
    if kind == "virtual_net":
        if vnet is None:  # no virtualNet.address: frp's plugin drops the connection
            log.debug("virtual_net plugin: no virtual network (virtualNet.address) to join")
            top.close()
        else:
            vnet.serve(top, pending, ended, log, proxy)
        return
    reader = _Reader(pending, ended)
    top.set_protocol(reader)
    top.resume_reading()  # a detached work connection is handed over paused
    try:
        if kind == "unix_domain_socket":
            await _unix(plugin, top, reader, start, proxy_protocol)
        elif kind == "socks5":
            await _socks5(plugin, top, reader)
        elif kind == "http_proxy":
            await _http_proxy(plugin, top, reader)
        elif kind == "static_file":
            local, held = await _dial("127.0.0.1", await _static_port(plugin))
            await _join(top, reader, local, held)
        elif kind == "tls2raw":
            await _tls2raw(plugin, top, reader, start, proxy_protocol)
        elif kind in HTTP_RELAYS:
            await _http_relay(plugin, top, reader)
    except (ConnectionError, OSError, TimeoutError, ValueError) as exc:
        log.debug("%s plugin: %s", kind, exc or type(exc).__name__)
        top.close()


async def _unix(
    plugin: dict[str, Any],
    top: asyncio.Transport,
    reader: _Reader,
    start: StartWorkConn,
    proxy_protocol: str,
) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(DIAL_TIMEOUT):
        local, held = await loop.create_unix_connection(HoldProtocol, plugin["unixPath"])
    pp = header_for_user(proxy_protocol, start)
    if pp:
        local.write(pp)
    await _join(top, reader, local, held)


# -- socks5 (RFC 1928, RFC 1929 username/password)
_NO_AUTH, _USER_PASS, _NO_METHOD = 0x00, 0x02, 0xFF


async def _socks5(plugin: dict[str, Any], top: asyncio.Transport, reader: _Reader) -> None:
    user, password = plugin.get("username", ""), plugin.get("password", "")
    version, count = await reader.read(2)
    if version != 5:
        raise ValueError(f"not socks5 (version {version})")
    methods = await reader.read(count)
    want = _USER_PASS if user or password else _NO_AUTH
    if want not in methods:
        top.write(bytes([5, _NO_METHOD]))
        raise ValueError("no acceptable authentication method")
    top.write(bytes([5, want]))
    if want == _USER_PASS:
        _, ulen = await reader.read(2)
        got_user = (await reader.read(ulen)).decode("utf-8", "replace")
        (plen,) = await reader.read(1)
        got_pass = (await reader.read(plen)).decode("utf-8", "replace")
        ok = same_secret(got_user, user) & same_secret(got_pass, password)
        top.write(bytes([1, 0 if ok else 1]))
        if not ok:
            raise ValueError("socks5 user authentication failed")
    _, cmd, _, atyp = await reader.read(4)
    if atyp == 1:
        host = str(ipaddress.IPv4Address(await reader.read(4)))
    elif atyp == 4:
        host = str(ipaddress.IPv6Address(await reader.read(16)))
    elif atyp == 3:
        (n,) = await reader.read(1)
        host = (await reader.read(n)).decode("idna")
    else:
        top.write(bytes([5, 8, 0, 1, 0, 0, 0, 0, 0, 0]))
        raise ValueError(f"address type {atyp} not supported")
    (port,) = struct.unpack("!H", await reader.read(2))
    if cmd != 1:  # CONNECT only, as go-socks5 serves frp's plugin
        top.write(bytes([5, 7, 0, 1, 0, 0, 0, 0, 0, 0]))
        raise ValueError(f"command {cmd} not supported")
    try:
        local, held = await _dial(host, port)
    except (OSError, TimeoutError):
        top.write(bytes([5, 5, 0, 1, 0, 0, 0, 0, 0, 0]))  # connection refused
        raise
    bound = local.get_extra_info("sockname") or ("0.0.0.0", 0)
    ip = ipaddress.ip_address(bound[0])
    kind = 1 if ip.version == 4 else 4
    top.write(bytes([5, 0, 0, kind]) + ip.packed + struct.pack("!H", bound[1]))
    await _join(top, reader, local, held)


# -- http_proxy
def _authorized(head: bytes, user: str, password: str) -> bool:
    if not user and not password:
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"proxy-authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() != b"basic":
                return False
            try:
                got = base64.b64decode(token, validate=True).decode("utf-8", "replace")
            except ValueError:
                return False
            u, _, p = got.partition(":")
            return same_secret(u, user) & same_secret(p, password)
    return False


def _host_port(authority: str, default: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, sep, port = authority.rpartition(":")
    return (host, int(port)) if sep and port.isdigit() else (authority, default)


async def _http_proxy(plugin: dict[str, Any], top: asyncio.Transport, reader: _Reader) -> None:
    head = await reader.read_until(b"\r\n\r\n")
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, _, rest = request_line.partition(" ")
    target, _, version = rest.partition(" ")
    if not _authorized(head, plugin.get("httpUser", ""), plugin.get("httpPassword", "")):
        top.write(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="Restricted"\r\nContent-Length: 0\r\n'
            b"Connection: close\r\n\r\n"
        )
        top.close()
        return
    if method == "CONNECT":
        local, held = await _dial(*_host_port(target, 443))
        top.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await _join(top, reader, local, held)
        return
    # A plain request with an absolute URI: to the origin in origin-form, without proxy headers.
    scheme, sep, after = target.partition("://")
    if not sep or scheme.lower() != "http":
        raise ValueError(f"not a proxy request: {request_line!r}")
    authority, slash, path = after.partition("/")
    host, port = _host_port(authority, 80)
    lines = [f"{method} /{path if slash else ''} {version}".encode("latin-1")]
    lines += [
        line
        for line in head.split(b"\r\n")[1:]
        if line and not line.lower().startswith((b"proxy-authorization:", b"proxy-connection:"))
    ]
    local, held = await _dial(host, port)
    local.write(b"\r\n".join(lines) + b"\r\n\r\n")
    await _join(top, reader, local, held)


# -- static_file
def _resolve(root: str, strip: str, url_path: str) -> tuple[str, str]:
    """What a URL path names under ``root``: ("file", path), ("dir", listing html) or
    ("missing", ""). Blocking: run in a thread."""
    path = url_path.lstrip("/")
    if strip:
        if path != strip and not path.startswith(strip + "/"):
            return "missing", ""
        path = path[len(strip) :].lstrip("/")
    full = os.path.realpath(os.path.join(root, path))
    if full != root and not full.startswith(root + os.sep):
        return "missing", ""
    if os.path.isdir(full):
        index = os.path.join(full, "index.html")
        if os.path.isfile(index):
            return "file", index
        names = sorted(
            n + ("/" if os.path.isdir(os.path.join(full, n)) else "") for n in os.listdir(full)
        )
        return "dir", "<pre>\n" + "".join(f'<a href="{n}">{n}</a>\n' for n in names) + "</pre>\n"
    return ("file", full) if os.path.isfile(full) else ("missing", "")


_static_servers: dict[tuple[str, str, str, str], asyncio.Future[int]] = {}


async def _static_port(plugin: dict[str, Any]) -> int:
    """The loopback port of this plugin's file server (frp's static_file also serves on an
    internal listener), started on first use and kept for the life of pyfrpc."""
    key = (
        plugin["localPath"], plugin.get("stripPrefix", ""),
        plugin.get("httpUser", ""), plugin.get("httpPassword", ""),
    )  # fmt: skip
    started = _static_servers.get(key)
    if started is None:
        started = _static_servers[key] = asyncio.get_running_loop().create_future()
        try:
            started.set_result(await _start_static(*key))
        except BaseException as exc:
            del _static_servers[key]
            started.set_exception(exc)
            raise
    return await asyncio.shield(started)


async def _start_static(local_path: str, strip_prefix: str, user: str, password: str) -> int:
    from aiohttp import web

    from pyfrp.vhost.http import parse_basic

    root = await asyncio.to_thread(os.path.realpath, local_path)
    strip = strip_prefix.strip("/")

    async def handle(request: web.Request) -> web.StreamResponse:
        if user or password:
            got = parse_basic(request.headers.get("Authorization"))
            if got is None or not (same_secret(got[0], user) & same_secret(got[1], password)):
                return web.Response(
                    status=401, text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="Restricted"'},
                )  # fmt: skip
        kind, value = await asyncio.to_thread(_resolve, root, strip, request.path)
        if kind == "file":
            return web.FileResponse(value)
        if kind == "dir":
            return web.Response(text=value, content_type="text/html")
        return web.Response(status=404, text="404 page not found\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return int(runner.addresses[0][1])


# -- TLS and the HTTP relays
HTTP_RELAYS = frozenset({"http2http", "http2https", "https2http", "https2https"})
_server_contexts: dict[tuple[str, str], ssl.SSLContext] = {}


def _server_tls(plugin: dict[str, Any]) -> ssl.SSLContext:
    """frp's NewServerTLSConfig: the given pair, or a self-signed certificate (made once)."""
    key = (plugin.get("crtPath", ""), plugin.get("keyPath", ""))
    ctx = _server_contexts.get(key)
    if ctx is None:
        ctx = _server_contexts[key] = server_context(*key)
    return ctx


async def _terminate_tls(
    plugin: dict[str, Any], top: asyncio.Transport, reader: _Reader
) -> TlsLayer:
    """TLS ends on the work connection: the layer on top of it, its handshake done."""
    layer = TlsLayer(top, _server_tls(plugin), server_side=True)
    top.set_protocol(layer)
    layer.start(bytes(reader.buf))
    reader.buf.clear()
    if reader.ended:
        layer.eof_received()
    async with asyncio.timeout(DIAL_TIMEOUT):
        await layer.handshake
    return layer


async def _tls2raw(
    plugin: dict[str, Any],
    top: asyncio.Transport,
    reader: _Reader,
    start: StartWorkConn,
    proxy_protocol: str,
) -> None:
    layer = await _terminate_tls(plugin, top, reader)
    inner = _Reader(b"", False)
    layer.set_protocol(inner)
    inner.buf += layer.take()
    local, held = await _dial(*_host_port(plugin["localAddr"], 0))
    pp = header_for_user(proxy_protocol, start)
    if pp:
        local.write(pp)
    await _join(layer, inner, local, held)


class _LocalOpener:
    """The relay's upstreams: connections to localAddr, with TLS (unverified) for *2https."""

    def __init__(self, plugin: dict[str, Any]) -> None:
        self.host, self.port = _host_port(plugin["localAddr"], 80)
        self.tls: ssl.SSLContext | None = None
        if plugin["type"].endswith("2https"):
            self.tls = ssl.create_default_context()
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    async def open_work_conn(
        self, src: tuple[str, int], dst: tuple[str, int] = ("", 0)
    ) -> WorkConn | None:
        try:
            async with asyncio.timeout(DIAL_TIMEOUT):
                transport, held = await resolve.create_connection(
                    HoldProtocol, self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )  # fmt: skip
        except (OSError, TimeoutError):
            return None
        return WorkConn(transport, held.take(), held.ended)

    def conn_opened(self) -> None:
        pass

    def conn_closed(self, bytes_in: int, bytes_out: int) -> None:
        pass


_relays: dict[int, VhostHttpServer] = {}


def _relay_for(plugin: dict[str, Any]) -> VhostHttpServer:
    """One front end per plugin (its upstream pool shared by the proxy's connections)."""
    relay = _relays.get(id(plugin))
    if relay is None:
        from pyfrp.vhost.http import HttpRoute, VhostHttpServer

        relay = _relays[id(plugin)] = VhostHttpServer()
        relay.add_route(
            "*", "", "",
            HttpRoute(
                opener=_LocalOpener(plugin),
                rewrite_host=plugin.get("hostHeaderRewrite", ""),
                headers=dict(plugin.get("requestHeaders.set") or {}),
                # frp: https2* append the client to X-Forwarded-*, http2* pass them as they are
                forwarded=plugin["type"].startswith("https2"),
            ),
        )  # fmt: skip
    return relay


async def _http_relay(plugin: dict[str, Any], top: asyncio.Transport, reader: _Reader) -> None:
    front: asyncio.Transport = top
    early = b""
    if plugin["type"].startswith("https2"):
        layer = await _terminate_tls(plugin, top, reader)
        front, early = layer, layer.take()
    else:
        early = bytes(reader.buf)
        reader.buf.clear()
    relay = _relay_for(plugin)
    protocol = relay.protocol_factory()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watched = _Ends(protocol, done)
    front.set_protocol(watched)
    protocol.connection_made(front)
    if early:
        watched.data_received(early)
    if reader.ended:
        watched.eof_received()
    top.resume_reading()
    await done


class _Ends(asyncio.Protocol):
    """Passes a transport's events to the relay's protocol; ``done`` when the connection ends."""

    def __init__(self, inner: asyncio.Protocol, done: asyncio.Future[None]) -> None:
        self.inner = inner
        self.done = done

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)
        if not self.done.done():
            self.done.set_result(None)
