"""frpc's connection to frps through a proxy (``transport.proxyURL``, INI ``http_proxy``, else the
``http_proxy`` environment variable; golib's net.DialContext WithProxy): ``http://[user:pass@]
host:port`` sends CONNECT (basic auth), ``socks5://[user:pass@]host:port`` asks the proxy to
resolve frps's name, as Go does. The handshakes are python-socks's; the name of the proxy itself
goes through frpc's resolver (its dnsServer) and the socket is bound to connectServerLocalIP."""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlsplit

from python_socks import ProxyError, ProxyType
from python_socks._errors import IncompleteReadError
from python_socks.async_.asyncio import Proxy

from pyfrp.net import resolve

SCHEMES = {"http": ProxyType.HTTP, "socks5": ProxyType.SOCKS5}


async def dial(
    url: str, host: str, port: int, local_ip: str = "", limit: float = 10
) -> socket.socket:
    """A connected socket to host:port through the proxy at ``url``; OSError on failure."""
    parts = urlsplit(url)
    kind = SCHEMES.get(parts.scheme)
    if kind is None:
        raise OSError(f"ProxyType must be http, https, socks5 or ntlm, not [{parts.scheme}]")
    try:
        proxy_port = parts.port
    except ValueError as exc:
        raise OSError(f"proxy url {url!r}: {exc}") from exc
    if not parts.hostname or proxy_port is None:
        raise OSError(f"dial tcp {parts.netloc}: missing port in address")
    infos = await resolve.getaddrinfo(parts.hostname, proxy_port)
    proxy = Proxy(
        kind,
        infos[0][4][0],
        proxy_port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        rdns=True,
    )
    try:
        return await proxy.connect(
            host, port, timeout=limit, local_addr=(local_ip, 0) if local_ip else None
        )
    except (ProxyError, IncompleteReadError) as exc:  # a refusal, or a proxy hanging up
        raise ConnectionRefusedError(f"proxy {parts.hostname}:{proxy_port}: {exc}") from exc
