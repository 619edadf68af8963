"""What a reload of pyfrps's config file changes (a pyfrp extension: Go frps has no reload).

``plan(running, loaded)`` compares two ServerConfigs setting by setting and returns the config to
run with: the loaded file's values for the settings pyfrps can change while it runs, the running
values for every other one (listeners, TLS, transports: those need a restart). IO-free; the
server applies the result (server/service.py ``Server.reload``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from pyfrp.config import schema
from pyfrp.config.model import ServerConfig

# Settings (model attribute paths) a reload applies. Each is read where it is used, so what
# changes is what new logins, work connections, proxies and requests see; open tunnels and
# logged-in clients keep going.
LIVE = frozenset({
    "token",  # new logins; heartbeats and work connections under auth.additionalScopes
    "auth_scopes",
    "login_max_clock_skew",
    "allow_ports",  # new tcp/udp proxies
    "max_ports_per_client",
    "subdomain_host",  # new http/https/tcpmux proxies
    "vhost_http_timeout",
    "custom_404_page",
    "log.level",
    "web.user",  # the dashboard's basic auth
    "web.password",
    "max_pool_count",  # new logins
    "heartbeat_timeout",
    "user_conn_timeout",
    "detailed_errors_to_client",
    "udp_packet_size",  # new udp proxies
    "tcp_mux_keepalive_interval",  # new connections
})  # fmt: skip
SECRET = frozenset({"token", "web.password"})  # never written to a log or an answer

_V1_NAMES = {opt.attr: key for key, opt in schema.SERVER.items() if opt.attr}
_V1_NAMES["http_plugins"] = "httpPlugins"


@dataclass(frozen=True, slots=True)
class Change:
    attr: str  # model attribute path, e.g. "web.user"
    old: Any
    new: Any

    @property
    def key(self) -> str:
        """The v1 name an operator knows it by (``auth.token``, ``webServer.user``)."""
        return _V1_NAMES.get(self.attr, self.attr)

    @property
    def live(self) -> bool:
        return self.attr in LIVE

    def shown(self, value: Any) -> str:
        if self.attr in SECRET:
            return "(hidden)"
        if self.attr == "allow_ports":
            return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in value) or "(all)"
        return repr(value)


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = prefix + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(_flat(value, path + "."))
        else:
            out[path] = value
    return out


def _set(obj: Any, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, name, copy.deepcopy(value))


def diff(running: ServerConfig, loaded: ServerConfig) -> list[Change]:
    """Every setting whose value differs, in the model's field order."""
    old, new = _flat(running), _flat(loaded)
    return [Change(a, old[a], new[a]) for a in old if old[a] != new[a]]


def plan(running: ServerConfig, loaded: ServerConfig) -> tuple[ServerConfig, list[Change]]:
    """The config to run with after a reload, and what differed. ``loaded`` is not modified."""
    changes = diff(running, loaded)
    effective = copy.deepcopy(loaded)
    for c in changes:
        if not c.live:
            _set(effective, c.attr, c.old)
    return effective, changes


class ReloadResult:
    """What a reload did: ``error`` (the file did not load, nothing changed) or the changes."""

    def __init__(self, changes: list[Change] | None = None, error: str = "") -> None:
        self.changes = changes or []
        self.error = error

    def as_json(self) -> dict[str, Any]:
        return {
            "applied": [{"key": c.key, "value": c.shown(c.new)} for c in self.changes if c.live],
            "restartNeeded": [
                {"key": c.key, "kept": c.shown(c.old), "file": c.shown(c.new)}
                for c in self.changes
                if not c.live
            ],
        }
