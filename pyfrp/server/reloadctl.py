"""``pyfrps reload -c FILE`` (a pyfrp extension: Go frps has no reload).

With the dashboard on (``webServer.port`` in FILE) it asks the running pyfrps through
``PUT /api/reload``, authenticated with FILE's credentials, and prints what changed. Otherwise,
or when the dashboard cannot be reached or refuses those credentials (they may be what changed),
it sends SIGHUP to every pyfrps process of this user started with FILE (found in /proc, as
``pkill -HUP -f`` would), whose log then says what changed.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import urllib.error
import urllib.request
from typing import Any

from pyfrp.config.model import ServerConfig


class ReloadError(Exception):
    pass


def _api(cfg: ServerConfig, timeout: float) -> dict[str, Any]:
    """The dashboard's answer; raises OSError when it cannot be asked, ReloadError when the
    running pyfrps refused the file."""
    web = cfg.web
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # listening everywhere
    addr = wildcard.get(web.addr, web.addr)
    host = f"[{addr}]" if ":" in addr else addr
    req = urllib.request.Request(f"http://{host}:{web.port}/api/reload", method="PUT")
    if web.user or web.password:
        cred = base64.b64encode(f"{web.user}:{web.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {cred}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise OSError("the dashboard refused the file's credentials") from None
        try:
            msg = json.loads(exc.read()).get("Msg", "")
        except ValueError:
            msg = ""
        raise ReloadError(f"reload refused: {msg or f'api status code [{exc.code}]'}") from None
    except (urllib.error.URLError, ValueError) as exc:
        raise OSError(str(getattr(exc, "reason", exc))) from None


def _config_arg(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        for head in ("--config=", "-c="):
            if a.startswith(head):
                return a[len(head) :]
        if a.startswith("-c") and len(a) > 2 and not a.startswith("--"):
            return a[2:]
    return None


def _is_pyfrps(argv: list[str]) -> bool:
    if any(w in ("verify", "reload") for w in argv[1:]):  # pyfrps commands, not a server
        return False
    if any(os.path.basename(a) == "pyfrps" for a in argv[:2]):
        return True
    return any(a == "-m" and b == "pyfrp.server" for a, b in itertools.pairwise(argv))


def find_servers(path: str) -> list[int]:
    """Pids of the pyfrps processes started with the config file ``path``."""
    want = os.path.realpath(path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            given = _config_arg(argv)
            if given is None or not _is_pyfrps(argv):
                continue
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:  # gone, or another user's
            continue
        if os.path.realpath(os.path.join(cwd, given)) == want:
            found.append(int(entry))
    # pyfrp.workers: the supervisor passes a reload on to its workers, which must not get a
    # second one of their own
    return sorted(pid for pid in found if _parent(pid) not in found)


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _signal(path: str) -> list[str]:
    pids = find_servers(path)
    if not pids:
        raise ReloadError(f"no running pyfrps started with config file {path} was found")
    out = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise ReloadError(f"send SIGHUP to pyfrps (pid {pid}): {exc.strerror}") from None
        out.append(f"sent SIGHUP to pyfrps (pid {pid}): its log says what changed")
    return out


def reload(cfg: ServerConfig, path: str, timeout: float = 10.0) -> list[str]:
    """Lines to print; raises ReloadError."""
    if cfg.web.port <= 0:
        return _signal(path)
    try:
        result = _api(cfg, timeout)
    except OSError as exc:
        return [f"dashboard: {exc}; signalling instead", *_signal(path)]
    out = [f"{a['key']} changed to {a['value']}" for a in result.get("applied", [])]
    out += [
        f"{k['key']} changed: needs a restart, kept {k['kept']}"
        for k in result.get("restartNeeded", [])
    ]
    return [*out, "reload success"]
