"""The model back to frp's v1 JSON shape (what frpc's admin API answers and its store file holds):
the options schema.py maps onto the model, nested by their dotted names, zero values left out
as Go's ``omitempty`` leaves them."""

from __future__ import annotations

from typing import Any

from pyfrp.config.decode import proxy_schema, visitor_schema
from pyfrp.config.model import ProxyConfig, VisitorConfig
from pyfrp.config.schema import Opt, is_zero


def _attr(obj: object, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _export(obj: object, flat: dict[str, Opt]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, opt in flat.items():
        if not opt.attr:
            continue
        value = _attr(obj, opt.attr)
        if is_zero(value):
            continue
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = list(value) if isinstance(value, list) else value
    return out


def proxy_to_v1(p: ProxyConfig) -> dict[str, Any]:
    out = _export(p, proxy_schema(p.type))
    if not p.health_check.type:  # its non-zero defaults mean nothing without a type
        out.pop("healthCheck", None)
    if p.plugin:
        out["plugin"] = dict(p.plugin)
    if out.get("transport", {}).get("bandwidthLimitMode") == "client":
        del out["transport"]["bandwidthLimitMode"]
        if not out["transport"]:
            del out["transport"]
    return out


def visitor_to_v1(v: VisitorConfig) -> dict[str, Any]:
    out = _export(v, visitor_schema(v.type))
    if v.plugin:
        out["plugin"] = dict(v.plugin)
    return out
