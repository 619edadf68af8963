"""Reading a configuration file into the typed model (pkg/config/load.go).

``load_server_config(path)`` and ``load_client_config(path)`` return ``(config, notices)``:
the model, and the start-up warnings about options pyfrp does not implement yet (each is
logged once; ``strict=True`` turns them into errors). Every problem with the file is a
ConfigError whose text names the file, the line and the key.

Steps, as in frp: read the file; detect legacy INI on the raw text; render the Go template
(``{{ .Envs.NAME }}``); parse; check every key against schema.py; build the model; for frpc,
load ``includes``, reject duplicate names and apply ``start``/``enabled``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from typing import Any

from pyfrp.config import ini, schema
from pyfrp.config.decode import (
    ClientSettings,
    Notices,
    Settings,
    Strict,
    Walker,
    build_client,
    build_proxy,
    build_server,
    build_visitor,
    check_type,
    finish_client,
    proxy_schema,
    visitor_schema,
)
from pyfrp.config.formats import (
    Document,
    LineMap,
    is_legacy_ini,
    line_map,
    parse_v1,
    read_text,
)
from pyfrp.config.model import (
    PROXY_TYPES,
    VISITOR_TYPES,
    ClientConfig,
    ProxyConfig,
    ServerConfig,
    VisitorConfig,
)
from pyfrp.config.template import render
from pyfrp.errors import ConfigError

Envs = Mapping[str, str]


def _rendered(path: str, envs: Envs | None) -> tuple[str, LineMap, bool]:
    """The file rendered as a template, the map back to its lines, and whether it is INI."""
    text = read_text(path)
    out, lines = render(text, os.environ if envs is None else envs, path)
    return out, line_map(lines), is_legacy_ini(text)


def load_server_config(
    path: str,
    strict: Strict = None,
    envs: Envs | None = None,
    unsupported_ok: bool = False,
    allow_unsafe: frozenset[str] = frozenset(),
) -> tuple[ServerConfig, list[str]]:
    notices = Notices(strict, unsupported_ok, allow_unsafe)
    text, lines, legacy = _rendered(path, envs)
    if legacy:
        s = ini.server_settings(text, path, notices, lines)
    else:
        w = Walker(parse_v1(text, path, lines), notices)
        s = w.settings(())
        w.walk(w.doc.data, schema.SERVER, (), s)
    return build_server(s, notices), notices.lines()


def load_client_config(
    path: str,
    strict: Strict = None,
    envs: Envs | None = None,
    unsupported_ok: bool = False,
    allow_unsafe: frozenset[str] = frozenset(),
) -> tuple[ClientConfig, list[str]]:
    notices = Notices(strict, unsupported_ok, allow_unsafe)
    text, lines, legacy = _rendered(path, envs)
    if legacy:
        cs = ini.client_settings(text, path, notices, lines)
    else:
        cs = _v1_client(parse_v1(text, path, lines), notices)
    for included in _includes(cs.common):
        itext, ilines, _ = _rendered(included, envs)
        if legacy:
            sections = ini.parse_ini(itext, included, notices, ilines)
            ini.add_proxy_sections(cs, sections, notices)
        else:
            _v1_client(parse_v1(itext, included, ilines), notices, into=cs)
    cfg = build_client(cs.common, notices)
    return finish_client(cfg, cs.common, cs.proxies, cs.visitors, notices), notices.lines()


def server_from_v1(data: dict[str, Any], origin: str) -> tuple[ServerConfig, list[str]]:
    """frps's settings from a v1 table built in memory (the Python API). Raises ConfigError."""
    notices = Notices(None, False)
    w = Walker(Document(origin, "json", data), notices)
    s = w.settings(())
    w.walk(data, schema.SERVER, (), s)
    return build_server(s, notices), notices.lines()


def client_from_v1(data: dict[str, Any], origin: str) -> tuple[ClientConfig, list[str]]:
    """frpc's settings from a v1 table built in memory (the Python API). Raises ConfigError."""
    notices = Notices(None, False)
    cs = _v1_client(Document(origin, "json", data), notices)
    cfg = build_client(cs.common, notices)
    return finish_client(cfg, cs.common, cs.proxies, cs.visitors, notices), notices.lines()


def proxy_from_v1(item: dict[str, Any], origin: str) -> ProxyConfig:
    """One proxy from its v1 table (a JSON object of the store API). Raises ConfigError."""
    notices = Notices(None, False)
    cs = _v1_client(Document(origin, "json", {"proxies": [item]}), notices)
    return build_proxy(cs.proxies[0], notices)


def visitor_from_v1(item: dict[str, Any], origin: str) -> VisitorConfig:
    notices = Notices(None, False)
    cs = _v1_client(Document(origin, "json", {"visitors": [item]}), notices)
    return build_visitor(cs.visitors[0], notices)


def _v1_client(
    doc: Document, notices: Notices, into: ClientSettings | None = None
) -> ClientSettings:
    """A v1 client file -> settings. With ``into`` (an included file) only its proxies and
    visitors are kept, as frp does; anything else in it is reported and ignored."""
    w = Walker(doc, notices)
    common = w.settings(())
    w.walk(doc.data, schema.CLIENT, (), common)
    proxies = common.values.pop("proxies", [])
    visitors = common.values.pop("visitors", [])
    out = into or ClientSettings(common)
    if into is not None:
        for key in common.values:
            notices.add(
                f"include:{doc.path}:{key}",
                f"{common.at(key)}: only proxies and "
                "visitors are read from an included file, ignored",
            )
    section = _key(doc.data, "proxies") or "proxies"
    for i, item in enumerate(proxies):
        out.proxies.append(_typed(w, item, (section, i), PROXY_TYPES, "proxy"))
    section = _key(doc.data, "visitors") or "visitors"
    for i, item in enumerate(visitors):
        out.visitors.append(_typed(w, item, (section, i), VISITOR_TYPES, "visitor"))
    return out


def _key(data: dict[str, Any], name: str) -> str | None:
    """The spelling of ``name`` in ``data`` (Go's JSON matches keys case-insensitively)."""
    return next((k for k in data if k.lower() == name.lower()), None)


def _typed(
    w: Walker, item: Any, key: tuple[str, int], kinds: tuple[str, ...], what: str
) -> Settings:
    where = w.doc.where(key)
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a table of {what} options")
    s = w.settings(key)
    tkey = _key(item, "type")
    ptype = item.get(tkey) if tkey else None
    if ptype is not None and not isinstance(ptype, str):
        raise ConfigError(f"{w.doc.where((*key, tkey or 'type'))}: expected a string")
    if tkey:
        s.where["type"] = w.doc.where((*key, tkey))
    s.values["type"] = ptype or ""
    check_type(s, kinds, what)
    flat = proxy_schema(str(ptype)) if what == "proxy" else visitor_schema(str(ptype))
    w.walk(item, flat, key, s)
    return s


def _includes(common: Settings) -> list[str]:
    """Files matched by ``includes`` patterns. Like frp, a relative pattern is relative to the
    working directory, and only the pattern's last element may hold wildcards."""
    out: list[str] = []
    for pattern in common.values.get("includes") or []:
        directory = os.path.abspath(os.path.dirname(pattern) or ".")
        if not os.path.isdir(directory):
            raise ConfigError(f"{common.at('includes')}: directory of {pattern} does not exist")
        base = os.path.basename(pattern)
        for name in sorted(os.listdir(directory)):
            full = os.path.join(directory, name)
            if os.path.isfile(full) and fnmatch.fnmatchcase(name, base):
                out.append(full)
    return out
