"""Every input the fuzzers found that crashed a parser (or broke one of its invariants), as a byte
vector: first through its target, then what a user would see."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyfrp.config.load import load_client_config, load_server_config
from pyfrp.errors import ConfigError
from pyfrp.proto import framing
from pyfrp.proto.msg import Login
from pyfrp.vhost import http1
from tests.fuzz.targets import TARGETS

# Login whose metas has a key that is a lone surrogate escape: decoded as is, the message (and
# anything frps built from it) could not be encoded again (UnicodeEncodeError).
LONE_SURROGATE_KEY = b'o\x00\x00\x00\x00\x00\x00\x00\x18{"metas":{"\\ud800":"x"}}'
# Connection naming Content-Length: frps forwarded the 5 body bytes but dropped the length from
# the head it sent on, so the backend read them as the start of the next request (smuggling).
CONNECTION_CONTENT_LENGTH = (
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\nhello"
    b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
)
# The same in a response: the client would read a keep-alive response until the close.
RESPONSE_CONNECTION_CONTENT_LENGTH = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length\r\n\r\nok"
)
# A YAML config holding a control character: PyYAML's reader raised ReaderError, a traceback.
YAML_CONTROL_CHAR = b"\x02bindPort: 7000\n\x0e\n"

# Nesting deeper than Python's recursion limit: json, PyYAML and tomllib raised RecursionError.
DEEP_JSON = b"\x03" + b"[" * 5000
DEEP_YAML = b"\x02a: " + b"{" * 5000
DEEP_TOML = b"\x01a = " + b"[" * 5000

# A status code of latin-1 digits: "\xb2" (superscript two) passed str.isdigit(), int() raised
# ValueError out of the response path instead of the 502 HttpError.
STATUS_SUPERSCRIPT = (
    b"HTTP/1.1 \xb200 OK\r\nContent-ion: Basix dTpw\r\n\r\nion: Basic dTpw\r\xff\xff"
)

# Content-Length next to a Transfer-Encoding that does not end in chunked: frps sends the body
# until close, but passed the Content-Length on, so the client cut the body short.
TE_AND_LENGTH = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: gzip\r\n\r\nmore than six bytes"
)

# Stream 1 opened, ended, reset and opened again in one read: the harness (not the session) sent
# on the new incarnation after closing it for the old one's StreamEnded.
YAMUX_REOPENED = (
    b"\x00\x01\x00\x01\x00\x00\xf7\x01\x01\x00\x9d\x00\x00\x00\x005"
    b"\x00\x00\x00\x01\x00\x00\x00\x05hello\x00\x00\x07"
    b"\xfc\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x005\x00\x00\x00"
    b"\x01\x00\x00\x00\xff\xff\xff\xff\xfe\xff\xff\xfe\x00\x00\x00\x00"
    b"\x00\x00\x00^\x07\xfc\x004\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x01\x00\x00\x03by\x1d\x1d\x1d\x1d\x1d\x1de"
)

CRASHERS = [
    ("yamux", YAMUX_REOPENED),
    ("http1_head", TE_AND_LENGTH),
    ("http1_head", STATUS_SUPERSCRIPT),
    ("config", DEEP_JSON),
    ("config", DEEP_YAML),
    ("config", DEEP_TOML),
    ("config", b"\x07" + b"- " * 5000),
    ("msg", LONE_SURROGATE_KEY),
    ("http1_head", CONNECTION_CONTENT_LENGTH),
    ("http1_head", RESPONSE_CONNECTION_CONTENT_LENGTH),
    ("config", YAML_CONTROL_CHAR),
    ("config", b"\x02\x00\x00"),
]


@pytest.mark.parametrize(("name", "data"), CRASHERS)
def test_crasher_runs_clean(name: str, data: bytes) -> None:
    TARGETS[name].run(data)


def test_lone_surrogate_map_key_decodes_as_replacement_char() -> None:
    dec = framing.MessageDecoder()
    dec.feed(LONE_SURROGATE_KEY)
    msg = dec.next_message()
    assert isinstance(msg, Login)
    assert msg.metas == {"\ufffd": "x"}  # as Go's encoding/json decodes it
    assert '"metas":{"\ufffd":"x"}'.encode() in framing.encode_message(msg)


def test_content_length_survives_connection_header() -> None:
    head = CONNECTION_CONTENT_LENGTH[: CONNECTION_CONTENT_LENGTH.index(b"\r\n\r\n") + 4]
    req = http1.parse_request_head(head)
    upstream = http1.upstream_request_head(req, "127.0.0.1")
    assert b"Content-Length: 5\r\n" in upstream
    assert http1.parse_request_head(upstream).length == 5


def test_response_content_length_survives_connection_header() -> None:
    resp = http1.parse_response_head(RESPONSE_CONNECTION_CONTENT_LENGTH[:-2], "GET")
    out = http1.client_response_head(resp, chunked_to_client=True, close=False)
    assert b"Content-Length: 2\r\n" in out
    assert b"Connection" not in out  # the hop-by-hop field itself still goes


@pytest.mark.parametrize("load", [load_server_config, load_client_config])
def test_yaml_control_character_is_a_config_error(tmp_path: Path, load) -> None:
    path = tmp_path / "frp.yaml"
    path.write_bytes(YAML_CONTROL_CHAR[1:])
    with pytest.raises(ConfigError, match=r"frp\.yaml:2: invalid YAML: unacceptable character"):
        load(str(path), envs={})


@pytest.mark.parametrize("port", [65536, 70000, -1, 2**63 - 1])
def test_remote_port_out_of_range_is_not_allowed(port: int) -> None:
    """A NewProxy's remote_port is any int64 on the wire (and from the SSH gateway's
    ``--remote_port``): getaddrinfo() took it modulo 65536 (70000 listened on 4464; 2**40 on a
    random port) where Go answers "port not allowed"."""
    from pyfrp.server.ports import PortError, PortManager

    ports = PortManager("127.0.0.1", [])
    with pytest.raises(PortError, match="port not allowed"):
        ports.acquire(port)


@pytest.mark.parametrize(
    ("name", "data"), [("frps.json", DEEP_JSON), ("frps.yaml", DEEP_YAML), ("frps.toml", DEEP_TOML)]
)
def test_deep_nesting_is_a_config_error(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data[1:])
    with pytest.raises(ConfigError, match=r"frps\.\w+: invalid \w+: nested too deeply"):
        load_server_config(str(path), envs={})


@pytest.mark.parametrize(
    "claims",
    [
        b'{"exp": 1' + b"0" * 400 + b"}",  # OverflowError from float()
        b"[" * 5000,  # RecursionError from json
        b'{"exp": NaN}',  # accepted, and never expired
        b'{"exp": 1e999}',
    ],
)
def test_bad_oidc_claims_are_refused(claims: bytes) -> None:
    """A token whose signature checks out (a trusted issuer's) but whose claims are not Go's
    JSON: refused with go-oidc's unmarshal error, not a traceback or a token that never ends."""
    from pyfrp.errors import OIDCError
    from pyfrp.proto.oidc import VerifyOptions, check_claims

    opts = VerifyOptions("i", skip_issuer_check=True)
    with pytest.raises(OIDCError, match="oidc: failed to unmarshal claims"):
        check_claims(claims, opts, now=1e9)


def test_status_code_with_latin1_digit_is_a_bad_gateway() -> None:
    head = STATUS_SUPERSCRIPT[: STATUS_SUPERSCRIPT.index(b"\r\n\r\n") + 4]
    with pytest.raises(http1.HttpError, match="malformed status line") as err:
        http1.parse_response_head(head, "GET")
    assert err.value.status == 502


def test_nat_address_with_latin1_digit_port_is_not_an_address() -> None:
    from pyfrp.proto.nathole import split_host_port

    assert split_host_port("1.2.3.4:\u00b2") is None
    assert split_host_port("1.2.3.4:5") == ("1.2.3.4", 5)


@pytest.mark.parametrize("te", [b"gzip", b"gzip, chunked"])
def test_transfer_encoding_drops_content_length(te: bytes) -> None:
    head = TE_AND_LENGTH.replace(b"gzip", te)
    resp = http1.parse_response_head(head[: head.index(b"\r\n\r\n") + 4], "GET")
    out = http1.client_response_head(resp, chunked_to_client=True, close=True)
    assert b"Content-Length" not in out
