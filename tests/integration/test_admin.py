"""frpc's admin API and the commands that use it, end to end: ``pyfrpc status|reload|stop``,
``/api/config``, the store, and reload leaving untouched proxies' connections alone."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.harness import HOST, Proc, Pyfrp, free_ports, wait_echo, wait_port_closed
from tests.webclient import basic, http_call, wait_json

FRPC = """\
serverPort = {bind}
webServer.port = {admin}
webServer.user = "ops"
webServer.password = "adm1n-Secret"
{extra}
[[proxies]]
name = "ssh"
type = "tcp"
localPort = {local}
remotePort = {p1}

[[proxies]]
name = "jupyter"
type = "tcp"
localPort = {local}
remotePort = {p2}
"""

AUTH = basic("ops", "adm1n-Secret")


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyfrp.client", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_reload_stop_commands(pyfrp: Pyfrp, echo: int) -> None:
    bind, admin, p1, p2, p3 = free_ports(5)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    text = FRPC.format(bind=bind, admin=admin, local=echo, p1=p1, p2=p2, extra="")
    frpc = pyfrp.frpc(text, suffix=".toml")
    frpc.wait_log(r"\[jupyter\] start proxy success")
    cfg = frpc.config
    assert cfg is not None
    wait_echo(p1, proc=frpc)

    out = _cli("status", "-c", cfg)
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    assert lines[:3] == ["Proxy Status...", "", "TCP"]
    assert lines[3].split() == ["Name", "Status", "LocalAddr", "Plugin", "RemoteAddr", "Error"]
    assert lines[4].split() == ["jupyter", "running", f"127.0.0.1:{echo}", f"0.0.0.0:{p2}"]
    assert lines[5].split() == ["ssh", "running", f"127.0.0.1:{echo}", f"0.0.0.0:{p1}"]

    # An ssh session stays open across the reload that moves jupyter and adds tensorboard.
    with socket.create_connection((HOST, p1)) as ssh:
        ssh.sendall(b"before")
        assert ssh.recv(6) == b"before"
        cfg.write_text(
            text.replace(f"remotePort = {p2}", f"remotePort = {p3}")
            + f'\n[[proxies]]\nname = "tensorboard"\ntype = "tcp"\nlocalPort = {echo}\n'
            f"remotePort = {p2}\n"
        )
        out = _cli("reload", "-c", cfg)
        assert (out.returncode, out.stdout) == (0, "reload success\n"), out
        frpc.wait_log(r"\[tensorboard\] start proxy success")
        wait_echo(p3, proc=frpc)
        wait_echo(p2, proc=frpc)  # now tensorboard's
        ssh.sendall(b"after")
        assert ssh.recv(5) == b"after"
    log = frpc.log()
    assert "proxy removed: [jupyter]" in log
    assert "proxy added: [jupyter tensorboard]" in log
    assert "success reload conf" in log

    # A broken file: the command says where (it reads the file first, as frpc does), the API
    # refuses it with the same text, and the running proxies are untouched.
    cfg.write_text(text + '\n[[proxies]]\nname = "x"\n')
    out = _cli("reload", "-c", cfg)
    where = f"{cfg}:18: proxies[2].type: missing: a proxy needs a type"
    assert out.returncode == 1
    assert out.stdout.startswith(where), out
    refused = http_call("GET", f"http://{HOST}:{admin}/api/reload", AUTH)
    assert refused.status == 400
    assert refused.json()["Msg"].startswith(f"invalid argument: {where}")
    status = http_call("GET", f"http://{HOST}:{admin}/api/status", AUTH).json()
    assert sorted(p["name"] for p in status["tcp"]) == ["jupyter", "ssh", "tensorboard"]

    cfg.write_text(text)
    out = _cli("stop", "-c", cfg)
    assert (out.returncode, out.stdout) == (0, "stop success\n")
    assert frpc.p.wait(10) == 0
    wait_port_closed(p1)
    assert "adm1n-Secret" not in frpc.log()


def test_config_api_and_errors(pyfrp: Pyfrp, echo: int) -> None:
    bind, admin, p1, p2 = free_ports(4)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    text = FRPC.format(bind=bind, admin=admin, local=echo, p1=p1, p2=p2, extra="")
    frpc = pyfrp.frpc(text, suffix=".toml")
    frpc.wait_log(r"\[ssh\] start proxy success")
    url = f"http://{HOST}:{admin}"
    assert http_call("GET", f"{url}/api/config", AUTH).text == text
    assert http_call("GET", f"{url}/api/config").status == 401
    assert http_call("GET", f"{url}/healthz").status == 200
    empty = http_call("PUT", f"{url}/api/config", AUTH, b"")
    assert (empty.status, empty.json()["Msg"]) == (400, "body can't be empty")
    new = text.replace(f"remotePort = {p2}", f"remotePort = {p2}\ntransport.useEncryption = true")
    assert http_call("PUT", f"{url}/api/config", AUTH, new.encode()).status == 200
    assert frpc.config is not None
    assert frpc.config.read_text() == new
    assert http_call("GET", f"{url}/api/reload?strictConfig=true", AUTH).status == 200
    conf = http_call("GET", f"{url}/api/proxy/jupyter/config", AUTH).json()
    assert conf == {
        "name": "jupyter",
        "type": "tcp",
        "tcp": {
            "name": "jupyter", "type": "tcp", "transport": {"useEncryption": True},
            "localIP": "127.0.0.1", "localPort": echo, "remotePort": p2,
        },
    }  # fmt: skip
    missing = http_call("GET", f"{url}/api/proxy/nope/config", AUTH)
    assert (missing.status, missing.json()["Msg"]) == (404, 'proxy "nope" not found')
    assert http_call("GET", f"{url}/api/store/proxies", AUTH).status == 404  # no store.path


def test_store_survives_restart(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    bind, admin, p1, p2, p3 = free_ports(5)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    store = tmp_path / "store.json"
    text = FRPC.format(
        bind=bind, admin=admin, local=echo, p1=p1, p2=p2, extra=f'store.path = "{store}"'
    )
    frpc = pyfrp.frpc(text, suffix=".toml")
    frpc.wait_log(r"\[ssh\] start proxy success")
    url = f"http://{HOST}:{admin}/api/store/proxies"
    body = {"name": "tb", "type": "tcp", "tcp": {"localPort": echo, "remotePort": p3}}
    made = http_call("POST", url, AUTH, json.dumps(body).encode())
    assert made.status == 200, made.body
    assert made.json()["tcp"]["remotePort"] == p3
    wait_echo(p3, proc=frpc)
    again = http_call("POST", url, AUTH, json.dumps(body).encode())
    assert again.status == 409
    clash = {"name": "ssh", "type": "tcp", "tcp": {"localPort": echo, "remotePort": p3}}
    assert http_call("POST", url, AUTH, json.dumps(clash).encode()).status == 409
    status = wait_json(
        f"http://{HOST}:{admin}/api/status",
        AUTH,
        lambda j: any(p["name"] == "tb" and p["status"] == "running" for p in j["tcp"]),
    )
    sources = {p["name"]: p.get("source") for p in status["tcp"]}
    assert sources == {"jupyter": None, "ssh": None, "tb": "store"}
    assert json.loads(store.read_text())["proxies"][0]["name"] == "tb"

    frpc.stop()
    wait_port_closed(p3)
    frpc = pyfrp.frpc(text, suffix=".toml")
    frpc.wait_log(r"\[tb\] start proxy success")
    wait_echo(p3, proc=frpc)
    assert http_call("DELETE", f"{url}/tb", AUTH).status == 200
    wait_port_closed(p3)
    assert json.loads(store.read_text()) == {}
    assert http_call("GET", f"{url}/tb", AUTH).status == 404


def test_config_dir_runs_one_client_per_file(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    bind, p1, p2 = free_ports(3)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    conf = tmp_path / "conf.d"
    conf.mkdir()
    for name, port in (("gpu1", p1), ("gpu2", p2)):
        (conf / f"{name}.toml").write_text(
            f'serverPort = {bind}\n[[proxies]]\nname = "{name}"\ntype = "tcp"\n'
            f"localPort = {echo}\nremotePort = {port}\n"
        )
    frpc = Proc(
        "pyfrpc-dir", [sys.executable, "-m", "pyfrp.client", "--config_dir", conf],
        tmp_path / "dir.log", tmp_path,
    )  # fmt: skip
    try:
        wait_echo(p1, proc=frpc)
        wait_echo(p2, proc=frpc)
        log = frpc.log()
        assert f"start frpc service for config file [{conf / 'gpu1.toml'}]" in log
        assert log.count("login to server success") == 2
    finally:
        assert frpc.stop() == 0
    out = _cli("status", "-c", conf / "gpu1.toml", "--api-timeout", "2x")
    assert (out.returncode, out.stderr) == (
        1,
        'command line: --api-timeout: invalid duration "2x"\n',
    )
    out = _cli("status", "-c", conf / "gpu1.toml")
    assert (out.returncode, out.stdout) == (
        1, "web server port should be set if you want to use this feature\n",
    )  # fmt: skip


def test_reload_adds_and_removes_visitors(pyfrp: Pyfrp, echo: int) -> None:
    bind, admin, visit = free_ports(3)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    server = pyfrp.frpc(
        f'serverPort = {bind}\n[[proxies]]\nname = "db"\ntype = "stcp"\nsecretKey = "k"\n'
        f"localPort = {echo}\n",
        suffix=".toml",
    )
    server.wait_log(r"\[db\] start proxy success")
    base = f"serverPort = {bind}\nwebServer.port = {admin}\n"
    visitor = pyfrp.frpc(base, suffix=".toml")
    visitor.wait_log("login to server success")
    assert visitor.config is not None
    visitor.config.write_text(
        base + f'[[visitors]]\nname = "db-v"\ntype = "stcp"\nserverName = "db"\n'
        f'secretKey = "k"\nbindPort = {visit}\n'
    )
    assert http_call("GET", f"http://{HOST}:{admin}/api/reload").status == 200
    wait_echo(visit, proc=visitor)
    assert "visitor added: [db-v]" in visitor.log()
    visitor.config.write_text(base)
    assert http_call("GET", f"http://{HOST}:{admin}/api/reload").status == 200
    wait_port_closed(visit)
    assert "visitor removed: [db-v]" in visitor.log()
