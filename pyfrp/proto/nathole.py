"""xtcp's NAT hole punching, the IO-free parts (frp pkg/nathole): classifying a NAT from the
addresses STUN saw, the server's choice of who sends and who listens (with its memory of what
worked), and the encrypted NatHoleSid datagrams the two frpc ends exchange through the hole.

frps pairs a visitor's NatHoleVisitor with the proxy's NatHoleClient, classifies both NATs and
answers each with a NatHoleResp: the other side's addresses and a detect behavior (role, TTL,
delays, port ranges). Each behavior pair is scored per (IPs, NAT types) key; the best is tried and
loses a point, a reported success gains two, so what works on a path is tried first next time.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from dataclasses import dataclass, field

from pyfrp.errors import MessageError
from pyfrp.proto.crypto import IV_SIZE, StreamDecryptor, StreamEncryptor, derive_key
from pyfrp.proto.framing import HEADER, HEADER_SIZE, decode_body, encode_message
from pyfrp.proto.msg import NatHoleDetectBehavior, NatHoleResp, NatHoleSid, PortsRange

EASY_NAT = "EasyNAT"
HARD_NAT = "HardNAT"
SENDER = "sender"
RECEIVER = "receiver"


def new_id() -> str:
    """A transaction id or sid: unix seconds then 16 random hex digits (frp's format)."""
    return f"{int(time.time())}{secrets.token_hex(8)}"


def split_host_port(addr: str) -> tuple[str, int] | None:
    host, sep, port = addr.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):  # int() refuses "²"
        return None
    return host.strip("[]"), int(port)


def compact(items: list[str]) -> list[str]:
    """Go's slices.Compact: drop consecutive duplicates."""
    out: list[str] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
    return out


def ips_of(addrs: list[str]) -> list[str]:
    return [hp[0] for a in addrs if (hp := split_host_port(a)) is not None]


def is_nat_hole_ip(ip: str) -> bool:
    """Whether a local address may be offered as an assisted address (IPv4, not loopback or
    link-local), as frp's ListLocalIPsForNatHole filters them."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.version == 4 and not (addr.is_loopback or addr.is_link_local)


# ---------------------------------------------------------------------------- classification


@dataclass(slots=True)
class NatFeature:
    nat_type: str = ""
    behavior: str = ""
    ports_difference: int = 0
    regular_ports_change: bool = False
    public_network: bool = False


def classify(addresses: list[str], local_ips: list[str]) -> NatFeature:
    """The NAT in front of a host that STUN saw at ``addresses`` (at least two). Raises
    ValueError with frp's text."""
    if len(addresses) <= 1:
        raise ValueError("not enough addresses")
    feature = NatFeature()
    parsed = []
    for addr in addresses:
        hp = split_host_port(addr)
        if hp is None:
            raise ValueError(f"address {addr}: missing port in address")
        parsed.append(hp)
        if hp[0] in local_ips:
            feature.public_network = True
    base_ip, base_port = parsed[0]
    ports = [p for _, p in parsed]
    ip_changed = any(ip != base_ip for ip, _ in parsed)
    port_changed = any(p != base_port for p in ports)
    if ip_changed and port_changed:
        feature.nat_type, feature.behavior = HARD_NAT, "BehaviorBothChanged"
    elif ip_changed:
        feature.nat_type, feature.behavior = HARD_NAT, "BehaviorIPChanged"
    elif port_changed:
        feature.nat_type, feature.behavior = HARD_NAT, "BehaviorPortChanged"
        feature.ports_difference = max(ports) - min(ports)
        feature.regular_ports_change = 1 <= feature.ports_difference <= 5
    else:
        feature.nat_type, feature.behavior = EASY_NAT, "BehaviorNoChange"
    return feature


# ---------------------------------------------------------------------------- behaviors


@dataclass(frozen=True, slots=True)
class Behavior:
    role: str = ""
    ttl: int = 0
    send_delay_ms: int = 0
    ports_range_number: int = 0
    ports_random_number: int = 0
    listen_random_ports: int = 0


_S, _R = SENDER, RECEIVER
# Per mode, (first, second) behavior pairs, in frp's order; the first goes to the client
# unless the mode says which NAT takes which part (see recommend()).
_MODES: dict[int, list[tuple[Behavior, Behavior]]] = {
    # both EasyNAT
    0: [
        (Behavior(_S), Behavior(_R, ttl=7)),
        (Behavior(_R, ttl=7), Behavior(_S)),
        (Behavior(_S), Behavior(_R, ttl=4)),
        (Behavior(_R, ttl=4), Behavior(_S)),
        (Behavior(_S), Behavior(_R)),
        (Behavior(_R), Behavior(_S)),
        (Behavior(_S, send_delay_ms=5000), Behavior(_R)),
        (Behavior(_S, send_delay_ms=10000), Behavior(_R)),
        (Behavior(_R), Behavior(_S, send_delay_ms=5000)),
        (Behavior(_R), Behavior(_S, send_delay_ms=10000)),
    ],
    # HardNAT (regular port changes) sends, EasyNAT receives on a range of guessed ports
    1: [
        (Behavior(_S), Behavior(_R, ttl=7, ports_range_number=10)),
        (Behavior(_S, send_delay_ms=2000), Behavior(_R, ttl=7, ports_range_number=10)),
        (Behavior(_S), Behavior(_R, ttl=4, ports_range_number=10)),
        (Behavior(_S, send_delay_ms=2000), Behavior(_R, ttl=4, ports_range_number=10)),
        (Behavior(_S), Behavior(_R, ports_range_number=10)),
        (Behavior(_S, send_delay_ms=2000), Behavior(_R, ports_range_number=10)),
    ],
    # EasyNAT sends to random ports, HardNAT listens on many
    2: [
        (
            Behavior(_S, ports_random_number=1000, send_delay_ms=3000),
            Behavior(_R, listen_random_ports=256, ttl=ttl),
        )
        for ttl in (7, 4, 0)
    ],
    # both HardNAT, both regular
    3: [
        (Behavior(_S, ports_range_number=10), Behavior(_R, ttl=7, ports_range_number=10)),
        (Behavior(_S, ports_range_number=10), Behavior(_R, ttl=4, ports_range_number=10)),
        (Behavior(_S, ports_range_number=10), Behavior(_R, ports_range_number=10)),
        (Behavior(_R, ttl=7, ports_range_number=10), Behavior(_S, ports_range_number=10)),
        (Behavior(_R, ttl=4, ports_range_number=10), Behavior(_S, ports_range_number=10)),
        (Behavior(_R, ports_range_number=10), Behavior(_S, ports_range_number=10)),
    ],
    # both HardNAT, one regular: the regular one sends
    4: [
        (
            Behavior(_S, ports_random_number=1000, send_delay_ms=3000),
            Behavior(_R, listen_random_ports=256, ttl=ttl, ports_range_number=2),
        )
        for ttl in (7, 4, 0)
    ],
}


@dataclass(slots=True)
class _Score:
    mode: int
    index: int
    score: int


def _scores(mode: int, sender: int, receiver: int | None = None) -> list[_Score]:
    receiver = sender if receiver is None else receiver
    return [
        _Score(mode, i, sender if first.role == SENDER else receiver)
        for i, (first, _) in enumerate(_MODES[mode])
    ]


@dataclass(slots=True)
class _Records:
    scores: list[_Score]
    updated: float

    @classmethod
    def new(cls, c: NatFeature, v: NatFeature, now: float) -> _Records:
        features = (c, v)
        easy = sum(f.nat_type == EASY_NAT for f in features)
        hard = len(features) - easy
        regular = sum(f.nat_type != EASY_NAT and f.regular_ports_change for f in features)
        if c.public_network:
            mode0 = _scores(0, 0, 1)
        elif v.public_network:
            mode0 = _scores(0, 1, 0)
        else:
            mode0 = _scores(0, 0)
        if easy == 2:
            scores = mode0
        elif hard == 1 and regular == 1:
            scores = _scores(1, 0) + _scores(2, 0) + mode0
        elif hard == 1:
            scores = _scores(2, 0) + _scores(1, 0) + mode0
        elif hard == 2 and regular == 2:
            scores = _scores(3, 0) + _scores(4, 0)
        elif hard == 2 and regular == 1:
            scores = _scores(4, 0)
        else:  # hard to punch; try anyway
            scores = _scores(0, 1) + _scores(1, 1) + _scores(3, 1)
        return cls(scores, now)

    def recommend(self, now: float) -> tuple[int, int]:
        self.updated = now
        if not self.scores:
            return 0, 0
        best = max(self.scores, key=lambda s: s.score)  # first of the highest, as Go's MaxFunc
        best.score -= 1
        return best.mode, best.index

    def report_success(self, mode: int, index: int, now: float) -> None:
        self.updated = now
        for s in self.scores:
            if s.mode == mode and s.index == index:
                s.score = min(s.score + 2, 10)
                return


@dataclass(slots=True)
class Analyzer:
    """What worked before, per pair of NATs (frp's Analyzer)."""

    reserve_seconds: float
    records: dict[str, _Records] = field(default_factory=dict)

    def recommend(
        self, key: str, c: NatFeature, v: NatFeature, now: float | None = None
    ) -> tuple[int, int, Behavior, Behavior]:
        """(mode, index, client behavior, visitor behavior)."""
        now = time.monotonic() if now is None else now
        records = self.records.get(key)
        if records is None:
            records = self.records[key] = _Records.new(c, v, now)
        mode, index = records.recommend(now)
        pairs = _MODES.get(mode, _MODES[0])
        cb, vb = pairs[index] if index < len(pairs) else (Behavior(), Behavior())
        swap = (
            (mode == 1 and c.nat_type == EASY_NAT)  # the HardNAT sends
            or (mode == 2 and c.nat_type == HARD_NAT)  # the HardNAT receives
            or (mode == 4 and not c.regular_ports_change)  # the regular one sends
        )
        if swap:
            cb, vb = vb, cb
        return mode, index, cb, vb

    def report_success(self, key: str, mode: int, index: int, now: float | None = None) -> None:
        records = self.records.get(key)
        if records is not None:
            records.report_success(mode, index, time.monotonic() if now is None else now)

    def clean(self, now: float | None = None) -> tuple[int, int]:
        """Forget pairs unused for reserve_seconds: (forgotten, total before)."""
        now = time.monotonic() if now is None else now
        total = len(self.records)
        stale = [k for k, r in self.records.items() if now - r.updated > self.reserve_seconds]
        for k in stale:
            del self.records[k]
        return len(stale), total


def analysis_key(v_addrs: list[str], v: NatFeature, c_addrs: list[str], c: NatFeature) -> str:
    h = hashlib.md5(usedforsecurity=False)
    for addrs, f in ((v_addrs, v), (c_addrs, c)):
        ips = compact(ips_of(addrs))
        if ips:
            h.update(ips[0].encode())
        h.update(f.nat_type.encode())
        h.update(f.behavior.encode())
        h.update(b"true" if f.regular_ports_change else b"false")
    return h.hexdigest()


def range_ports(addrs: list[str], difference: int, max_number: int) -> list[PortsRange]:
    """The ports around the last candidate address a receiver should also try."""
    if max_number <= 0 or not addrs:
        return []
    hp = split_host_port(addrs[-1])
    if hp is None:
        return []
    port = hp[1]
    return [
        PortsRange(
            from_=max(port - difference - 5, port - max_number, 1),
            to=min(port + difference + 5, port + max_number, 65535),
        )
    ]


def new_response(
    transaction_id: str,
    sid: str,
    protocol: str,
    mode: int,
    candidate_addrs: list[str],
    assisted_addrs: list[str],
    behavior: Behavior,
    read_timeout_ms: int,
    ports_difference: int,
) -> NatHoleResp:
    return NatHoleResp(
        transaction_id=transaction_id,
        sid=sid,
        protocol=protocol,
        candidate_addrs=compact(candidate_addrs),
        assisted_addrs=compact(assisted_addrs),
        detect_behavior=NatHoleDetectBehavior(
            mode=mode,
            role=behavior.role,
            ttl=behavior.ttl,
            send_delay_ms=behavior.send_delay_ms,
            read_timeout=read_timeout_ms,
            send_random_ports=behavior.ports_random_number,
            listen_random_ports=behavior.listen_random_ports,
            candidate_ports=range_ports(
                candidate_addrs, ports_difference, behavior.ports_range_number
            ),
        ),
    )


# ---------------------------------------------------------------------------- sid datagrams


def encode_sid(msg: NatHoleSid, key: str) -> bytes:
    """One detect datagram: a framed NatHoleSid, AES-128-CFB under the secret key, IV first."""
    return StreamEncryptor(derive_key(key)).encrypt(encode_message(msg))


def decode_sid(data: bytes, key: str) -> NatHoleSid:
    """Raises ValueError (or MessageError) for a datagram that is not a NatHoleSid under key."""
    if len(data) < IV_SIZE + HEADER_SIZE:
        raise ValueError(f"datagram of {len(data)} bytes is too short")
    plain = StreamDecryptor(derive_key(key)).decrypt(data)
    type_byte, length = HEADER.unpack_from(plain)
    if type_byte != NatHoleSid.TYPE:
        raise ValueError(f"message type {type_byte!r} is not NatHoleSid")
    if length != len(plain) - HEADER_SIZE:
        raise ValueError(f"message length {length} does not match the datagram")
    try:
        msg = decode_body(type_byte, plain[HEADER_SIZE:])
    except MessageError as exc:
        raise ValueError(str(exc)) from exc
    assert isinstance(msg, NatHoleSid)
    return msg
