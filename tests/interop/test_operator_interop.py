"""The operator surface against native Go frp 0.70.1, both ways: frps's dashboard API answers the
same JSON from pyfrps as from Go frps (for pyfrpc and Go frpc alike), frpc's admin API answers
the same from pyfrpc as from Go frpc, and each side's ``frpc status|reload|stop`` command drives
the other side's admin server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import peer_exe, start_any
from tests.harness import HOST, Pyfrp, free_ports, wait_echo
from tests.webclient import basic, http_call, wait_json

pytestmark = pytest.mark.interop

FRPS = """\
bindPort = {bind}
vhostHTTPPort = {vhost}
subDomainHost = "lab.example"
allowPorts = [{{ start = {low}, end = {high} }}]
webServer.port = {web}
webServer.user = "admin"
webServer.password = "pw"
"""

FRPC = """\
serverPort = {bind}
webServer.port = {admin}
[[proxies]]
name = "ssh"
type = "tcp"
localPort = {local}
remotePort = {remote}
annotations = {{ "lab/owner" = "alice" }}
metadatas = {{ gpu = "a100" }}
transport.useEncryption = true

[[proxies]]
name = "jupyter"
type = "http"
localPort = {local}
subdomain = "jupyter"
"""

AUTH = basic("admin", "pw")
# What differs between two runs of anything: clocks, ids, the peer's port.
VOLATILE = {"lastStartTime", "lastCloseTime", "clientID", "runID", "key", "firstConnectedAt",
            "lastConnectedAt", "hostname", "version", "lastStartAt", "lastCloseAt"}  # fmt: skip
V2 = ("users", "system/info", "clients", "proxies", "proxies?type=tcp&q=alice&status=online",
      "proxies/ssh", "proxies/ssh/traffic", "proxies?pageSize=500", "proxies?type=nope",
      "proxies/nope")  # fmt: skip


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _run(pyfrp: Pyfrp, tmp: Path, server: str, client: str, echo: int) -> dict[str, Any]:
    bind, vhost, web, admin, remote = free_ports(5)
    frps = start_any(
        pyfrp, tmp, server,
        FRPS.format(bind=bind, vhost=vhost, web=web, low=remote, high=remote),
        tag="dash", suffix=".toml",
    )  # fmt: skip
    frps.wait_port(web)
    frpc = start_any(
        pyfrp, tmp, client, FRPC.format(bind=bind, admin=admin, local=echo, remote=remote),
        tag="dash", suffix=".toml",
    )  # fmt: skip
    wait_echo(remote, proc=frpc)
    url = f"http://{HOST}:{web}"
    wait_json(f"{url}/api/proxy/http", AUTH, lambda j: len(j["proxies"]) == 1)
    out = {
        "serverinfo": http_call("GET", f"{url}/api/serverinfo", AUTH).json(),
        "tcp": http_call("GET", f"{url}/api/proxy/tcp", AUTH).json(),
        "http": http_call("GET", f"{url}/api/proxy/http/jupyter", AUTH).json(),
        "byname": http_call("GET", f"{url}/api/proxies/ssh", AUTH).json(),
        "clients": http_call("GET", f"{url}/api/clients", AUTH).json(),
        "missing": http_call("GET", f"{url}/api/proxy/tcp/nope", AUTH).json(),
        "unauthorized": http_call("GET", f"{url}/api/serverinfo").status,
        **{v2: http_call("GET", f"{url}/api/v2/{v2}", AUTH).json() for v2 in V2},
        "status": wait_json(
            f"http://{HOST}:{admin}/api/status", None, lambda j: len(j.get("http", [])) == 1
        ),
        "proxy_config": http_call("GET", f"http://{HOST}:{admin}/api/proxy/ssh/config").json(),
    }
    for p in (frpc, frps):
        p.stop()
    # Ports differ per run: name them.
    renamed = _renamed(out, {bind: "BIND", vhost: "VHOST", remote: "REMOTE", echo: "ECHO"})
    scrubbed: dict[str, Any] = _scrub(renamed)
    return scrubbed


def _renamed(value: Any, ports: dict[int, str]) -> Any:
    if isinstance(value, dict):
        return {k: _renamed(v, ports) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, ports) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value in ports:
        return ports[value]
    if isinstance(value, str):
        for port, name in ports.items():
            value = value.replace(f":{port}", f":{name}")
    return value


@pytest.mark.parametrize("client", ["pyfrpc", "frpc-native"])
def test_dashboard_json_matches_go_frps(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, client: str
) -> None:
    go = _run(pyfrp, tmp_path, "frps-native", client, echo)
    py = _run(pyfrp, tmp_path, "pyfrps", client, echo)
    for key in ("serverinfo", "tcp", "http", "byname", "clients", "missing", "unauthorized", *V2):
        if key == "serverinfo":
            go[key].pop("allowPortsStr"), py[key].pop("allowPortsStr")  # the range differs
        if key == "system/info":
            go[key]["data"]["config"].pop("allowPortsStr")
            py[key]["data"]["config"].pop("allowPortsStr")
        assert py[key] == go[key], key


@pytest.mark.parametrize("server", ["pyfrps", "frps-native"])
def test_admin_json_matches_go_frpc(pyfrp: Pyfrp, tmp_path: Path, echo: int, server: str) -> None:
    go = _run(pyfrp, tmp_path, server, "frpc-native", echo)
    py = _run(pyfrp, tmp_path, server, "pyfrpc", echo)
    assert py["status"] == go["status"]
    assert py["proxy_config"]["tcp"]["annotations"] == go["proxy_config"]["tcp"]["annotations"]
    assert py["proxy_config"]["tcp"]["remotePort"] == go["proxy_config"]["tcp"]["remotePort"]


def _cli(kind: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    argv: list[str] = (
        [sys.executable, "-m", "pyfrp.client"] if kind == "pyfrpc" else [str(peer_exe(kind))]
    )
    return subprocess.run(
        [*argv, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("running", "command"), [("pyfrpc", "frpc-native"), ("frpc-native", "pyfrpc")]
)
def test_admin_commands_across(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, running: str, command: str
) -> None:
    """One side's ``frpc status|reload|stop`` drives the other side's running frpc."""
    bind, admin, p1, p2 = free_ports(4)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    text = (
        f'serverPort = {bind}\nwebServer.port = {admin}\nwebServer.user = "u"\n'
        f'webServer.password = "p"\n[[proxies]]\nname = "ssh"\ntype = "tcp"\n'
        f"localPort = {echo}\nremotePort = {p1}\n"
    )
    frpc = start_any(pyfrp, tmp_path, running, text, tag="admin", suffix=".toml")
    wait_echo(p1, proc=frpc)
    cfg = tmp_path / "ctl.toml"
    cfg.write_text(text)
    status = _cli(command, "status", "-c", cfg)
    assert status.returncode == 0, status
    rows = [line.split() for line in status.stdout.splitlines()]
    assert ["ssh", "running", f"127.0.0.1:{echo}", f"0.0.0.0:{p1}"] in rows
    assert _cli(running, "status", "-c", cfg).stdout == status.stdout  # byte for byte
    cfg.write_text(text.replace(f"remotePort = {p1}", f"remotePort = {p2}"))
    if running == "pyfrpc":
        assert frpc.config is not None
        frpc.config.write_text(cfg.read_text())
    else:
        (tmp_path / f"{running}-admin.toml").write_text(cfg.read_text())
    reload = _cli(command, "reload", "-c", cfg)
    assert (reload.returncode, reload.stdout) == (0, "reload success\n"), reload
    wait_echo(p2, proc=frpc)
    stop = _cli(command, "stop", "-c", cfg)
    assert (stop.returncode, stop.stdout) == (0, "stop success\n")
    assert frpc.p.wait(10) == 0
    frpc.stop()  # closes its log


FRP_UI = Path(os.environ.get("FRP_UI_DIR") or Path.home() / ".cache/frp-native/ui")
CHROMIUM = shutil.which("chromium")


def _dom(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=6000",
            f"--user-data-dir={profile}", "--dump-dom", url]  # fmt: skip
    html = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=True).stdout
    return " ".join(re.sub(r"<[^>]*>", " ", html).split())


needs_ui = pytest.mark.skipif(
    not (FRP_UI / "frpc" / "index.html").exists() or CHROMIUM is None,
    reason="frp's own UIs not built (bash tests/interop/build_frp_ui.sh) or no chromium",
)


@needs_ui
def test_frps_own_ui_runs_on_pyfrps(pyfrp: Pyfrp, tmp_path: Path, echo: int) -> None:
    """frp 0.70.1's Vue dashboard, served by pyfrps (webServer.assetsDir) and driven by its
    /api/v2, shows Go frpc's proxies in a real browser."""
    bind, vhost, web, admin, remote = free_ports(5)
    frps = pyfrp.frps(
        f'bindPort = {bind}\nvhostHTTPPort = {vhost}\nsubDomainHost = "lab.example"\n'
        f'webServer.port = {web}\nwebServer.assetsDir = "{FRP_UI / "frps"}"\n',
        suffix=".toml",
    )
    frps.wait_port(web)
    frpc = start_any(
        pyfrp, tmp_path, "frpc-native",
        FRPC.format(bind=bind, admin=admin, local=echo, remote=remote), tag="ui", suffix=".toml",
    )  # fmt: skip
    try:
        wait_echo(remote, proc=frpc)
        wait_json(f"http://{HOST}:{web}/api/proxy/http", None, lambda j: len(j["proxies"]) == 1)
        overview = _dom(f"http://{HOST}:{web}/static/", tmp_path / "chrome")
        assert f"Bind Port {bind}" in overview
        assert f"HTTP Port {vhost}" in overview
        assert "Subdomain Host lab.example" in overview
        proxies = _dom(f"http://{HOST}:{web}/static/#/proxies", tmp_path / "chrome")
        assert f"ssh TCP Port: {remote}" in proxies
        assert "jupyter HTTP" in proxies
        assert "Total 2" in proxies
        detail = _dom(f"http://{HOST}:{web}/static/#/proxy/ssh", tmp_path / "chrome")
        assert "Encryption Enabled" in detail
        assert "lab/owner: alice" in detail
    finally:
        frpc.stop()
    assert "/api/v2/proxies" in frps.log()


@needs_ui
def test_frpc_own_ui_runs_on_pyfrpc(pyfrp: Pyfrp, tmp_path: Path, echo: int) -> None:
    """frp 0.70.1's frpc admin UI, served by pyfrpc, lists the file's and the store's proxies
    with their state, and its config page shows the file."""
    bind, admin, p1, p2 = free_ports(4)
    frps = start_any(pyfrp, tmp_path, "frps-native", f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"serverPort = {bind}\nwebServer.port = {admin}\n"
        f'webServer.assetsDir = "{FRP_UI / "frpc"}"\nstore.path = "{tmp_path / "store.json"}"\n'
        f'[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {p1}\n',
        suffix=".toml",
    )
    try:
        wait_echo(p1, proc=frpc)
        body = {"name": "tb", "type": "tcp", "tcp": {"localPort": echo, "remotePort": p2}}
        url = f"http://{HOST}:{admin}/api/store/proxies"
        made = http_call("POST", url, None, json.dumps(body).encode())
        assert made.status == 200
        wait_echo(p2, proc=frpc)
        page = _dom(f"http://{HOST}:{admin}/static/#/proxies", tmp_path / "chrome")
        assert f"ssh TCP running 0.0.0.0:{p1} → 127.0.0.1:{echo} config" in page
        assert f"tb TCP running 0.0.0.0:{p2} → 127.0.0.1:{echo} store" in page
        detail = _dom(f"http://{HOST}:{admin}/static/#/proxies/detail/tb", tmp_path / "chrome")
        assert "Source: store" in detail
    finally:
        frps.stop()
