"""Sans-IO HTTP/1.1: head parsing, body framing over any chunking, frp's header rewriting."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyfrp.vhost.http1 import (
    BodyFramer,
    Framing,
    HttpError,
    canonical_key,
    client_response_head,
    find_head_end,
    parse_request_head,
    parse_response_head,
    upstream_request_head,
)


def test_request_head_basics() -> None:
    req = parse_request_head(
        b"POST /a%2Fb/c?x=1 HTTP/1.1\r\nHost: Jupyter.Example.com:8080\r\n"
        b"Content-Length: 5\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    assert (req.method, req.target, req.minor) == ("POST", "/a%2Fb/c?x=1", 1)
    assert req.host == "Jupyter.Example.com:8080"
    assert req.path == "/a/b/c"  # decoded, like Go's URL.Path
    assert (req.framing, req.length) == (Framing.LENGTH, 5)
    assert req.upgrade == "websocket"
    assert req.expect_continue
    assert req.keep_alive


def test_absolute_form_and_connect() -> None:
    req = parse_request_head(b"GET http://u@Proxy.example.com:81/p/q HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (req.host, req.url_host, req.path) == (
        "Proxy.example.com:81",
        "Proxy.example.com:81",
        "/p/q",
    )
    con = parse_request_head(b"CONNECT db.example.com:5432 HTTP/1.1\r\n\r\n")
    assert con.url_host == con.host == "db.example.com:5432"


def test_bare_lf_and_http10() -> None:
    req = parse_request_head(b"GET / HTTP/1.0\nConnection: keep-alive\n\n")
    assert req.minor == 0
    assert req.keep_alive
    assert find_head_end(b"GET / HTTP/1.0\nA: b\n\nrest") == len(b"GET / HTTP/1.0\nA: b\n\n")


@given(st.binary(max_size=24).map(lambda b: bytes(b"a\r\n"[x % 3] for x in b)))
def test_head_ends_after_the_first_blank_line_fed_any_way(data: bytes) -> None:
    # The first LF [CR] LF, however the line endings are mixed; and the same end when the
    # bytes arrive one at a time and each search resumes 3 bytes back, as the vhost does.
    m = re.search(rb"\r?\n\r?\n", data)
    expected = m.end() if m else -1
    assert find_head_end(data) == expected
    buf, scan, found = bytearray(), 0, -1
    for byte in data:
        buf.append(byte)
        found = find_head_end(buf, scan)
        if found >= 0:
            break
        scan = max(0, len(buf) - 3)
    assert found == expected


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ],
)
def test_bad_request_heads(raw: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        parse_request_head(raw)
    assert info.value.status == status


@pytest.mark.parametrize(
    ("method", "head", "framing"),
    [
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", Framing.LENGTH),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", Framing.NONE),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", Framing.NONE),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", Framing.NONE),
        ("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Framing.CHUNKED),
        ("GET", b"HTTP/1.1 200 OK\r\n\r\n", Framing.UNTIL_CLOSE),
        ("GET", b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Framing.NONE),
    ],
)
def test_response_framing(method: str, head: bytes, framing: Framing) -> None:
    assert parse_response_head(head, method).framing is framing


CHUNKED = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"


@given(st.lists(st.integers(min_value=1, max_value=len(CHUNKED)), max_size=12))
def test_chunked_framer_any_split(cuts: list[int]) -> None:
    stream = CHUNKED + b"NEXT"
    points = sorted({0, *cuts, len(stream)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]
    decoded: list[bytes] = []
    framer = BodyFramer(Framing.CHUNKED, sink=lambda d: decoded.append(bytes(d)))
    taken = 0
    for piece in pieces:
        if framer.done:
            break
        n = framer.feed(piece)
        taken += n
        if n < len(piece):
            assert framer.done
    assert framer.done
    assert taken == len(CHUNKED)
    assert b"".join(decoded) == b"hello 0123456789"


@pytest.mark.parametrize("bad", [b"zz\r\n", b"5\r\nhelloXX\r\n", b"1" * 5000])
def test_chunked_framer_rejects(bad: bytes) -> None:
    with pytest.raises(HttpError):
        BodyFramer(Framing.CHUNKED).feed(bad)


def test_length_framer() -> None:
    f = BodyFramer(Framing.LENGTH, 10)
    assert f.feed(b"12345") == 5
    assert not f.done
    assert f.feed(b"67890next") == 5
    assert f.done


def test_upstream_head_like_frp() -> None:
    req = parse_request_head(
        b"GET /x HTTP/1.1\r\nHost: a.example.com:8080\r\nX-Forwarded-For: 1.1.1.1\r\n"
        b"X-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\nForwarded: for=x\r\n"
        b"Connection: Upgrade, X-Hop\r\nUpgrade: websocket\r\nX-Hop: 1\r\nTE: trailers\r\n"
        b"Proxy-Authorization: Basic eDp5\r\nx-custom: keep\r\n\r\n"
    )
    out = upstream_request_head(
        req, "10.0.0.9", rewrite_host="internal", set_headers={"x-custom": "set", "x-new": "v"}
    )
    lines = out.decode().split("\r\n")
    assert lines[0] == "GET /x HTTP/1.1"
    assert lines[1] == "Host: internal"
    heads = [tuple(line.split(": ", 1)) for line in lines[2:] if line]
    assert ("X-Forwarded-For", "1.1.1.1, 2.2.2.2, 10.0.0.9") in heads
    assert ("X-Forwarded-Host", "a.example.com:8080") in heads
    assert ("X-Forwarded-Proto", "http") in heads
    assert ("Connection", "Upgrade") in heads
    assert ("Upgrade", "websocket") in heads
    assert ("Te", "trailers") in heads
    assert ("X-Custom", "set") in heads
    assert ("X-New", "v") in heads
    names = [h[0].lower() for h in heads]
    for gone in ("forwarded", "x-hop", "proxy-authorization", "x-forwarded-proto"):
        assert names.count(gone) == (1 if gone == "x-forwarded-proto" else 0), gone
    assert names.count("x-custom") == 1


def test_upstream_head_without_forwarding_keeps_the_forwarded_headers() -> None:
    """frpc's http2http/http2https plugins: X-Forwarded-* pass as they came, none added."""
    req = parse_request_head(
        b"GET /x HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 2.2.2.2, 127.0.0.1\r\n"
        b"X-Forwarded-Host: a.example\r\nX-Forwarded-Proto: http\r\n\r\n"
    )
    lines = upstream_request_head(req, None).decode().split("\r\n")
    heads = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
    assert [h for h in heads if h[0].lower().startswith("x-forwarded")] == [
        ("X-Forwarded-For", "2.2.2.2, 127.0.0.1"),
        ("X-Forwarded-Host", "a.example"),
        ("X-Forwarded-Proto", "http"),
    ]


def test_client_response_head() -> None:
    resp = parse_response_head(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Drop\r\n"
        b"X-Drop: 1\r\nKeep-Alive: 5\r\nServer: s\r\n\r\n",
        "GET",
    )
    out = client_response_head(
        resp, chunked_to_client=True, close=False, set_headers={"server": "frp"}
    )
    assert out == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: frp\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("x-forwarded-for", "X-Forwarded-For"),
        ("WWW-authenticate", "Www-Authenticate"),
        ("a b", "a b"),
    ],
)
def test_canonical_key(raw: str, want: str) -> None:
    assert canonical_key(raw) == want
