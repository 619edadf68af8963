"""frpc's name lookups, and its ``dnsServer`` (client/service.go SetDefaultDNSAddress): with one
set, every name frpc resolves (frps's address, the STUN server, local services, plugin targets)
is asked of that server, as Go's process-wide resolver does, after the hosts file (Go's resolver
reads it first too). Without one, the system's resolver (getaddrinfo) as before.

Queries go out with dnspython (A and AAAA over UDP, TCP on truncation), loaded only when a
dnsServer is configured."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from typing import Any, TypeVar

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
P = TypeVar("P", bound=asyncio.BaseProtocol)

HOSTS_FILE = "/etc/hosts"
_dns_server: tuple[str, int] | None = None


def set_dns_server(address: str) -> None:
    """``host[:port]`` (port 53 by default), or "" for the system's resolver."""
    global _dns_server
    if not address:
        _dns_server = None
        return
    # Go: a port is added unless SplitHostPort succeeds (a bare IPv6 address has none).
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and (address.count(":") == 1 or "]:" in address):
        _dns_server = (host.strip("[]"), int(port))
    else:
        _dns_server = (address.strip("[]"), 53)


def _from_hosts(host: str) -> list[str]:
    found: list[str] = []
    try:
        with open(HOSTS_FILE, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) > 1 and host.lower() in (n.lower() for n in fields[1:]):
                    found.append(fields[0])
    except OSError:
        pass
    return found


async def _ask(server: tuple[str, int], host: str) -> list[str]:
    import dns.asyncresolver  # dnspython: only with a dnsServer
    import dns.exception
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=False)
    try:
        ipaddress.ip_address(server[0])
        nameserver = server[0]
    except ValueError:  # a dnsServer given by name: the system's resolver finds it
        infos = await asyncio.get_running_loop().getaddrinfo(server[0], server[1])
        nameserver = str(infos[0][4][0])
    resolver.nameservers = [nameserver]
    resolver.port = server[1]
    found: list[str] = []
    failure: Exception | None = None
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN) as exc:
            failure = failure or exc
            continue
        except dns.exception.DNSException as exc:
            failure = exc
            continue
        found.extend(r.to_text() for r in answer)
    if not found:
        why = failure or "no such host"
        raise socket.gaierror(socket.EAI_NONAME, f"lookup {host} on {server[0]}:{server[1]}: {why}")
    return found


async def getaddrinfo(host: str, port: int, type: int = socket.SOCK_STREAM) -> list[AddrInfo]:
    """loop.getaddrinfo, through the dnsServer when frpc has one."""
    server = _dns_server
    if server is None or not host:
        return list(await asyncio.get_running_loop().getaddrinfo(host, port, type=type))
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        ips = _from_hosts(host) or await _ask(server, host)
    else:
        ips = [host]
    infos: list[AddrInfo] = []
    for ip in ips:
        v6 = ":" in ip
        family = socket.AF_INET6 if v6 else socket.AF_INET
        infos.append((family, type, 0, "", (ip, port, 0, 0) if v6 else (ip, port)))
    return infos


async def create_connection(
    factory: Callable[[], P], host: str, port: int, **kw: Any
) -> tuple[asyncio.Transport, P]:
    """loop.create_connection to host:port, the name resolved through the dnsServer if any."""
    loop = asyncio.get_running_loop()
    if _dns_server is None:
        return await loop.create_connection(factory, host, port, **kw)
    last: OSError | None = None
    for family, _, _, _, addr in await getaddrinfo(host, port):
        try:
            return await loop.create_connection(factory, addr[0], port, family=family, **kw)
        except OSError as exc:
            last = exc
    raise last or OSError(f"cannot resolve {host}")
