"""``pyfrpc reload|status|stop -c FILE``: talk to a running pyfrpc's (or frpc's) admin API at
the file's ``webServer`` address, as cmd/frpc/sub/admin.go does (pkg/sdk/client)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

from pyfrp.config.model import ClientConfig

PROXY_TYPES_ORDER = ("tcp", "udp", "tcpmux", "http", "https", "stcp", "sudp", "xtcp")


class AdminError(Exception):
    pass


def _request(cfg: ClientConfig, method: str, path: str, timeout: float) -> str:
    web = cfg.web
    host = f"[{web.addr}]" if ":" in web.addr else web.addr
    req = urllib.request.Request(f"http://{host}:{web.port}{path}", method=method)
    if web.user or web.password:
        token = base64.b64encode(f"{web.user}:{web.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return str(resp.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        raise AdminError(f"api status code [{exc.code}]") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AdminError(f'Get "http://{host}:{web.port}{path}": {reason}') from None


def reload(cfg: ClientConfig, strict: bool, timeout: float) -> str:
    _request(cfg, "GET", "/api/reload" + ("?strictConfig=true" if strict else ""), timeout)
    return "reload success"


def stop(cfg: ClientConfig, timeout: float) -> str:
    _request(cfg, "POST", "/api/stop", timeout)
    return "stop success"


def _table(rows: list[list[str]]) -> list[str]:
    """rodaine/table as frpc prints it: every column padded, two spaces after each."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["".join(c.ljust(w) + "  " for c, w in zip(r, widths, strict=True)) for r in rows]


def status(cfg: ClientConfig, timeout: float) -> str:
    body = _request(cfg, "GET", "/api/status", timeout)
    try:
        res: dict[str, list[dict[str, Any]]] = json.loads(body)
    except ValueError:
        raise AdminError(f"unmarshal http response error: {body.strip()}") from None
    out = ["Proxy Status...", ""]
    for ptype in PROXY_TYPES_ORDER:
        items = res.get(ptype) or []
        if not items:
            continue
        out.append(ptype.upper())
        rows = [["Name", "Status", "LocalAddr", "Plugin", "RemoteAddr", "Error"]]
        for ps in items:
            keys = ("name", "status", "local_addr", "plugin", "remote_addr", "err")
            rows.append([str(ps.get(k, "")) for k in keys])
        out.extend(_table(rows))
        out.append("")
    return "\n".join(out)
