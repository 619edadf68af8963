"""net/steer.py: the cBPF program that gives all connections of one source address to the same
socket of a SO_REUSEPORT group (pyfrps workers), checked on loopback sockets."""

from __future__ import annotations

import select
import socket
import struct

import pytest

from pyfrp.net.bind import bind_socket
from pyfrp.net.steer import source_program, steer_by_source


def test_program_bytes() -> None:
    prog = source_program(3)
    insns = [struct.unpack("=HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    assert len(insns) == 10
    assert insns[0] == (0x30, 0, 0, 0xFFF00000)  # ldb [net + 0]
    assert insns[5] == (0x20, 0, 0, 0xFFF00000 + 12)  # ld [net + 12]: the IPv4 source
    assert insns[-2] == (0x94, 0, 0, 3)  # mod #3
    assert insns[-1] == (0x16, 0, 0, 0)  # ret a
    with pytest.raises(ValueError, match="at least 1"):
        source_program(0)


def _taker(socks: list[socket.socket], source: str, port: int) -> int:
    with socket.socket() as c:
        c.bind((source, 0))
        c.connect(("127.0.0.1", port))
        ready, _, _ = select.select(socks, [], [], 5)
        assert len(ready) == 1
        conn, _ = ready[0].accept()
        conn.close()
        return socks.index(ready[0])


def test_one_source_one_socket_and_sources_spread() -> None:
    first = bind_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    socks = [first, bind_socket("127.0.0.1", port, reuse_port=True)]
    try:
        steer_by_source(first, len(socks))
        taken = {}
        for n in range(2, 12):
            picks = {_taker(socks, f"127.0.0.{n}", port) for _ in range(4)}
            assert len(picks) == 1, (n, picks)  # every connection of a host: one socket
            taken[n] = picks.pop()
        assert set(taken.values()) == {0, 1}  # and the hosts spread over both
    finally:
        for s in socks:
            s.close()
