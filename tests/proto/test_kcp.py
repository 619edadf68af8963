"""KCP and its FEC layer against bytes recorded from kcp-go v5.6.13 (tests/vectors/
kcp-go-5.6.13.json, written once by a throwaway Go program; its "about" says what it did), plus
two pure KCP engines talking to each other through a lossy, reordering link."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from pyfrp.proto import kcp as kcpproto
from pyfrp.proto.kcp import Kcp, KcpError
from pyfrp.proto.kcpfec import TYPE_PARITY, FecDecoder, FecEncoder, ReedSolomon, coding_matrix

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "kcp-go-5.6.13.json").read_text()
)
CONV = VECTORS["conv"]
WRITES = [bytes.fromhex(w) for w in VECTORS["writes"]]
DATAGRAMS = [bytes.fromhex(p) for p in VECTORS["packets"]]


def frp_kcp(conv: int = CONV) -> Kcp:
    k = Kcp(conv)
    k.set_nodelay(1, 20, 2, 1)
    k.set_mtu(1350)
    k.set_window(1024, 1024)
    return k


def test_reed_solomon_parity_matches_klauspost() -> None:
    shards = [bytes.fromhex(s) for s in VECTORS["rs_shards"]]
    assert ReedSolomon(10, 3).parity(shards[:10]) == shards[10:]


def test_coding_matrix_is_systematic() -> None:
    m = coding_matrix(10, 3)
    assert m[:10] == [[int(i == j) for j in range(10)] for i in range(10)]


def test_reed_solomon_rebuilds_any_three_lost_shards() -> None:
    shards = [bytes.fromhex(s) for s in VECTORS["rs_shards"]]
    rs = ReedSolomon(10, 3)
    for lost in ((0, 1, 2), (3, 9, 12), (7, 10, 11), (4,)):
        present = {i: s for i, s in enumerate(shards) if i not in lost}
        rebuilt = rs.reconstruct_data(present)
        assert rebuilt == {i: shards[i] for i in lost if i < 10}


def test_go_datagrams_carry_the_written_stream() -> None:
    dec = FecDecoder()
    k = frp_kcp()
    kinds = []
    for d in DATAGRAMS:
        packet, recovered = dec.decode(d)
        assert recovered == []
        kinds.append(packet is None)
        if packet is not None:
            k.input(packet, now=1000)
    assert kinds == [False] * 10 + [True] * 3 + [False] * 3
    assert k.recv() == b"".join(WRITES)
    assert [sn for sn, _ in k.acklist] == list(range(13))


@pytest.mark.parametrize("lost", [(0,), (2, 5, 7), (9, 11, 12), (1, 8)])
def test_parity_recovers_lost_go_datagrams(lost: tuple[int, ...]) -> None:
    dec = FecDecoder()
    k = frp_kcp()
    for i, d in enumerate(DATAGRAMS):
        if i in lost:
            continue
        packet, recovered = dec.decode(d, lambda p: kcpproto.conv_of(p) == CONV)
        for p in [packet, *recovered] if packet is not None else recovered:
            k.input(p, now=1000, regular=p is packet)
    assert k.recv() == b"".join(WRITES)
    assert dec.recovered == sum(1 for i in lost if i < 10)


def test_fec_encoder_matches_kcp_go() -> None:
    enc = FecEncoder()
    out: list[bytes] = []
    for n, d in enumerate(DATAGRAMS[:10]):
        out += enc.encode(d[8:], now=n)
    assert out == DATAGRAMS[:13]


def test_fec_encoder_keeps_groups_aligned_when_it_skips_parity() -> None:
    enc = FecEncoder()
    seqids = [
        int.from_bytes(d[:4], "little")
        for n in range(20)
        for d in enc.encode(b"x" * 30, now=n * 1000)  # a trickle: no parity
    ]
    assert seqids == list(range(10)) + list(range(13, 23))


def test_decoder_ignores_misaligned_kcp_go_groups() -> None:
    # kcp-go, after a trickle, sends data where parity belongs: it is passed through, and
    # shards out of step with their place never take part in recovery.
    enc = FecEncoder()
    datagrams = [enc.encode(b"p%02d" % i, now=0)[0] for i in range(13)]
    shifted = [bytes([10 + i]) + d[1:] for i, d in enumerate(datagrams[:3])]  # seqids 10..12
    dec = FecDecoder()
    for d in shifted:
        packet, recovered = dec.decode(d)
        assert packet is not None
        assert recovered == []


def test_kcp_segments_match_kcp_go() -> None:
    k = frp_kcp()
    k.rmt_wnd = 32  # kcp-go's initial remote window
    ours: list[bytes] = []
    go = [d[8:] for d in DATAGRAMS if int.from_bytes(d[4:6], "little") != TYPE_PARITY]
    for w in WRITES:
        k.send(w)
        ts = int.from_bytes(go[len(ours)][8:12], "little")
        k.flush(now=ts)
        ours += k.packets()
    assert ours == go


def test_bad_packets_are_refused() -> None:
    k = frp_kcp()
    with pytest.raises(KcpError):
        k.input(b"\0" * 10, now=0)
    other = frp_kcp(conv=CONV + 1)
    other.send(b"hi")
    other.flush(now=0)
    with pytest.raises(KcpError):
        k.input(other.packets()[0], now=0)
    bad_cmd = bytearray(DATAGRAMS[0][8:])
    bad_cmd[4] = 99
    with pytest.raises(KcpError):
        k.input(bytes(bad_cmd), now=0)
    assert k.recv() == b""


def _pump(a: Kcp, b: Kcp, now: int, rng: random.Random, loss: float, link: list[Any]) -> None:
    """One 10 ms tick of a link that drops ``loss`` of the packets and delays each 1-15 ms."""

    def carry(src: Kcp, dst: Kcp) -> None:
        link.extend(
            (now + rng.randint(1, 15), dst, p) for p in src.packets() if rng.random() >= loss
        )

    for src, dst in ((a, b), (b, a)):
        src.flush(now)
        carry(src, dst)
    link.sort(key=lambda x: x[0])
    while link and link[0][0] <= now:
        _, dst, p = link.pop(0)
        if dst.input(p, now):
            dst.flush(now)
            carry(dst, b if dst is a else a)


@pytest.mark.parametrize("loss", [0.0, 0.1, 0.3])
def test_lossy_reordering_link_delivers_everything_in_order(loss: float) -> None:
    rng = random.Random(7)
    a, b = frp_kcp(1), frp_kcp(1)
    a.set_window(128, 512)
    payload = rng.randbytes(300_000)
    for i in range(0, len(payload), 7000):
        a.send(payload[i : i + 7000])
    got = bytearray()
    link: list[Any] = []
    now = 0
    while len(got) < len(payload) and now < 600_000:
        now += 10
        _pump(a, b, now, rng, loss, link)
        got += b.recv()
    assert bytes(got) == payload


def test_a_reader_that_stops_closes_the_window() -> None:
    a, b = frp_kcp(1), frp_kcp(1)
    b.set_window(32, 16)
    a.send(b"z" * 200_000)
    rng = random.Random(1)
    link: list[Any] = []
    for now in range(0, 3000, 10):
        _pump(a, b, now, rng, 0.0, link)
    assert len(b.rcv_queue) == 16  # the receive queue is full and stays bounded
    assert a.rmt_wnd == 0
    got = b.recv()
    for now in range(3000, 60000, 10):
        _pump(a, b, now, rng, 0.0, link)
        got += b.recv()
    assert got == b"z" * 200_000
