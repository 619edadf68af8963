"""A burst of connections through one tcp proxy: every one is carried, none waits for a retry.

Go frps listens with the kernel's somaxconn as backlog (4096); at asyncio's default of 100,
pyfrps's remote port dropped part of a 1000-connection burst (reset, or retried a second later).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from pyfrp.net.bind import BACKLOG
from tests.harness import Pyfrp, free_ports

BURST = 1000


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _roundtrip(port: int, payload: bytes) -> tuple[float, bytes]:
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    took = time.monotonic() - start
    try:
        writer.write(payload)
        return took, await reader.readexactly(len(payload))
    finally:
        writer.close()


def _listen_overflows() -> int:
    """The kernel's count of SYNs dropped on a full accept queue (TcpExt ListenOverflows), in
    this network namespace."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["ListenOverflows"])


@pytest.mark.parametrize("mux", [True, False], ids=["tcp_mux", "no-mux"])
async def test_a_burst_of_1000_connections_loses_none(pyfrp: Pyfrp, mux: bool) -> None:
    local = await asyncio.start_server(_echo, "127.0.0.1", 0, backlog=BACKLOG)
    local_port = local.sockets[0].getsockname()[1]
    bind, remote = free_ports(2)
    tcp_mux = f"tcp_mux = {str(mux).lower()}\n"
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n{tcp_mux}")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n{tcp_mux}"
        f"[burst]\ntype = tcp\nlocal_port = {local_port}\nremote_port = {remote}\n"
    )
    await asyncio.to_thread(frpc.wait_log, r"\[burst\] start proxy success")
    payloads = [os.urandom(1024) for _ in range(BURST)]
    overflows_before = _listen_overflows()
    async with local:
        results = await asyncio.wait_for(
            asyncio.gather(*(_roundtrip(remote, p) for p in payloads), return_exceptions=True),
            120,
        )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {BURST} failed, first: {failures[0]!r}"
    done = [r for r in results if not isinstance(r, BaseException)]
    assert [r[1] for r in done] == payloads
    # A SYN that finds the accept queue full is dropped and resent after the kernel's initial
    # retransmission timeout of 1 s (at asyncio's backlog of 100, about 1.05 s here; 0.10-0.16 s
    # with Go's backlog). The kernel counts such drops; a connect's time, measured in this busy
    # loop, is only a sign (a loaded machine delays the loop past 1 s without any drop).
    overflows = _listen_overflows() - overflows_before
    slowest = max(r[0] for r in done)
    assert overflows == 0, f"{overflows} SYNs dropped (slowest connect {slowest:.2f} s)"
