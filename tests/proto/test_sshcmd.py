"""The ssh exec command parser of the SSH tunnel gateway: frp's flags in ssh mode (pflag rules)."""

from __future__ import annotations

import re

import pytest

from pyfrp.proto.sshcmd import CommandError, HelpRequested, parse


def test_tcp_with_either_word_separator_and_shorthands() -> None:
    assert parse("tcp --remote_port 9090").remote_port == 9090
    assert parse("tcp --remote-port=9091").remote_port == 9091
    assert parse("tcp -r 9092").remote_port == 9092
    assert parse("tcp -r9093").remote_port == 9093
    cmd = parse("tcp -n web -u bob --token s3 --client-id c1")
    assert (cmd.name, cmd.user, cmd.token, cmd.client_id) == ("web", "bob", "s3", "c1")


def test_unnamed_proxies_get_a_random_frp_style_name() -> None:
    a, b = parse("http -d a.example.com").name, parse("http -d a.example.com").name
    assert re.fullmatch(r"sshtunnel-http-[0-9a-f]{8}", a)
    assert a != b


def test_http_flags() -> None:
    cmd = parse(
        "http --custom_domain a.com,b.com -d c.com --sd app --locations /x,/y "
        "--http_user u --http_pwd p --host_header_rewrite in.local --metadatas k=v,k2=v2"
    )
    assert cmd.custom_domains == ["a.com", "b.com", "c.com"]  # repeated slices append
    assert cmd.subdomain == "app"
    assert cmd.locations == ["/x", "/y"]
    assert (cmd.http_user, cmd.http_pwd, cmd.host_header_rewrite) == ("u", "p", "in.local")
    assert cmd.metas == {"k": "v", "k2": "v2"}


def test_stcp_and_tcpmux_flags() -> None:
    cmd = parse('stcp -n stcp-test --sk=abcdefg --allow-users="*"')
    assert (cmd.name, cmd.sk, cmd.allow_users) == ("stcp-test", "abcdefg", ["*"])
    cmd = parse("tcpmux --mux=httpconnect --custom-domain test.example.com")
    assert (cmd.multiplexer, cmd.custom_domains) == ("httpconnect", ["test.example.com"])


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("udp -r 1", "invalid proxy type: udp, support types: [tcp http https tcpmux stcp]"),
        ("", "invalid proxy type: , support types: [tcp http https tcpmux stcp]"),
        ("tcp --sk x", "unknown flag: --sk"),  # only the type's own flags
        ("tcp --local_port 22", "unknown flag: --local-port"),  # no local flags in ssh mode
        ("tcp -x 1", "unknown shorthand flag: 'x' in -x"),
        ("tcp --remote_port", "flag needs an argument: --remote-port"),
        ("tcp -r abc", 'invalid argument "abc" for "-r, --remote-port" flag: strconv.ParseInt'),
        ("http --metadatas novalue", "novalue must be formatted as key=value"),
    ],
)
def test_bad_commands(command: str, error: str) -> None:
    with pytest.raises(CommandError) as exc:
        parse(command)
    assert error in str(exc.value)


def test_help_lists_the_types_flags() -> None:
    with pytest.raises(HelpRequested) as exc:
        parse("tcp -h")
    usage = str(exc.value)
    assert "ssh v0@{address} [command]" in usage
    assert "-r, --remote-port int" in usage
    assert "--custom-domain" not in usage
    with pytest.raises(HelpRequested):
        parse("http --help")


def test_words_after_double_dash_are_not_flags() -> None:
    assert parse("tcp -r 1 -- -r 2").remote_port == 1
