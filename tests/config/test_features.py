"""includes, port ranges, start/enabled, token files, INI specials, unsupported options,
strictness."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyfrp.config.load import load_client_config, load_server_config
from pyfrp.config.model import HttpPluginConfig
from pyfrp.errors import ConfigError


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


# ----------------------------------------------------------------------------------- includes


def test_includes_toml(tmp_path: Path) -> None:
    _write(tmp_path / "conf.d/a.toml", '[[proxies]]\nname = "a"\ntype = "tcp"\nlocalPort = 1\n')
    _write(tmp_path / "conf.d/b.yaml", "proxies:\n  - {name: b, type: tcp, localPort: 2}\n")
    _write(tmp_path / "conf.d/c.txt", "not a config, not matched")
    main = _write(
        tmp_path / "frpc.toml",
        f'includes = ["{tmp_path}/conf.d/*.toml", "{tmp_path}/conf.d/*.yaml"]\n'
        '[[proxies]]\nname = "main"\ntype = "tcp"\nlocalPort = 3\n',
    )
    cfg, notices = load_client_config(main)
    assert [p.name for p in cfg.proxies] == ["main", "a", "b"]
    assert notices == []


def test_includes_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in frp (filepath.Abs), not to the config file's directory."""
    _write(tmp_path / "conf.d/a.toml", '[[proxies]]\nname = "a"\ntype = "tcp"\nlocalPort = 1\n')
    main = _write(tmp_path / "etc/frpc.toml", 'includes = ["conf.d/*.toml"]\n')
    monkeypatch.chdir(tmp_path)
    assert [p.name for p in load_client_config(main)[0].proxies] == ["a"]


def test_included_common_keys_are_reported_and_ignored(tmp_path: Path) -> None:
    inc = '\nserverPort = 1\n[[proxies]]\nname = "a"\ntype = "tcp"\nlocalPort = 1\n'
    _write(tmp_path / "conf.d/a.toml", inc)
    main = _write(tmp_path / "frpc.toml", f'includes = ["{tmp_path}/conf.d/a.toml"]\n')
    cfg, notices = load_client_config(main)
    assert cfg.server_port == 7000
    assert notices == [
        f"{tmp_path}/conf.d/a.toml:2: serverPort: only proxies and visitors are read from an"
        " included file, ignored"
    ]


def test_includes_ini(tmp_path: Path) -> None:
    _write(tmp_path / "conf.d/web.ini", "[web]\ntype = http\nlocal_port = 80\nsubdomain = w\n")
    main = _write(
        tmp_path / "frpc.ini",
        f"[common]\nincludes = {tmp_path}/conf.d/*.ini\n[ssh]\nlocal_port = 22\n",
    )
    cfg, _ = load_client_config(main)
    assert [(p.name, p.type) for p in cfg.proxies] == [("ssh", "tcp"), ("web", "http")]


# -------------------------------------------------------------------------------- port ranges


def test_allow_ports_both_syntaxes(tmp_path: Path) -> None:
    toml = _write(
        tmp_path / "s.toml",
        "allowPorts = [{ start = 2000, end = 3000 }, { single = 3001 }, { single = 4000 }]\n",
    )
    ini = _write(tmp_path / "s.ini", "[common]\nallow_ports = 2000-3000, 3001,4000\n")
    expected = [(2000, 3000), (3001, 3001), (4000, 4000)]
    assert load_server_config(toml)[0].allow_ports == expected
    assert load_server_config(ini)[0].allow_ports == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[{ start = 3000, end = 2000 }]", "allowPorts[0]: start 3000 is after end 2000"),
        ("[{ start = 3000 }]", "allowPorts[0]: a port range needs single, or start and end"),
        (
            "[{ single = 1, end = 2 }]",
            "allowPorts[0]: set either single or start and end, not both",
        ),
        ("[{ singel = 1 }]", 'allowPorts[0].singel: unknown key (did you mean "single"?)'),
    ],
)
def test_allow_ports_errors(tmp_path: Path, value: str, message: str) -> None:
    f = _write(tmp_path / "s.toml", f"allowPorts = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_server_config(f)
    assert str(info.value) == f"{f}:1: {message}"


def test_ini_range_sections(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "c.ini",
        "[common]\n[range:tcp]\ntype = tcp\nlocal_port = 6010-6012,6020\nremote_port = 7010-7013\n",
    )
    cfg, _ = load_client_config(f)
    assert [(p.name, p.local_port, p.remote_port) for p in cfg.proxies] == [
        ("tcp_0", 6010, 7010),
        ("tcp_1", 6011, 7011),
        ("tcp_2", 6012, 7012),
        ("tcp_3", 6020, 7013),
    ]
    f = _write(tmp_path / "d.ini", "[common]\n[range:x]\nlocal_port = 1-3\nremote_port = 1-2\n")
    with pytest.raises(
        ConfigError, match=r"d.ini:2: \[range:x\] local ports number should be same"
    ):
        load_client_config(f)


# ---------------------------------------------------------------------------- start/enabled


def test_start_and_enabled_select_proxies(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "c.toml",
        'start = ["a", "b"]\n'
        '[[proxies]]\nname = "a"\ntype = "tcp"\nlocalPort = 1\n'
        '[[proxies]]\nname = "b"\ntype = "tcp"\nlocalPort = 2\nenabled = false\n'
        '[[proxies]]\nname = "c"\ntype = "tcp"\nlocalPort = 3\n',
    )
    assert [p.name for p in load_client_config(f)[0].proxies] == ["a"]
    f = _write(
        tmp_path / "c.ini", "[common]\nstart = b\n[a]\nlocal_port = 1\n[b]\nlocal_port = 2\n"
    )
    assert [p.name for p in load_client_config(f)[0].proxies] == ["b"]


# ------------------------------------------------------------------------------ token source


def test_token_from_a_file(tmp_path: Path) -> None:
    _write(tmp_path / "token", "  s3cret\n")
    f = _write(
        tmp_path / "s.toml",
        f'auth.tokenSource.type = "file"\nauth.tokenSource.file.path = "{tmp_path}/token"\n',
    )
    assert load_server_config(f)[0].token == "s3cret"
    f = _write(
        tmp_path / "c.toml",
        'auth.token = "x"\nauth.tokenSource.type = "file"\n'
        f'auth.tokenSource.file.path = "{tmp_path}/t"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_client_config(f)
    assert str(info.value) == (
        f"{f}:2: auth.tokenSource.type: cannot specify both auth.token and auth.tokenSource"
    )


# -------------------------------------------------------------------------- INI specialities


def test_ini_prefixes_quotes_and_go_ini_booleans(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "c.ini",
        "[common]\n"
        'user = "lab"\n'
        "meta_team: gpu\n"
        "tcp_mux = off\n"
        "tls_enable\n"  # a bare key is true (go-ini AllowBooleanKeys)
        "[web]\n"
        "type = http\n"
        "local_port = 80\n"
        "custom_domains = a.example.com,b.example.com\n"
        "header_X-From-Where = frp\n"
        "meta_k = v\n",
    )
    cfg, _ = load_client_config(f)
    assert (cfg.user, cfg.metas, cfg.tcp_mux, cfg.tls_enable) == (
        "lab",
        {"team": "gpu"},
        False,
        True,
    )
    web = cfg.proxies[0]
    assert web.request_headers == {"X-From-Where": "frp"}
    assert web.metas == {"k": "v"}
    assert web.custom_domains == ["a.example.com", "b.example.com"]


def test_ini_repeated_key_last_wins_with_a_notice(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.ini", "[common]\nbind_port = 1\nbind_port = 2\n")
    cfg, notices = load_server_config(f)
    assert cfg.bind_port == 2
    assert notices == [
        f"{f}:3: [common] bind_port: set twice (first at line 2); the last value wins"
    ]


def test_ini_authenticate_scopes_are_recognised(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "s.ini",
        "[common]\nauthenticate_heartbeats = true\nauthenticate_new_work_conns = true\n",
    )
    assert load_server_config(f)[0].auth_scopes == ["HeartBeats", "NewWorkConns"]
    f = _write(tmp_path / "t.ini", "[common]\nauthenticate_heartbeats = false\n")
    cfg, notices = load_server_config(f)
    assert (cfg.auth_scopes, notices) == ([], [])


def test_ini_server_plugin_sections(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "s.ini",
        "[common]\n[plugin.user-manager]\naddr = 127.0.0.1:9000\npath = /handler\nops = Login\n",
    )
    cfg, _ = load_server_config(f)
    assert cfg.http_plugins == [
        HttpPluginConfig(name="user-manager", addr="127.0.0.1:9000", path="/handler", ops=["Login"])
    ]
    f = _write(tmp_path / "t.ini", "[common]\n[plugin.x]\nops = Logout\n")
    with pytest.raises(ConfigError, match=r't.ini:3: \[plugin.x\] ops: "Logout" is not one of'):
        load_server_config(f)


# --------------------------------------------------------------------- unsupported options


def test_virtual_net_plugins_and_gate_reach_the_model(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "c.toml",
        'featureGates = { VirtualNet = true }\nvirtualNet.address = "100.86.0.1/24"\n'
        '[[proxies]]\nname = "p"\ntype = "stcp"\nsecretKey = "k"\nplugin.type = "virtual_net"\n'
        '[[visitors]]\nname = "v"\ntype = "xtcp"\nserverName = "p"\nbindPort = -1\n'
        '[visitors.plugin]\ntype = "virtual_net"\ndestinationIP = "100.86.0.2"\n',
    )
    cfg, notices = load_client_config(f)
    assert notices == []
    assert (cfg.virtual_net_address, cfg.feature_gates) == ("100.86.0.1/24", {"VirtualNet": True})
    assert cfg.proxies[0].plugin == {"type": "virtual_net"}
    assert cfg.visitors[0].plugin == {"type": "virtual_net", "destinationIP": "100.86.0.2"}


def test_feature_gates_as_frpc_start_up_checks_them(tmp_path: Path) -> None:
    f = _write(tmp_path / "c.toml", 'virtualNet.address = "100.86.0.1/24"\n')
    with pytest.raises(ConfigError) as info:
        load_client_config(f)
    assert str(info.value) == (
        f"{f}:1: virtualNet.address: VirtualNet feature is not enabled; "
        "enable it by setting the appropriate feature gate flag"
    )
    f = _write(
        tmp_path / "d.toml",
        'featureGates = { VirtualNet = false }\nvirtualNet.address = "100.86.0.1/24"\n',
    )
    with pytest.raises(ConfigError, match="VirtualNet feature is not enabled"):
        load_client_config(f)
    f = _write(tmp_path / "e.toml", "featureGates = { VirtualNet = true, Warp = true }\n")
    with pytest.raises(
        ConfigError, match=r"e.toml:1: featureGates: unrecognized feature gate: Warp"
    ):
        load_client_config(f)
    f = _write(tmp_path / "f.toml", "featureGates = { VirtualNet = true }\n")
    assert load_client_config(f)[0].virtual_net_address == ""  # the gate alone does nothing


def test_unsupported_values_of_supported_keys(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "c.toml",
        "transport.dialServerKeepalive = 60\ntransport.tcpMux = true\n",
    )
    assert load_client_config(f, unsupported_ok=True)[1] == [
        f"{f}:1: transport.dialServerKeepalive: not supported yet, ignored",
    ]
    with pytest.raises(
        ConfigError, match=r"transport\.dialServerKeepalive: not supported yet by pyfrp"
    ):
        load_client_config(f)
    f = _write(tmp_path / "d.toml", 'transport.protocol = "tcp"\nauth.method = "token"\n')
    assert load_client_config(f)[1] == []


def test_sub_options_of_an_unsupported_feature_are_quiet(tmp_path: Path) -> None:
    """webServer.user does nothing without webServer.port, in frp too: no notice for it."""
    f = _write(tmp_path / "s.toml", 'webServer.addr = "0.0.0.0"\nwebServer.user = "admin"\n')
    assert load_server_config(f)[1] == []


def test_proxy_types_beyond_tcp_and_http_parse(tmp_path: Path) -> None:
    """udp, stcp, xtcp, sudp and tcpmux reach the model, and all of them run."""
    f = _write(
        tmp_path / "c.toml",
        '[[proxies]]\nname = "u"\ntype = "udp"\nlocalPort = 53\nremotePort = 5353\n'
        '[[proxies]]\nname = "x"\ntype = "xtcp"\nlocalPort = 22\nsecretKey = "k"\n'
        '[[proxies]]\nname = "s"\ntype = "sudp"\nlocalPort = 22\nallowUsers = ["a"]\n'
        '[[proxies]]\nname = "m"\ntype = "tcpmux"\nlocalPort = 22\nmultiplexer = "httpconnect"\n'
        'customDomains = ["t1"]\n',
    )
    cfg, notices = load_client_config(f, unsupported_ok=True)
    assert [(p.name, p.type) for p in cfg.proxies] == [
        ("u", "udp"),
        ("x", "xtcp"),
        ("s", "sudp"),
        ("m", "tcpmux"),
    ]
    assert notices == []


# ------------------------------------------------------------------------------- strictness


def test_strict_config_rejects_unsupported_options(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "c.toml",
        'serverAddr = "127.0.0.1"\ntransport.proxyURL = "ntlm://127.0.0.1:3128"\n',
    )
    with pytest.raises(ConfigError, match=r"c.toml:2: transport.proxyURL: not supported yet"):
        load_client_config(f, strict=True)


def test_strict_config_false_ignores_unknown_keys(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.toml", "bindPort = 7002\nbindPrt = 7001\n")
    cfg, notices = load_server_config(f, strict=False)
    assert cfg.bind_port == 7002
    assert notices == [f'{f}:2: bindPrt: unknown key (did you mean "bindPort"?), ignored']
    f = _write(tmp_path / "s.ini", "[common]\nfoo = 1\n")
    assert load_server_config(f, strict=False)[1] == [f"{f}:2: [common] foo: unknown key, ignored"]


def test_lists_of_tables_inside_options_are_checked(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.toml", '[[httpPlugins]]\nname = "x"\naddr = "a"\nops = ["Logout"]\n')
    with pytest.raises(ConfigError) as info:
        load_server_config(f)
    assert str(info.value) == (
        f'{f}:4: httpPlugins[0].ops: "Logout" is not one of "Login", "NewProxy", "CloseProxy",'
        ' "Ping", "NewWorkConn", "NewUserConn"'
    )
    f = _write(
        tmp_path / "c.yaml",
        "proxies:\n  - name: a\n    type: tcp\n    localPort: 1\n    healthCheck:\n"
        "      httpHeaders:\n        - {name: x, valu: y}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_client_config(f)
    assert str(info.value) == (
        f'{f}:7: proxies[0].healthCheck.httpHeaders[0].valu: unknown key (did you mean "value"?)'
    )


def test_exec_token_source_needs_allow_unsafe(tmp_path: Path) -> None:
    script = tmp_path / "token.sh"
    script.write_text('#!/bin/sh\necho "  $1-$TOKEN_SUFFIX  "\n')
    script.chmod(0o755)
    f = _write(
        tmp_path / "s.toml",
        f'bindPort = 7000\nauth.tokenSource.type = "exec"\nauth.tokenSource.exec.command = '
        f'"{script}"\nauth.tokenSource.exec.args = ["secret"]\n'
        'auth.tokenSource.exec.env = [{ name = "TOKEN_SUFFIX", value = "x" }]\n',
    )
    with pytest.raises(ConfigError) as info:
        load_server_config(f)
    assert str(info.value) == (
        f'{f}:2: auth.tokenSource.type: unsafe feature "TokenSourceExec" is not enabled. '
        "To enable it, ensure it is allowed in the configuration or command line flags"
    )
    cfg, _ = load_server_config(f, allow_unsafe=frozenset({"TokenSourceExec"}))
    assert cfg.token == "secret-x"  # the output, trimmed
    script.chmod(0o644)
    with pytest.raises(ConfigError, match=r"failed to execute command .*token.sh"):
        load_server_config(f, allow_unsafe=frozenset({"TokenSourceExec"}))


def test_oidc_keys_both_formats(tmp_path: Path) -> None:
    """The INI names (with frp's ``oidc_additional_`` prefix for extra request parameters) and
    the v1 keys land in the same place."""
    f = _write(
        tmp_path / "c.ini",
        "[common]\nauthentication_method = oidc\noidc_client_id = id\noidc_client_secret = s\n"
        "oidc_audience = frps\noidc_scope = a b\noidc_token_endpoint_url = https://idp/token\n"
        "oidc_additional_resource = r\n",
    )
    c, notices = load_client_config(f)
    assert notices == []
    assert (c.auth_method, c.oidc.client_id, c.oidc.client_secret) == ("oidc", "id", "s")
    assert (c.oidc.audience, c.oidc.scope) == ("frps", "a b")
    assert c.oidc.additional_endpoint_params == {"resource": "r"}
    f = _write(
        tmp_path / "s.toml",
        'auth.method = "oidc"\nauth.oidc.issuer = "https://idp"\nauth.oidc.audience = "frps"\n'
        "auth.oidc.skipExpiryCheck = true\n",
    )
    s, notices = load_server_config(f)
    assert notices == []
    assert (s.auth_method, s.oidc.issuer, s.oidc.audience) == ("oidc", "https://idp", "frps")
    assert (s.oidc.skip_expiry_check, s.oidc.skip_issuer_check) == (True, False)


def test_oidc_client_validation(tmp_path: Path) -> None:
    """frp's checks: the token source excludes every other auth.oidc key; without it the client
    credentials need an id and an absolute http(s) URL."""
    f = _write(
        tmp_path / "a.toml",
        'auth.method = "oidc"\nauth.oidc.clientID = "id"\n'
        'auth.oidc.tokenSource.type = "file"\nauth.oidc.tokenSource.file.path = "/t"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_client_config(f)
    assert str(info.value) == (
        f"{f}:2: auth.oidc.clientID: cannot specify both auth.oidc.tokenSource and any other "
        "field of auth.oidc"
    )
    f = _write(
        tmp_path / "b.toml",
        'auth.method = "oidc"\nauth.oidc.tokenSource.type = "file"\n'
        'auth.oidc.tokenSource.file.path = "/t"\n',
    )
    assert load_client_config(f)[0].oidc.token_file == "/t"  # read for every message
    f = _write(
        tmp_path / "c.toml",
        'auth.method = "oidc"\nauth.oidc.clientID = "id"\n'
        'auth.oidc.tokenEndpointURL = "ftp://idp/token"\n',
    )
    with pytest.raises(ConfigError, match=r"auth\.oidc\.tokenEndpointURL must use http or https"):
        load_client_config(f)
