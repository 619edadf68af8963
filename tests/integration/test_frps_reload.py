"""Live reload of pyfrps (a pyfrp extension; Go frps has none): SIGHUP, ``pyfrps reload -c FILE``
and the dashboard's ``PUT /api/reload`` re-read the config file. What can change live does,
for new logins and proxies; open tunnels keep passing data; settings that need a restart are
reported and kept; a file that does not load changes nothing."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.harness import HOST, Proc, Pyfrp, free_ports, http_service, wait_echo
from tests.webclient import http_call

ROOT = Path(__file__).resolve().parents[2]


def _server(bind: int, extra: str = "", token: str = "old") -> str:
    return f'bindPort = {bind}\nauth.token = "{token}"\n{extra}'


def _client(bind: int, token: str, name: str, local: int, remote: int, extra: str = "") -> str:
    return (
        f'serverPort = {bind}\nauth.token = "{token}"\n'
        f'[[proxies]]\nname = "{name}"\ntype = "tcp"\nlocalPort = {local}\n'
        f"remotePort = {remote}\n{extra}"
    )


def _reload(frps: Proc, text: str, count: int = 1) -> str:
    """Write the new config and SIGHUP pyfrps; the log once the reload is done."""
    assert frps.config is not None
    frps.config.write_text(text)
    frps.signal(signal.SIGHUP)
    return frps.wait_log(r"success reload conf|reload frps config error", count=count)


def _cli_reload(config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "pyfrp.server", "reload", "-c", str(config)],
        capture_output=True, text=True, timeout=30, env=env, cwd=config.parent,
    )  # fmt: skip


def _started(frps: Proc, bind: int) -> None:
    frps.wait_port(bind)
    frps.wait_log("frps started successfully")


def test_token_change_refuses_old_clients_keeps_open_tunnels(pyfrp: Pyfrp, echo: int) -> None:
    bind, first, second = free_ports(3)
    frps = pyfrp.frps(_server(bind), suffix=".toml")
    _started(frps, bind)
    # encrypted with the old token: it must stay the key of this client's work connections
    running = pyfrp.frpc(
        _client(bind, "old", "running", echo, first, "transport.useEncryption = true\n"),
        suffix=".toml",
    )
    wait_echo(first, proc=running)
    with socket.create_connection((HOST, first), 5) as held:
        held.sendall(b"before")
        assert held.recv(64) == b"before"

        log = _reload(frps, _server(bind, token="new"))
        assert "auth.token changed to (hidden)" in log
        assert '"new"' not in log
        assert "'new'" not in log

        held.sendall(b"after")  # the connection opened before the reload
        assert held.recv(64) == b"after"
    wait_echo(first, proc=running)  # and new connections through the running client's tunnel

    late = pyfrp.frpc(_client(bind, "old", "late", echo, second), suffix=".toml")
    late.wait_log("token in login doesn't match token from configuration")
    assert late.p.wait(20) != 0  # loginFailExit
    frps.wait_log(r"register control error: token in login doesn't match")

    fresh = pyfrp.frpc(_client(bind, "new", "fresh", echo, second), suffix=".toml")
    wait_echo(second, proc=fresh)
    wait_echo(first, proc=running)


def test_scoped_heartbeats_checked_with_the_new_token(pyfrp: Pyfrp, echo: int) -> None:
    """With auth.additionalScopes, a logged-in client's heartbeats are checked against the
    token as it is now: an old-token client is told, logs in again, and is refused."""
    bind, first = free_ports(2)
    scopes = 'auth.additionalScopes = ["HeartBeats"]\n'
    frps = pyfrp.frps(_server(bind, scopes), suffix=".toml")
    _started(frps, bind)
    client = pyfrp.frpc(
        _client(bind, "old", "a", echo, first).replace(
            "[[proxies]]", f"{scopes}transport.heartbeatInterval = 1\nloginFailExit = false\n"
            "[[proxies]]", 1,
        ),
        suffix=".toml",
    )  # fmt: skip
    wait_echo(first, proc=client)
    _reload(frps, _server(bind, scopes, token="new"))
    client.wait_log("pong contains error: token in heartbeat doesn't match token")
    client.wait_log("token in login doesn't match token from configuration")


def test_reload_command_without_a_running_server(tmp_path: Path) -> None:
    config = tmp_path / "frps.toml"
    config.write_text("bindPort = 7000\n")
    done = _cli_reload(config)
    assert done.returncode == 1
    assert f"no running pyfrps started with config file {config} was found" in done.stderr


def test_allow_ports_via_cli_signal(pyfrp: Pyfrp, echo: int) -> None:
    bind, first, second = free_ports(3)
    frps = pyfrp.frps(_server(bind, f"allowPorts = [{{ single = {first} }}]\n"), suffix=".toml")
    _started(frps, bind)
    running = pyfrp.frpc(_client(bind, "old", "a", echo, first), suffix=".toml")
    wait_echo(first, proc=running)
    refused = pyfrp.frpc(_client(bind, "old", "b", echo, second), suffix=".toml")
    refused.wait_log(r"\[b\] start error: port not allowed")

    assert frps.config is not None
    frps.config.write_text(_server(bind, f"allowPorts = [{{ single = {second} }}]\n"))
    done = _cli_reload(frps.config)
    assert done.returncode == 0, done.stderr
    assert f"sent SIGHUP to pyfrps (pid {frps.pid})" in done.stdout
    frps.wait_log(rf"reload: allowPorts changed to {second}")
    frps.wait_log("success reload conf")

    allowed = pyfrp.frpc(_client(bind, "old", "c", echo, second), suffix=".toml")
    wait_echo(second, proc=allowed)
    wait_echo(first, proc=running)  # no longer allowed, but already open: it stays


def test_log_level_changes_live(pyfrp: Pyfrp, echo: int) -> None:
    bind, first, second = free_ports(3)
    frps = pyfrp.frps(_server(bind), suffix=".toml")
    _started(frps, bind)
    client = pyfrp.frpc(_client(bind, "old", "a", echo, first), suffix=".toml")
    wait_echo(first, proc=client)
    assert "get a user connection" not in frps.log()  # a debug line

    _reload(frps, _server(bind, 'log.level = "debug"\n'))
    wait_echo(first, proc=client)
    frps.wait_log(r"\[D\] .*\[a\] get a user connection")

    _reload(frps, _server(bind, 'log.level = "warn"\n'), count=2)
    logins = frps.log().count("client login info")
    other = pyfrp.frpc(_client(bind, "old", "b", echo, second), suffix=".toml")
    wait_echo(second, proc=other)
    assert frps.log().count("client login info") == logins  # info lines are off now


def test_broken_file_changes_nothing(pyfrp: Pyfrp, echo: int) -> None:
    bind, first, second = free_ports(3)
    frps = pyfrp.frps(_server(bind, "maxPortsPerClient = 5\n"), suffix=".toml")
    _started(frps, bind)
    # a new token and a bad value further down: neither may be applied
    log = _reload(frps, _server(bind, 'maxPortsPerClient = 1\nuserConnTimeout = "soon"\n', "new"))
    assert frps.config is not None
    assert f"reload frps config error: {frps.config}:4" in log
    assert "userConnTimeout" in log
    assert "the running config is kept" in log
    assert "success reload conf" not in log
    done = _cli_reload(frps.config)  # the command checks the file before signalling
    assert done.returncode == 1
    assert "userConnTimeout" in done.stderr
    assert "sent SIGHUP" not in done.stdout

    two = (
        _client(bind, "old", "a", echo, first)
        + f'[[proxies]]\nname = "b"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {second}\n'
    )
    client = pyfrp.frpc(two, suffix=".toml")  # the old token, two ports: both still fine
    wait_echo(first, proc=client)
    wait_echo(second, proc=client)


def test_bind_port_change_is_reported_and_kept(pyfrp: Pyfrp, echo: int) -> None:
    bind, other, first, second = free_ports(4)
    frps = pyfrp.frps(_server(bind), suffix=".toml")
    _started(frps, bind)
    log = _reload(frps, f'bindPort = {other}\nauth.token = "old"\nmaxPortsPerClient = 1\n')
    assert f"reload: bindPort changed: needs a restart, kept {bind}" in log
    assert "reload: maxPortsPerClient changed to 1" in log
    assert "1 setting(s) applied, 1 need a restart" in log
    two = (
        _client(bind, "old", "a", echo, first)
        + f'[[proxies]]\nname = "b"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {second}\n'
    )
    client = pyfrp.frpc(two, suffix=".toml")  # still on the old port
    client.wait_log(r"exceed the max_ports_per_client")
    wait_echo(first, proc=client)
    with socket.socket() as s:
        assert s.connect_ex((HOST, other)) != 0  # nothing listens on the new one


def _get(
    port: int, user: str, password: str, method: str = "GET", path: str = "/api/serverinfo"
) -> int:
    req = urllib.request.Request(f"http://{HOST}:{port}{path}", method=method)
    cred = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {cred}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_dashboard_reload_and_credentials(pyfrp: Pyfrp, echo: int) -> None:
    bind, web, first = free_ports(3)

    def conf(password: str, extra: str = "") -> str:
        return _server(
            bind,
            f'webServer.port = {web}\nwebServer.user = "admin"\n'
            f'webServer.password = "{password}"\n{extra}',
        )

    frps = pyfrp.frps(conf("one"), suffix=".toml")
    _started(frps, bind)
    assert frps.config is not None
    # through the dashboard: the command prints what changed
    frps.config.write_text(conf("one", 'subDomainHost = "example.test"\n'))
    done = _cli_reload(frps.config)
    assert done.returncode == 0, done.stderr
    assert "subDomainHost changed to 'example.test'" in done.stdout
    assert "reload success" in done.stdout
    frps.wait_log("success reload conf")

    # a file that does not load: 400, nothing changed
    frps.config.write_text(conf("one", "vhostHTTPTimeout = [1]\n"))
    assert _get(web, "admin", "one", "PUT", "/api/reload") == 400
    frps.wait_log("reload frps config error")

    # new credentials: the dashboard refuses the file's (new) ones, the command signals instead
    frps.config.write_text(conf("two"))
    done = _cli_reload(frps.config)
    assert done.returncode == 0, done.stderr
    assert f"sent SIGHUP to pyfrps (pid {frps.pid})" in done.stdout
    frps.wait_log(r"webServer.password changed to \(hidden\)")
    frps.wait_log("success reload conf", count=2)
    assert _get(web, "admin", "one") == 401
    assert _get(web, "admin", "two") == 200
    client = pyfrp.frpc(_client(bind, "old", "a", echo, first), suffix=".toml")
    wait_echo(first, proc=client)


def test_http_settings_change_live(pyfrp: Pyfrp, tmp_path: Path) -> None:
    """subDomainHost (new proxies), custom404Page and vhostHTTPTimeout."""
    bind, vhost = free_ports(2)
    page = tmp_path / "404.html"
    page.write_text("<h1>nothing here, from the reload test</h1>")
    frps = pyfrp.frps(_server(bind, f"vhostHTTPPort = {vhost}\n"), suffix=".toml")
    _started(frps, bind)
    url = f"http://{HOST}:{vhost}"
    missing = http_call("GET", f"{url}/", headers={"Host": "nobody.example.test"})
    assert missing.status == 404
    assert "nothing here" not in missing.text

    log = _reload(
        frps,
        _server(
            bind,
            f'vhostHTTPPort = {vhost}\nsubDomainHost = "example.test"\n'
            f'custom404Page = "{page}"\nvhostHTTPTimeout = 1\n',
        ),
    )
    assert "reload: vhostHTTPTimeout changed to 1" in log
    missing = http_call("GET", f"{url}/", headers={"Host": "nobody.example.test"})
    assert missing.status == 404
    assert "nothing here, from the reload test" in missing.text

    def body(path: str) -> bytes:
        if path == "/slow":
            time.sleep(4)
        return b"app " + path.encode()

    with http_service(lambda path: 200, body) as local:
        client = pyfrp.frpc(
            f'serverPort = {bind}\nauth.token = "old"\n[[proxies]]\nname = "app"\n'
            f'type = "http"\nlocalPort = {local}\nsubdomain = "app"\n',
            suffix=".toml",
        )
        client.wait_log(r"\[app\] start proxy success")
        host = {"Host": "app.example.test"}
        fast = http_call("GET", f"{url}/hi", headers=host)
        assert (fast.status, fast.text) == (200, "app /hi")
        start = time.monotonic()
        slow = http_call("GET", f"{url}/slow", headers=host)
        assert slow.status == 504
        assert time.monotonic() - start < 3.5  # the new 1 s, not the 60 s it started with
