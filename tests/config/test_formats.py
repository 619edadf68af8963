"""One configuration written in INI, TOML, YAML and JSON loads into one model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pyfrp.config.load import load_client_config, load_server_config
from pyfrp.config.model import (
    ClientConfig,
    LogConfig,
    ProxyConfig,
    ServerConfig,
    VisitorConfig,
    WebServerConfig,
)

DATA = Path(__file__).parent / "data"
FORMATS = ("ini", "toml", "yaml", "json")


def _keys(notices: list[str]) -> list[str]:
    """The option each notice is about, without file, line and format spelling."""
    return [n.split(": ")[1].rsplit(" ", 1)[-1].rsplit(".", 1)[-1] for n in notices]


def test_server_four_formats_one_model() -> None:
    loaded = {fmt: load_server_config(str(DATA / f"server.{fmt}")) for fmt in FORMATS}
    cfg = loaded["ini"][0]
    assert cfg == ServerConfig(
        bind_addr="127.0.0.1",
        bind_port=7001,
        kcp_bind_port=7002,
        proxy_bind_addr="127.0.0.2",
        vhost_http_port=8080,
        vhost_https_port=8443,
        vhost_http_timeout=30,
        subdomain_host="frps.example.com",
        custom_404_page="/srv/404.html",
        token="s3cret",
        tcp_mux=False,
        tcp_mux_keepalive_interval=20,
        max_pool_count=10,
        heartbeat_timeout=120,
        tls_force=True,
        tls_cert_file="server.crt",
        tls_key_file="server.key",
        tls_trusted_ca_file="ca.crt",
        allow_ports=[(2000, 3000), (3001, 3001)],
        max_ports_per_client=4,
        user_conn_timeout=15,
        udp_packet_size=1400,
        detailed_errors_to_client=False,
        enable_prometheus=True,
        web=WebServerConfig(addr="0.0.0.0", port=7500),
        log=LogConfig(to="console", level="debug", max_days=7, disable_color=True),
    )
    for fmt in FORMATS:
        assert loaded[fmt] == (cfg, []), fmt


def test_client_four_formats_one_model() -> None:
    loaded = {
        fmt: load_client_config(str(DATA / f"client.{fmt}"), unsupported_ok=True) for fmt in FORMATS
    }
    cfg = loaded["ini"][0]
    for fmt in FORMATS:
        assert loaded[fmt][0] == cfg, fmt
        assert loaded[fmt][1] == [], loaded[fmt][1]
    assert cfg.dns_server == "8.8.8.8"
    assert (cfg.server_addr, cfg.server_port, cfg.user, cfg.token) == (
        "127.0.0.1",
        7001,
        "lab",
        "s3cret",
    )
    assert (cfg.pool_count, cfg.tcp_mux_keepalive_interval, cfg.dial_server_timeout) == (3, 40, 5)
    assert (cfg.heartbeat_interval, cfg.heartbeat_timeout) == (20, 60)
    assert cfg.tls_enable
    assert not cfg.disable_custom_tls_first_byte
    assert cfg.tls_server_name == "frps.example.com"
    assert not cfg.login_fail_exit
    assert cfg.metas == {"team": "gpu"}
    assert cfg.log == LogConfig(level="warn", disable_color=True)
    # [sock] runs the unix_domain_socket plugin
    assert [p.name for p in cfg.proxies] == [
        "ssh",
        "web",
        "tls",
        "dns",
        "secret",
        "rng_0",
        "rng_1",
        "sock",
    ]
    by_name = {p.name: p for p in cfg.proxies}
    assert by_name["sock"].plugin == {
        "type": "unix_domain_socket",
        "unixPath": "/var/run/docker.sock",
    }
    assert by_name["ssh"] == ProxyConfig(
        name="ssh",
        type="tcp",
        local_port=22,
        remote_port=6000,
        use_encryption=True,
        use_compression=True,
        metas={"owner": "alice"},
        group="g",
        group_key="k",
    )
    assert by_name["web"] == ProxyConfig(
        name="web",
        type="http",
        local_port=8888,
        subdomain="jupyter",
        custom_domains=["a.example.com", "b.example.com"],
        locations=["/", "/lab"],
        http_user="u",
        http_pwd="p",
        host_header_rewrite="localhost",
        request_headers={"x-from-where": "frp"},
        route_by_http_user="u",
    )
    assert by_name["dns"].local_ip == "8.8.8.8"
    assert (by_name["secret"].secret_key, by_name["secret"].allow_users) == ("abc", ["*"])
    assert [(p.local_port, p.remote_port) for p in cfg.proxies[-3:-1]] == [
        (7010, 17010),
        (7011, 17011),
    ]
    assert cfg.visitors == [
        VisitorConfig(
            name="secret_visitor",
            type="stcp",
            secret_key="abc",
            server_name="secret",
            bind_port=9000,
        )
    ]


def test_empty_files_give_frps_and_frpc_defaults(tmp_path: Path) -> None:
    for name, text in [("a.toml", ""), ("b.yaml", ""), ("c.json", "{}"), ("d.ini", "[common]\n")]:
        (tmp_path / name).write_text(text)
        assert load_server_config(str(tmp_path / name)) == (ServerConfig(), [])
        assert load_client_config(str(tmp_path / name)) == (ClientConfig(), [])


def test_zero_means_default_as_in_frp(tmp_path: Path) -> None:
    """frp's Complete() uses util.EmptyOr: bindPort = 0 is 7000, poolCount = 0 is 1."""
    f = tmp_path / "z.toml"
    f.write_text('bindPort = 0\nbindAddr = ""\nlog.maxDays = 0\ntransport.maxPoolCount = 0\n')
    assert load_server_config(str(f))[0] == ServerConfig()
    f.write_text("serverPort = 0\ntransport.poolCount = 0\ntransport.tcpMux = false\n")
    cfg = load_client_config(str(f))[0]
    assert (cfg.server_port, cfg.pool_count, cfg.tcp_mux) == (7000, 1, False)


def test_ini_detected_by_content_whatever_the_name(tmp_path: Path) -> None:
    f = tmp_path / "frps.conf.toml"
    f.write_text("[common]\nbind_port = 7100\n")
    assert load_server_config(str(f))[0].bind_port == 7100


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("bindPort = 7101\n", 7101),  # TOML
        ('{"bindPort": 7102}\n', 7102),  # JSON
        ("bindPort: 7103\n", 7103),  # YAML
    ],
    ids=["toml", "json", "yaml"],
)
def test_no_extension_tries_toml_json_yaml(tmp_path: Path, text: str, port: int) -> None:
    f = tmp_path / "frps"
    f.write_text(text)
    assert load_server_config(str(f))[0].bind_port == port


def test_extension_is_a_hint_not_a_rule(tmp_path: Path) -> None:
    """frp reads a .json file holding YAML (it tries TOML, then JSON or YAML)."""
    f = tmp_path / "frps.json"
    f.write_text("bindPort: 7104\n")
    assert load_server_config(str(f))[0].bind_port == 7104
    f = tmp_path / "frps.yml"
    f.write_text('{"bindPort": 7105}')
    assert load_server_config(str(f))[0].bind_port == 7105


def test_keys_match_case_insensitively_like_go_json(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('serverport = 7106\nAUTH.TOKEN = "t"\n')
    cfg = load_client_config(str(f))[0]
    assert (cfg.server_port, cfg.token) == (7106, "t")


def test_yaml_merge_keys_and_dot_keys(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        ".base: &base\n  type: tcp\n  localIP: 127.0.0.9\n"
        "proxies:\n  - <<: *base\n    name: a\n    localPort: 1\n"
        "  - {<<: *base, name: b, localPort: 2}\n"
    )
    cfg = load_client_config(str(f))[0]
    assert [(p.name, p.local_ip, p.local_port) for p in cfg.proxies] == [
        ("a", "127.0.0.9", 1),
        ("b", "127.0.0.9", 2),
    ]


def test_yaml_values_stay_strings_where_go_keeps_them(tmp_path: Path) -> None:
    """A date-like value is a string for go-yaml-to-JSON; PyYAML would make it a date."""
    f = tmp_path / "c.yaml"
    f.write_text("user: 2026-11-28\nmetadatas:\n  since: 2026-11-28\n")
    cfg = load_client_config(str(f))[0]
    assert (cfg.user, cfg.metas) == ("2026-11-28", {"since": "2026-11-28"})


def test_json_and_toml_generated_from_one_dict_agree(tmp_path: Path) -> None:
    """The TOML fixture rendered to JSON by a serializer (no hand edits) loads the same."""
    import tomllib

    from pyfrp.config.template import render

    text, _ = render((DATA / "client.toml").read_text(), {}, "client.toml")
    (tmp_path / "gen.json").write_text(json.dumps(tomllib.loads(text), indent=1))
    assert (
        load_client_config(str(tmp_path / "gen.json"), unsupported_ok=True)[0]
        == load_client_config(str(DATA / "client.toml"), unsupported_ok=True)[0]
    )


def test_paths_with_spaces_and_copies(tmp_path: Path) -> None:
    d = tmp_path / "my configs"
    d.mkdir()
    for fmt in FORMATS:
        shutil.copy(DATA / f"server.{fmt}", d / f"server.{fmt}")
    models = {load_server_config(str(d / f"server.{fmt}"))[0].bind_port for fmt in FORMATS}
    assert models == {7001}


@pytest.mark.parametrize(
    ("ini", "want"),
    [
        ("", -1),  # frp: -1 with tcp_mux (yamux keepalives watch the link)
        ("tcp_mux = false\n", 90),
        ("heartbeat_timeout = 7\n", 7),  # explicit: checked with tcp_mux too
        ("tcp_mux = false\nheartbeat_timeout = 7\n", 7),
    ],
)
def test_client_heartbeat_timeout_default_follows_tcp_mux(
    tmp_path: Path, ini: str, want: int
) -> None:
    path = tmp_path / "frpc.ini"
    path.write_text(f"[common]\nserver_port = 7000\n{ini}")
    assert load_client_config(str(path))[0].effective_heartbeat_timeout == want
