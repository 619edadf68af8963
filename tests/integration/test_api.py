"""pyfrp from Python (pyfrp.api): a server and a client in one program, a client against a real
pyfrps process, the synchronous ``expose``, and frp's refusals as exceptions."""

from __future__ import annotations

import asyncio
import os
import urllib.request

import pytest

import pyfrp as api  # the fixture `pyfrp` (the harness) would shadow the package
from tests.harness import (
    HOST,
    Pyfrp,
    assert_echo,
    echo_roundtrip,
    free_ports,
    http_service,
    wait_not_listening,
)

TOKEN = "api-token"


def _get(port: int, host: str) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://{HOST}:{port}/x", headers={"Host": host})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


async def test_server_and_client_in_one_program(echo: int) -> None:
    async with api.Server(
        bind_port=0, token=TOKEN, vhost_http_port="auto", subdomain_host="lab.test"
    ) as server:
        assert server.bind_port > 0
        assert server.vhost_http_port > 0
        async with api.Client(server_port=server.bind_port, token=TOKEN) as client:
            tcp = await client.expose_tcp(local_port=echo)
            assert tcp.remote_port is not None
            assert tcp.url is None
            payload = os.urandom(100_000)
            assert await asyncio.to_thread(echo_roundtrip, tcp.remote_port, payload) == payload
            with http_service(lambda _p: 200, lambda _p: b"notebook") as web:
                http = await client.expose_http(local_port=web, subdomain="nb")
                assert http.url == f"http://nb.lab.test:{server.vhost_http_port}"
                got = await asyncio.to_thread(_get, server.vhost_http_port, "nb.lab.test")
                assert got == (200, b"notebook")
            await tcp.close()  # frps closes the port (CloseProxy has no answer: poll)
            await asyncio.to_thread(wait_not_listening, tcp.remote_port)


async def test_refusals_raise_frps_reasons(echo: int) -> None:
    async with api.Server(bind_port=0, token=TOKEN) as server:
        with pytest.raises(api.AuthError, match="token in login doesn't match token"):
            async with api.Client(server_port=server.bind_port, token="wrong"):
                pass
        async with api.Client(server_port=server.bind_port, token=TOKEN) as client:
            first = await client.expose_tcp(local_port=echo)
            assert first.remote_port is not None
            with pytest.raises(api.ProxyError, match="port already used"):
                await client.expose_tcp(local_port=echo, remote_port=first.remote_port)
            # the refused one is gone; the first still works
            await asyncio.to_thread(assert_echo, first.remote_port, b"still")


async def test_bind_port_0_is_any_free_port() -> None:
    """Two servers at once, each on a port of its own (a file's 0 would be frp's 7000)."""
    async with (
        api.Server(bind_port=0, token=TOKEN) as one,
        api.Server(bind_port="auto", token=TOKEN) as two,
    ):
        assert 0 < one.bind_port != two.bind_port > 0
        assert 7000 not in (one.bind_port, two.bind_port)


def test_settings_are_checked_like_a_file() -> None:
    with pytest.raises(api.ConfigError, match=r"bind_prot: unknown setting \(did you mean"):
        api.Server(bind_prot=7000)
    with pytest.raises(api.ConfigError, match="bindPort"):
        api.Server(bind_port="seven")
    cfg = api.Client(server_addr="frps.example", tls_enable=False, **{"user": "lab"}).cfg
    assert (cfg.server_addr, cfg.tls_enable, cfg.user) == ("frps.example", False, "lab")
    srv = api.Server(**{"transport.maxPoolCount": 9}, allow_ports="2000-3000,3001").cfg
    assert srv.max_pool_count == 9
    assert srv.allow_ports == [(2000, 3000), (3001, 3001)]


def test_expose_from_sync_code_against_pyfrps(pyfrp: Pyfrp, echo: int) -> None:
    """What a notebook cell does: one call, the tunnel is up; close() takes it down."""
    bind, vhost = free_ports(2)
    frps = pyfrp.frps(
        f'bindPort = {bind}\nauth.token = "{TOKEN}"\nvhostHTTPPort = {vhost}\n'
        'subDomainHost = "lab.test"\n',
        suffix=".toml",
    )
    frps.wait_port(bind)
    with http_service(lambda _p: 200, lambda _p: b"jupyter") as web:
        tunnel = api.expose(web, server_port=bind, token=TOKEN, proxy={"subdomain": "jl"})
        try:
            assert tunnel.url == f"http://jl.lab.test:{vhost}"
            assert _get(vhost, "jl.lab.test") == (200, b"jupyter")
        finally:
            tunnel.close()
    frps.wait_log(r"client exit success|close proxy \[.*\] success|control .* closed")
    tcp = api.expose(echo, "tcp", server_port=bind, token=TOKEN)
    try:
        assert tcp.remote_port is not None
        assert_echo(tcp.remote_port, os.urandom(10_000))
    finally:
        tcp.close()
