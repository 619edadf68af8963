"""Every kind of bad input is one ConfigError naming the file, the line and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyfrp.config.load import load_client_config, load_server_config
from pyfrp.errors import ConfigError


def _server_error(tmp_path: Path, name: str, text: str) -> str:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_server_config(str(f), envs={})
    return str(info.value).replace(f"{tmp_path}/", "")


def _client_error(tmp_path: Path, name: str, text: str, envs: dict[str, str] | None = None) -> str:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_client_config(str(f), envs=envs or {})
    return str(info.value).replace(f"{tmp_path}/", "")


# ------------------------------------------------------------------------------- unknown key


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "frps.toml",
            "bindPort = 7000\nbindPrt = 7001\n",
            'frps.toml:2: bindPrt: unknown key (did you mean "bindPort"?)',
        ),
        (
            "frps.toml",
            "[transport.tls]\nforse = true\n",
            'frps.toml:2: transport.tls.forse: unknown key (did you mean "force"?)',
        ),
        (
            "frps.yaml",
            "log:\n  level: info\n  maxDay: 3\n",
            'frps.yaml:3: log.maxDay: unknown key (did you mean "maxDays"?)',
        ),
        (
            "frps.json",
            '{\n  "vhostHttpPorts": 80\n}',
            'frps.json:2: vhostHttpPorts: unknown key (did you mean "vhostHTTPPort"?)',
        ),
        (
            "frps.toml",
            "bind_port = 7000\n",
            'frps.toml:1: bind_port: unknown key (did you mean "bindPort"? "bind_port" is its'
            " INI name)",
        ),
    ],
    ids=["toml", "toml-table", "yaml", "json", "ini-name-in-toml"],
)
def test_unknown_key_names_it_and_suggests(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    assert _server_error(tmp_path, name, text) == message


def test_unknown_ini_keys_are_warnings(tmp_path: Path) -> None:
    """go-ini ignores unknown keys, so Go frp starts such a file: pyfrp starts it too, and says
    what it ignored (an error under --strict_config)."""
    f = tmp_path / "frps.ini"
    f.write_text("[common]\nbind_prot = 7000\nbindPort = 7001\n")
    cfg, notices = load_server_config(str(f))
    assert cfg.bind_port == 7000  # the default: neither key is bind_port
    assert notices == [
        f'{f}:2: [common] bind_prot: unknown key (did you mean "bind_port"?), ignored',
        f'{f}:3: [common] bindPort: unknown key (did you mean "bind_port"? "bindPort" is its'
        " TOML/YAML/JSON name), ignored",
    ]
    with pytest.raises(ConfigError, match="bind_prot: unknown key"):
        load_server_config(str(f), strict=True)


def test_unknown_key_in_a_proxy_is_checked_against_its_type(tmp_path: Path) -> None:
    """remotePort belongs to tcp/udp proxies; frp's strict decoding rejects it on http too."""
    text = (
        '[[proxies]]\nname = "web"\ntype = "http"\nlocalPort = 80\nsubdomain = "w"\n'
        "remotePort = 1\n"
    )
    assert _client_error(tmp_path, "frpc.toml", text) == (
        "frpc.toml:6: proxies[0].remotePort: unknown key"
    )
    text = '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPrt = 22\n'
    assert _client_error(tmp_path, "frpc.toml", text) == (
        'frpc.toml:4: proxies[0].localPrt: unknown key (did you mean "localPort"?)'
    )


# -------------------------------------------------------------------------------- wrong type


WRONG_TYPES = {
    "toml-str-for-int": (
        "frps.toml",
        'bindPort = "7000"\n',
        'frps.toml:1: bindPort: expected a port number, got string "7000"',
    ),
    "yaml-str-for-bool": (
        "frps.yaml",
        "transport:\n  tcpMux: 'yes'\n",
        'frps.yaml:2: transport.tcpMux: expected a boolean, got string "yes"',
    ),
    "json-float": (
        "frps.json",
        '{"maxPortsPerClient": 1.5}',
        "frps.json:1: maxPortsPerClient: expected an integer, got number 1.5",
    ),
    "toml-int-for-str": (
        "frps.toml",
        "subDomainHost = 3\n",
        "frps.toml:1: subDomainHost: expected a string, got number 3",
    ),
    "table": ("frps.toml", "log = 3\n", "frps.toml:1: log: expected a table, got number 3"),
    "list": (
        "frps.toml",
        'allowPorts = "2000-3000"\n',
        'frps.toml:1: allowPorts: expected a list of tables, got string "2000-3000"',
    ),
}


@pytest.mark.parametrize(("name", "text", "message"), WRONG_TYPES.values(), ids=WRONG_TYPES)
def test_wrong_type(tmp_path: Path, name: str, text: str, message: str) -> None:
    assert _server_error(tmp_path, name, text) == message


# go-ini leaves a number or boolean it cannot read at its default, and Go frp starts: so does
# pyfrp, with a warning (an error with --strict_config).
INI_UNREADABLE = {
    "int": ("[common]\n\nbind_port = abc\n", 'frps.ini:3: [common] bind_port: "abc" is not a port'
            " number; ignored, as frp does"),
    "bool": ("[common]\ntcp_mux = maybe\n", 'frps.ini:2: [common] tcp_mux: "maybe" is not a'
             " boolean; ignored, as frp does"),
    "inline-comment": ("[common]\nbind_port = 22 # ssh\n", 'frps.ini:2: [common] bind_port:'
                       ' "22 # ssh" is not a port number; ignored, as frp does (an INI comment must'
                       " be on a line of its own)"),
}  # fmt: skip


@pytest.mark.parametrize(("text", "warning"), INI_UNREADABLE.values(), ids=INI_UNREADABLE)
def test_ini_value_go_ini_cannot_read(tmp_path: Path, text: str, warning: str) -> None:
    f = tmp_path / "frps.ini"
    f.write_text(text)
    cfg, notices = load_server_config(str(f), envs={})
    assert (cfg.bind_port, cfg.tcp_mux) == (7000, True)  # frp's defaults
    assert [n.replace(f"{tmp_path}/", "") for n in notices] == [warning]
    with pytest.raises(ConfigError) as info:
        load_server_config(str(f), strict=True, envs={})
    assert str(info.value).replace(f"{tmp_path}/", "").startswith(warning.split('"')[0])


def test_wrong_value_for_a_choice(tmp_path: Path) -> None:
    assert _server_error(tmp_path, "frps.toml", 'log.level = "verbose"\n') == (
        'frps.toml:1: log.level: "verbose" is not one of "trace", "debug", "info", "warn", "error"'
    )
    assert _client_error(tmp_path, "frpc.ini", "[common]\nprotocol = udp\n") == (
        'frpc.ini:2: [common] protocol: "udp" is not one of "tcp", "kcp", "quic", "websocket",'
        ' "wss"'
    )


# ------------------------------------------------------------------------ port out of range


RANGE = "must be in the range 0..65535"
OUT_OF_RANGE = {
    "toml": (
        "frps.toml",
        "bindPort = 70000\n",
        f"frps.toml:1: bindPort: port number 70000 {RANGE}",
    ),
    "yaml": (
        "frps.yaml",
        "vhostHTTPPort: -1\n",
        f"frps.yaml:1: vhostHTTPPort: port number -1 {RANGE}",
    ),
    "ini": (
        "frps.ini",
        "[common]\nbind_port = 65536\n",
        f"frps.ini:2: [common] bind_port: port number 65536 {RANGE}",
    ),
    "toml-range": (
        "frps.toml",
        "allowPorts = [\n  { single = 3001 },\n  { start = 1, end = 99999 },\n]\n",
        f"frps.toml:1: allowPorts[1].end: port number 99999 {RANGE}",
    ),
    "ini-range": (
        "frps.ini",
        "[common]\nallow_ports = 2000-70000\n",
        f"frps.ini:2: [common] allow_ports: port number 70000 {RANGE}",
    ),
}


@pytest.mark.parametrize(("name", "text", "message"), OUT_OF_RANGE.values(), ids=OUT_OF_RANGE)
def test_port_out_of_range(tmp_path: Path, name: str, text: str, message: str) -> None:
    assert _server_error(tmp_path, name, text) == message


def test_proxy_port_out_of_range(tmp_path: Path) -> None:
    text = '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = 22\nremotePort = 123456\n'
    assert _client_error(tmp_path, "frpc.toml", text) == (
        "frpc.toml:5: proxies[0].remotePort: port number 123456 must be in the range 0..65535"
    )


# ------------------------------------------------------------------ missing required keys


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "frpc.toml",
            '[[proxies]]\nname = "web"\ntype = "http"\nlocalPort = 8080\n',
            "frpc.toml:1: proxies[0].customDomains: missing: a http proxy needs customDomains or"
            " subdomain",
        ),
        (
            "frpc.ini",
            "[common]\n[web]\ntype = https\nlocal_port = 443\n",
            "frpc.ini:2: [web] custom_domains: missing: a https proxy needs custom_domains or"
            " subdomain",
        ),
        (
            "frpc.toml",
            '[[proxies]]\ntype = "tcp"\nlocalPort = 22\n',
            "frpc.toml:1: proxies[0].name: missing: name should not be empty",
        ),
        (
            "frpc.toml",
            '[[proxies]]\nname = "ssh"\nlocalPort = 22\n',
            "frpc.toml:1: proxies[0].type: missing: a proxy needs a type (one of tcp, udp, http,"
            " https, tcpmux, stcp, xtcp, sudp)",
        ),
        (
            "frpc.json",
            '{"proxies": [\n {"name": "x", "type": "tcpmux", "localPort": 1,'
            ' "customDomains": ["a"]}\n]}',
            'frpc.json:2: proxies[0].multiplexer: missing: a tcpmux proxy needs multiplexer ='
            ' "httpconnect"',
        ),
        (
            "frpc.toml",
            '[[visitors]]\nname = "v"\ntype = "stcp"\nbindPort = 9000\n',
            "frpc.toml:1: visitors[0].serverName: missing: server name is required",
        ),
        (
            "frpc.ini",
            "[common]\n[v]\nrole = visitor\ntype = xtcp\nserver_name = s\n",
            "frpc.ini:2: [v] bind_port: missing: bind port is required",
        ),
        (
            "frpc.toml",
            '[[proxies]]\nname = "s"\ntype = "tcp"\n'
            '[proxies.plugin]\ntype = "unix_domain_socket"\n',
            "frpc.toml:4: proxies[0].plugin: missing: plugin unix_domain_socket needs unixPath",
        ),
    ],
    ids=["http", "ini-https", "name", "type", "tcpmux", "visitor-server",
         "ini-visitor-port", "plugin"],
)  # fmt: skip
def test_missing_required_key(tmp_path: Path, name: str, text: str, message: str) -> None:
    assert _client_error(tmp_path, name, text) == message


def test_unknown_proxy_type(tmp_path: Path) -> None:
    text = '[[proxies]]\nname = "a"\ntype = "tpc"\nlocalPort = 1\n'
    assert _client_error(tmp_path, "frpc.toml", text) == (
        'frpc.toml:3: proxies[0].type: unknown proxy type "tpc" (one of tcp, udp, http, https,'
        " tcpmux, stcp, xtcp, sudp)"
    )


# --------------------------------------------------------------------- duplicate proxy name


def test_duplicate_proxy_name(tmp_path: Path) -> None:
    text = (
        '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = 22\n\n'
        '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = 23\n'
    )
    assert _client_error(tmp_path, "frpc.toml", text) == (
        "frpc.toml:7: proxies[1].name: proxy name [ssh] is duplicated (first at line 2)"
    )


def test_repeated_ini_section_merges_as_go_ini_does(tmp_path: Path) -> None:
    f = tmp_path / "frpc.ini"
    f.write_text("[common]\n[ssh]\nlocal_port = 22\nremote_port = 6000\n[ssh]\nlocal_port = 23\n")
    cfg, notices = load_client_config(str(f), envs={})
    assert [(p.name, p.local_port, p.remote_port) for p in cfg.proxies] == [("ssh", 23, 6000)]
    assert notices == [
        f"{f}:5: [ssh] repeats the section at line 2; merged into it, as frp does",
        f"{f}:6: [ssh] local_port: set twice (first at line 3); the last value wins",
    ]


def test_missing_local_port_is_a_warning_as_frp_starts_it(tmp_path: Path) -> None:
    f = tmp_path / "frpc.yaml"
    f.write_text("proxies:\n  - name: ssh\n    type: tcp\n")
    cfg, notices = load_client_config(str(f), envs={})
    assert cfg.proxies[0].local_port == 0
    assert notices == [
        f"{f}:2: proxies[0].localPort: missing: a tcp proxy needs localPort (or a plugin); its"
        " connections will fail"
    ]


def test_duplicate_proxy_name_across_an_include(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.toml").write_text(
        '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = 22\n'
    )
    text = (
        f'includes = ["{tmp_path}/conf.d/*.toml"]\n'
        '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = 22\n'
    )
    assert _client_error(tmp_path, "frpc.toml", text) == (
        "conf.d/a.toml:2: proxies[0].name: proxy name [ssh] is duplicated (first at frpc.toml:3)"
    )


# ------------------------------------------------------------ undefined environment variable


def test_undefined_environment_variable(tmp_path: Path) -> None:
    text = 'serverAddr = "x"\nauth.token = "{{ .Envs.FRP_TOKEN }}"\n'
    assert _client_error(tmp_path, "frpc.toml", text) == (
        "frpc.toml:2: undefined environment variable FRP_TOKEN (used as {{ .Envs.FRP_TOKEN }})"
    )
    text = "[common]\nserver_addr = {{ .Envs.FRP_SERVER }}\n"
    assert _client_error(tmp_path, "frpc.ini", text, {"FRP_TOKEN": "t"}) == (
        "frpc.ini:2: undefined environment variable FRP_SERVER (used as {{ .Envs.FRP_SERVER }})"
    )


# --------------------------------------------------------------------------- unreadable file


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_server_config(str(tmp_path / "missing.toml"))
    assert (
        str(info.value)
        == f"{tmp_path}/missing.toml: cannot read config file: no such file or directory"
    )
    with pytest.raises(ConfigError) as info:
        load_server_config(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: cannot read config file: it is a directory"
    (tmp_path / "bin.toml").write_bytes(b"bindPort = 1\n\xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_server_config(str(tmp_path / "bin.toml"))
    assert (
        str(info.value) == f"{tmp_path}/bin.toml: cannot read config file: not UTF-8 text (byte 13)"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_permission(tmp_path: Path) -> None:
    f = tmp_path / "frps.toml"
    f.write_text("bindPort = 1\n")
    f.chmod(0)
    with pytest.raises(ConfigError, match="cannot read config file: permission denied"):
        load_server_config(str(f))


def test_missing_include_directory(tmp_path: Path) -> None:
    text = f'includes = ["{tmp_path}/nowhere/*.toml"]\n'
    assert _client_error(tmp_path, "frpc.toml", text) == (
        "frpc.toml:1: includes: directory of nowhere/*.toml does not exist"
    )


# ------------------------------------------------------------------------- syntax errors


SYNTAX = {
    "toml": (
        "frps.toml",
        "bindPort = 7000\nbindAddr = \n",
        "frps.toml:2: invalid TOML: Invalid value (column 12)",
    ),
    "json": (
        "frps.json",
        '{\n  "bindPort": 7000,\n}\n',
        "frps.json:3: invalid JSON: Expecting property name enclosed in double quotes",
    ),
    "yaml": (
        "frps.yaml",
        "bindPort: 7000\nlog: [\n",
        "frps.yaml:3: invalid YAML: expected the node content, but found '<stream end>'",
    ),
    "no-extension": (
        "frps",
        "bindPort = 7000\nbindAddr = \n",
        "frps:2: invalid TOML: Invalid value (column 12)",
    ),
    "ini": (
        "frps.ini",
        "[common]\n[plugin.x\n",
        'frps.ini:2: malformed section header "[plugin.x"',
    ),
    "template": (
        "frps.toml",
        "{{ if .Envs.X }}bindPort = 1{{ end }}\n",
        "frps.toml:1: template: {{if}} is not supported by pyfrp (only .Envs, range over"
        " parseNumberRange/parseNumberRangePair, and end)",
    ),
}


@pytest.mark.parametrize(("name", "text", "message"), SYNTAX.values(), ids=SYNTAX)
def test_syntax_errors_name_the_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    assert _server_error(tmp_path, name, text) == message


def test_ini_without_common_is_not_ini(tmp_path: Path) -> None:
    """frp detects INI by its [common] section; without one the file is read as TOML."""
    assert _server_error(tmp_path, "frps.ini", "[foo]\nbind_port = 1\n") == (
        "frps.ini:1: foo: unknown key"
    )


def test_heartbeat_timeout_below_interval(tmp_path: Path) -> None:
    text = "transport.heartbeatInterval = 30\ntransport.heartbeatTimeout = 10\n"
    assert _client_error(tmp_path, "frpc.toml", text) == (
        "frpc.toml:2: transport.heartbeatTimeout: heartbeat timeout 10 should not be less than"
        " heartbeat interval 30"
    )


def test_error_lines_follow_the_file_through_a_template_range(tmp_path: Path) -> None:
    text = (
        '{{- range $v := parseNumberRange "1-3" }}\n'
        "[[proxies]]\n"
        'name = "p{{ $v }}"\n'
        'type = "tcp"\n'
        "localPort = {{ $v }}\n"
        "{{- end }}\n"
        "[[proxies]]\n"
        'name = "p2"\n'
        'type = "tcp"\n'
        "localPort = 9\n"
    )
    assert _client_error(tmp_path, "frpc.toml", text) == (
        "frpc.toml:8: proxies[3].name: proxy name [p2] is duplicated (first at line 3)"
    )
