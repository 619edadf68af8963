"""Reading SNI from real ClientHellos made by Python's ssl module, whole and fragmented."""

from __future__ import annotations

import ssl

import pytest

from pyfrp.vhost.sni import ClientHelloError, parse_client_hello


def client_hello(server_name: str | None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_server_name() -> None:
    hello = client_hello("Jupyter.Example.com")
    assert parse_client_hello(hello) == "jupyter.example.com"
    for n in range(len(hello)):
        assert parse_client_hello(hello[:n]) is None  # needs more
    assert parse_client_hello(hello + b"trailing application bytes") == "jupyter.example.com"


def test_no_server_name() -> None:
    assert parse_client_hello(client_hello(None)) == ""


def test_fragmented_over_records() -> None:
    hello = client_hello("a.example.com")
    body = hello[5:]
    records = b"".join(
        hello[:3] + len(body[i : i + 50]).to_bytes(2, "big") + body[i : i + 50]
        for i in range(0, len(body), 50)
    )
    assert parse_client_hello(records) == "a.example.com"


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\n", b"\x16\x02\x00\x00\x05xxxxx", b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"],
)
def test_not_a_client_hello(data: bytes) -> None:
    with pytest.raises(ClientHelloError):
        parse_client_hello(data)
