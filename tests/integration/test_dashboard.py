"""frps's web server, end to end: the JSON API a script or frp's UI reads, Prometheus, auth, the
dashboard page in a real browser, and vhost HTTP on the bind port."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import HOST, Proc, Pyfrp, echo_roundtrip, free_ports, http_service, wait_echo
from tests.vhost.backends import self_signed, tls_ask, tls_backend
from tests.webclient import basic, http_call, wait_json

FRPS = """\
bindAddr = "127.0.0.1"
bindPort = {bind}
enablePrometheus = true
webServer.port = {web}
webServer.user = "admin"
webServer.password = "s3cret-Pa55"
"""

FRPC = """\
serverPort = {bind}
[[proxies]]
name = "ssh"
type = "tcp"
localPort = {local}
remotePort = {remote}
annotations = {{ "lab/owner" = "alice" }}
metadatas = {{ team = "gpu" }}
"""

AUTH = basic("admin", "s3cret-Pa55")


def _start(pyfrp: Pyfrp, echo: int) -> tuple[int, int, Proc, Proc]:
    bind, web, remote = free_ports(3)
    frps = pyfrp.frps(FRPS.format(bind=bind, web=web), suffix=".toml")
    frps.wait_log("dashboard listen on 127.0.0.1:")
    frpc = pyfrp.frpc(FRPC.format(bind=bind, local=echo, remote=remote), suffix=".toml")
    frpc.wait_log(r"\[ssh\] start proxy success")
    wait_echo(remote, proc=frpc)
    return web, remote, frps, frpc


def test_api_counts_what_users_sent(pyfrp: Pyfrp, echo: int) -> None:
    web, remote, frps, frpc = _start(pyfrp, echo)
    url = f"http://{HOST}:{web}"
    payload = os.urandom(300_000)
    assert echo_roundtrip(remote, payload) == payload
    # Traffic is added when a connection ends (as frp does): poll until it shows.
    info = wait_json(
        f"{url}/api/proxy/tcp/ssh", AUTH, lambda j: j["todayTrafficIn"] >= len(payload)
    )
    assert info["status"] == "online"
    assert info["conf"]["remotePort"] == remote
    assert info["conf"]["annotations"] == {"lab/owner": "alice"}
    assert info["conf"]["metadatas"] == {"team": "gpu"}
    # wait_echo's probe counts too: at least the payload each way, and in == out for an echo.
    assert info["todayTrafficOut"] == info["todayTrafficIn"]
    assert info["curConns"] == 0
    assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d:\d\d", info["lastStartTime"])

    listed = http_call("GET", f"{url}/api/proxy/tcp", AUTH).json()
    assert [p["name"] for p in listed["proxies"]] == ["ssh"]
    server = http_call("GET", f"{url}/api/serverinfo", AUTH).json()
    assert server["clientCounts"] == 1
    assert server["proxyTypeCount"] == {"tcp": 1}
    assert server["totalTrafficIn"] == info["todayTrafficIn"]
    traffic = http_call("GET", f"{url}/api/traffic/ssh", AUTH).json()
    assert len(traffic["trafficIn"]) == 7
    assert traffic["trafficIn"][0] == info["todayTrafficIn"]
    (client,) = http_call("GET", f"{url}/api/clients", AUTH).json()
    assert client["online"] is True
    assert client["hostname"] == socket.gethostname()
    assert http_call("GET", f"{url}/api/clients/{client['key']}", AUTH).json() == client

    # An open connection shows as one; Prometheus sees the same figures under frp's names.
    with socket.create_connection((HOST, remote)) as conn:
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"
        wait_json(f"{url}/api/proxy/tcp/ssh", AUTH, lambda j: j["curConns"] == 1)
        metrics = http_call("GET", f"{url}/metrics", AUTH).text
        assert 'frp_server_connection_counts{name="ssh",type="tcp"} 1.0' in metrics
    assert "frp_server_client_counts 1.0" in metrics
    assert 'frp_server_proxy_counts{type="tcp"} 1.0' in metrics
    m = re.search(r'^frp_server_traffic_in\{name="ssh",type="tcp"\} (\S+)$', metrics, re.M)
    assert m is not None
    assert float(m.group(1)) == info["todayTrafficIn"]

    # frpc gone: the proxy stays, offline, until the operator clears it.
    frpc.stop()
    wait_json(f"{url}/api/proxy/tcp/ssh", AUTH, lambda j: j["status"] == "offline")
    assert http_call("GET", f"{url}/api/serverinfo", AUTH).json()["clientCounts"] == 0
    bad = http_call("DELETE", f"{url}/api/proxies?status=online", AUTH)
    assert (bad.status, bad.json()) == (400, {"Code": 400, "Msg": "status only support offline"})
    assert http_call("DELETE", f"{url}/api/proxies?status=offline", AUTH).status == 200
    gone = http_call("GET", f"{url}/api/proxy/tcp/ssh", AUTH)
    assert (gone.status, gone.json()) == (404, {"Code": 404, "Msg": "no proxy info found"})
    assert "s3cret-Pa55" not in frps.log()


def test_credentials_checked_healthz_open(pyfrp: Pyfrp, echo: int) -> None:
    web, _, frps, _ = _start(pyfrp, echo)
    url = f"http://{HOST}:{web}"
    assert http_call("GET", f"{url}/healthz").status == 200
    for auth in (None, basic("admin", "wrong"), basic("root", "s3cret-Pa55"), "Basic !!"):
        start = time.monotonic()
        resp = http_call("GET", f"{url}/api/serverinfo", auth)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="Restricted"'
        assert time.monotonic() - start >= 0.19  # frp's delay after a failed attempt
    assert http_call("GET", f"{url}/api/serverinfo", AUTH).status == 200
    assert "s3cret-Pa55" not in frps.log()
    assert "wrong" not in frps.log()


def test_dashboard_binds_loopback_by_default(pyfrp: Pyfrp) -> None:
    bind, web = free_ports(2)
    frps = pyfrp.frps(f"bindPort = {bind}\nwebServer.port = {web}\n", suffix=".toml")
    log = frps.wait_log("dashboard listen on")
    assert f"dashboard listen on 127.0.0.1:{web}" in log
    assert http_call("GET", f"http://{HOST}:{web}/api/serverinfo").status == 200  # no auth set


def test_vhost_http_shares_bind_port(pyfrp: Pyfrp) -> None:
    """vhost_http_port = bind_port: frpc logs in and browsers are served on one port."""
    bind, web = free_ports(2)
    frps = pyfrp.frps(
        f"[common]\nbind_port = {bind}\nvhost_http_port = {bind}\ndashboard_port = {web}\n"
    )
    frps.wait_port(bind)
    body = b"shared-port-ok"
    with http_service(lambda path: 200, lambda path: body) as local:
        frpc = pyfrp.frpc(
            f"[common]\nserver_port = {bind}\n[web]\ntype = http\nlocal_port = {local}\n"
            "custom_domains = lab.example\n"
        )
        frpc.wait_log(r"\[web\] start proxy success")
        resp = http_call("GET", f"http://{HOST}:{bind}/", headers={"Host": "lab.example"})
        assert (resp.status, resp.body) == (200, body)
        missing = http_call("GET", f"http://{HOST}:{bind}/", headers={"Host": "nobody.example"})
        assert missing.status == 404
        # A request whose method arrives a byte at a time is still told from frp's own traffic.
        with socket.create_connection((HOST, bind), 10) as slow:
            slow.sendall(b"G")
            time.sleep(0.3)
            slow.sendall(b"ET / HTTP/1.1\r\nHost: lab.example\r\nConnection: close\r\n\r\n")
            assert slow.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
        # The pooled work connection's traffic is counted when it closes (frpc leaves).
        frpc.stop()
        web_url = f"http://{HOST}:{web}/api/proxy/http/web"
        info = wait_json(web_url, None, lambda j: j["todayTrafficOut"] > len(body))
        assert info["todayTrafficIn"] > len("GET / HTTP/1.1\r\n")
        assert info["curConns"] == 0
    info = http_call("GET", f"http://{HOST}:{web}/api/serverinfo").json()
    assert (info["bindPort"], info["vhostHTTPPort"]) == (bind, bind)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_dashboard_page_in_a_browser(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    """Headless Chromium loads the page from a live pyfrps: every proxy is listed with its type,
    status and traffic, and the traffic chart is drawn."""
    bind, web, remote = free_ports(3)
    frps = pyfrp.frps(f"bindPort = {bind}\nwebServer.port = {web}\n", suffix=".toml")
    frps.wait_log("dashboard listen on")
    frpc = pyfrp.frpc(FRPC.format(bind=bind, local=echo, remote=remote), suffix=".toml")
    frpc.wait_log(r"\[ssh\] start proxy success")
    wait_echo(remote, proc=frpc)
    echo_roundtrip(remote, os.urandom(2 * 1024 * 1024))
    wait_json(
        f"http://{HOST}:{web}/api/proxy/tcp/ssh", None, lambda j: j["todayTrafficIn"] > 2 << 20
    )
    assert CHROMIUM is not None
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            f"--user-data-dir={tmp_path}/chrome",
            "--dump-dom",
            f"http://{HOST}:{web}/",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    assert 'data-loaded="true"' in dom, dom[-2000:]
    row = re.search(r'<tr data-name="ssh"[^>]*>(.*?)</tr>', dom, re.S)
    assert row is not None, dom[-3000:]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[:3] == ["ssh", "tcp", "online"]
    assert cells[4] == f":{remote}"
    assert cells[6].endswith("MiB")  # in today: 2 MiB and the probes
    bars = re.findall(r'<rect [^>]*data-bytes="(\d+)"', dom)
    assert len(bars) == 14
    assert max(map(int, bars)) > 2 << 20
    assert "Traffic, last 7 days: ssh" in dom


def test_api_shapes_match_frp(pyfrp: Pyfrp, echo: int) -> None:
    """The keys scripts and frp's UI read, in Go frps's order and spelling."""
    web, _, _, _ = _start(pyfrp, echo)
    info = http_call("GET", f"http://{HOST}:{web}/api/proxy/tcp/ssh", AUTH).json()
    assert list(info) == [
        "name", "conf", "clientID", "todayTrafficIn", "todayTrafficOut", "curConns",
        "lastStartTime", "lastCloseTime", "status",
    ]  # fmt: skip
    assert list(info["conf"]) == [
        "name", "type", "annotations", "transport", "metadatas", "loadBalancer", "healthCheck",
        "localIP", "plugin", "remotePort",
    ]  # fmt: skip
    server = http_call("GET", f"http://{HOST}:{web}/api/serverinfo", AUTH).json()
    assert json.dumps(list(server)) == json.dumps(
        ["version", "bindPort", "vhostHTTPPort", "vhostHTTPSPort", "tcpmuxHTTPConnectPort",
         "kcpBindPort", "quicBindPort", "subdomainHost", "maxPoolCount", "maxPortsPerClient",
         "heartbeatTimeout", "totalTrafficIn", "totalTrafficOut", "curConns", "clientCounts",
         "proxyTypeCount"]
    )  # fmt: skip


def test_vhost_https_shares_bind_port(pyfrp: Pyfrp, tmp_path: Path) -> None:
    """vhost_https_port = bind_port: a ClientHello (0x16) goes to the SNI router, so frpc speaks
    TLS with frp's 0x17 first byte there (as frp requires)."""
    (bind,) = free_ports(1)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\nvhost_https_port = {bind}\n")
    frps.wait_port(bind)
    with tls_backend(tmp_path, "lab") as local:
        frpc = pyfrp.frpc(
            f"[common]\nserver_port = {bind}\ndisable_custom_tls_first_byte = false\n"
            f"[tls]\ntype = https\nlocal_port = {local}\ncustom_domains = secure.example.com\n"
        )
        frpc.wait_log(r"\[tls\] start proxy success")
        assert tls_ask(bind, "secure.example.com") == "lab secure.example.com hello"


def test_dashboard_over_tls(pyfrp: Pyfrp, tmp_path: Path) -> None:
    bind, web = free_ports(2)
    crt, key = self_signed(tmp_path, "localhost")
    frps = pyfrp.frps(
        f"bindPort = {bind}\nwebServer.port = {web}\n"
        f'webServer.tls.certFile = "{crt}"\nwebServer.tls.keyFile = "{key}"\n',
        suffix=".toml",
    )
    frps.wait_log("dashboard listen on")
    ctx = ssl.create_default_context(cafile=str(crt))
    ctx.check_hostname = False
    with (
        socket.create_connection((HOST, web), 10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert tls.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(http.client.RemoteDisconnected):  # plain HTTP gets no answer
        http_call("GET", f"http://{HOST}:{web}/healthz")


def test_v2_api_pages_and_filters(pyfrp: Pyfrp, echo: int) -> None:
    """frp 0.70's UI reads /api/v2: paged lists, filters, and its {code, msg, data} wrapper."""
    web, remote, _, _ = _start(pyfrp, echo)
    url = f"http://{HOST}:{web}/api/v2"
    page = http_call("GET", f"{url}/proxies?type=tcp&q=SSH", AUTH).json()
    assert (page["code"], page["msg"]) == (200, "success")
    (item,) = page["data"]["items"]
    assert item["spec"]["tcp"]["remotePort"] == remote
    assert item["spec"]["tcp"]["annotations"] == {"lab/owner": "alice"}
    assert item["status"]["phase"] == "online"
    empty = http_call("GET", f"{url}/proxies?status=offline", AUTH).json()["data"]
    assert (empty["total"], empty["items"]) == (0, [])
    second = http_call("GET", f"{url}/proxies?page=2&pageSize=1", AUTH).json()["data"]
    assert (second["total"], second["page"], second["pageSize"], second["items"]) == (1, 2, 1, [])
    bad = http_call("GET", f"{url}/proxies?pageSize=201", AUTH)
    assert (bad.status, bad.json()) == (
        400, {"code": 400, "msg": "pageSize must be between 1 and 200", "data": None},
    )  # fmt: skip
    (client,) = http_call("GET", f"{url}/clients", AUTH).json()["data"]["items"]
    detail = http_call("GET", f"{url}/clients/{client['key']}", AUTH).json()["data"]
    assert detail["status"] == {"phase": "online", "curConns": 0, "proxyCount": 1}
    traffic = http_call("GET", f"{url}/proxies/ssh/traffic", AUTH).json()["data"]
    assert [p["date"] for p in traffic["history"]][-1] == time.strftime("%Y-%m-%d")
    info = http_call("GET", f"{url}/system/info", AUTH).json()["data"]
    assert info["status"]["clientCounts"] == 1
    assert info["config"]["tlsForce"] is False
    prune = http_call("POST", f"{url}/system/prune?type=offline_proxies", AUTH).json()["data"]
    assert prune == {"type": "offline_proxies", "cleared": 0, "total": 1}


def test_assets_dir_serves_a_ui_build(pyfrp: Pyfrp, tmp_path: Path) -> None:
    """``webServer.assetsDir`` (frp's own UI build, say) at /static/, with / redirecting there."""
    assets = tmp_path / "ui"
    (assets / "assets").mkdir(parents=True)
    (assets / "index.html").write_text("<title>frp UI</title>")
    (assets / "assets" / "app.js").write_text("console.log(1)")
    bind, web = free_ports(2)
    frps = pyfrp.frps(
        f'bindPort = {bind}\nwebServer.port = {web}\nwebServer.assetsDir = "{assets}"\n'
        'webServer.user = "u"\nwebServer.password = "p"\n',
        suffix=".toml",
    )
    frps.wait_log("dashboard listen on")
    url = f"http://{HOST}:{web}"
    auth = basic("u", "p")
    assert http_call("GET", f"{url}/static/", auth).text == "<title>frp UI</title>"
    assert http_call("GET", f"{url}/static/assets/app.js", auth).text == "console.log(1)"
    assert http_call("GET", f"{url}/static/assets/app.js").status == 401
    assert http_call("GET", f"{url}/static/../frps-1.toml", auth).status in (403, 404)
