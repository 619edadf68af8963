"""Command-line configuration: frps run from flags alone, and frpc's quick commands
(``frpc tcp -s host -P 7000 -l 22 -r 6000 -n ssh``). Names, short forms and the defaults that
differ from a file's come from frp's pkg/config/flags.go. Values are converted and checked by
the same code as INI values, and land in the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyfrp.config import schema
from pyfrp.config.decode import (
    Notices,
    Settings,
    Strict,
    build_client,
    build_server,
    convert_text,
    finish_client,
    proxy_schema,
    visitor_schema,
)
from pyfrp.config.model import ClientConfig, ServerConfig
from pyfrp.config.schema import Kind, Opt


@dataclass(frozen=True, slots=True)
class Flag:
    name: str  # frp's spelling; "-" and "_" are interchangeable on the command line
    key: str | None  # v1 key; None: accepted, no effect
    short: str = ""
    default: str | None = None  # frp's flag default where it differs from a file's
    boolean: bool = False  # "--flag" alone means true; "--flag=false"

    def opt(self, flat: dict[str, Opt]) -> Opt:
        return flat[self.key] if self.key else Opt(Kind.STR)


def BoolFlag(name: str, key: str | None) -> Flag:
    return Flag(name, key, boolean=True)


SERVER_FLAGS: tuple[Flag, ...] = (
    Flag("bind_addr", "bindAddr"),
    Flag("bind_port", "bindPort", "p"),
    Flag("kcp_bind_port", "kcpBindPort"),
    Flag("quic_bind_port", "quicBindPort"),
    Flag("proxy_bind_addr", "proxyBindAddr", default="0.0.0.0"),
    Flag("vhost_http_port", "vhostHTTPPort"),
    Flag("vhost_https_port", "vhostHTTPSPort"),
    Flag("vhost_http_timeout", "vhostHTTPTimeout"),
    Flag("dashboard_addr", "webServer.addr"),
    Flag("dashboard_port", "webServer.port"),
    Flag("dashboard_user", "webServer.user"),
    Flag("dashboard_pwd", "webServer.password"),
    BoolFlag("enable_prometheus", "enablePrometheus"),
    Flag("log_file", "log.to"),
    Flag("log_level", "log.level"),
    Flag("log_max_days", "log.maxDays"),
    BoolFlag("disable_log_color", "log.disablePrintColor"),
    Flag("token", "auth.token", "t"),
    Flag("subdomain_host", "subDomainHost"),
    Flag("allow_ports", "allowPorts"),
    Flag("max_ports_per_client", "maxPortsPerClient"),
    BoolFlag("tls_only", "transport.tls.force"),
    Flag("dashboard_tls_cert_file", "webServer.tls.certFile"),
    Flag("dashboard_tls_key_file", "webServer.tls.keyFile"),
    BoolFlag("dashboard_tls_mode", None),
)

CLIENT_FLAGS: tuple[Flag, ...] = (
    Flag("server_addr", "serverAddr", "s", default="127.0.0.1"),
    Flag("server_port", "serverPort", "P"),
    Flag("protocol", "transport.protocol", "p"),
    Flag("log_level", "log.level"),
    Flag("log_file", "log.to"),
    Flag("log_max_days", "log.maxDays"),
    BoolFlag("disable_log_color", "log.disablePrintColor"),
    Flag("tls_server_name", "transport.tls.serverName"),
    Flag("dns_server", "dnsServer"),
    BoolFlag("tls_enable", "transport.tls.enable"),
    Flag("user", "user", "u"),
    Flag("client-id", "clientID"),
    Flag("token", "auth.token", "t"),
)

_PROXY_BASE: tuple[Flag, ...] = (
    Flag("proxy_name", "name", "n"),
    Flag("metadatas", "metadatas"),
    Flag("annotations", "annotations"),
    Flag("local_ip", "localIP", "i"),
    Flag("local_port", "localPort", "l"),
    BoolFlag("ue", "transport.useEncryption"),
    BoolFlag("uc", "transport.useCompression"),
    Flag("bandwidth_limit_mode", "transport.bandwidthLimitMode"),
    Flag("bandwidth_limit", "transport.bandwidthLimit"),
)
_DOMAIN = (Flag("custom_domain", "customDomains", "d"), Flag("sd", "subdomain"))
_SECRET = (Flag("sk", "secretKey"), Flag("allow_users", "allowUsers"))

PROXY_FLAGS: dict[str, tuple[Flag, ...]] = {
    "tcp": (*_PROXY_BASE, Flag("remote_port", "remotePort", "r")),
    "udp": (*_PROXY_BASE, Flag("remote_port", "remotePort", "r")),
    "http": (
        *_PROXY_BASE,
        *_DOMAIN,
        Flag("locations", "locations"),
        Flag("http_user", "httpUser"),
        Flag("http_pwd", "httpPassword"),
        Flag("host_header_rewrite", "hostHeaderRewrite"),
    ),
    "https": (*_PROXY_BASE, *_DOMAIN),
    "tcpmux": (
        *_PROXY_BASE,
        *_DOMAIN,
        Flag("mux", "multiplexer"),
        Flag("http_user", "httpUser"),
        Flag("http_pwd", "httpPassword"),
    ),
    "stcp": (*_PROXY_BASE, *_SECRET),
    "sudp": (*_PROXY_BASE, *_SECRET),
    "xtcp": (*_PROXY_BASE, *_SECRET),
}
VISITOR_TYPES_WITH_COMMAND = ("stcp", "sudp", "xtcp")
VISITOR_FLAGS: tuple[Flag, ...] = (
    Flag("visitor_name", "name", "n"),
    BoolFlag("ue", "transport.useEncryption"),
    BoolFlag("uc", "transport.useCompression"),
    Flag("server_user", "serverUser"),
    Flag("server_name", "serverName"),
    Flag("sk", "secretKey"),
    Flag("bind_addr", "bindAddr"),
    Flag("bind_port", "bindPort"),
)


# What ``-h`` says of each flag, and the default it shows, in frp 0.70.1's words.
FLAG_HELP: dict[str, tuple[str, str]] = {
    # frps
    "bind-addr": ("bind address", '"0.0.0.0"'),
    "bind-port": ("bind port", "7000"),
    "kcp-bind-port": ("kcp bind udp port", ""),
    "quic-bind-port": ("quic bind udp port", ""),
    "proxy-bind-addr": ("proxy bind address", '"0.0.0.0"'),
    "vhost-http-port": ("vhost http port", ""),
    "vhost-https-port": ("vhost https port", ""),
    "vhost-http-timeout": ("vhost http response header timeout", "60"),
    "dashboard-addr": ("dashboard address", '"0.0.0.0"'),
    "dashboard-port": ("dashboard port", ""),
    "dashboard-user": ("dashboard user", '"admin"'),
    "dashboard-pwd": ("dashboard password", '"admin"'),
    "enable-prometheus": ("enable prometheus dashboard", ""),
    "subdomain-host": ("subdomain host", ""),
    "allow-ports": ("allow ports", ""),
    "max-ports-per-client": ("max ports per client", ""),
    "tls-only": ("frps tls only", ""),
    "dashboard-tls-cert-file": ("dashboard tls cert file", ""),
    "dashboard-tls-key-file": ("dashboard tls key file", ""),
    "dashboard-tls-mode": ("if enable dashboard tls mode", ""),
    # both
    "log-file": ("console or file path", '"console"'),
    "log-level": ("log level", '"info"'),
    "log-max-days": ("log file reversed days", "3"),
    "disable-log-color": ("disable log color in console", ""),
    "token": ("auth token", ""),
    # frpc
    "server-addr": ("frp server's address", '"127.0.0.1"'),
    "server-port": ("frp server's port", "7000"),
    "protocol": ("optional values are [tcp kcp quic websocket wss]", '"tcp"'),
    "tls-server-name": ("specify the custom server name of tls certificate", ""),
    "dns-server": ("specify dns server instead of using system default one", ""),
    "tls-enable": ("enable frpc tls", "true"),
    "user": ("user", ""),
    "client-id": ("unique identifier for this frpc instance", ""),
    # proxies
    "proxy-name": ("proxy name", ""),
    "metadatas": ("metadata key-value pairs (e.g., key1=value1,key2=value2)", "[]"),
    "annotations": ("annotation key-value pairs (e.g., key1=value1,key2=value2)", "[]"),
    "local-ip": ("local ip", '"127.0.0.1"'),
    "local-port": ("local port", ""),
    "ue": ("use encryption", ""),
    "uc": ("use compression", ""),
    "bandwidth-limit-mode": ("bandwidth limit mode", '"client"'),
    "bandwidth-limit": ("bandwidth limit (e.g. 100KB or 1MB)", ""),
    "remote-port": ("remote port", ""),
    "custom-domain": ("custom domains", ""),
    "sd": ("sub domain", ""),
    "locations": ("locations", ""),
    "http-user": ("http auth user", ""),
    "http-pwd": ("http auth password", ""),
    "host-header-rewrite": ("host header rewrite", ""),
    "mux": ("multiplexer", ""),
    "sk": ("secret key", ""),
    "allow-users": ("allow visitor users", ""),
}
# pflag's name for the type of a flag's value.
_TYPE_WORD = {
    Kind.INT: "int",
    Kind.PORT: "int",
    Kind.STR_LIST: "strings",
    Kind.STR_MAP: "stringToString",
}


# Where frps's or a visitor command's words differ from the table above.
_SCOPE_HELP: dict[str, dict[str, tuple[str, str]]] = {
    "frps": {"log-file": ("log file", '"console"'), "log-max-days": ("log max days", "3")},
    "visitor": {
        "bind-addr": ("bind addr", ""),
        "bind-port": ("bind port", ""),
        "server-name": ("server name", ""),
        "server-user": ("server user", ""),
        "visitor-name": ("visitor name", ""),
    },
}


def flag_help(f: Flag, flat: dict[str, Opt], scope: str = "") -> tuple[str, str]:
    """(type word, help text with its default) of ``f`` as ``frps -h``/``frpc tcp -h`` show it;
    ``scope``: "frps" or "visitor" where their words differ."""
    name = f.name.replace("_", "-")
    text, default = _SCOPE_HELP.get(scope, {}).get(name) or FLAG_HELP.get(name, ("", ""))
    if default:
        text += f" (default {default})"
    kind = f.opt(flat).kind
    return ("" if f.boolean else _TYPE_WORD.get(kind, "string")), text


def _settings(
    given: dict[str, str], flags: tuple[Flag, ...], flat: dict[str, Opt], what: str
) -> Settings:
    by_key = {f.key: f"--{f.name}" for f in flags if f.key}
    s = Settings(origin="command line", name_of=lambda k: by_key.get(k, k))
    for f in flags:
        raw = given.get(f.name, f.default)
        if raw is None or f.key is None:
            continue
        where = f"command line: --{f.name}"
        value = convert_text(f.opt(flat), raw, where)
        if value is not None:
            s.set(f.key, value, where)
    return s


def server_from_flags(
    given: dict[str, str], strict: Strict = None
) -> tuple[ServerConfig, list[str]]:
    """frps without ``-c``: ``given`` maps flag names to their text."""
    notices = Notices(strict)
    cfg = build_server(_settings(given, SERVER_FLAGS, schema.SERVER, "frps"), notices)
    return cfg, notices.lines()


def client_from_flags(
    ptype: str,
    common: dict[str, str],
    proxy: dict[str, str],
    strict: Strict = None,
    visitor: bool = False,
) -> tuple[ClientConfig, list[str]]:
    """``frpc <type> ...``: one proxy of ``ptype`` from flags; ``frpc <type> visitor ...``
    (``visitor``): one visitor, with frpc's default server settings as in frp."""
    notices = Notices(strict)
    cs = _settings(common, CLIENT_FLAGS, schema.CLIENT, "frpc")
    if visitor:
        ps = _settings(proxy, VISITOR_FLAGS, visitor_schema(ptype), ptype)
    else:
        ps = _settings(proxy, PROXY_FLAGS[ptype], proxy_schema(ptype), ptype)
    ps.values["type"] = ptype
    cfg = build_client(cs, notices)
    finish_client(cfg, cs, [] if visitor else [ps], [ps] if visitor else [], notices)
    return cfg, notices.lines()
