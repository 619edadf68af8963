"""frpc's side of xtcp hole punching (pkg/nathole/nathole.go, discovery.go): find the addresses
STUN sees, exchange them with the peer through frps, then send encrypted NatHoleSid datagrams at
the peer until one gets through. What is left is a UDP socket and the peer's address, on which
the two ends speak QUIC."""

from __future__ import annotations

import asyncio
import fcntl
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pyfrp.log import PrefixLogger
from pyfrp.net import resolve
from pyfrp.proto import nathole, stun
from pyfrp.proto.msg import Message, NatHoleResp, NatHoleSid, NatHoleVisitor

DEFAULT_STUN_SERVER = "stun.easyvoip.com:3478"  # frp's natHoleStunServer default
STUN_TIMEOUT = 3.0
EXCHANGE_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 5.0
_SIOCGIFADDR = 0x8915

Addr = tuple[str, int]


class NatHoleError(Exception):
    pass


class ControlChannel(Protocol):
    """The session's control connection, as xtcp uses it."""

    def send_control(self, msg: Message) -> None: ...

    async def request(self, msg: Message, transaction_id: str, limit: float) -> NatHoleResp:
        """Send ``msg`` and wait for the NatHoleResp with ``transaction_id``."""
        ...


def _go_list(items: list[str]) -> str:
    """A []string as Go's %v prints it (frp's log lines)."""
    return "[" + " ".join(items) + "]"


def _describe(resp: NatHoleResp) -> str:
    """A NatHoleResp's detect behavior as frp logs it (Go's %+v)."""
    b = resp.detect_behavior
    ports = " ".join(f"{{From:{r.from_} To:{r.to}}}" for r in b.candidate_ports)
    return (
        f"{{Role:{b.role} Mode:{b.mode} TTL:{b.ttl} SendDelayMs:{b.send_delay_ms} "
        f"ReadTimeoutMs:{b.read_timeout} CandidatePorts:[{ports}] "
        f"SendRandomPorts:{b.send_random_ports} ListenRandomPorts:{b.listen_random_ports}}}"
    )


# ---------------------------------------------------------------------------- discovery


def _udp_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(("0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    return sock


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def recvfrom(sock: socket.socket, size: int) -> tuple[bytes, Addr]:
    """One datagram from a non-blocking socket (uvloop has no sock_recvfrom)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, addr = sock.recvfrom(size)
            return data, (addr[0], addr[1])
        except (BlockingIOError, InterruptedError):
            pass
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(sock.fileno())


async def _resolve(addr: str) -> Addr:
    hp = nathole.split_host_port(addr)
    if hp is None:
        raise NatHoleError(f"address {addr}: missing port in address")
    infos = [i for i in await resolve.getaddrinfo(*hp, socket.SOCK_DGRAM) if i[0] == socket.AF_INET]
    if not infos:
        raise NatHoleError(f"address {addr}: no IPv4 address")
    ip, port = infos[0][4][:2]
    return str(ip), int(port)


async def _binding(sock: socket.socket, server: Addr) -> tuple[Addr, Addr | None]:
    tid = stun.new_transaction_id()
    sock.sendto(stun.binding_request(tid), server)
    try:
        async with asyncio.timeout(STUN_TIMEOUT):
            while True:
                data, src = await recvfrom(sock, 2048)
                if src != server:
                    continue
                try:
                    got = stun.parse_binding_response(data, tid)
                except stun.StunError as exc:
                    raise NatHoleError(str(exc)) from exc
                if got is not None:
                    return got
    except TimeoutError:
        raise NatHoleError("wait response from stun server timeout") from None


async def discover(stun_server: str) -> tuple[list[str], int]:
    """The addresses STUN saw one local UDP port at (the server's, then its other address's),
    and that port."""
    server = await _resolve(stun_server)
    sock = _udp_socket()
    try:
        port = sock.getsockname()[1]
        mapped, other = await _binding(sock, server)
        addrs = [f"{mapped[0]}:{mapped[1]}"]
        if other is not None:
            mapped2, _ = await _binding(sock, other)
            addrs.append(f"{mapped2[0]}:{mapped2[1]}")
        return addrs, port
    finally:
        sock.close()


def local_ips(max_items: int = 10) -> list[str]:
    """This host's IPv4 addresses that a peer on the same network might reach (no loopback or
    link-local), at most ``max_items``."""
    out: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                req = struct.pack("256s", name.encode()[:15])
                ip = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24])
            except OSError:  # no IPv4 address
                continue
            if nathole.is_nat_hole_ip(ip) and ip not in out:
                out.append(ip)
            if len(out) >= max_items:
                break
    return out


@dataclass(slots=True)
class Prepared:
    addrs: list[str]
    assisted: list[str]
    sock: socket.socket


async def prepare(stun_server: str, disable_assisted: bool, log: PrefixLogger) -> Prepared:
    """Discover this end's addresses (``stun_server`` empty: frp's default) and bind the socket
    to punch from; raises NatHoleError."""
    try:
        addrs, port = await discover(stun_server or DEFAULT_STUN_SERVER)
    except (OSError, NatHoleError) as exc:
        raise NatHoleError(f"discover error: {exc}") from exc
    if len(addrs) < 2:
        raise NatHoleError("discover error: not enough addresses")
    ips = local_ips()
    try:
        feature = nathole.classify(addrs, ips)
    except ValueError as exc:
        raise NatHoleError(f"classify nat feature error: {exc}") from exc
    try:
        sock = _udp_socket(port)
    except OSError as exc:
        raise NatHoleError(f"listen local udp addr error: {exc}") from exc
    assisted = [] if disable_assisted else [f"{ip}:{port}" for ip in ips]
    log.info(
        "nathole prepare success, nat type: %s, behavior: %s, addresses: %s, "
        "assistedAddresses: %s", feature.nat_type, feature.behavior, _go_list(addrs),
        _go_list(assisted),
    )  # fmt: skip
    return Prepared(addrs, assisted, sock)


# ---------------------------------------------------------------------------- exchange


async def pre_check(channel: ControlChannel, proxy_name: str, limit: float = 5.0) -> None:
    tid = nathole.new_id()
    msg = NatHoleVisitor(transaction_id=tid, proxy_name=proxy_name, pre_check=True)
    try:
        resp = await channel.request(msg, tid, limit)
    except (TimeoutError, ConnectionError) as exc:
        raise NatHoleError(f"get natHoleRespMsg error: {exc or 'timeout'}") from exc
    if resp.error:
        raise NatHoleError(resp.error)


async def exchange(
    channel: ControlChannel, msg: Message, transaction_id: str, log: PrefixLogger
) -> NatHoleResp:
    """Send our addresses, get the peer's and how to punch; raises NatHoleError."""
    try:
        resp = await channel.request(msg, transaction_id, EXCHANGE_TIMEOUT)
    except (TimeoutError, ConnectionError) as exc:
        raise NatHoleError(f"get natHoleRespMsg error: {exc or 'timeout'}") from exc
    if resp.error:
        raise NatHoleError(f"natHoleRespMsg get error info: {resp.error}")
    if not resp.candidate_addrs:
        raise NatHoleError("natHoleRespMsg get empty candidate addresses")
    log.info(
        "get natHoleRespMsg, sid [%s], protocol [%s], candidate address %s, "
        "assisted address %s, detectBehavior: %s", resp.sid, resp.protocol,
        _go_list(resp.candidate_addrs), _go_list(resp.assisted_addrs), _describe(resp),
    )  # fmt: skip
    return resp


# ---------------------------------------------------------------------------- punching


def _send_sid(
    sock: socket.socket, sid: str, tid: str, addr: str, key: str, ttl: int, log: PrefixLogger
) -> None:
    hp = nathole.split_host_port(addr)
    if hp is None:
        return
    msg = NatHoleSid(transaction_id=tid, sid=sid, nonce="0" * random.randrange(20))
    data = nathole.encode_sid(msg, key)
    original = 0
    if ttl > 0:
        original = sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    try:
        sock.sendto(data, hp)
    except OSError as exc:  # unreachable guesses are expected
        log.debug("send sid message from %s to %s error: %s", sock.getsockname(), addr, exc)
    finally:
        if ttl > 0:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, original)


async def _wait_detect(
    sock: socket.socket, sid: str, key: str, role: str, log: PrefixLogger
) -> Addr:
    while True:
        data, raddr = await recvfrom(sock, 1024)
        log.debug("get udp message local %s, from %s:%d", sock.getsockname(), *raddr)
        try:
            m = nathole.decode_sid(data, key)
        except ValueError as exc:
            log.warning("decode sid message error: %s", exc)
            continue
        if m.sid != sid:
            log.warning("get sid message with wrong sid: %s, expect: %s", m.sid, sid)
            continue
        if not m.response:
            if role == nathole.SENDER:
                continue  # a sender waits for the receiver's answer
            m.response = True
            try:
                sock.sendto(nathole.encode_sid(m, key), raddr)
            except OSError as exc:
                log.debug("send sid response to %s:%d error: %s", *raddr, exc)
        return raddr


async def _spray_random(
    sock: socket.socket, ips: list[str], count: int, send: Callable[[socket.socket, str], None]
) -> None:
    used: set[int] = set()
    for _ in range(count):
        port = 0
        for _ in range(10):
            p = random.randrange(1024, 65535)
            if p not in used:
                used.add(p)
                port = p
                break
        if not port:
            continue
        for ip in ips:
            send(sock, f"{ip}:{port}")
            await asyncio.sleep(0.015)


async def make_hole(
    sock: socket.socket, resp: NatHoleResp, key: str, log: PrefixLogger
) -> tuple[socket.socket, Addr]:
    """Punch per ``resp``'s detect behavior. Returns the socket the peer got through on (the
    others are closed) and the peer's address; raises NatHoleError."""
    behavior = resp.detect_behavior
    tid = nathole.new_id()

    def send(s: socket.socket, addr: str) -> None:
        _send_sid(s, resp.sid, tid, addr, key, behavior.ttl, log)

    socks = [sock]
    detect: list[str] = []
    if behavior.role == nathole.SENDER:
        if behavior.send_delay_ms > 0:
            await asyncio.sleep(behavior.send_delay_ms / 1000)
        detect = resp.assisted_addrs + resp.candidate_addrs
    else:
        if not behavior.candidate_ports:
            detect = resp.candidate_addrs
        for _ in range(behavior.listen_random_ports):
            try:
                socks.append(_udp_socket())
            except OSError as exc:
                log.warning("listen random udp addr error: %s", exc)
    for addr in nathole.compact(detect):
        for s in socks:
            send(s, addr)
    ips = nathole.compact(nathole.ips_of(resp.candidate_addrs))
    for s in socks:
        for r in behavior.candidate_ports:
            for port in range(r.from_, r.to + 1):
                for ip in ips:
                    send(s, f"{ip}:{port}")
                await asyncio.sleep(0.002)
    timeout = behavior.read_timeout / 1000 if behavior.read_timeout > 0 else DEFAULT_READ_TIMEOUT
    tasks: dict[asyncio.Task[Addr], socket.socket] = {
        asyncio.ensure_future(_wait_detect(s, resp.sid, key, behavior.role, log)): s for s in socks
    }
    sprays = [
        asyncio.ensure_future(_spray_random(s, ips, behavior.send_random_ports, send))
        for s in socks
        if behavior.send_random_ports > 0
    ]
    winner: socket.socket | None = None
    raddr: Addr | None = None
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if not t.cancelled() and t.exception() is None:
                winner, raddr = tasks[t], t.result()
                break
    finally:
        for task in (*tasks, *sprays):
            task.cancel()
        await asyncio.gather(*tasks, *sprays, return_exceptions=True)
        for s in socks:
            if s is not winner:
                s.close()
    if winner is None or raddr is None:
        raise NatHoleError("wait detect message error: i/o timeout")
    log.info(
        "establishing nat hole connection successful, sid [%s], remoteAddr [%s:%d]",
        resp.sid, *raddr,
    )  # fmt: skip
    return winner, raddr
