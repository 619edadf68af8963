"""The command an ssh user runs at frps's SSH tunnel gateway (pkg/ssh/server.go
parseClientAndProxyConfigurer): ``tcp --remote_port 9090``, ``http -d example.com``, ...

frp splits the exec command on single spaces, takes the first word as the proxy type and parses
the words with cobra/pflag using the frpc flags of that type in "ssh mode" (no local address,
encryption or bandwidth flags) plus ``--user``, ``--client-id`` and ``--token``. ``_`` and ``-``
are the same in flag names. This is that parser, IO-free.
"""

from __future__ import annotations

import csv
import secrets
from dataclasses import dataclass, field

SUPPORTED_TYPES = ("tcp", "http", "https", "tcpmux", "stcp")


class HelpRequested(Exception):
    """``-h``/``--help``: the usage text is the message."""


class CommandError(ValueError):
    """A bad command; the message is what frp writes back to the ssh user."""


@dataclass(slots=True)
class TunnelCommand:
    proxy_type: str
    name: str = ""
    user: str = ""
    client_id: str = ""
    token: str = ""
    metas: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    remote_port: int = 0
    custom_domains: list[str] = field(default_factory=list)
    subdomain: str = ""
    locations: list[str] = field(default_factory=list)
    http_user: str = ""
    http_pwd: str = ""
    host_header_rewrite: str = ""
    multiplexer: str = ""
    sk: str = ""
    allow_users: list[str] = field(default_factory=list)


# flag name -> (shorthand, attribute, kind, usage); kind: str, int, list, map
_Flag = tuple[str, str, str, str]
_PAIRS = "key-value pairs (e.g., key1=value1,key2=value2)"
_BASE: dict[str, _Flag] = {
    "proxy-name": ("n", "name", "str", "proxy name"),
    "metadatas": ("", "metas", "map", f"metadata {_PAIRS}"),
    "annotations": ("", "annotations", "map", f"annotation {_PAIRS}"),
}
_DOMAIN: dict[str, _Flag] = {
    "custom-domain": ("d", "custom_domains", "list", "custom domains"),
    "sd": ("", "subdomain", "str", "sub domain"),
}
_BY_TYPE: dict[str, dict[str, _Flag]] = {
    "tcp": {"remote-port": ("r", "remote_port", "int", "remote port")},
    "http": {
        **_DOMAIN,
        "locations": ("", "locations", "list", "locations"),
        "http-user": ("", "http_user", "str", "http auth user"),
        "http-pwd": ("", "http_pwd", "str", "http auth password"),
        "host-header-rewrite": ("", "host_header_rewrite", "str", "host header rewrite"),
    },
    "https": dict(_DOMAIN),
    "tcpmux": {
        **_DOMAIN,
        "mux": ("", "multiplexer", "str", "multiplexer"),
        "http-user": ("", "http_user", "str", "http auth user"),
        "http-pwd": ("", "http_pwd", "str", "http auth password"),
    },
    "stcp": {
        "sk": ("", "sk", "str", "secret key"),
        "allow-users": ("", "allow_users", "list", "allow visitor users"),
    },
}
_COMMON: dict[str, _Flag] = {
    "user": ("u", "user", "str", "user"),
    "client-id": ("", "client_id", "str", "unique identifier for this frpc instance"),
    "token": ("t", "token", "str", "auth token"),
}


def _usage(flags: dict[str, _Flag]) -> str:
    rows = []
    every = {**flags, "help": ("h", "", "bool", "help for ssh")}
    for name, (short, _, kind, usage) in sorted(every.items()):
        left = f"-{short}, --{name}" if short else f"    --{name}"
        typ = {"str": " string", "int": " int", "list": " strings", "map": " stringToString"}
        rows.append((left + typ.get(kind, ""), usage))
    width = max(len(r[0]) for r in rows)
    lines = [f"  {left.ljust(width)}   {usage}" for left, usage in rows]
    return "Usage:\n  ssh v0@{address} [command] [flags]\n\nFlags:\n" + "\n".join(lines) + "\n"


def _csv(value: str) -> list[str]:
    """pflag's string slices are one CSV record (``"*"`` is ``*``)."""
    if not value:
        return []
    try:
        return next(csv.reader([value], strict=True))
    except csv.Error as exc:
        raise ValueError(str(exc)) from None


def parse(command: str) -> TunnelCommand:
    """The proxy an ssh exec command asks for. Raises CommandError or HelpRequested.

    A proxy without ``--proxy_name`` is named ``sshtunnel-{type}-{8 random hex}``, as in frp.
    """
    args = command.split(" ")
    proxy_type = args[0].strip()
    if proxy_type not in SUPPORTED_TYPES:
        types = "[" + " ".join(SUPPORTED_TYPES) + "]"
        raise CommandError(f"invalid proxy type: {proxy_type}, support types: {types}")
    flags = {**_BASE, **_BY_TYPE[proxy_type], **_COMMON}
    shorts = {f[0]: name for name, f in flags.items() if f[0]}
    cmd = TunnelCommand(proxy_type)
    seen_lists: set[str] = set()

    def assign(name: str, value: str) -> None:
        _, attr, kind, _ = flags[name]
        short = flags[name][0]
        label = f"-{short}, --{name}" if short else f"--{name}"
        try:
            if kind == "int":
                try:
                    setattr(cmd, attr, int(value, 0))
                except ValueError:
                    err = f'strconv.ParseInt: parsing "{value}": invalid syntax'
                    raise ValueError(err) from None
            elif kind == "list":
                items = _csv(value)
                if name in seen_lists:  # a repeated slice flag appends
                    items = [*getattr(cmd, attr), *items]
                seen_lists.add(name)
                setattr(cmd, attr, items)
            elif kind == "map":
                pairs = getattr(cmd, attr)
                for item in _csv(value):
                    key, sep, val = item.partition("=")
                    if not sep:
                        raise ValueError(f"{item} must be formatted as key=value")
                    pairs[key] = val
            else:
                setattr(cmd, attr, value)
        except ValueError as exc:
            raise CommandError(f'invalid argument "{value}" for "{label}" flag: {exc}') from None

    i = 0  # pflag sees the type word too, as a positional argument
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if len(arg) < 2 or not arg.startswith("-"):
            continue  # positional
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            name = name.replace("_", "-")
            if name == "help":
                raise HelpRequested(_usage(flags))
            if name not in flags:
                raise CommandError(f"unknown flag: --{name}")
            if not eq:
                if i >= len(args):
                    raise CommandError(f"flag needs an argument: --{name}")
                value = args[i]
                i += 1
            assign(name, value)
            continue
        # shorthands: -n name, -nname, -n=name
        short, rest = arg[1], arg[2:]
        if short == "h":
            raise HelpRequested(_usage(flags))
        if short not in shorts:
            raise CommandError(f"unknown shorthand flag: '{short}' in {arg}")
        if rest.startswith("="):
            rest = rest[1:]
        elif not rest:
            if i >= len(args):
                raise CommandError(f"flag needs an argument: '{short}' in -{short}")
            rest = args[i]
            i += 1
        assign(shorts[short], rest)
    if not cmd.name:
        cmd.name = f"sshtunnel-{proxy_type}-{secrets.token_hex(4)}"
    return cmd
