"""The seed scenario for real: Jupyter Server on loopback behind pyfrpc, reached through pyfrps
by subdomain. Its REST API answers, a kernel starts, and code sent over the kernel's WebSocket
channel returns its result. Needs the ``jupyter`` extra (jupyter_server, ipykernel, websockets).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.harness import HOST, Proc, Pyfrp, free_ports
from tests.vhost.backends import request

_HINT = "not installed: pip install '.[jupyter]'"
pytest.importorskip("jupyter_server", reason=f"jupyter_server {_HINT}")
pytest.importorskip("ipykernel", reason=f"ipykernel {_HINT}")
pytest.importorskip("websockets", reason=f"websockets {_HINT}")

HOSTNAME = "jupyter.web.example.com"


def jupyter_argv(port: int, root: Path, token: str, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1"]
    argv += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    argv += ["--ServerApp.open_browser=False", f"--ServerApp.root_dir={root}"]
    argv += [f"--IdentityProvider.token={token}", *extra]
    if os.geteuid() == 0:  # CI runs as root
        argv.append("--allow-root")
    return argv


def execute_request(code: str, session: str) -> dict[str, Any]:
    """A Jupyter messaging protocol (v5.3) execute_request on the shell channel."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "username": "test",
            "session": session,
            "msg_type": "execute_request",
            "version": "5.3",
            "date": datetime.now(UTC).isoformat(),
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


def test_jupyter_behind_subdomain(
    pyfrp: Pyfrp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from websockets.sync.client import connect

    bind, vhttp, jport = free_ports(3)
    token = secrets.token_hex(16)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "cfg"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    root = tmp_path / "notebooks"
    root.mkdir()
    # The Host header is jupyter.web.example.com: tell Jupyter it is a local name.
    names = ["--ServerApp.local_hostnames=localhost", f"--ServerApp.local_hostnames={HOSTNAME}"]
    jupyter = Proc(
        "jupyter",
        jupyter_argv(jport, root, token, *names, "--ServerApp.trust_xheaders=True"),
        tmp_path / "jupyter.log",
        tmp_path,
    )
    try:
        frps = pyfrp.frps(
            f"[common]\nbind_addr = 127.0.0.1\nbind_port = {bind}\nvhost_http_port = {vhttp}\n"
            "subdomain_host = web.example.com\n"
        )
        frps.wait_port(vhttp)
        frpc = pyfrp.frpc(
            f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n\n"
            f"[jupyterlab-C]\ntype = http\nlocal_ip = 127.0.0.1\nlocal_port = {jport}\n"
            "subdomain = jupyter\n"
        )
        frpc.wait_log(r"\[jupyterlab-C\] start proxy success")
        jupyter.wait_port(jport, timeout=60)
        host = f"{HOSTNAME}:{vhttp}"
        auth = {"Authorization": f"token {token}"}

        status = request(vhttp, host, "/api/status", headers=auth)
        assert status.status == 200, status.body[:300]
        assert "started" in status.json
        assert request(vhttp, host, "/api/status").status == 403  # the token is required

        created = request(
            vhttp,
            host,
            "/api/kernels",
            method="POST",
            body=json.dumps({"name": "python3"}),
            headers={**auth, "Content-Type": "application/json"},
        )
        assert created.status == 201, created.body[:300]
        kernel = created.json["id"]

        session = uuid.uuid4().hex
        sock = socket.create_connection((HOST, vhttp), 10)
        url = f"ws://{host}/api/kernels/{kernel}/channels?session_id={session}"
        with connect(url, sock=sock, additional_headers=auth, open_timeout=30) as ws:
            msg = execute_request("print('hello from', 6 * 7)\n6 * 7", session)
            ws.send(json.dumps(msg))
            stdout, result, reply = "", None, None
            while reply is None or result is None:
                got = json.loads(ws.recv(timeout=60))
                if got.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
                    continue
                kind = got["msg_type"]
                if kind == "stream":
                    stdout += got["content"]["text"]
                elif kind == "execute_result":
                    result = got["content"]["data"]["text/plain"]
                elif kind == "execute_reply":
                    reply = got["content"]["status"]
                elif kind == "error":
                    pytest.fail(f"kernel error: {got['content']}")
            assert reply == "ok"
            assert result == "42"
            assert stdout == "hello from 42\n"

        assert (
            request(vhttp, host, f"/api/kernels/{kernel}", method="DELETE", headers=auth).status
            == 204
        )
        log = jupyter.log()
        assert "Blocking request with non-local 'Host'" not in log
    finally:
        jupyter.stop()


def test_jupyter_blocks_unknown_host_names(
    pyfrp: Pyfrp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the README's local_hostnames setting is needed: without it Jupyter answers 403."""
    bind, vhttp, jport = free_ports(3)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    jupyter = Proc(
        "jupyter",
        jupyter_argv(jport, tmp_path, "t"),
        tmp_path / "jupyter.log",
        tmp_path,
    )
    try:
        frps = pyfrp.frps(
            f"[common]\nbind_addr = 127.0.0.1\nbind_port = {bind}\nvhost_http_port = {vhttp}\n"
            "subdomain_host = web.example.com\n"
        )
        frps.wait_port(vhttp)
        frpc = pyfrp.frpc(
            f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
            f"[j]\ntype = http\nlocal_port = {jport}\nsubdomain = jupyter\n"
        )
        frpc.wait_log(r"\[j\] start proxy success")
        jupyter.wait_port(jport, timeout=60)
        a = request(
            vhttp, f"{HOSTNAME}:{vhttp}", "/api/status", headers={"Authorization": "token t"}
        )
        assert a.status == 403
        jupyter.wait_log("Blocking request with non-local 'Host'")
    finally:
        jupyter.stop()
