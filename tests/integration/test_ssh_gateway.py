"""frps's SSH tunnel gateway with the real OpenSSH client: ``ssh -R :80:127.0.0.1:PORT v0@frps
-p GW tcp --remote_port N`` exposes a local service through frps with no frpc."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyfrp.proto.msg import ClientSpec, Login, LoginResp
from tests.harness import (
    HOST,
    Proc,
    Pyfrp,
    assert_echo,
    free_ports,
    http_service,
    wait_echo,
    wait_port,
    wait_port_closed,
)
from tests.integration.test_hostile import RawConn

pytestmark = pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
    reason="OpenSSH client not installed; .ci/run installs it",
)


class Ssh:
    """An ``ssh -R`` tunnel; its output (frps's messages to the user) goes to a file."""

    def __init__(self, tmp: Path, gw: int, local: int, command: str, key: Path | None) -> None:
        self.out = tmp / f"ssh-{time.monotonic_ns()}.out"
        argv = ["ssh", "-T", "-p", str(gw), "-o", "StrictHostKeyChecking=no",
                "-o", f"UserKnownHostsFile={tmp / 'known_hosts'}", "-o", "BatchMode=yes",
                "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
                "-R", f":80:{HOST}:{local}"]  # fmt: skip
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"] if key else ["-F", "/dev/null"]
        self._file = open(self.out, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            [*argv, f"v0@{HOST}", *(command.split(" ") if command else [])],
            stdin=subprocess.PIPE,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_text(self, pattern: str, timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if re.search(pattern, self.text()):
                return self.text()
            time.sleep(0.05)
        raise AssertionError(f"ssh: no {pattern!r} within {timeout}s; got:\n{self.text()}")

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self.p.wait(timeout)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            self.p.wait(10)
        if self.p.stdin is not None:
            self.p.stdin.close()
        self._file.close()


@pytest.fixture
def tunnels() -> Iterator[list[Ssh]]:
    started: list[Ssh] = []
    yield started
    for t in started:
        t.stop()


def gateway(pyfrp: Pyfrp, extra: str = "") -> tuple[Proc, int, int]:
    """pyfrps with the gateway; returns it, its ssh port and its bind port."""
    bind, gw = free_ports(2)
    frps = pyfrp.frps(
        f"bindPort = {bind}\nsshTunnelGateway.bindPort = {gw}\n{extra}", suffix=".toml"
    )
    frps.wait_log("frps sshTunnelGateway listen on port")
    wait_port(gw)
    return frps, gw, bind


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-C", comment, "-f", str(path)], check=True
    )
    return path


def tunnel(
    tunnels: list[Ssh], tmp: Path, gw: int, local: int, command: str, key: Path | None = None
) -> Ssh:
    t = Ssh(tmp, gw, local, command, key)
    tunnels.append(t)
    return t


def test_tcp_tunnel_carries_data_and_closes_with_the_ssh_session(
    pyfrp: Pyfrp, echo: int, tunnels: list[Ssh], tmp_path: Path
) -> None:
    frps, gw, _ = gateway(pyfrp)
    (remote,) = free_ports(1)
    t = tunnel(tunnels, tmp_path, gw, echo, f"tcp --remote_port {remote} -n mine")
    out = t.wait_text(r"RemoteAddress: ")
    assert "frp (via SSH) (Ctrl+C to quit)" in out
    assert "ProxyName: mine\nType: tcp\n" in out
    assert f"RemoteAddress: :{remote}" in out
    wait_echo(remote)
    assert_echo(remote, os.urandom(300_000))
    frps.wait_log(r"new proxy \[mine\] type \[tcp\] success")
    # Ctrl+C: the proxy goes with the ssh session and its port is free again.
    t.stop()
    frps.wait_log(r"close proxy \[mine\] success")
    wait_port_closed(remote)
    # The same port can be asked for again.
    t2 = tunnel(tunnels, tmp_path, gw, echo, f"tcp -r {remote} -n mine")
    t2.wait_text(r"RemoteAddress: ")
    wait_echo(remote)


def test_http_tunnel_routes_by_domain(pyfrp: Pyfrp, tunnels: list[Ssh], tmp_path: Path) -> None:
    (vhost,) = free_ports(1)
    _, gw, _ = gateway(pyfrp, f"vhostHTTPPort = {vhost}\n")
    with http_service(lambda path: 200, lambda path: b"hello " + path.encode()) as local:
        t = tunnel(tunnels, tmp_path, gw, local, "http --custom_domain a.example.com")
        out = t.wait_text(r"RemoteAddress: ")
        assert re.search(r"ProxyName: sshtunnel-http-[0-9a-f]{8}\n", out)
        wait_port(vhost)
        with socket.create_connection((HOST, vhost), 10) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        assert got.startswith(b"HTTP/1.1 200")
        assert got.endswith(b"hello /x")


def test_bad_commands_are_answered_on_the_ssh_session(
    pyfrp: Pyfrp, echo: int, tunnels: list[Ssh], tmp_path: Path
) -> None:
    frps, gw, _ = gateway(pyfrp, 'auth.token = "secret"\n')
    t = tunnel(tunnels, tmp_path, gw, echo, "udp -r 1")
    t.wait_exit()
    assert "invalid proxy type: udp, support types: [tcp http https tcpmux stcp]" in t.text()
    t = tunnel(tunnels, tmp_path, gw, echo, "tcp --nope 1")
    t.wait_exit()
    assert "unknown flag: --nope" in t.text()
    # No command (a shell): frp gives up after 3 s.
    t = tunnel(tunnels, tmp_path, gw, echo, "")
    t.wait_exit()
    frps.wait_log("ssh tunnel server run error: get addr and extra payload timeout")
    t = tunnel(tunnels, tmp_path, gw, echo, "tcp --help")
    t.wait_exit()
    assert "--remote-port int" in t.text()
    # Without authorizedKeysFile the server's token is asked for (--token).
    (remote,) = free_ports(1)
    t = tunnel(tunnels, tmp_path, gw, echo, f"tcp -r {remote} -t wrong")
    t.wait_exit()
    assert "login to the server failed: token in login doesn't match" in t.text()
    t = tunnel(tunnels, tmp_path, gw, echo, f"tcp -r {remote} --token secret -u bob")
    out = t.wait_text("RemoteAddress: ")
    assert "User: bob\n" in out
    frps.wait_log(r"new proxy \[bob\.sshtunnel-tcp-[0-9a-f]{8}\] type \[tcp\] success")
    wait_echo(remote)
    # A port already taken: frps's error reaches the user and the session ends.
    t = tunnel(tunnels, tmp_path, gw, echo, f"tcp -r {remote} --token secret")
    t.wait_exit()
    assert "port already used" in t.text()
    assert frps.alive()


def test_authorized_keys_admit_known_keys_as_their_user(
    pyfrp: Pyfrp, echo: int, tunnels: list[Ssh], tmp_path: Path
) -> None:
    known = keygen(tmp_path / "known", "alice")
    stranger = keygen(tmp_path / "stranger", "mallory")
    auth = tmp_path / "authorized_keys"
    # frp reads authorized_keys lines, options included; the comment names the user
    auth.write_text("# keys\n\nno-pty,no-X11-forwarding " + (tmp_path / "known.pub").read_text())
    frps, gw, _ = gateway(
        pyfrp, f'auth.token = "secret"\nsshTunnelGateway.authorizedKeysFile = "{auth}"\n'
    )
    r1, r2 = free_ports(2)
    t = tunnel(tunnels, tmp_path, gw, echo, f"tcp -r {r1}", stranger)
    assert t.wait_exit() != 0
    assert "Permission denied" in t.text()
    # No frp token needed: the key is the credential, its comment the user.
    t = tunnel(tunnels, tmp_path, gw, echo, f"tcp -r {r2} -n web", known)
    out = t.wait_text("RemoteAddress: ")
    assert "User: alice\nProxyName: web\n" in out
    frps.wait_log(r"new proxy \[alice\.web\] type \[tcp\] success")
    assert_echo(r2, b"through a key")
    with pytest.raises(ConnectionRefusedError):  # the stranger's proxy was never made
        socket.create_connection((HOST, r1), 2).close()


def _host_key(gw: int) -> str:
    argv = ["ssh-keyscan", "-p", str(gw), "-t", "rsa", HOST]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    return out.stdout.split()[-1] if out.stdout.strip() else ""


@pytest.mark.skipif(shutil.which("ssh-keyscan") is None, reason="no ssh-keyscan")
def test_host_key_is_generated_once_and_kept(pyfrp: Pyfrp, tmp_path: Path) -> None:
    path = tmp_path / "hostkey"
    frps, gw, _ = gateway(pyfrp, f'sshTunnelGateway.autoGenPrivateKeyPath = "{path}"\n')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    first = _host_key(gw)
    assert first
    frps.stop()
    _, gw2, _ = gateway(pyfrp, f'sshTunnelGateway.autoGenPrivateKeyPath = "{path}"\n')
    assert _host_key(gw2) == first


def test_default_autogen_key_lands_in_the_working_directory(pyfrp: Pyfrp, tmp_path: Path) -> None:
    gateway(pyfrp)
    assert (tmp_path / ".autogen_ssh_key").exists()  # frp's default ./.autogen_ssh_key


def test_only_the_gateway_may_skip_the_token(
    pyfrp: Pyfrp, echo: int, tunnels: list[Ssh], tmp_path: Path
) -> None:
    """ClientSpec.always_auth_pass counts only on the gateway's internal connections: an frpc
    claiming it on bind_port still needs the token; garbage on the ssh port harms nobody."""
    _, gw, bind = gateway(pyfrp, 'auth.token = "secret"\n')
    login = Login(
        version="0.70.1",
        privilege_key="bogus",
        timestamp=1,
        client_spec=ClientSpec(type="ssh-tunnel", always_auth_pass=True),
    )
    with RawConn(bind, mux=True) as conn:  # frp's v1 default: tcp_mux
        conn.send(login)
        resp = conn.recv()
    assert isinstance(resp, LoginResp)
    assert "token in login doesn't match" in resp.error
    with socket.create_connection((HOST, gw), 10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(2000))
        s.settimeout(10)
        with contextlib.suppress(OSError):
            while s.recv(4096):
                pass
    (remote,) = free_ports(1)
    tunnel(tunnels, tmp_path, gw, echo, f"tcp -r {remote} -t secret").wait_text("RemoteAddress")
    assert_echo(remote, b"still serving")
