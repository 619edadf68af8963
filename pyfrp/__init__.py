"""pyfrp: a pure-Python, wire-compatible reimplementation of frp.

From Python (pyfrp.api): ``pyfrp.Server``, ``pyfrp.Client``, ``pyfrp.expose``; loaded on first
use, so that ``pyfrps``/``pyfrpc`` do not pay for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyfrp.version import FRP_VERSION, __version__

if TYPE_CHECKING:
    from pyfrp.api import Client, Server, SyncTunnel, Tunnel, expose
    from pyfrp.errors import AuthError, ConfigError, ProxyError

_API = {"Client", "Server", "SyncTunnel", "Tunnel", "expose"}
_ERRORS = {"AuthError", "ConfigError", "ProxyError"}
__all__ = [  # noqa: RUF022 - the API, then its errors, then the versions
    "Client", "Server", "SyncTunnel", "Tunnel", "expose",
    "AuthError", "ConfigError", "ProxyError",
    "FRP_VERSION", "__version__",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _API:
        from pyfrp import api

        return getattr(api, name)
    if name in _ERRORS:
        from pyfrp import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'pyfrp' has no attribute {name!r}")
