"""From parsed files to the typed model: type checks, unknown keys, unsupported options, and the
checks frp's validation package does (pkg/config/v1/validation).

Both formats first become ``Settings``: a flat ``{v1 key: typed value}`` dict for one scope (the
server, the client's common part, one proxy, one visitor), plus where each key was written, in
the spelling of its format (``frpc.toml:7: proxies[0].localPort`` or ``frpc.ini:7: [ssh]
local_port``). Everything after that is format-blind, which is what makes the four formats
produce equal models.

Strictness has three levels, chosen by ``--strict_config``:

* ``None`` (no flag, the default): unknown keys are errors in TOML/YAML/JSON, as in frp (whose
  ``--strict_config`` defaults to true), and warnings in INI (go-ini ignores them); options pyfrp
  does not implement are errors, except those that only add something (a dashboard), which are
  reported once as "not supported yet".
* ``True`` (``--strict_config``): those additive options and INI's unknown keys are errors too.
* ``False`` (``--strict_config=false``): unknown keys are reported and ignored, as frp ignores them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyfrp.config import schema
from pyfrp.config.formats import Document, KeyPath, dotted
from pyfrp.config.model import (
    PROXY_TYPES,
    VISITOR_TYPES,
    ClientConfig,
    HttpPluginConfig,
    ProxyConfig,
    ServerConfig,
    VisitorConfig,
)
from pyfrp.config.schema import Kind, Opt
from pyfrp.errors import ConfigError

Strict = bool | None


def q(text: str) -> str:
    """A value quoted for a message, the way TOML/JSON write strings."""
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------------- notices


@dataclass(slots=True)
class Notices:
    """Start-up warnings, one per option even when many proxies set it."""

    strict: Strict = None
    # Report every unimplemented option as a warning (tests of the loaders, which parse files
    # of every feature); pyfrps and pyfrpc never set it.
    unsupported_ok: bool = False
    # --allow-unsafe: features that run things on this machine (frp: TokenSourceExec)
    allow_unsafe: frozenset[str] = frozenset()
    _seen: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, ident: str, text: str) -> None:
        entry = self._seen.get(ident)
        if entry is None:
            self._seen[ident] = [text, 0]
        else:
            entry[1] += 1

    def unsupported(
        self, ident: str, where: str, subject: str = "", then: str = "ignored", adds: bool = False
    ) -> None:
        """Report ``where`` (``file:line: key``) as not implemented: an error, or, for a feature
        that only ``adds`` something, a warning (an error when strict)."""
        what = f"{subject} " if subject else ""
        if not adds and not self.unsupported_ok:
            raise ConfigError(f"{where}: {what}not supported yet by pyfrp")
        if self.strict:
            raise ConfigError(
                f"{where}: {what}not supported yet by pyfrp (rejected by --strict_config)"
            )
        self.add(ident, f"{where}: {what}not supported yet, {then}")

    def lines(self) -> list[str]:
        return [f"{text} (and {more} more)" if more else text for text, more in self._seen.values()]


# -------------------------------------------------------------------------------- settings


def _same(key: str) -> str:
    return key


@dataclass(slots=True)
class Settings:
    """One scope's options, flat and typed, with where each came from."""

    origin: str  # "file:line" of the table or section
    prefix: str = ""  # "proxies[2]." or "[ssh] ": how this format qualifies a key here
    name_of: Callable[[str], str] = _same  # v1 key -> this format's name for it
    values: dict[str, Any] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # v1 key -> "file:line: key"

    def spell(self, key: str) -> str:
        """``key`` qualified the way this format writes it: ``proxies[2].localPort``."""
        return self.prefix + self.name_of(key)

    def at(self, key: str) -> str:
        """``file:line: key`` for a key, or for the scope itself when the key is missing."""
        return self.where.get(key) or f"{self.origin}: {self.spell(key)}"

    def set(self, key: str, value: Any, where: str) -> None:
        self.values[key] = value
        self.where[key] = where


@dataclass(slots=True)
class ClientSettings:
    """A frpc file (and its includes) before the model is built."""

    common: Settings
    proxies: list[Settings] = field(default_factory=list)
    visitors: list[Settings] = field(default_factory=list)


def suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        lower = {k.lower(): k for k in known}
        close = difflib.get_close_matches(key.lower(), list(lower), n=1, cutoff=0.6)
        close = [lower[c] for c in close]
    return f" (did you mean {q(close[0])}?)" if close else ""


# ------------------------------------------------------------------------------ conversion


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {q(value)}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _expect(opt: Opt, value: Any, where: str) -> ConfigError:
    return ConfigError(f"{where}: expected {opt.kind.value}, got {_describe(value)}")


def check_port(n: int, where: str) -> int:
    if not 0 <= n <= 65535:
        raise ConfigError(f"{where}: port number {n} must be in the range 0..65535")
    return n


_BANDWIDTH = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(MB|KB)\s*$")


def check_bandwidth(s: str, where: str) -> str:
    if s.strip() and not _BANDWIDTH.match(s):
        raise ConfigError(f"{where}: invalid bandwidth {q(s)}: use a number and MB or KB, like 1MB")
    return s.strip()


def _choices(opt: Opt, value: Any, where: str) -> None:
    if not opt.choices:
        return
    for v in value if isinstance(value, list) else [value]:
        if v and v not in opt.choices:
            raise ConfigError(f"{where}: {q(v)} is not one of {', '.join(map(q, opt.choices))}")


def _int(opt: Opt, value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expect(opt, value, where)
    if isinstance(value, float):
        if not value.is_integer():
            raise _expect(opt, value, where)
        value = int(value)
    return int(value)


def convert_v1(opt: Opt, value: Any, where: str) -> Any:
    """A TOML/YAML/JSON value -> the Python value of ``opt``, with Go's encoding/json strictness
    (no string for an int, no number for a string)."""
    k = opt.kind
    if k is Kind.STR:
        if not isinstance(value, str):
            raise _expect(opt, value, where)
        out: Any = value
    elif k is Kind.INT:
        out = _int(opt, value, where)
    elif k is Kind.PORT:
        out = check_port(_int(opt, value, where), where)
    elif k is Kind.BOOL:
        if not isinstance(value, bool):
            raise _expect(opt, value, where)
        out = value
    elif k is Kind.STR_LIST:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _expect(opt, value, where)
        out = list(value)
    elif k in (Kind.STR_MAP, Kind.BOOL_MAP):
        want = str if k is Kind.STR_MAP else bool
        if not isinstance(value, dict) or not all(isinstance(v, want) for v in value.values()):
            raise _expect(opt, value, where)
        out = {str(key): v for key, v in value.items()}
    elif k is Kind.BANDWIDTH:
        if not isinstance(value, str):
            raise _expect(opt, value, where)
        out = check_bandwidth(value, where)
    else:  # structured kinds are walked by Walker
        raise AssertionError(k)
    _choices(opt, out, where)
    return out


_INI_TRUE = {"1", "t", "T", "true", "TRUE", "True", "y", "Y", "yes", "YES", "Yes", "on", "ON", "On"}
_INI_FALSE = {
    "0",
    "f",
    "F",
    "false",
    "FALSE",
    "False",
    "n",
    "N",
    "no",
    "NO",
    "No",
    "off",
    "OFF",
    "Off",
}


def parse_ini_int(raw: str, opt: Opt, where: str) -> int:
    try:
        return int(raw, 0)
    except ValueError:
        try:
            return int(raw, 10)  # Go's base-0 ParseInt reads "010" as octal; close enough
        except ValueError:
            raise ConfigError(f"{where}: expected {opt.kind.value}, got {q(raw)}") from None


def go_ini_parses(opt: Opt, raw: str) -> bool:
    """Whether go-ini can read ``raw`` for ``opt``: it leaves a number or boolean it cannot
    parse at the field's default, silently (``local_port = 22 # ssh`` is port 0 in Go frp)."""
    v = raw.strip()
    if not v:
        return True
    if opt.kind in (Kind.INT, Kind.PORT):
        for base in (0, 10):
            try:
                int(v, base)
                return True
            except ValueError:
                pass
        return False
    if opt.kind is Kind.BOOL:
        return v in _INI_TRUE or v in _INI_FALSE
    return True


def parse_port_ranges(raw: str, where: str) -> list[tuple[int, int]]:
    """INI/flag ``2000-3000,3001`` -> [(2000, 3000), (3001, 3001)] (types.PortsRangeSlice)."""
    out: list[tuple[int, int]] = []
    for part in raw.split(","):
        bounds = [b.strip() for b in part.split("-")]
        try:
            nums = [int(b, 10) for b in bounds]
        except ValueError:
            raise ConfigError(f"{where}: range number is invalid: {q(part.strip())}") from None
        if len(nums) == 1:
            out.append((check_port(nums[0], where), nums[0]))
        elif len(nums) == 2 and nums[0] <= nums[1]:
            out.append((check_port(nums[0], where), check_port(nums[1], where)))
        else:
            raise ConfigError(f"{where}: range number is invalid: {q(part.strip())}")
    return out


def convert_text(opt: Opt, raw: str, where: str) -> Any:
    """An INI or command-line string -> the Python value of ``opt``. None: empty, so unset
    (go-ini leaves a field alone when its value is empty)."""
    k = opt.kind
    if k is Kind.STR:
        out: Any = raw
    elif not raw.strip():
        return None
    elif k is Kind.INT:
        out = parse_ini_int(raw.strip(), opt, where)
    elif k is Kind.PORT:
        out = check_port(parse_ini_int(raw.strip(), opt, where), where)
    elif k is Kind.BOOL:
        if raw.strip() in _INI_TRUE:
            out = True
        elif raw.strip() in _INI_FALSE:
            out = False
        else:
            raise ConfigError(f"{where}: expected a boolean (true/false), got {q(raw)}")
    elif k is Kind.STR_LIST:
        out = [p.strip() for p in raw.split(",") if p.strip()]
    elif k is Kind.PORT_RANGES:
        out = parse_port_ranges(raw, where)
    elif k is Kind.BANDWIDTH:
        out = check_bandwidth(raw, where)
    elif k is Kind.STR_MAP:  # pflag StringToString: "k1=v1,k2=v2"
        out = {}
        for pair in raw.split(","):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{where}: {q(pair)} is not a key=value pair")
            out[key.strip()] = value.strip()
    else:
        raise AssertionError(k)
    _choices(opt, out, where)
    return out


# ------------------------------------------------------------------------------- v1 walker


class Walker:
    """Walks one v1 document's nested tables against a schema tree into ``Settings``."""

    def __init__(self, doc: Document, notices: Notices) -> None:
        self.doc = doc
        self.notices = notices

    def settings(self, key: KeyPath) -> Settings:
        return Settings(origin=self.doc.loc(key), prefix=f"{dotted(key)}." if key else "")

    def walk(self, data: dict[str, Any], flat: dict[str, Opt], key: KeyPath, out: Settings) -> None:
        self._walk(data, schema.tree(flat), key, "", out, flat)

    def _walk(
        self,
        data: dict[str, Any],
        node: schema.Tree,
        key: KeyPath,
        canon: str,
        out: Settings,
        flat: dict[str, Opt],
    ) -> None:
        lower = {k.lower(): k for k in node}
        for name, value in data.items():
            here = (*key, name)
            match = name if name in node else lower.get(name.lower())  # Go json: case-insensitive
            if match is None:
                self._unknown(here, name, node, flat)
                continue
            sub = node[match]
            ckey = f"{canon}.{match}" if canon else match
            if value is None:  # JSON null / empty YAML value: Go leaves the field alone
                continue
            if isinstance(sub, dict):
                if not isinstance(value, dict):
                    raise ConfigError(
                        f"{self.doc.where(here)}: expected a table, got {_describe(value)}"
                    )
                self._walk(value, sub, here, ckey, out, flat)
                continue
            out.set(ckey, self.value(sub, value, here), self.doc.where(here))

    def value(self, opt: Opt, value: Any, here: KeyPath) -> Any:
        where = self.doc.where(here)
        if opt.kind is Kind.RAW:
            if not isinstance(value, list):
                raise ConfigError(f"{where}: expected a list of tables, got {_describe(value)}")
            return value
        if opt.kind is Kind.TABLES:
            assert opt.item is not None
            return [
                self._table(item, opt.item, (*here, i))
                for i, item in enumerate(self._list_of_tables(value, where))
            ]
        if opt.kind is Kind.PORT_RANGES:
            return [
                self._port_range(item, (*here, i))
                for i, item in enumerate(self._list_of_tables(value, where))
            ]
        if opt.kind is Kind.PLUGIN:
            return self.plugin(value, here)
        return convert_v1(opt, value, where)

    def _list_of_tables(self, value: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{where}: expected a list of tables, got {_describe(value)}")
        return value

    def _table(self, data: dict[str, Any], flat: dict[str, Opt], key: KeyPath) -> dict[str, Any]:
        sub = self.settings(key)
        self.walk(data, flat, key, sub)
        return sub.values

    def _port_range(self, data: dict[str, Any], key: KeyPath) -> tuple[int, int]:
        flat = {"start": Opt(Kind.PORT), "end": Opt(Kind.PORT), "single": Opt(Kind.PORT)}
        v = self._table(data, flat, key)
        where = self.doc.where(key)
        if v.get("single"):
            if v.get("start") or v.get("end"):
                raise ConfigError(f"{where}: set either single or start and end, not both")
            return (v["single"], v["single"])
        if v.get("start") and v.get("end"):
            if v["start"] > v["end"]:
                raise ConfigError(f"{where}: start {v['start']} is after end {v['end']}")
            return (v["start"], v["end"])
        raise ConfigError(f"{where}: a port range needs single, or start and end")

    def plugin(self, value: Any, here: KeyPath) -> dict[str, Any]:
        where = self.doc.where(here)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_describe(value)}")
        ptype = value.get("type")
        visitor = "visitors" in here
        table = schema.VISITOR_PLUGINS if visitor else schema.PLUGINS
        if not isinstance(ptype, str) or not ptype:
            raise ConfigError(
                f"{where}.type: missing: a plugin needs a type (one of {', '.join(table)})"
            )
        if ptype not in table:
            raise ConfigError(
                f"{self.doc.where((*here, 'type'))}: unknown plugin type "
                f"{q(ptype)} (one of {', '.join(table)})"
            )
        rest = {k: v for k, v in value.items() if k != "type"}
        return {"type": ptype, **self._table(rest, table[ptype], here)}

    def _unknown(self, here: KeyPath, name: str, node: schema.Tree, flat: dict[str, Opt]) -> None:
        where = self.doc.where(here)
        ini = schema.ini_index(flat)
        hint = f" (did you mean {q(ini[name])}? {q(name)} is its INI name)" if name in ini else ""
        text = f"{where}: unknown key{hint or suggest(name, list(node))}"
        if self.notices.strict is False:
            self.notices.add(f"unknown:{where}", f"{text}, ignored")
            return
        raise ConfigError(text)


# --------------------------------------------------------------------------- model builders


def _set_attr(target: object, attr: str, value: Any) -> None:
    *parents, last = attr.split(".")
    for p in parents:
        target = getattr(target, p)
    setattr(target, last, value)


def _skippable(opt: Opt, value: Any) -> bool:
    """frp's ``util.EmptyOr``: a zero number or empty string means "use the default"."""
    return opt.kind in (Kind.STR, Kind.INT, Kind.PORT) and value in ("", 0)


def apply(s: Settings, flat: dict[str, Opt], target: object, notices: Notices, scope: str) -> None:
    for key, value in s.values.items():
        opt = flat[key]
        if not opt.supported(value):
            notices.unsupported(f"{scope}:{key}", s.at(key), adds=opt.adds)
        if opt.attr and not _skippable(opt, value):
            _set_attr(target, opt.attr, value)


def _token_source(s: Settings, prefix: str, target: object, notices: Notices) -> None:
    kind = s.values.get(f"{prefix}.type")
    if kind is None:
        return
    if prefix == "auth.tokenSource" and s.values.get("auth.token"):
        raise ConfigError(
            f"{s.at(prefix + '.type')}: cannot specify both auth.token and auth.tokenSource"
        )
    oidc = prefix == "auth.oidc.tokenSource"
    if kind == "exec":
        if oidc:
            # Run for every message, as frp's ValueSource.Resolve.
            argv, env = _exec_argv(s, prefix, notices)
            _set_attr(target, "oidc.token_command", argv)
            _set_attr(target, "oidc.token_command_env", env)
        else:
            _set_attr(target, "token", _exec_token(s, prefix, notices))
        return
    if kind != "file":
        raise ConfigError(
            f'{s.at(prefix + ".type")}: missing: a token source needs type "file" or "exec"'
        )
    path = s.values.get(f"{prefix}.file.path", "")
    if not path:
        raise ConfigError(f"{s.at(prefix + '.file.path')}: missing: file path cannot be empty")
    if oidc:
        _set_attr(target, "oidc.token_file", path)  # read for every message, as frp
        return
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise ConfigError(
            f"{s.at(prefix + '.file.path')}: failed to read file {path}: {exc.strerror or exc}"
        ) from None
    _set_attr(target, "token", token)


def _oidc_client(s: Settings, cfg: ClientConfig) -> None:
    """frp's validateOIDCConfig and ValidateOIDCClientCredentialsConfig."""
    o = cfg.oidc
    if "auth.oidc.tokenSource.type" in s.values:
        others = [
            k
            for k, v in s.values.items()
            if k.startswith("auth.oidc.") and not k.startswith("auth.oidc.tokenSource.") and v
        ]
        if others:
            raise ConfigError(
                f"{s.at(others[0])}: cannot specify both auth.oidc.tokenSource and any other "
                "field of auth.oidc"
            )
        return
    if cfg.auth_method != "oidc":
        return
    from pyfrp.proto.oidc import ClientCredentials, validate_client  # joserfc: only with oidc

    errs = validate_client(
        ClientCredentials(
            o.client_id,
            audience=o.audience,
            token_endpoint_url=o.token_endpoint_url,
            additional_params=o.additional_endpoint_params,
        )
    )
    if errs:
        raise ConfigError(f"{s.at('auth.method')}: {'; '.join(errs)}")


UNSAFE_EXEC = "TokenSourceExec"


def _exec_token(s: Settings, prefix: str, notices: Notices) -> str:
    """``tokenSource.type = "exec"``: the command's output, trimmed (only with
    ``--allow-unsafe=TokenSourceExec``, as frp)."""
    argv, env = _exec_argv(s, prefix, notices)
    try:
        out = subprocess.run(argv, capture_output=True, env=env, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        where = s.at(f"{prefix}.type")
        raise ConfigError(f"{where}: failed to execute command {argv[0]}: {exc}") from None
    return out.decode("utf-8", "replace").strip()


def _exec_argv(
    s: Settings, prefix: str, notices: Notices
) -> tuple[list[str], dict[str, str] | None]:
    """An exec token source's command line and environment (None: inherit)."""
    where = s.at(f"{prefix}.type")
    if UNSAFE_EXEC not in notices.allow_unsafe:
        raise ConfigError(
            f'{where}: unsafe feature "{UNSAFE_EXEC}" is not enabled. To enable it, ensure it '
            "is allowed in the configuration or command line flags"
        )
    command = s.values.get(f"{prefix}.exec.command", "")
    if not command:
        raise ConfigError(
            f"{s.at(prefix + '.exec.command')}: missing: exec command cannot be empty"
        )
    env = None
    extra = s.values.get(f"{prefix}.exec.env") or []
    if extra:
        env = dict(os.environ)
        for item in extra:
            name = item.get("name", "")
            if not name or "=" in name:
                raise ConfigError(f"{s.at(prefix + '.exec.env')}: bad exec env name {q(name)}")
            env[name] = item.get("value", "")
    return [command, *(s.values.get(f"{prefix}.exec.args") or [])], env


def build_server(s: Settings, notices: Notices) -> ServerConfig:
    cfg = ServerConfig()
    apply(s, schema.SERVER, cfg, notices, "server")
    _token_source(s, "auth.tokenSource", cfg, notices)
    for item in s.values.get("httpPlugins") or []:
        cfg.http_plugins.append(
            HttpPluginConfig(
                name=item.get("name", ""),
                addr=item.get("addr", ""),
                path=item.get("path", ""),
                ops=list(item.get("ops") or []),
                tls_verify=bool(item.get("tlsVerify", False)),
            )
        )
    return cfg


def build_client(s: Settings, notices: Notices) -> ClientConfig:
    cfg = ClientConfig()
    apply(s, schema.CLIENT, cfg, notices, "client")
    _token_source(s, "auth.tokenSource", cfg, notices)
    _token_source(s, "auth.oidc.tokenSource", cfg, notices)
    _oidc_client(s, cfg)
    for addr in cfg.server_addrs:
        host, sep, port = addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{s.at('serverAddrs')}: {q(addr)} is not a host:port address")
    if not cfg.proxy_url and os.environ.get("http_proxy"):  # frp's Complete() reads it too
        cfg.proxy_url = os.environ["http_proxy"]
        if not schema.CLIENT["transport.proxyURL"].supported(cfg.proxy_url):
            raise ConfigError(
                f"http_proxy environment variable: {cfg.proxy_url.partition('://')[0]} proxies "
                "are not supported yet by pyfrp"
            )
    _feature_gates(s, cfg)
    interval = s.values.get("transport.heartbeatInterval", 0)
    timeout = s.values.get("transport.heartbeatTimeout", 0)
    if interval > 0 and timeout > 0 and timeout < interval:
        raise ConfigError(
            f"{s.at('transport.heartbeatTimeout')}: heartbeat timeout {timeout} "
            f"should not be less than heartbeat interval {interval}"
        )
    if not cfg.tls_enable:
        for key in ("certFile", "keyFile", "trustedCaFile"):
            key = f"transport.tls.{key}"
            if s.values.get(key):
                notices.add(
                    f"client:{key}",
                    f"{s.at(key)}: has no effect when {s.spell('transport.tls.enable')} is false",
                )
    return cfg


def _feature_gates(s: Settings, cfg: ClientConfig) -> None:
    """frpc's start-up: featuregate.SetFromMap, then validateFeatureGates. (Go's ``frpc verify``
    skips the first, so it refuses every virtualNet.address; pyfrpc's verify checks what start-up
    does.)"""
    for gate in cfg.feature_gates:
        if gate not in schema.FEATURE_GATES:
            raise ConfigError(f"{s.at('featureGates')}: unrecognized feature gate: {gate}")
    enabled = {**schema.FEATURE_GATES, **cfg.feature_gates}
    if cfg.virtual_net_address and not enabled["VirtualNet"]:
        raise ConfigError(
            f"{s.at('virtualNet.address')}: VirtualNet feature is not enabled; "
            "enable it by setting the appropriate feature gate flag"
        )


def proxy_schema(ptype: str) -> dict[str, Opt]:
    return {**schema.PROXY_BASE, **schema.PROXY_TYPES[ptype]}


def visitor_schema(vtype: str) -> dict[str, Opt]:
    return {**schema.VISITOR_BASE, **schema.VISITOR_TYPES[vtype]}


def check_type(s: Settings, kinds: tuple[str, ...], what: str) -> str:
    ptype = s.values.get("type", "")
    if not ptype:
        raise ConfigError(
            f"{s.at('type')}: missing: a {what} needs a type (one of {', '.join(kinds)})"
        )
    if ptype not in kinds:
        raise ConfigError(
            f"{s.at('type')}: unknown {what} type {q(ptype)} (one of {', '.join(kinds)})"
        )
    return str(ptype)


def build_proxy(s: Settings, notices: Notices) -> ProxyConfig:
    ptype = check_type(s, PROXY_TYPES, "proxy")
    name = s.values.get("name", "")
    if not name:
        raise ConfigError(f"{s.at('name')}: missing: name should not be empty")
    p = ProxyConfig(name=name, type=ptype)
    flat = proxy_schema(ptype)
    plugin = s.values.pop("plugin", None)
    apply(s, flat, p, notices, "proxy")
    if plugin:
        need = schema.PLUGIN_REQUIRED.get(plugin["type"])
        if need and not plugin.get(need):
            raise ConfigError(f"{s.at('plugin')}: missing: plugin {plugin['type']} needs {need}")
        if plugin["type"] in schema.PLUGINS_IMPLEMENTED:
            p.plugin = plugin
        else:
            notices.unsupported(f"plugin:{name}", s.at("plugin"), f"plugin {q(plugin['type'])}")
    if not plugin and not s.values.get("localPort"):
        # frp starts such a proxy too; each of its connections then fails to dial port 0.
        notices.add(
            f"localPort:{name}",
            f"{s.at('localPort')}: missing: a {ptype} proxy needs {s.name_of('localPort')} "
            "(or a plugin); its connections will fail",
        )
    if ptype in ("http", "https", "tcpmux") and not p.custom_domains and not p.subdomain:
        raise ConfigError(
            f"{s.at('customDomains')}: missing: a {ptype} proxy needs "
            f"{s.name_of('customDomains')} or {s.name_of('subdomain')}"
        )
    if ptype == "tcpmux" and p.multiplexer != "httpconnect":
        raise ConfigError(
            f"{s.at('multiplexer')}: missing: a tcpmux proxy needs "
            f'{s.name_of("multiplexer")} = "httpconnect"'
        )
    if s.values.get("healthCheck.type") == "http" and not s.values.get("healthCheck.path"):
        raise ConfigError(
            f"{s.at('healthCheck.path')}: missing: health check path should not be empty"
        )
    return p


def build_visitor(s: Settings, notices: Notices) -> VisitorConfig:
    vtype = check_type(s, VISITOR_TYPES, "visitor")
    name = s.values.get("name", "")
    if not name:
        raise ConfigError(f"{s.at('name')}: missing: name is required")
    v = VisitorConfig(name=name, type=vtype)
    plugin = s.values.pop("plugin", None)
    apply(s, visitor_schema(vtype), v, notices, "visitor")
    if plugin:
        v.plugin = plugin
    if not v.server_name:
        raise ConfigError(f"{s.at('serverName')}: missing: server name is required")
    if not v.bind_port:
        raise ConfigError(f"{s.at('bindPort')}: missing: bind port is required")
    if v.bind_port > 65535:
        check_port(v.bind_port, s.at("bindPort"))
    defaults = VisitorConfig(name=name)
    for attr in ("protocol", "max_retries_an_hour", "min_retry_interval", "fallback_timeout_ms"):
        if not getattr(v, attr):
            setattr(v, attr, getattr(defaults, attr))
    return v


def _first(where: str, s: Settings) -> str:
    """``first at line 3`` in the same file, ``first at other.toml:3`` in another."""
    path, _, line = where.rpartition(":")
    return f"first at line {line}" if path == s.origin.rpartition(":")[0] else f"first at {where}"


def finish_client(
    cfg: ClientConfig,
    common: Settings,
    proxies: list[Settings],
    visitors: list[Settings],
    notices: Notices,
) -> ClientConfig:
    """Build proxies and visitors, reject duplicate names, apply ``start`` and ``enabled``.

    As in frp, a proxy left out by ``start`` or ``enabled = false`` is not validated further
    (its keys were checked while reading), but its name still counts for duplicates.
    """
    start = set(common.values.get("start") or [])
    for scopes, what in ((proxies, "proxy"), (visitors, "visitor")):
        seen: dict[str, str] = {}
        for s in scopes:
            name = s.values.get("name", "")
            if name and name in seen:
                raise ConfigError(
                    f"{s.at('name')}: {what} name [{name}] is duplicated ({_first(seen[name], s)})"
                )
            seen[name] = s.at("name").rsplit(": ", 1)[0]
            if not s.values.pop("enabled", True) or (start and name not in start):
                continue
            if what == "proxy":
                cfg.proxies.append(build_proxy(s, notices))
            else:
                cfg.visitors.append(build_visitor(s, notices))
    return cfg
