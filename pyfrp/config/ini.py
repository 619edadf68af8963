"""frp's legacy INI format (pkg/config/legacy): ``[common]`` plus one section per proxy.

Parsed by hand rather than with configparser so that every error can name the file, line and
key, and so that values keep go-ini's rules as frp sets them (IgnoreInlineComment,
AllowBooleanKeys): no inline comments (``22 # ssh`` is a bad port in frp too), a bare key means
true, ``=`` or ``:`` separate key and value, and one pair of surrounding quotes is removed.

Sections become ``Settings`` keyed by the v1 names (schema.py holds the INI spelling of each),
so the model is built by the same code as for TOML, YAML and JSON. INI-only shapes are handled
here: ``meta_*``/``header_*``/``plugin_*`` prefixes, ``authenticate_heartbeats``, ``[plugin.X]``
server plugin sections, ``role = visitor`` sections and ``[range:NAME]`` port-range sections.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyfrp.config import schema
from pyfrp.config.decode import (
    ClientSettings,
    Notices,
    Settings,
    convert_text,
    go_ini_parses,
    proxy_schema,
    q,
    suggest,
    visitor_schema,
)
from pyfrp.config.formats import LineMap, same_line
from pyfrp.config.model import PROXY_TYPES, VISITOR_TYPES
from pyfrp.config.schema import Kind, Opt
from pyfrp.config.template import parse_range_numbers
from pyfrp.errors import ConfigError


@dataclass(slots=True)
class IniValue:
    value: str
    line: int


@dataclass(slots=True)
class IniSection:
    name: str
    line: int
    path: str
    values: dict[str, IniValue] = field(default_factory=dict)

    def where(self, key: str) -> str:
        line = self.values[key].line if key in self.values else self.line
        return f"{self.path}:{line}: [{self.name}] {key}"


def _unquote(v: str) -> str:
    for mark in ('"', "'", "`"):
        if len(v) >= 2 and v[0] == mark and v[-1] == mark and mark not in v[1:-1]:
            return v[1:-1]
    return v


def parse_ini(
    text: str, path: str, notices: Notices, lines: LineMap = same_line
) -> list[IniSection]:
    sections: list[IniSection] = []
    by_name: dict[str, IniSection] = {}
    current: IniSection | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        lineno = lines(n)
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            end = line.find("]")
            if end < 2:
                raise ConfigError(f"{path}:{lineno}: malformed section header {q(line)}")
            name = line[1:end].strip()
            current = by_name.get(name)
            if current is not None:  # go-ini reopens the section: its keys merge, the last wins
                notices.add(
                    f"section:{path}:{lineno}",
                    f"{path}:{lineno}: [{name}] repeats the section at line {current.line}; "
                    "merged into it, as frp does",
                )
                continue
            current = by_name[name] = IniSection(name, lineno, path)
            sections.append(current)
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut == 0:
            raise ConfigError(f"{path}:{lineno}: a key is missing before {q(line[0])}")
        key, value = (line, "true") if cut < 0 else (line[:cut].strip(), line[cut + 1 :].strip())
        if current is None:
            notices.add(
                f"default:{path}:{lineno}",
                f"{path}:{lineno}: {key}: outside of any section, ignored",
            )
            continue
        if key in current.values:
            first = current.values[key].line
            notices.add(
                f"dup:{path}:{lineno}",
                f"{path}:{lineno}: [{current.name}] {key}: "
                f"set twice (first at line {first}); the last value wins",
            )
        current.values[key] = IniValue(_unquote(value), lineno)
    return sections


# Prefix keys: "meta_var1 = x" -> metadatas.var1. (key prefix, v1 map key)
_Prefixes = dict[str, str]
_CLIENT_PREFIXES: _Prefixes = {
    "meta_": "metadatas",
    "oidc_additional_": "auth.oidc.additionalEndpointParams",  # frp: GetMapWithoutPrefix,
}
_PROXY_PREFIXES: _Prefixes = {"meta_": "metadatas"}
_HTTP_PREFIXES: _Prefixes = {"meta_": "metadatas", "header_": "requestHeaders.set"}

# legacy conversion.go: plugin_* INI params -> v1 plugin options.
_PLUGIN_PARAMS = {
    "plugin_local_addr": "localAddr",
    "plugin_host_header_rewrite": "hostHeaderRewrite",
    "plugin_http_user": "httpUser",
    "plugin_http_passwd": "httpPassword",
    "plugin_crt_path": "crtPath",
    "plugin_key_path": "keyPath",
    "plugin_user": "username",
    "plugin_passwd": "password",
    "plugin_local_path": "localPath",
    "plugin_strip_prefix": "stripPrefix",
    "plugin_unix_path": "unixPath",
}

Extra = Callable[[Settings, str, str], None]  # (settings, raw value, where)


def _scopes(scope: str) -> Extra:
    def add(s: Settings, raw: str, where: str) -> None:
        if convert_text(Opt(Kind.BOOL), raw, where):
            scopes = s.values.setdefault("auth.additionalScopes", [])
            scopes.append(scope)
            s.where.setdefault("auth.additionalScopes", where)

    return add


def _accept(s: Settings, raw: str, where: str) -> None:
    """INI keys with no effect in pyfrp or in frp (dashboard TLS without a dashboard port)."""


_AUTH_EXTRA: dict[str, Extra] = {
    "authenticate_heartbeats": _scopes("HeartBeats"),
    "authenticate_new_work_conns": _scopes("NewWorkConns"),
    "log_way": _accept,
}
_SERVER_EXTRA: dict[str, Extra] = {
    **_AUTH_EXTRA,
    "dashboard_tls_mode": _accept,
    "dashboard_tls_cert_file": _accept,
    "dashboard_tls_key_file": _accept,
}
_PROXY_EXTRA: dict[str, Extra] = {"role": _accept, "name": _accept, "type": _accept}


def _settings(
    sec: IniSection,
    flat: dict[str, Opt],
    notices: Notices,
    prefixes: _Prefixes,
    extra: dict[str, Extra],
    skip: tuple[str, ...] = (),
) -> Settings:
    index = schema.ini_index(flat)
    names = {v1: ini for ini, v1 in index.items()}
    for ini_key, v1_key in prefixes.items():
        names[v1_key] = f"{ini_key}*"
    s = Settings(
        origin=f"{sec.path}:{sec.line}",
        prefix=f"[{sec.name}] ",
        name_of=lambda k: names.get(k, k),
    )
    for key, iv in sec.values.items():
        where = sec.where(key)
        if key in skip:
            continue
        if key in index:
            canon = index[key]
            if not notices.strict and not go_ini_parses(flat[canon], iv.value):
                # go-ini leaves such a field at its default and Go frp starts.
                comment = ""
                if "#" in iv.value or ";" in iv.value:
                    comment = " (an INI comment must be on a line of its own)"
                notices.add(
                    f"value:{where}",
                    f"{where}: {q(iv.value)} is not {flat[canon].kind.value}; ignored, "
                    f"as frp does{comment}",
                )
                continue
            value = convert_text(flat[canon], iv.value, where)
            if value is not None:
                s.set(canon, value, where)
            continue
        if key in extra:
            extra[key](s, iv.value, where)
            continue
        for prefix, canon in prefixes.items():
            if key.startswith(prefix) and len(key) > len(prefix):
                s.values.setdefault(canon, {})[key[len(prefix) :]] = iv.value
                s.where.setdefault(canon, where)
                break
        else:
            known = [*index, *extra]
            v1 = flat.get(key)
            hint = (
                f" (did you mean {q(v1.ini)}? {q(key)} is its TOML/YAML/JSON name)"
                if (v1 and v1.ini)
                else suggest(key, known)
            )
            if not notices.strict:  # go-ini ignores it: Go frp starts such a file
                notices.add(f"unknown:{where}", f"{where}: unknown key{hint}, ignored")
                continue
            raise ConfigError(f"{where}: unknown key{hint}")
    return s


def _common(sections: list[IniSection], path: str) -> IniSection:
    for s in sections:
        if s.name == "common":
            return s
    raise ConfigError(f"{path}: invalid configuration file, not found [common] section")


# ----------------------------------------------------------------------------------- server


def _dashboard_tls(common: IniSection, s: Settings) -> None:
    """Legacy ``dashboard_tls_mode = true`` turns on the dashboard's TLS with the two files
    (frp's legacy conversion); without it they are ignored."""
    mode = common.values.get("dashboard_tls_mode")
    where = common.where("dashboard_tls_mode")
    if mode is None or not convert_text(Opt(Kind.BOOL), mode.value, where):
        return
    for ini_key, key in (
        ("dashboard_tls_cert_file", "webServer.tls.certFile"),
        ("dashboard_tls_key_file", "webServer.tls.keyFile"),
    ):
        v = common.values.get(ini_key)
        s.set(key, v.value if v is not None else "", common.where(ini_key))


def server_settings(text: str, path: str, notices: Notices, lines: LineMap) -> Settings:
    sections = parse_ini(text, path, notices, lines)
    common = _common(sections, path)
    s = _settings(common, schema.SERVER, notices, {}, _SERVER_EXTRA)
    _dashboard_tls(common, s)
    plugins: list[dict[str, Any]] = []
    item = schema.SERVER["httpPlugins"].item
    assert item is not None
    for sec in sections:
        if sec.name.startswith("plugin."):
            p = _settings(sec, item, notices, {}, {}).values
            plugins.append({"name": sec.name.removeprefix("plugin.").strip(), **p})
            s.where.setdefault("httpPlugins", f"{path}:{sec.line}: [{sec.name}]")
        elif sec.name != "common":
            notices.add(
                f"section:{path}:{sec.line}",
                f"{path}:{sec.line}: section [{sec.name}] has no meaning for frps, ignored",
            )
    if plugins:
        s.values["httpPlugins"] = plugins
    return s


# ----------------------------------------------------------------------------------- client


def client_settings(text: str, path: str, notices: Notices, lines: LineMap) -> ClientSettings:
    sections = parse_ini(text, path, notices, lines)
    common = _settings(
        _common(sections, path), schema.CLIENT, notices, _CLIENT_PREFIXES, _AUTH_EXTRA
    )
    out = ClientSettings(common)
    add_proxy_sections(out, [s for s in sections if s.name != "common"], notices)
    return out


def add_proxy_sections(out: ClientSettings, sections: list[IniSection], notices: Notices) -> None:
    """Proxy and visitor sections (of the main file or an included one) -> ``out``."""
    seen: dict[str, str] = {}
    for sec in _expand_ranges(sections):
        if sec.name == "common":
            notices.add(
                f"section:{sec.path}:{sec.line}",
                f"{sec.path}:{sec.line}: [common] in an included file is ignored",
            )
            continue
        if sec.name in seen:
            raise ConfigError(
                f"{sec.path}:{sec.line}: proxy name [{sec.name}] is duplicated "
                f"(first at line {seen[sec.name]})"
            )
        seen[sec.name] = str(sec.line)
        role = sec.values["role"].value if "role" in sec.values else "server"
        if role == "visitor":
            out.visitors.append(_visitor(sec, notices))
        elif role in ("server", ""):
            out.proxies.append(_proxy(sec, notices))
        else:
            raise ConfigError(
                f"{sec.where('role')}: proxy {sec.name} role should be 'server' or 'visitor'"
            )


def _proxy(sec: IniSection, notices: Notices) -> Settings:
    ptype = sec.values["type"].value if "type" in sec.values else "tcp"
    if ptype not in PROXY_TYPES:
        raise ConfigError(
            f"{sec.where('type')}: unknown proxy type {q(ptype)} (one of {', '.join(PROXY_TYPES)})"
        )
    prefixes = _HTTP_PREFIXES if ptype == "http" else _PROXY_PREFIXES
    plugin_keys = [k for k in sec.values if k.startswith("plugin_")]
    s = _settings(
        sec, proxy_schema(ptype), notices, prefixes, _PROXY_EXTRA, skip=("plugin", *plugin_keys)
    )
    s.set("name", sec.name, f"{sec.path}:{sec.line}: [{sec.name}]")
    s.set("type", ptype, sec.where("type"))
    if "plugin" in sec.values:
        s.set("plugin", _plugin(sec, plugin_keys), sec.where("plugin"))
    elif plugin_keys:
        notices.add(
            f"plugin:{sec.path}:{sec.line}",
            f"{sec.where(plugin_keys[0])}: plugin parameters without plugin = ..., ignored",
        )
    return s


def _plugin(sec: IniSection, keys: list[str]) -> dict[str, Any]:
    ptype = sec.values["plugin"].value
    if ptype not in schema.PLUGINS:
        raise ConfigError(
            f"{sec.where('plugin')}: unknown plugin type {q(ptype)} "
            f"(one of {', '.join(schema.PLUGINS)})"
        )
    out: dict[str, Any] = {"type": ptype}
    for k in keys:
        value = sec.values[k].value
        if k.startswith("plugin_header_") and len(k) > len("plugin_header_"):
            out.setdefault("requestHeaders.set", {})[k.removeprefix("plugin_header_")] = value
        elif k in _PLUGIN_PARAMS:
            out[_PLUGIN_PARAMS[k]] = value
    return out


def _visitor(sec: IniSection, notices: Notices) -> Settings:
    vtype = sec.values["type"].value if "type" in sec.values else ""
    if not vtype:
        raise ConfigError(
            f"{sec.where('type')}: missing: a visitor needs a type "
            f"(one of {', '.join(VISITOR_TYPES)})"
        )
    if vtype not in VISITOR_TYPES:
        raise ConfigError(
            f"{sec.where('type')}: unknown visitor type {q(vtype)} "
            f"(one of {', '.join(VISITOR_TYPES)})"
        )
    s = _settings(sec, visitor_schema(vtype), notices, {}, _PROXY_EXTRA)
    s.set("name", sec.name, f"{sec.path}:{sec.line}: [{sec.name}]")
    s.set("type", vtype, sec.where("type"))
    return s


_RANGE = re.compile(r"^range:")


def _expand_ranges(sections: list[IniSection]) -> list[IniSection]:
    """``[range:web]`` with ``local_port = 6010-6012`` -> sections web_0, web_1, web_2
    (legacy client.go renderRangeProxyTemplates)."""
    out: list[IniSection] = []
    for sec in sections:
        if not _RANGE.match(sec.name):
            out.append(sec)
            continue
        prefix = sec.name.removeprefix("range:").strip()
        local, remote = sec.values.get("local_port"), sec.values.get("remote_port")
        if local is None or remote is None or not local.value or not remote.value:
            raise ConfigError(
                f"{sec.path}:{sec.line}: [{sec.name}] local_port or remote_port is empty"
            )
        try:
            locals_ = parse_range_numbers(local.value)
            remotes = parse_range_numbers(remote.value)
        except ValueError as exc:
            raise ConfigError(f"{sec.path}:{sec.line}: [{sec.name}] {exc}") from None
        if len(locals_) != len(remotes):
            raise ConfigError(
                f"{sec.path}:{sec.line}: [{sec.name}] local ports number should "
                "be same with remote ports number"
            )
        for i, (lp, rp) in enumerate(zip(locals_, remotes, strict=True)):
            values = dict(sec.values)
            values["local_port"] = IniValue(str(lp), local.line)
            values["remote_port"] = IniValue(str(rp), remote.line)
            out.append(IniSection(f"{prefix}_{i}", sec.line, sec.path, values))
    return out
