"""pyfrps/pyfrpc as processes: every config format carries traffic, frps flags and frpc quick
commands work, verify and bad configs exit like frp's with one message and no traceback."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from tests.harness import Proc, Pyfrp, closed_without_reply, echo_roundtrip, free_ports, wait_echo

# The seed guide's pair (conf/frps.ini, conf/frpc.ini: [ssh-C]), with loopback ports.
SEED_INI = (
    "[common]\nbind_port = {bind}\n",
    "[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n[ssh-C]\ntype = tcp\n"
    "local_ip =127.0.0.1\nlocal_port = {local}\nremote_port = {remote}\n",
)
# The same pair in the v1 shape, as a dict to write as TOML, YAML and JSON.
V1_SERVER = {"bindPort": "{bind}"}
V1_CLIENT = {
    "serverAddr": "127.0.0.1",
    "serverPort": "{bind}",
    "proxies": [
        {
            "name": "ssh-C",
            "type": "tcp",
            "localIP": "127.0.0.1",
            "localPort": "{local}",
            "remotePort": "{remote}",
        }
    ],
}

PAYLOAD = random.Random(5).randbytes(2_000_000)


def _v1(fmt: str, tree: Mapping[str, object], ports: dict[str, int]) -> str:
    def fill(v: object) -> object:
        if isinstance(v, str) and v.startswith("{"):
            return ports[v.strip("{}")]
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fill(x) for x in v]
        return v

    data = fill(tree)
    assert isinstance(data, dict)
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt == "yaml":
        return yaml.safe_dump(data)
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items() if k != "proxies"]
    for p in data.get("proxies", []):
        lines += ["", "[[proxies]]", *(f"{k} = {json.dumps(v)}" for k, v in p.items())]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("fmt", ["ini", "toml", "yaml", "json"])
def test_each_format_carries_the_same_traffic(pyfrp: Pyfrp, echo: int, fmt: str) -> None:
    """The seed's INI pair and the same pair written as TOML/YAML/JSON tunnel the same bytes."""
    bind, remote = free_ports(2)
    ports = {"bind": bind, "local": echo, "remote": remote}
    if fmt == "ini":
        server, client = (t.format(**ports) for t in SEED_INI)
    else:
        server, client = _v1(fmt, V1_SERVER, ports), _v1(fmt, V1_CLIENT, ports)
    frps = pyfrp.frps(server, suffix=f".{fmt}")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(client, suffix=f".{fmt}")
    frpc.wait_log(r"\[ssh-C\] start proxy success")
    wait_echo(remote, proc=frpc)
    got = echo_roundtrip(remote, PAYLOAD)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()
    frps.wait_log(rf"\[ssh-C\] tcp proxy listen port \[{remote}\]")
    assert "Traceback" not in frps.log() + frpc.log()


def test_env_template_and_includes_end_to_end(
    tmp_path: Path, pyfrp: Pyfrp, echo: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    bind, remote = free_ports(2)
    monkeypatch.setenv("PYFRP_TEST_TOKEN", "t0k-from-env")
    pyfrp.frps(
        f'bindAddr = "127.0.0.1"\nbindPort = {bind}\n'
        'auth.token = "{{ .Envs.PYFRP_TEST_TOKEN }}"\n',
        suffix=".toml",
    ).wait_port(bind)
    (tmp_path / "proxies.d").mkdir()
    (tmp_path / "proxies.d" / "echo.yaml").write_text(
        f"proxies:\n  - {{name: e, type: tcp, localPort: {echo}, remotePort: {remote}}}\n"
    )
    frpc = pyfrp.frpc(
        f'serverAddr = "127.0.0.1"\nserverPort = {bind}\n'
        'auth.token = "{{ .Envs.PYFRP_TEST_TOKEN }}"\nincludes = ["proxies.d/*.yaml"]\n',
        suffix=".toml",
    )
    frpc.wait_log(r"\[e\] start proxy success")
    wait_echo(remote, proc=frpc)


def test_frps_from_flags_and_frpc_quick_command(tmp_path: Path, echo: int) -> None:
    """``pyfrps --bind_port ... --token ...`` with no file, ``pyfrpc tcp ...`` with no file."""
    bind, remote = free_ports(2)
    frps = Proc(
        "pyfrps",
        [sys.executable, "-m", "pyfrp.server", "--bind_addr", "127.0.0.1", "--bind-port", str(bind),
         "-t", "s3cret", "--allow_ports", f"{remote}-{remote}"],
        tmp_path / "frps.log",
        tmp_path,
    )  # fmt: skip
    frpc = None
    try:
        frps.wait_port(bind)
        frpc = Proc(
            "pyfrpc",
            [sys.executable, "-m", "pyfrp.client", "tcp", "-s", "127.0.0.1", "-P", str(bind),
             "-t", "s3cret", "--local_port", str(echo), "--remote_port", str(remote),
             "-n", "ssh", "--ue", "--uc"],
            tmp_path / "frpc.log",
            tmp_path,
        )  # fmt: skip
        frpc.wait_log(r"\[ssh\] start proxy success")
        wait_echo(remote, proc=frpc)
        got = echo_roundtrip(remote, PAYLOAD)
        assert hashlib.sha256(got).digest() == hashlib.sha256(PAYLOAD).digest()
        assert "frps uses command line arguments for config" in frps.log()
    finally:
        if frpc is not None:
            frpc.stop()
        frps.stop()


def _run(
    tmp_path: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYFRP_TEST")} | (env or {}),
    )


def test_verify_ok_and_warnings(tmp_path: Path) -> None:
    (tmp_path / "frps.toml").write_text("bindPort = 7000\nkcpBindPort = 7000\n")
    out = _run(tmp_path, "pyfrp.server", "verify", "-c", "frps.toml")
    assert (out.returncode, out.stderr, out.stdout) == (
        0,
        "",
        "frps: the configuration file frps.toml syntax is ok\n",
    )
    (tmp_path / "frpc.toml").write_text(
        'serverPort = 7000\ntransport.tls.enable = false\ntransport.tls.certFile = "c.pem"\n'
    )
    out = _run(tmp_path, "pyfrp.client", "verify", "-c", "frpc.toml")
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout == (
        "WARNING: frpc.toml:3: transport.tls.certFile: has no effect when transport.tls.enable"
        " is false\nfrpc: the configuration file frpc.toml syntax is ok\n"
    )
    (tmp_path / "frpc.ini").write_text("[common]\nserver_port = 7000\n")
    out = _run(tmp_path, "pyfrp.client", "verify", "-c", "frpc.ini")
    assert (out.returncode, out.stdout) == (
        0,
        "frpc: the configuration file frpc.ini syntax is ok\n",
    )


def test_verify_rejects_what_would_run_differently(tmp_path: Path) -> None:
    """A setting that changes who may connect, routing or the wire is an error, never a
    warning: verify names it, and so does start-up."""
    cases = {
        'transport.proxyURL = "https://127.0.0.1:3128"\n': (
            "frpc.toml:2: transport.proxyURL: not supported yet by pyfrp"
        ),
    }
    for extra, message in cases.items():
        (tmp_path / "frpc.toml").write_text('serverAddr = "127.0.0.1"\n' + extra)
        for argv in (["verify", "-c", "frpc.toml"], ["-c", "frpc.toml"]):
            out = _run(tmp_path, "pyfrp.client", *argv)
            assert (out.returncode, out.stderr) == (1, message + "\n"), (argv, extra)
    # OIDC without the client credentials: frp's validation texts.
    (tmp_path / "frpc.ini").write_text("[common]\nauthentication_method = oidc\n")
    out = _run(tmp_path, "pyfrp.client", "verify", "-c", "frpc.ini")
    assert (out.returncode, out.stderr) == (
        1,
        "frpc.ini:2: [common] authentication_method: auth.oidc.clientID is required; "
        "auth.oidc.tokenEndpointURL is required\n",
    )


BAD = {
    "unknown key": (
        "frpc.toml",
        'serverAddr = "127.0.0.1"\nserverPrt = 7000\n',
        'frpc.toml:2: serverPrt: unknown key (did you mean "serverPort"?)',
    ),
    "wrong type": (
        "frpc.yaml",
        "serverAddr: 127.0.0.1\nserverPort: seven\n",
        'frpc.yaml:2: serverPort: expected a port number, got string "seven"',
    ),
    "port out of range": (
        "frpc.ini",
        "[common]\nserver_port = 70000\n",
        "frpc.ini:2: [common] server_port: port number 70000 must be in the range 0..65535",
    ),
    "missing required key": (
        "frpc.json",
        '{"proxies": [\n  {"name": "web", "type": "http", "localPort": 80}\n]}\n',
        "frpc.json:2: proxies[0].customDomains: missing: a http proxy needs customDomains or"
        " subdomain",
    ),
    "duplicate proxy name": (
        "frpc.toml",
        '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = 22\n'
        '[[proxies]]\nname = "ssh"\ntype = "tcp"\nlocalPort = 2\n',
        "frpc.toml:6: proxies[1].name: proxy name [ssh] is duplicated (first at line 2)",
    ),
    "undefined environment variable": (
        "frpc.toml",
        'serverAddr = "127.0.0.1"\nauth.token = "{{ .Envs.PYFRP_TEST_UNSET }}"\n',
        "frpc.toml:2: undefined environment variable PYFRP_TEST_UNSET"
        " (used as {{ .Envs.PYFRP_TEST_UNSET }})",
    ),
    "unreadable file": (
        "",
        "",
        "missing.toml: cannot read config file: no such file or directory",
    ),
}


@pytest.mark.parametrize("command", ["run", "verify"])
@pytest.mark.parametrize(("name", "text", "message"), BAD.values(), ids=BAD)
def test_bad_config_exits_1_with_one_message(
    tmp_path: Path, command: str, name: str, text: str, message: str
) -> None:
    if name:
        (tmp_path / name).write_text(text)
    args = ["-c", name or "missing.toml"]
    out = _run(tmp_path, "pyfrp.client", *(["verify", *args] if command == "verify" else args))
    assert out.returncode == 1
    assert out.stderr == message + "\n"
    assert out.stdout == ""


def test_bad_server_flags_and_files_exit_1(tmp_path: Path) -> None:
    out = _run(tmp_path, "pyfrp.server", "--bind_port", "x")
    assert (out.returncode, out.stderr) == (
        1,
        'command line: --bind_port: expected a port number, got "x"\n',
    )
    (tmp_path / "frps.toml").write_text('log.to = "/proc/no/such/dir/frps.log"\n')
    out = _run(tmp_path, "pyfrp.server", "-c", "frps.toml")
    assert out.returncode == 1
    assert out.stderr.startswith("cannot open log file /proc/no/such/dir/frps.log: ")
    assert "Traceback" not in out.stderr
    out = _run(tmp_path, "pyfrp.server", "--no_such_flag")
    assert out.returncode == 1
    assert "unrecognized arguments: --no_such_flag" in out.stderr


def test_warnings_reported_once_at_startup_and_log_file(tmp_path: Path) -> None:
    (bind,) = free_ports(1)
    (tmp_path / "frps.ini").write_text(
        f"[common]\nbind_addr = 127.0.0.1\nbind_port = {bind}\nfoo_bar = 7001\n"
        "log_file = logs/frps.log\nlog_max_days = 2\n"
    )
    frps = Proc("pyfrps", [sys.executable, "-m", "pyfrp.server", "-c", "frps.ini"],
                tmp_path / "stdout.log", tmp_path)  # fmt: skip
    log = tmp_path / "logs" / "frps.log"
    try:
        frps.wait_port(bind)
        end = time.monotonic() + 20
        while "frps started successfully" not in log.read_text() and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        frps.stop()
    text = log.read_text()
    assert text.count("[common] foo_bar: unknown key, ignored") == 1
    assert "[W] " in text
    assert "frps started successfully" in text
    assert "\x1b[" not in text
    assert frps.log() == ""  # nothing on the console when log.to is a file

    out = _run(tmp_path, "pyfrp.server", "-c", "frps.ini", "--strict_config")
    assert (out.returncode, out.stderr) == (1, "frps.ini:4: [common] foo_bar: unknown key\n")


def test_help_lists_every_flag_with_its_text_and_default(tmp_path: Path) -> None:
    out = _run(tmp_path, "pyfrp.server", "-h")
    assert out.returncode == 0
    lines = [" ".join(ln.split()) for ln in out.stdout.splitlines()]
    assert "-p, --bind-port int bind port (default 7000)" in lines
    assert '--proxy-bind-addr string proxy bind address (default "0.0.0.0")' in lines
    assert "--tls-only frps tls only" in lines
    assert "-c, --config string config file of frps" in lines
    out = _run(tmp_path, "pyfrp.client", "tcp", "-h")
    assert out.returncode == 0
    assert out.stdout.startswith("usage: pyfrpc tcp [flags]\n")
    lines = [" ".join(ln.split()) for ln in out.stdout.splitlines()]
    assert '-s, --server-addr string frp server\'s address (default "127.0.0.1")' in lines
    assert "-r, --remote-port int remote port" in lines
    assert "--tls-enable enable frpc tls (default true)" in lines
    assert (
        "--metadatas stringToString metadata key-value pairs (e.g., key1=value1,key2=value2)"
        " (default [])" in lines
    )
    out = _run(tmp_path, "pyfrp.client", "-h")
    assert '-c, --config string config file of frpc (default "./frpc.ini")' in [
        " ".join(ln.split()) for ln in out.stdout.splitlines()
    ]


def test_ini_frp_starts_starts_with_warnings(pyfrp: Pyfrp, echo: int) -> None:
    """An INI Go frpc starts (inline comments, a repeated section) starts: the warnings name
    each line, values go-ini cannot read keep their defaults, and the good proxy carries traffic
    while the one whose port is unreadable fails each connection, as in frp."""
    bind, remote, broken = free_ports(3)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\n")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\n"
        f"[ssh]\ntype = tcp\nlocal_port = 22 # ssh\nremote_port = {broken}\n"
        f"[echo]\ntype = tcp\nlocal_port = 1\nremote_port = {remote}\n"
        f"[echo]\nlocal_port = {echo}\n"
    )
    wait_echo(remote, proc=frpc)
    log = frpc.log()
    assert '[ssh] local_port: "22 # ssh" is not a port number; ignored, as frp does' in log
    assert re.search(r"\[echo\] repeats the section at line \d+; merged into it, as frp does", log)
    with socket.create_connection(("127.0.0.1", broken), timeout=10) as s:
        s.sendall(b"hello")
        assert closed_without_reply(s)  # the local service at port 0 cannot be dialed
    frpc.wait_log(r"\[ssh\] connect to local service \[127\.0\.0\.1:0\] error")
