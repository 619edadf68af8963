"""tcpmux httpconnect between pyfrp and native Go frp 0.70.1, both directions: the same CONNECT
requests get the same answers (tunnel, 404, 200 then 407) from either frps, with either frpc."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import peer_exe, start_any
from tests.harness import Pyfrp, free_ports, wait_port
from tests.integration.test_tcpmux import connect

pytestmark = pytest.mark.interop

STARTUP = 30.0
PAIRS = [("pyfrps", "frpc-native"), ("frps-native", "pyfrpc")]


def _answers(pyfrp: Pyfrp, tmp: Path, server: str, client: str, echo: int) -> list[bytes]:
    bind, mux = free_ports(2)
    procs = [
        start_any(
            pyfrp, tmp, server, f"[common]\nbind_port = {bind}\ntcpmux_httpconnect_port = {mux}\n"
        )
    ]
    try:
        procs[0].wait_port(bind, STARTUP)
        wait_port(mux, STARTUP)
        procs.append(
            start_any(
                pyfrp,
                tmp,
                client,
                f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
                f"[a]\ntype = tcpmux\nmultiplexer = httpconnect\nlocal_port = {echo}\n"
                "custom_domains = a.example.com\nuse_encryption = true\n"
                f"[s]\ntype = tcpmux\nmultiplexer = httpconnect\nlocal_port = {echo}\n"
                "custom_domains = s.example.com\nhttp_user = u\nhttp_pwd = p\n",
            )
        )
        out: list[bytes] = []
        for host, auth in [
            ("a.example.com", None),
            ("s.example.com", ("u", "p")),
            ("s.example.com", ("u", "bad")),
            ("none.example.com", None),
        ]:
            end = time.monotonic() + STARTUP
            while True:  # poll until the client's proxies are registered
                s, head = connect(mux, host, auth)
                if not head.startswith(b"HTTP/1.1 404") or host.startswith("none"):
                    break
                s.close()
                assert time.monotonic() < end, procs[-1].log()[-2000:]
                time.sleep(0.05)
            with s:
                if auth != ("u", "bad") and head.startswith(b"HTTP/1.1 200"):
                    s.sendall(b"ping")
                while not head.endswith(b"ping") and (data := s.recv(4096)):
                    head += data  # the echo, or whatever frps says before it closes
                out.append(head.split(b"\r\n")[0] + b" | " + head.split(b"\r\n\r\n", 1)[1][:40])
        return out
    finally:
        for p in reversed(procs):
            p.stop()


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=[f"{c}->{s}" for s, c in PAIRS])
def test_same_answers(pyfrp: Pyfrp, tmp_path: Path, echo: int, server: str, client: str) -> None:
    peer_exe(client if server == "pyfrps" else server)
    (tmp_path / "py").mkdir()
    (tmp_path / "go").mkdir()
    want = _answers(pyfrp, tmp_path / "py", "pyfrps", "pyfrpc", echo)
    assert want == [
        b"HTTP/1.1 200 OK | ping",
        b"HTTP/1.1 200 OK | ping",
        b"HTTP/1.1 200 OK | HTTP/1.1 407 Proxy Authentication Requir",
        b"HTTP/1.1 404 Not Found | <!DOCTYPE html>\n<html>\n<head>\n<title>Not",
    ]
    assert _answers(pyfrp, tmp_path / "go", server, client, echo) == want
