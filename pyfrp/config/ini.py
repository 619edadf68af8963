"""frp's legacy INI format (pkg/config/legacy): ``[common]`` plus one section per proxy.

Parsed by hand rather than with configparser so that every error can name the file, line and key,
and so that values keep go-ini's rules frp relies on (no inline comments: ``22 # ssh`` is a bad
port in frp too).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyfrp.config.model import ClientConfig, LogConfig, ProxyConfig, ServerConfig
from pyfrp.errors import ConfigError


@dataclass(slots=True)
class IniValue:
    value: str
    line: int


@dataclass(slots=True)
class IniSection:
    name: str
    line: int
    values: dict[str, IniValue] = field(default_factory=dict)


def parse_ini(text: str, path: str) -> list[IniSection]:
    sections: list[IniSection] = []
    current: IniSection | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError(f"{path}:{lineno}: malformed section header {line!r}")
            current = IniSection(line[1:-1].strip(), lineno)
            sections.append(current)
            continue
        if current is None:
            raise ConfigError(f"{path}:{lineno}: key outside of any section: {line!r}")
        key, sep, value = line.partition("=")
        if not sep:  # go-ini AllowBooleanKeys: a bare key means true
            key, value = line, "true"
        key = key.strip()
        if key in current.values:
            raise ConfigError(f"{path}:{lineno}: [{current.name}] duplicate key {key!r}")
        current.values[key] = IniValue(value.strip(), lineno)
    return sections


def _parse_bool(s: str) -> bool:
    if s in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if s in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError("is not a boolean (true/false)")


def _parse_int(s: str) -> int:
    try:
        return int(s, 10)
    except ValueError:
        raise ValueError("is not an integer") from None


def _parse_port(s: str) -> int:
    n = _parse_int(s)
    if not 0 <= n <= 65535:
        raise ValueError("is not a port (0-65535)")
    return n


def _parse_list(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def parse_port_ranges(s: str) -> list[tuple[int, int]]:
    """``2000-3000,3001`` -> [(2000, 3000), (3001, 3001)]."""
    out: list[tuple[int, int]] = []
    for part in _parse_list(s):
        lo, sep, hi = part.partition("-")
        a = _parse_port(lo.strip())
        b = _parse_port(hi.strip()) if sep else a
        if a > b:
            raise ValueError(f"range {part} has its start after its end")
        out.append((a, b))
    return out


_Setter = Callable[[Any, str], None]


def _attr(name: str, conv: Callable[[str], Any]) -> _Setter:
    def set_(obj: Any, raw: str) -> None:
        setattr(obj, name, conv(raw))

    return set_


def _log_attr(name: str, conv: Callable[[str], Any]) -> _Setter:
    def set_(obj: Any, raw: str) -> None:
        setattr(obj.log, name, conv(raw))

    return set_


_LOG_KEYS: dict[str, _Setter] = {
    "log_file": _log_attr("to", str),
    "log_level": _log_attr("level", str),
    "log_max_days": _log_attr("max_days", _parse_int),
    "disable_log_color": _log_attr("disable_color", _parse_bool),
}

_SERVER_KEYS: dict[str, _Setter] = {
    "bind_addr": _attr("bind_addr", str),
    "bind_port": _attr("bind_port", _parse_port),
    "proxy_bind_addr": _attr("proxy_bind_addr", str),
    "vhost_http_port": _attr("vhost_http_port", _parse_port),
    "vhost_https_port": _attr("vhost_https_port", _parse_port),
    "vhost_http_timeout": _attr("vhost_http_timeout", _parse_int),
    "subdomain_host": _attr("subdomain_host", str),
    "custom_404_page": _attr("custom_404_page", str),
    "token": _attr("token", str),
    "tcp_mux": _attr("tcp_mux", _parse_bool),
    "tcp_mux_keepalive_interval": _attr("tcp_mux_keepalive_interval", _parse_int),
    "tcp_keepalive": _attr("tcp_keepalive", _parse_int),
    "max_pool_count": _attr("max_pool_count", _parse_int),
    "heartbeat_timeout": _attr("heartbeat_timeout", _parse_int),
    "tls_only": _attr("tls_force", _parse_bool),
    "tls_cert_file": _attr("tls_cert_file", str),
    "tls_key_file": _attr("tls_key_file", str),
    "tls_trusted_ca_file": _attr("tls_trusted_ca_file", str),
    "allow_ports": _attr("allow_ports", parse_port_ranges),
    "max_ports_per_client": _attr("max_ports_per_client", _parse_int),
    "user_conn_timeout": _attr("user_conn_timeout", _parse_int),
    "udp_packet_size": _attr("udp_packet_size", _parse_int),
    "detailed_errors_to_client": _attr("detailed_errors_to_client", _parse_bool),
    **_LOG_KEYS,
}

# Keys frp knows that pyfrp does not implement yet: accepted, reported once at start-up.
_SERVER_UNSUPPORTED = {
    "kcp_bind_port", "quic_bind_port", "quic_keepalive_period", "quic_max_idle_timeout",
    "quic_max_incoming_streams", "tcpmux_httpconnect_port", "tcpmux_passthrough",
    "authentication_method", "authenticate_heartbeats", "authenticate_new_work_conns",
    "oidc_issuer", "oidc_audience", "oidc_skip_expiry_check", "oidc_skip_issuer_check",
    "dashboard_addr", "dashboard_port", "dashboard_user", "dashboard_pwd", "dashboard_tls_mode",
    "dashboard_tls_cert_file", "dashboard_tls_key_file", "assets_dir", "enable_prometheus",
    "nat_hole_analysis_data_reserve_hours", "api_enable",
}  # fmt: skip

_CLIENT_KEYS: dict[str, _Setter] = {
    "server_addr": _attr("server_addr", str),
    "server_port": _attr("server_port", _parse_port),
    "user": _attr("user", str),
    "token": _attr("token", str),
    "pool_count": _attr("pool_count", _parse_int),
    "tcp_mux": _attr("tcp_mux", _parse_bool),
    "tcp_mux_keepalive_interval": _attr("tcp_mux_keepalive_interval", _parse_int),
    "heartbeat_interval": _attr("heartbeat_interval", _parse_int),
    "heartbeat_timeout": _attr("heartbeat_timeout", _parse_int),
    "tls_enable": _attr("tls_enable", _parse_bool),
    "disable_custom_tls_first_byte": _attr("disable_custom_tls_first_byte", _parse_bool),
    "tls_cert_file": _attr("tls_cert_file", str),
    "tls_key_file": _attr("tls_key_file", str),
    "tls_trusted_ca_file": _attr("tls_trusted_ca_file", str),
    "tls_server_name": _attr("tls_server_name", str),
    "dial_server_timeout": _attr("dial_server_timeout", _parse_int),
    "login_fail_exit": _attr("login_fail_exit", _parse_bool),
    **_LOG_KEYS,
}

_CLIENT_UNSUPPORTED = {
    "protocol", "authentication_method", "authenticate_heartbeats", "authenticate_new_work_conns",
    "oidc_client_id", "oidc_client_secret", "oidc_audience", "oidc_scope",
    "oidc_token_endpoint_url", "dial_server_keepalive", "connect_server_local_ip", "http_proxy",
    "admin_addr", "admin_port", "admin_user", "admin_pwd", "assets_dir", "pprof_enable",
    "start", "includes", "dns_server", "nat_hole_stun_server", "udp_packet_size",
    "quic_keepalive_period", "quic_max_idle_timeout", "quic_max_incoming_streams",
}  # fmt: skip

_PROXY_KEYS: dict[str, _Setter] = {
    "type": _attr("type", str),
    "local_ip": _attr("local_ip", str),
    "local_port": _attr("local_port", _parse_port),
    "remote_port": _attr("remote_port", _parse_port),
    "use_encryption": _attr("use_encryption", _parse_bool),
    "use_compression": _attr("use_compression", _parse_bool),
    "bandwidth_limit": _attr("bandwidth_limit", str),
    "bandwidth_limit_mode": _attr("bandwidth_limit_mode", str),
    "group": _attr("group", str),
    "group_key": _attr("group_key", str),
    "custom_domains": _attr("custom_domains", _parse_list),
    "subdomain": _attr("subdomain", str),
    "locations": _attr("locations", _parse_list),
    "http_user": _attr("http_user", str),
    "http_pwd": _attr("http_pwd", str),
    "host_header_rewrite": _attr("host_header_rewrite", str),
    "route_by_http_user": _attr("route_by_http_user", str),
}

_PROXY_UNSUPPORTED = {
    "proxy_protocol_version", "health_check_type", "health_check_timeout_s",
    "health_check_max_failed", "health_check_interval_s", "health_check_url", "plugin",
    "sk", "allow_users", "multiplexer", "role", "server_name", "server_user", "bind_addr",
    "bind_port",
}  # fmt: skip

_PROXY_TYPES = ("tcp", "udp", "http", "https", "tcpmux", "stcp", "xtcp", "sudp")


def _suggest(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _apply(
    obj: Any,
    section: IniSection,
    keys: dict[str, _Setter],
    unsupported: set[str],
    path: str,
    notices: list[str],
    prefixes: dict[str, Callable[[Any, str, str], None]] | None = None,
) -> None:
    for key, iv in section.values.items():
        where = f"{path}:{iv.line}: [{section.name}] {key}"
        setter = keys.get(key)
        if setter is not None:
            try:
                setter(obj, iv.value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {iv.value!r} {exc}") from None
            continue
        if key in unsupported or key.startswith("plugin_"):
            notices.append(f"{where}: not supported yet, ignored")
            continue
        handled = False
        for prefix, fn in (prefixes or {}).items():
            if key.startswith(prefix) and len(key) > len(prefix):
                fn(obj, key[len(prefix) :], iv.value)
                handled = True
                break
        if not handled:
            raise ConfigError(f"{where}: unknown key{_suggest(key, set(keys) | unsupported)}")


def _common(sections: list[IniSection], path: str) -> IniSection:
    for s in sections:
        if s.name == "common":
            return s
    raise ConfigError(f"{path}: invalid configuration file, not found [common] section")


def load_server_ini(text: str, path: str) -> tuple[ServerConfig, list[str]]:
    """(config, notices): notices are start-up warnings about keys pyfrp does not implement."""
    sections = parse_ini(text, path)
    cfg = ServerConfig(log=LogConfig())
    notices: list[str] = []
    _apply(cfg, _common(sections, path), _SERVER_KEYS, _SERVER_UNSUPPORTED, path, notices)
    notices.extend(
        f"{path}:{s.line}: section [{s.name}] not supported yet, ignored"
        for s in sections
        if s.name != "common"
    )
    return cfg, notices


def _set_meta(obj: Any, name: str, value: str) -> None:
    obj.metas[name] = value


def _set_header(obj: Any, name: str, value: str) -> None:
    obj.request_headers[name] = value


def load_client_ini(text: str, path: str) -> tuple[ClientConfig, list[str]]:
    sections = parse_ini(text, path)
    cfg = ClientConfig(log=LogConfig())
    notices: list[str] = []
    common = _common(sections, path)
    _apply(cfg, common, _CLIENT_KEYS, _CLIENT_UNSUPPORTED, path, notices, {"meta_": _set_meta})
    seen: dict[str, int] = {}
    for s in sections:
        if s.name == "common":
            continue
        if s.name.startswith("range:"):
            notices.append(f"{path}:{s.line}: [{s.name}] range sections not supported yet, ignored")
            continue
        if s.name in seen:
            raise ConfigError(
                f"{path}:{s.line}: duplicate proxy name [{s.name}] (first at line {seen[s.name]})"
            )
        seen[s.name] = s.line
        proxy = ProxyConfig(name=s.name)
        _apply(
            proxy,
            s,
            _PROXY_KEYS,
            _PROXY_UNSUPPORTED,
            path,
            notices,
            {"meta_": _set_meta, "header_": _set_header},
        )
        if "role" in s.values and s.values["role"].value == "visitor":
            continue
        _check_proxy(proxy, s, path)
        cfg.proxies.append(proxy)
    return cfg, notices


def _check_proxy(p: ProxyConfig, s: IniSection, path: str) -> None:
    line = s.values["type"].line if "type" in s.values else s.line
    if p.type not in _PROXY_TYPES:
        raise ConfigError(
            f"{path}:{line}: [{s.name}] type: unknown proxy type {p.type!r}"
            f" (one of {', '.join(_PROXY_TYPES)})"
        )
    if p.type != "tcpmux" and "local_port" not in s.values and "plugin" not in s.values:
        raise ConfigError(f"{path}:{s.line}: [{s.name}] local_port: required for {p.type} proxies")
    if p.type in ("http", "https") and not p.custom_domains and not p.subdomain:
        raise ConfigError(
            f"{path}:{s.line}: [{s.name}] custom_domains and subdomain"
            " should set at least one of them"
        )
