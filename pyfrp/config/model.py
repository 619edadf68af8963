"""The typed configuration every other layer uses. Formats (INI, TOML, YAML, JSON, flags) load
into these, and nothing below pyfrp/config knows which one a value came from.

Field names are frp's legacy INI names; defaults are frp's after ``Complete()`` (pkg/config/v1
server.go, client.go, proxy.go, visitor.go) for the wire version pyfrp speaks. The one
deliberate difference is ``ClientConfig.heartbeat_interval``, see there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

PROXY_TYPES = ("tcp", "udp", "http", "https", "tcpmux", "stcp", "xtcp", "sudp")
VISITOR_TYPES = ("stcp", "xtcp", "sudp")
# What pyfrpc and pyfrps implement so far.


def usable_cores() -> int:
    """The cores this process may run on: what ``pyfrp.workers = 0`` means."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


@dataclass(slots=True)
class LogConfig:
    to: str = "console"  # "console" or a file path
    level: str = "info"  # trace, debug, info, warn, error
    max_days: int = 3  # daily-rotated files older than this are deleted
    disable_color: bool = False


@dataclass(slots=True)
class WebServerConfig:
    """``webServer.*``: frps's dashboard (INI ``dashboard_*``), frpc's admin API (``admin_*``)."""

    addr: str = "127.0.0.1"
    port: int = 0  # 0: no web server
    user: str = ""
    password: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    assets_dir: str = ""  # serve this directory's UI (frp's own build) at /static/
    pprof_enable: bool = False  # /debug/pprof/: a dump of the asyncio tasks (goroutine)


@dataclass(slots=True)
class OidcServerConfig:
    """``auth.oidc.*`` of frps: whose tokens it accepts."""

    issuer: str = ""
    audience: str = ""  # empty: any audience
    skip_expiry_check: bool = False
    skip_issuer_check: bool = False


@dataclass(slots=True)
class OidcClientConfig:
    """``auth.oidc.*`` of frpc: where it gets its tokens (client credentials, or
    ``tokenSource``: a file or command read for every message)."""

    client_id: str = ""
    client_secret: str = ""
    audience: str = ""
    scope: str = ""
    token_endpoint_url: str = ""
    additional_endpoint_params: dict[str, str] = field(default_factory=dict)
    trusted_ca_file: str = ""
    insecure_skip_verify: bool = False
    proxy_url: str = ""
    token_file: str = ""
    token_command: list[str] = field(default_factory=list)  # argv
    token_command_env: dict[str, str] | None = None  # None: inherit


@dataclass(slots=True)
class HttpPluginConfig:
    """One ``[[httpPlugins]]`` (INI ``[plugin.NAME]``): a webhook frps asks about ``ops``."""

    name: str
    addr: str = ""
    path: str = ""
    ops: list[str] = field(default_factory=list)
    tls_verify: bool = False


@dataclass(slots=True)
class ServerConfig:
    bind_addr: str = "0.0.0.0"
    bind_port: int = 7000
    kcp_bind_port: int = 0  # UDP: frpc's transport.protocol = kcp
    quic_bind_port: int = 0  # UDP: frpc's transport.protocol = quic
    quic_max_idle_timeout: int = 30
    proxy_bind_addr: str = ""  # empty: same as bind_addr
    vhost_http_port: int = 0
    vhost_https_port: int = 0
    vhost_http_timeout: int = 60
    tcpmux_httpconnect_port: int = 0
    tcpmux_passthrough: bool = False
    subdomain_host: str = ""
    custom_404_page: str = ""
    ssh_bind_port: int = 0  # sshTunnelGateway.*: the gateway is off without a port
    ssh_private_key_file: str = ""
    ssh_auto_gen_private_key_path: str = "./.autogen_ssh_key"
    ssh_authorized_keys_file: str = ""
    auth_method: str = "token"  # or "oidc"
    token: str = ""  # also the encryption key with oidc, as frp
    auth_scopes: list[str] = field(default_factory=list)  # "HeartBeats", "NewWorkConns"
    oidc: OidcServerConfig = field(default_factory=OidcServerConfig)
    tcp_mux: bool = True
    tcp_mux_keepalive_interval: int = 30
    tcp_keepalive: int = 7200
    max_pool_count: int = 5
    heartbeat_timeout: int | None = None  # None: frp's default (90, or -1 with tcp_mux)
    tls_force: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_trusted_ca_file: str = ""
    allow_ports: list[tuple[int, int]] = field(default_factory=list)  # inclusive ranges
    max_ports_per_client: int = 0
    user_conn_timeout: int = 10
    udp_packet_size: int = 1500
    detailed_errors_to_client: bool = True
    nathole_analysis_data_reserve_hours: int = 7 * 24
    enable_prometheus: bool = False
    http_plugins: list[HttpPluginConfig] = field(default_factory=list)
    web: WebServerConfig = field(default_factory=WebServerConfig)
    log: LogConfig = field(default_factory=LogConfig)
    # pyfrp's own: connections pending login before the oldest are closed (0: a quarter of the
    # fd limit, net/prelogin.py); logins (and authenticated pings/work connections) whose
    # timestamp is further than this many seconds from frps's clock are refused (0: off, as frp)
    pre_login_limit: int = 0
    login_max_clock_skew: int = 0
    # pyfrp's own: processes serving the relay (server/supervisor.py); 1 runs in-process,
    # 0 (the default) one per core this process may run on
    workers: int = 0

    @property
    def effective_workers(self) -> int:
        return self.workers if self.workers > 0 else usable_cores()

    @property
    def effective_heartbeat_timeout(self) -> int:
        if self.heartbeat_timeout is not None:
            return self.heartbeat_timeout
        return -1 if self.tcp_mux else 90

    @property
    def effective_proxy_bind_addr(self) -> str:
        return self.proxy_bind_addr or self.bind_addr


@dataclass(slots=True)
class HealthCheckConfig:
    """``healthCheck.*``: frpc registers the proxy only while its local service answers."""

    type: str = ""  # "", "tcp", "http"
    timeout: int = 3  # seconds per check
    max_failed: int = 1  # failures in a row before the proxy is taken down
    interval: int = 10  # seconds between checks
    path: str = ""  # http: the path to GET (a 2xx is healthy)
    headers: list[dict[str, str]] = field(default_factory=list)  # http: {"name", "value"}


@dataclass(slots=True)
class ProxyConfig:
    name: str
    type: str = "tcp"  # one of PROXY_TYPES
    local_ip: str = "127.0.0.1"
    local_port: int = 0
    remote_port: int = 0  # tcp, udp
    use_encryption: bool = False
    use_compression: bool = False
    bandwidth_limit: str = ""  # "" or e.g. "1MB", "100KB"
    bandwidth_limit_mode: str = "client"  # client or server
    proxy_protocol_version: str = ""  # "", "v1", "v2": a PROXY header to the local service
    health_check: HealthCheckConfig = field(default_factory=HealthCheckConfig)
    group: str = ""
    group_key: str = ""
    custom_domains: list[str] = field(default_factory=list)  # http, https, tcpmux
    subdomain: str = ""
    locations: list[str] = field(default_factory=list)  # http
    http_user: str = ""  # http, tcpmux
    http_pwd: str = ""
    host_header_rewrite: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    route_by_http_user: str = ""
    multiplexer: str = ""  # tcpmux: "httpconnect"
    secret_key: str = ""  # stcp, xtcp, sudp
    allow_users: list[str] = field(default_factory=list)  # stcp, xtcp, sudp
    disable_assisted_addrs: bool = False  # xtcp: offer no local addresses to the peer
    metas: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    plugin: dict[str, Any] = field(default_factory=dict)  # {"type": ..., v1 plugin options}


@dataclass(slots=True)
class VisitorConfig:
    """An stcp/xtcp/sudp visitor."""

    name: str
    type: str = "stcp"  # one of VISITOR_TYPES
    use_encryption: bool = False
    use_compression: bool = False
    secret_key: str = ""
    server_user: str = ""
    server_name: str = ""
    bind_addr: str = "127.0.0.1"
    bind_port: int = 0  # may be < 0: no listener, only redirected connections
    # xtcp (zero values in a file mean frp's defaults, as its Complete() does)
    protocol: str = "quic"
    keep_tunnel_open: bool = False
    max_retries_an_hour: int = 8
    min_retry_interval: int = 90
    fallback_to: str = ""
    fallback_timeout_ms: int = 1000
    disable_assisted_addrs: bool = False
    plugin: dict[str, Any] = field(default_factory=dict)  # {"type": "virtual_net", ...}


@dataclass(slots=True)
class ClientConfig:
    server_addr: str = "0.0.0.0"
    server_port: int = 7000
    # pyfrp's own failover list, "host:port" each; empty: server_addr/server_port only
    server_addrs: list[str] = field(default_factory=list)
    protocol: str = "tcp"  # transport.protocol: tcp, kcp, quic, websocket, wss
    quic_max_idle_timeout: int = 30
    user: str = ""
    client_id: str = ""  # names the client on frps's dashboard instead of its run id
    auth_method: str = "token"  # or "oidc"
    token: str = ""  # also the encryption key with oidc, as frp
    auth_scopes: list[str] = field(default_factory=list)  # "HeartBeats", "NewWorkConns"
    oidc: OidcClientConfig = field(default_factory=OidcClientConfig)
    pool_count: int = 1
    wire_protocol: str = "v1"  # "v2": frp 0.69+ framing, AEAD control channel
    tcp_mux: bool = True
    tcp_mux_keepalive_interval: int = 30
    # frp >= 0.58 defaults to -1 (no Pings) with tcp_mux. pyfrpc pings every 30 s anyway:
    # frps < 0.39 requires it and every frps answers. An explicit value in a file wins.
    heartbeat_interval: int = 30
    heartbeat_timeout: int | None = None  # None: frp's default (90, or -1 with tcp_mux)
    tls_enable: bool = True
    disable_custom_tls_first_byte: bool = True
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_trusted_ca_file: str = ""
    tls_server_name: str = ""
    dial_server_timeout: int = 10
    connect_server_local_ip: str = ""  # the local address frpc dials frps from
    proxy_url: str = ""  # http:// or socks5:// proxy to frps; "" = $http_proxy, as frp
    dns_server: str = ""  # host[:port]: every lookup asks it (net/resolve.py)
    login_fail_exit: bool = True
    udp_packet_size: int = 1500
    nat_hole_stun_server: str = ""  # empty: frp's default, client/nathole.DEFAULT_STUN_SERVER
    metas: dict[str, str] = field(default_factory=dict)
    web: WebServerConfig = field(default_factory=WebServerConfig)
    virtual_net_address: str = ""  # virtualNet.address: the TUN device's address/prefix
    feature_gates: dict[str, bool] = field(default_factory=dict)
    store_path: str = ""  # store.path: proxies and visitors created through the admin API
    # pyfrp's own: processes carrying work connections (client/workers.py); 1 (the default,
    # as 0) is this one alone
    workers: int = 1
    log: LogConfig = field(default_factory=LogConfig)
    proxies: list[ProxyConfig] = field(default_factory=list)
    visitors: list[VisitorConfig] = field(default_factory=list)

    @property
    def effective_heartbeat_timeout(self) -> int:
        """frpc gives up on a control without Pongs after this long (-1: never); frp checks it
        whenever it is set, tcp_mux or not, and defaults it to -1 with tcp_mux."""
        if self.heartbeat_timeout is not None:
            return self.heartbeat_timeout
        return -1 if self.tcp_mux else 90
