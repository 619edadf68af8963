"""Command lines shaped like frp's, parsed in-process: frps flags, frpc quick commands, verify."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyfrp.cli import frpc_config, frpc_main, frps_config, frps_main
from pyfrp.config.model import LogConfig, ProxyConfig, ServerConfig
from pyfrp.errors import ConfigError

DATA = Path(__file__).parent / "data"


def test_frps_runs_from_flags_alone() -> None:
    cfg, notices = frps_config(
        ["--bind_port", "7100", "-t", "x", "--bind-addr=127.0.0.1", "--vhost_http_port", "8080",
         "--subdomain_host", "example.com", "--allow_ports", "2000-3000,3001", "--tls_only",
         "--log_level", "debug", "--max_ports_per_client", "3", "--disable_log_color"]
    )  # fmt: skip
    assert notices == []
    assert cfg == ServerConfig(
        bind_addr="127.0.0.1",
        bind_port=7100,
        proxy_bind_addr="0.0.0.0",  # frps's flag default, unlike a file's (= bindAddr)
        token="x",
        vhost_http_port=8080,
        subdomain_host="example.com",
        allow_ports=[(2000, 3000), (3001, 3001)],
        tls_force=True,
        max_ports_per_client=3,
        log=LogConfig(level="debug", disable_color=True),
    )


def test_frps_flags_without_anything_are_frps_defaults() -> None:
    cfg, _ = frps_config([])
    assert (cfg.bind_addr, cfg.bind_port, cfg.proxy_bind_addr) == ("0.0.0.0", 7000, "0.0.0.0")


def test_frps_flag_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError) as info:
        frps_config(["-p", "70000"])
    assert (
        str(info.value)
        == "command line: --bind_port: port number 70000 must be in the range 0..65535"
    )
    with pytest.raises(ConfigError) as info:
        frps_config(["--tls_only=maybe"])
    assert (
        str(info.value) == 'command line: --tls_only: expected a boolean (true/false), got "maybe"'
    )


def test_frps_file_wins_over_flags() -> None:
    cfg, notices = frps_config(["-c", str(DATA / "server.toml"), "--bind_port", "9"])
    assert cfg.bind_port == 7001
    assert notices[-1] == (
        "command line: --bind_port: options other than -c are ignored when a config file is"
        " given, as in frps"
    )


def test_frpc_tcp_quick_command() -> None:
    cfg, notices = frpc_config(
        ["tcp", "--server_addr", "10.0.0.1", "-P", "7001", "-t", "tok", "-u", "lab",
         "--local_port", "22", "--remote_port", "6000", "-n", "ssh", "--ue", "--uc=true",
         "--tls_enable=false", "--metadatas", "a=1,b=2"]
    )  # fmt: skip
    assert notices == []
    assert (cfg.server_addr, cfg.server_port, cfg.token, cfg.user) == (
        "10.0.0.1",
        7001,
        "tok",
        "lab",
    )
    assert cfg.tls_enable is False
    assert cfg.proxies == [
        ProxyConfig(
            name="ssh",
            type="tcp",
            local_port=22,
            remote_port=6000,
            use_encryption=True,
            use_compression=True,
            metas={"a": "1", "b": "2"},
        )
    ]


def test_frpc_http_quick_command() -> None:
    cfg, _ = frpc_config(
        ["http", "-s", "frps.example.com", "-l", "8888", "-n", "lab", "--sd", "jupyter",
         "-d", "a.example.com,b.example.com", "--locations", "/,/lab", "--http_user", "u",
         "--http_pwd", "p", "--host_header_rewrite", "localhost"]
    )  # fmt: skip
    assert cfg.server_addr == "frps.example.com"
    assert cfg.proxies == [
        ProxyConfig(
            name="lab",
            type="http",
            local_port=8888,
            subdomain="jupyter",
            custom_domains=["a.example.com", "b.example.com"],
            locations=["/", "/lab"],
            http_user="u",
            http_pwd="p",
            host_header_rewrite="localhost",
        )
    ]


def test_frpc_quick_command_defaults_and_errors() -> None:
    cfg, _ = frpc_config(["tcp", "-l", "22", "-n", "ssh"])
    assert (cfg.server_addr, cfg.server_port) == ("127.0.0.1", 7000)  # frpc's flag defaults
    with pytest.raises(ConfigError) as info:
        frpc_config(["tcp", "-l", "22"])
    assert str(info.value) == "command line: --proxy_name: missing: name should not be empty"
    with pytest.raises(ConfigError) as info:
        frpc_config(["http", "-l", "80", "-n", "web"])
    assert str(info.value) == (
        "command line: --custom_domain: missing: a http proxy needs --custom_domain or --sd"
    )
    # frpc starts it too, and each connection then fails to dial port 0: a warning.
    cfg, notices = frpc_config(["tcp", "-n", "ssh"])
    assert cfg.proxies[0].local_port == 0
    assert notices == [
        "command line: --local_port: missing: a tcp proxy needs --local_port (or a plugin); "
        "its connections will fail"
    ]


def test_verify_prints_frps_texts(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(DATA / "client.toml")
    assert frpc_main(["verify", "-c", path]) == 0
    assert capsys.readouterr().out == f"frpc: the configuration file {path} syntax is ok\n"
    assert frps_main(["verify"]) == 0
    assert capsys.readouterr().out == "frps: the configuration file is not specified\n"
    assert frps_main(["-c", str(DATA / "server.ini"), "verify"]) == 0
    assert capsys.readouterr().out.endswith(
        f"frps: the configuration file {DATA}/server.ini syntax is ok\n"
    )


def test_verify_rejects_with_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "frpc.toml"
    bad.write_text('serverPort = "7000"\n')
    assert frpc_main(["verify", "-c", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f'{bad}:1: serverPort: expected a port number, got string "7000"\n'


def test_verify_strict_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "frps.toml"
    path.write_text("bindPort = 7000\nbindPrt = 7001\n")
    assert frps_main(["verify", "-c", str(path), "--strict_config"]) == 1
    assert 'bindPrt: unknown key (did you mean "bindPort"?)' in capsys.readouterr().err
    assert frps_main(["--strict-config=false", "verify", "-c", str(path)]) == 0
    assert "bindPrt" in capsys.readouterr().out


def test_unsupported_frpc_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert frpc_main(["nathole", "discover"]) == 1
    assert capsys.readouterr().err == "frpc nathole: not supported yet by pyfrpc\n"
    assert frpc_main(["stcp", "visitor", "--sk", "x"]) == 1
    assert capsys.readouterr().err == "command line: --visitor_name: missing: name is required\n"


def test_frpc_visitor_quick_command() -> None:
    """``frpc stcp visitor ...``: one visitor from flags; frp gives this command no server flags,
    so it dials frpc's defaults."""
    cfg, notices = frpc_config(
        ["sudp", "visitor", "-n", "dns", "--server-name", "dns", "--server-user", "lab",
         "--sk", "abc", "--bind-port", "5353", "--ue"]
    )  # fmt: skip
    assert notices == []
    assert (cfg.server_addr, cfg.server_port, cfg.proxies) == ("127.0.0.1", 7000, [])
    (v,) = cfg.visitors
    assert (v.name, v.type, v.server_name, v.server_user, v.secret_key) == (
        "dns",
        "sudp",
        "dns",
        "lab",
        "abc",
    )
    assert (v.bind_addr, v.bind_port, v.use_encryption) == ("127.0.0.1", 5353, True)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    for main in (frps_main, frpc_main):
        for flag in ("-v", "--version"):
            with pytest.raises(SystemExit) as info:
                main([flag])
            assert info.value.code == 0
            # The frp release pyfrp is a drop-in for comes first, as ``frps -v`` prints it.
            out = capsys.readouterr().out
            assert re.fullmatch(r"0\.70\.1 \(pyfrp \d+\.\d+\.\d+\S*\)\n", out), out
