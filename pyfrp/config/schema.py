"""Every option frp knows, in one table per scope: its v1 name, legacy INI name, type, where it
lands in the model, and whether pyfrp implements it.

Keys are the v1 dotted paths (``transport.tls.force``); the INI loader maps its names onto the
same keys, so both formats meet in one flat ``{v1 key: value}`` dict before the model is built
(see decode.py). Sources: pkg/config/v1/{server,client,common,proxy,visitor,proxy_plugin,
visitor_plugin}.go, pkg/config/legacy/{server,client,proxy,visitor}.go and conversion.go,
pkg/auth/legacy/legacy.go, at frp 0.65.0 plus the few keys added up to 0.70.

``works`` says what pyfrp does with a value:

* ``True``: implemented (or accepted and meaningless, like the ``version`` metadata key, or a
  sub-option of a feature whose switch is reported instead: ``webServer.user`` does nothing until
  ``webServer.port`` is set, in frp too).
* ``False``: recognised, type-checked, and, when set to anything but its zero value, an error
  ("not supported yet"): pyfrp never silently runs a config that would change who may connect,
  how traffic is routed or what goes on the wire.
* a predicate: an error when the predicate is false (``transport.protocol`` works for ``tcp``).

``adds`` marks a missing feature that only adds something (a dashboard, an admin API, metrics,
an extra listener): it is a start-up warning instead, and an error under ``--strict_config``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Kind(Enum):
    STR = "a string"
    INT = "an integer"
    PORT = "a port number"
    BOOL = "a boolean"
    STR_LIST = "a list of strings"
    STR_MAP = "a table of strings"
    BOOL_MAP = "a table of booleans"
    PORT_RANGES = "a list of port ranges"
    BANDWIDTH = "a bandwidth such as 1MB or 100KB"
    TABLES = "a list of tables"  # items follow Opt.item
    PLUGIN = "a plugin table"  # typed by its "type" key
    RAW = "a list of proxy or visitor tables"  # decoded by the caller


Works = bool | Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Opt:
    kind: Kind
    attr: str | None = None  # dotted attribute in the model, e.g. "log.to"
    ini: str | None = None  # legacy INI key
    works: Works = True
    choices: tuple[str, ...] = ()
    item: dict[str, Opt] | None = None  # Kind.TABLES: the schema of one item
    adds: bool = False  # unimplemented but only additive: a warning, not an error

    def supported(self, value: Any) -> bool:
        if callable(self.works):
            return self.works(value)
        return self.works or is_zero(value)


def is_zero(value: Any) -> bool:
    return value is None or value in ("", 0, False) or value == [] or value == {}


S, N, P, B = Kind.STR, Kind.INT, Kind.PORT, Kind.BOOL
L, M = Kind.STR_LIST, Kind.STR_MAP


def _default_or(default: Any) -> Callable[[Any], bool]:
    return lambda v: is_zero(v) or v == default


def _proxy_scheme_works(url: Any) -> bool:
    """frp also dials through https and ntlm proxies; pyfrp through http and socks5 ones."""
    return is_zero(url) or str(url).partition("://")[0] not in ("https", "ntlm")


LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
AUTH_SCOPES = ("HeartBeats", "NewWorkConns")
HTTP_PLUGIN_OPS = ("Login", "NewProxy", "CloseProxy", "Ping", "NewWorkConn", "NewUserConn")

_LOG: dict[str, Opt] = {
    "log.to": Opt(S, "log.to", "log_file"),
    "log.level": Opt(S, "log.level", "log_level", choices=LOG_LEVELS),
    "log.maxDays": Opt(N, "log.max_days", "log_max_days"),
    "log.disablePrintColor": Opt(B, "log.disable_color", "disable_log_color"),
}

_TOKEN_SOURCE: dict[str, Opt] = {
    "type": Opt(S, choices=("file", "exec")),
    "file.path": Opt(S),
    "exec.command": Opt(S),
    "exec.args": Opt(L),
    "exec.env": Opt(Kind.TABLES, item={"name": Opt(S), "value": Opt(S)}),
}


def _prefixed(prefix: str, table: dict[str, Opt]) -> dict[str, Opt]:
    return {f"{prefix}.{k}": v for k, v in table.items()}


# The web server (frps dashboard, frpc admin API).
def _web_server(prefix: str) -> dict[str, Opt]:
    return {
        "webServer.addr": Opt(S, "web.addr", f"{prefix}_addr"),
        "webServer.port": Opt(P, "web.port", f"{prefix}_port"),
        "webServer.user": Opt(S, "web.user", f"{prefix}_user"),
        "webServer.password": Opt(S, "web.password", f"{prefix}_pwd"),
        "webServer.assetsDir": Opt(S, "web.assets_dir", "assets_dir"),
        "webServer.pprofEnable": Opt(B, "web.pprof_enable", "pprof_enable"),
        "webServer.tls.certFile": Opt(S, "web.tls_cert_file"),
        "webServer.tls.keyFile": Opt(S, "web.tls_key_file"),
        "webServer.tls.trustedCaFile": Opt(S),
        "webServer.tls.serverName": Opt(S),
    }


_QUIC: dict[str, Opt] = {  # only used with quicBindPort / transport.protocol = "quic"
    "transport.quic.keepalivePeriod": Opt(N, ini="quic_keepalive_period"),
    "transport.quic.maxIdleTimeout": Opt(N, "quic_max_idle_timeout", "quic_max_idle_timeout"),
    "transport.quic.maxIncomingStreams": Opt(N, ini="quic_max_incoming_streams"),
}

_AUTH_COMMON: dict[str, Opt] = {
    "auth.method": Opt(S, "auth_method", "authentication_method", choices=("token", "oidc")),
    "auth.additionalScopes": Opt(L, "auth_scopes", choices=AUTH_SCOPES),
    "auth.token": Opt(S, "token", "token"),
    **_prefixed("auth.tokenSource", _TOKEN_SOURCE),
}

SERVER: dict[str, Opt] = {
    "version": Opt(S),
    **_AUTH_COMMON,
    # Used only with auth.method = "oidc", as frp.
    "auth.oidc.issuer": Opt(S, "oidc.issuer", "oidc_issuer"),
    "auth.oidc.audience": Opt(S, "oidc.audience", "oidc_audience"),
    "auth.oidc.skipExpiryCheck": Opt(B, "oidc.skip_expiry_check", "oidc_skip_expiry_check"),
    "auth.oidc.skipIssuerCheck": Opt(B, "oidc.skip_issuer_check", "oidc_skip_issuer_check"),
    "bindAddr": Opt(S, "bind_addr", "bind_addr"),
    "bindPort": Opt(P, "bind_port", "bind_port"),
    "kcpBindPort": Opt(P, "kcp_bind_port", "kcp_bind_port"),
    "quicBindPort": Opt(P, "quic_bind_port", "quic_bind_port"),
    "proxyBindAddr": Opt(S, "proxy_bind_addr", "proxy_bind_addr"),
    "vhostHTTPPort": Opt(P, "vhost_http_port", "vhost_http_port"),
    "vhostHTTPTimeout": Opt(N, "vhost_http_timeout", "vhost_http_timeout"),
    "vhostHTTPSPort": Opt(P, "vhost_https_port", "vhost_https_port"),
    "tcpmuxHTTPConnectPort": Opt(P, "tcpmux_httpconnect_port", "tcpmux_httpconnect_port"),
    "tcpmuxPassthrough": Opt(B, "tcpmux_passthrough", "tcpmux_passthrough"),
    "subDomainHost": Opt(S, "subdomain_host", "subdomain_host"),
    "custom404Page": Opt(S, "custom_404_page", "custom_404_page"),
    "sshTunnelGateway.bindPort": Opt(P, "ssh_bind_port"),
    "sshTunnelGateway.privateKeyFile": Opt(S, "ssh_private_key_file"),
    "sshTunnelGateway.autoGenPrivateKeyPath": Opt(S, "ssh_auto_gen_private_key_path"),
    "sshTunnelGateway.authorizedKeysFile": Opt(S, "ssh_authorized_keys_file"),
    **_web_server("dashboard"),
    "enablePrometheus": Opt(B, "enable_prometheus", "enable_prometheus"),
    **_LOG,
    "transport.tcpMux": Opt(B, "tcp_mux", "tcp_mux"),
    "transport.tcpMuxKeepaliveInterval": Opt(
        N, "tcp_mux_keepalive_interval", "tcp_mux_keepalive_interval"
    ),
    "transport.tcpKeepalive": Opt(N, "tcp_keepalive", "tcp_keepalive", works=_default_or(7200)),
    "transport.maxPoolCount": Opt(N, "max_pool_count", "max_pool_count"),
    "transport.heartbeatTimeout": Opt(N, "heartbeat_timeout", "heartbeat_timeout"),
    **_QUIC,
    "transport.tls.force": Opt(B, "tls_force", "tls_only"),
    "transport.tls.certFile": Opt(S, "tls_cert_file", "tls_cert_file"),
    "transport.tls.keyFile": Opt(S, "tls_key_file", "tls_key_file"),
    "transport.tls.trustedCaFile": Opt(S, "tls_trusted_ca_file", "tls_trusted_ca_file"),
    "transport.tls.serverName": Opt(S),
    "detailedErrorsToClient": Opt(B, "detailed_errors_to_client", "detailed_errors_to_client"),
    "maxPortsPerClient": Opt(N, "max_ports_per_client", "max_ports_per_client"),
    "userConnTimeout": Opt(N, "user_conn_timeout", "user_conn_timeout"),
    "udpPacketSize": Opt(N, "udp_packet_size", "udp_packet_size"),
    "natholeAnalysisDataReserveHours": Opt(
        N, "nathole_analysis_data_reserve_hours", "nat_hole_analysis_data_reserve_hours"
    ),
    "allowPorts": Opt(Kind.PORT_RANGES, "allow_ports", "allow_ports"),
    # pyfrp's own (Go frp has neither; its TOML/YAML/JSON loaders reject them, go-ini ignores them)
    "pyfrp.preLoginLimit": Opt(N, "pre_login_limit", "pyfrp_pre_login_limit"),
    "pyfrp.loginMaxClockSkew": Opt(N, "login_max_clock_skew", "pyfrp_login_max_clock_skew"),
    "pyfrp.workers": Opt(N, "workers", "pyfrp_workers"),
    "httpPlugins": Opt(
        Kind.TABLES,
        item={
            "name": Opt(S),
            "addr": Opt(S, ini="addr"),
            "path": Opt(S, ini="path"),
            "ops": Opt(L, ini="ops", choices=HTTP_PLUGIN_OPS),
            "tlsVerify": Opt(B, ini="tlsVerify"),
        },
    ),
}

# INI-only spellings that have no v1 key of their own.
SERVER_INI_EXTRA: dict[str, Opt] = {
    "authenticate_heartbeats": Opt(B),
    "authenticate_new_work_conns": Opt(B),
    "dashboard_tls_mode": Opt(B),
    "dashboard_tls_cert_file": Opt(S),
    "dashboard_tls_key_file": Opt(S),
    "log_way": Opt(S),  # long gone from frp; go-ini still accepts it
}

CLIENT: dict[str, Opt] = {
    "version": Opt(S),
    **_AUTH_COMMON,
    "auth.oidc.clientID": Opt(S, "oidc.client_id", "oidc_client_id"),
    "auth.oidc.clientSecret": Opt(S, "oidc.client_secret", "oidc_client_secret"),
    "auth.oidc.audience": Opt(S, "oidc.audience", "oidc_audience"),
    "auth.oidc.scope": Opt(S, "oidc.scope", "oidc_scope"),
    "auth.oidc.tokenEndpointURL": Opt(S, "oidc.token_endpoint_url", "oidc_token_endpoint_url"),
    "auth.oidc.additionalEndpointParams": Opt(M, "oidc.additional_endpoint_params"),
    "auth.oidc.trustedCaFile": Opt(S, "oidc.trusted_ca_file"),
    "auth.oidc.insecureSkipVerify": Opt(B, "oidc.insecure_skip_verify"),
    "auth.oidc.proxyURL": Opt(S, "oidc.proxy_url"),
    **_prefixed("auth.oidc.tokenSource", _TOKEN_SOURCE),
    "user": Opt(S, "user", "user"),
    "clientID": Opt(S, "client_id"),
    "serverAddr": Opt(S, "server_addr", "server_addr"),
    "serverPort": Opt(P, "server_port", "server_port"),
    # pyfrp's own: frps endpoints to fail over between (Go frpc rejects the key)
    "serverAddrs": Opt(L, "server_addrs", "server_addrs"),
    "natHoleStunServer": Opt(S, "nat_hole_stun_server", "nat_hole_stun_server"),
    "dnsServer": Opt(S, "dns_server", "dns_server"),
    "loginFailExit": Opt(B, "login_fail_exit", "login_fail_exit"),
    "start": Opt(L, ini="start"),
    **_LOG,
    **_web_server("admin"),
    "transport.protocol": Opt(
        S,
        "protocol",
        "protocol",
        choices=("tcp", "kcp", "quic", "websocket", "wss"),
    ),
    "transport.wireProtocol": Opt(S, "wire_protocol", choices=("v1", "v2")),
    "transport.dialServerTimeout": Opt(N, "dial_server_timeout", "dial_server_timeout"),
    "transport.dialServerKeepalive": Opt(N, ini="dial_server_keepalive", works=_default_or(7200)),
    "transport.connectServerLocalIP": Opt(S, "connect_server_local_ip", "connect_server_local_ip"),
    "transport.proxyURL": Opt(S, "proxy_url", "http_proxy", works=_proxy_scheme_works),
    "transport.poolCount": Opt(N, "pool_count", "pool_count"),
    "transport.tcpMux": Opt(B, "tcp_mux", "tcp_mux"),
    "transport.tcpMuxKeepaliveInterval": Opt(
        N, "tcp_mux_keepalive_interval", "tcp_mux_keepalive_interval"
    ),
    **_QUIC,
    "transport.heartbeatInterval": Opt(N, "heartbeat_interval", "heartbeat_interval"),
    "transport.heartbeatTimeout": Opt(N, "heartbeat_timeout", "heartbeat_timeout"),
    "transport.tls.enable": Opt(B, "tls_enable", "tls_enable"),
    "transport.tls.disableCustomTLSFirstByte": Opt(
        B, "disable_custom_tls_first_byte", "disable_custom_tls_first_byte"
    ),
    "transport.tls.certFile": Opt(S, "tls_cert_file", "tls_cert_file"),
    "transport.tls.keyFile": Opt(S, "tls_key_file", "tls_key_file"),
    "transport.tls.trustedCaFile": Opt(S, "tls_trusted_ca_file", "tls_trusted_ca_file"),
    "transport.tls.serverName": Opt(S, "tls_server_name", "tls_server_name"),
    "virtualNet.address": Opt(S, "virtual_net_address"),
    "featureGates": Opt(Kind.BOOL_MAP, "feature_gates"),
    "udpPacketSize": Opt(N, "udp_packet_size", "udp_packet_size"),
    "metadatas": Opt(M, "metas"),
    "includes": Opt(L, ini="includes"),
    "store.path": Opt(S, "store_path"),
    # pyfrp's own (Go frpc's loaders reject it; go-ini ignores it)
    "pyfrp.workers": Opt(N, "workers", "pyfrp_workers"),
    "proxies": Opt(Kind.RAW),
    "visitors": Opt(Kind.RAW),
}

CLIENT_INI_EXTRA: dict[str, Opt] = {
    "authenticate_heartbeats": Opt(B),
    "authenticate_new_work_conns": Opt(B),
    "log_way": Opt(S),
}

_HEADERS = {"requestHeaders.set": Opt(M)}
_PLUGIN_HTTP_LOCAL = {"localAddr": Opt(S), "hostHeaderRewrite": Opt(S), **_HEADERS}
_PLUGIN_TLS = {"enableHTTP2": Opt(B), "crtPath": Opt(S), "keyPath": Opt(S)}

PLUGINS: dict[str, dict[str, Opt]] = {
    "http2https": _PLUGIN_HTTP_LOCAL,
    "http_proxy": {"httpUser": Opt(S), "httpPassword": Opt(S)},
    "https2http": {**_PLUGIN_HTTP_LOCAL, **_PLUGIN_TLS},
    "https2https": {**_PLUGIN_HTTP_LOCAL, **_PLUGIN_TLS},
    "http2http": _PLUGIN_HTTP_LOCAL,
    "socks5": {"username": Opt(S), "password": Opt(S)},
    "static_file": {
        "localPath": Opt(S),
        "stripPrefix": Opt(S),
        "httpUser": Opt(S),
        "httpPassword": Opt(S),
    },
    "unix_domain_socket": {"unixPath": Opt(S)},
    "tls2raw": {"localAddr": Opt(S), "crtPath": Opt(S), "keyPath": Opt(S)},
    "virtual_net": {},
}
# The client plugins pyfrpc runs (pyfrp/client/plugins.py); the others are "not supported yet".
PLUGINS_IMPLEMENTED = frozenset(
    {"unix_domain_socket", "socks5", "http_proxy", "static_file", "tls2raw",
     "http2http", "http2https", "https2http", "https2https", "virtual_net"}
)  # fmt: skip
# frp validation/plugin.go: the option each plugin cannot do without.
PLUGIN_REQUIRED = {
    "http2https": "localAddr",
    "https2http": "localAddr",
    "https2https": "localAddr",
    "tls2raw": "localAddr",
    "static_file": "localPath",
    "unix_domain_socket": "unixPath",
}
VISITOR_PLUGINS: dict[str, dict[str, Opt]] = {"virtual_net": {"destinationIP": Opt(S)}}
# frp pkg/policy/featuregate: the known gates and their defaults (all alpha, off by default).
FEATURE_GATES = {"VirtualNet": False}

PROXY_BASE: dict[str, Opt] = {
    "name": Opt(S, "name"),
    "type": Opt(S, "type"),
    "enabled": Opt(B),
    "annotations": Opt(M, "annotations"),
    "transport.useEncryption": Opt(B, "use_encryption", "use_encryption"),
    "transport.useCompression": Opt(B, "use_compression", "use_compression"),
    "transport.bandwidthLimit": Opt(Kind.BANDWIDTH, "bandwidth_limit", "bandwidth_limit"),
    "transport.bandwidthLimitMode": Opt(
        S, "bandwidth_limit_mode", "bandwidth_limit_mode", choices=("client", "server")
    ),
    "transport.proxyProtocolVersion": Opt(
        S, "proxy_protocol_version", "proxy_protocol_version", choices=("", "v1", "v2")
    ),
    "metadatas": Opt(M, "metas"),
    "loadBalancer.group": Opt(S, "group", "group"),
    "loadBalancer.groupKey": Opt(S, "group_key", "group_key"),
    "healthCheck.type": Opt(
        S, "health_check.type", "health_check_type", choices=("", "tcp", "http")
    ),
    "healthCheck.timeoutSeconds": Opt(N, "health_check.timeout", "health_check_timeout_s"),
    "healthCheck.maxFailed": Opt(N, "health_check.max_failed", "health_check_max_failed"),
    "healthCheck.intervalSeconds": Opt(N, "health_check.interval", "health_check_interval_s"),
    "healthCheck.path": Opt(S, "health_check.path", "health_check_url"),
    "healthCheck.httpHeaders": Opt(
        Kind.TABLES, "health_check.headers", item={"name": Opt(S), "value": Opt(S)}
    ),
    "localIP": Opt(S, "local_ip", "local_ip"),
    "localPort": Opt(P, "local_port", "local_port"),
    "plugin": Opt(Kind.PLUGIN),  # INI: plugin + plugin_* (ini.py)
}

_DOMAINS = {
    "customDomains": Opt(L, "custom_domains", "custom_domains"),
    "subdomain": Opt(S, "subdomain", "subdomain"),
}
_SECRET = {
    "secretKey": Opt(S, "secret_key", "sk"),
    "allowUsers": Opt(L, "allow_users", "allow_users"),
}
_NAT_TRAVERSAL = {"natTraversal.disableAssistedAddrs": Opt(B, "disable_assisted_addrs")}

PROXY_TYPES: dict[str, dict[str, Opt]] = {
    "tcp": {"remotePort": Opt(P, "remote_port", "remote_port")},
    "udp": {"remotePort": Opt(P, "remote_port", "remote_port")},
    "http": {
        **_DOMAINS,
        "locations": Opt(L, "locations", "locations"),
        "httpUser": Opt(S, "http_user", "http_user"),
        "httpPassword": Opt(S, "http_pwd", "http_pwd"),
        "hostHeaderRewrite": Opt(S, "host_header_rewrite", "host_header_rewrite"),
        "requestHeaders.set": Opt(M, "request_headers"),
        "responseHeaders.set": Opt(M, "response_headers"),
        "routeByHTTPUser": Opt(S, "route_by_http_user", "route_by_http_user"),
    },
    "https": dict(_DOMAINS),
    "tcpmux": {
        **_DOMAINS,
        "httpUser": Opt(S, "http_user", "http_user"),
        "httpPassword": Opt(S, "http_pwd", "http_pwd"),
        "routeByHTTPUser": Opt(S, "route_by_http_user", "route_by_http_user"),
        "multiplexer": Opt(S, "multiplexer", "multiplexer", choices=("httpconnect",)),
    },
    "stcp": dict(_SECRET),
    "xtcp": {**_SECRET, **_NAT_TRAVERSAL},
    "sudp": dict(_SECRET),
}

VISITOR_BASE: dict[str, Opt] = {
    "name": Opt(S, "name"),
    "type": Opt(S, "type"),
    "enabled": Opt(B),
    "transport.useEncryption": Opt(B, "use_encryption", "use_encryption"),
    "transport.useCompression": Opt(B, "use_compression", "use_compression"),
    "secretKey": Opt(S, "secret_key", "sk"),
    "serverUser": Opt(S, "server_user", "server_user"),
    "serverName": Opt(S, "server_name", "server_name"),
    "bindAddr": Opt(S, "bind_addr", "bind_addr"),
    "bindPort": Opt(N, "bind_port", "bind_port"),  # may be negative
    "plugin": Opt(Kind.PLUGIN),
}

VISITOR_TYPES: dict[str, dict[str, Opt]] = {
    "stcp": {},
    "sudp": {},
    "xtcp": {
        "protocol": Opt(S, "protocol", "protocol", choices=("kcp", "quic")),  # in the punched hole
        "keepTunnelOpen": Opt(B, "keep_tunnel_open", "keep_tunnel_open"),
        "maxRetriesAnHour": Opt(N, "max_retries_an_hour", "max_retries_an_hour"),
        "minRetryInterval": Opt(N, "min_retry_interval", "min_retry_interval"),
        "fallbackTo": Opt(S, "fallback_to", "fallback_to"),
        "fallbackTimeoutMs": Opt(N, "fallback_timeout_ms", "fallback_timeout_ms"),
        **_NAT_TRAVERSAL,
    },
}

Tree = dict[str, "Opt | Tree"]


def tree(flat: dict[str, Opt]) -> Tree:
    """``{"a.b": opt}`` -> ``{"a": {"b": opt}}``: the nesting a TOML/YAML/JSON file has."""
    root: Tree = {}
    for key, opt in flat.items():
        node = root
        *parents, last = key.split(".")
        for p in parents:
            child = node.setdefault(p, {})
            assert isinstance(child, dict), key
            node = child
        node[last] = opt
    return root


def ini_index(flat: dict[str, Opt]) -> dict[str, str]:
    """INI key -> v1 key."""
    return {opt.ini: key for key, opt in flat.items() if opt.ini}
