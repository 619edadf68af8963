"""The seed scenario for real: ssh and scp to an "intranet" OpenSSH server through the tunnel."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Proc, Pyfrp, free_ports, wait_port

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
pytestmark = pytest.mark.skipif(
    SSHD is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
    reason="OpenSSH (openssh-server, openssh-client) not installed; .ci/run installs it",
)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An sshd on a loopback port accepting one generated key; yields (port, client key)."""
    assert SSHD is not None
    d = tmp_path / "ssh"
    d.mkdir()
    keygen = ["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-f"]
    subprocess.run([*keygen, str(d / "host")], check=True)
    subprocess.run([*keygen, str(d / "user")], check=True)
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    (port,) = free_ports(1)
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {d / 'sshd.pid'}\nPermitRootLogin yes\nSubsystem sftp internal-sftp\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
    proc = Proc("sshd", [SSHD, "-D", "-e", "-f", str(config)], d / "sshd.log", d)
    try:
        wait_port(port, 10, proc)
        yield port, d / "user"
    finally:
        proc.stop()


def _ssh_opts(key: Path, known_hosts: Path) -> list[str]:
    return [
        "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=10",
    ]  # fmt: skip


@pytest.mark.parametrize("mux", [True, False], ids=["tcp_mux", "no_mux"])
def test_ssh_and_scp_through_tunnel(
    pyfrp: Pyfrp, sshd: tuple[int, Path], tmp_path: Path, mux: bool
) -> None:
    ssh_port, key = sshd
    bind, remote = free_ports(2)
    frps = pyfrp.frps(f"[common]\nbind_port = {bind}\ntcp_mux = {mux}\n")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\ntcp_mux = {mux}\n"
        f"[ssh-C]\ntype = tcp\nlocal_ip =127.0.0.1\nlocal_port = {ssh_port}\n"
        f"remote_port = {remote}\n"
    )
    frpc.wait_log(r"\[ssh-C\] start proxy success")
    opts = _ssh_opts(key, tmp_path / "known_hosts")
    user = os.environ.get("USER") or "root"

    out = subprocess.run(
        ["ssh", *opts, "-p", str(remote), f"{user}@127.0.0.1", "echo tunnel-ok; uname -s"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["tunnel-ok", "Linux"]

    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024))
    dst = tmp_path / "copied.bin"
    scp = ["scp", *opts, "-P", str(remote)]
    up = subprocess.run(
        [*scp, str(src), f"{user}@127.0.0.1:{tmp_path / 'remote.bin'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    down = subprocess.run(
        [*scp, f"{user}@127.0.0.1:{tmp_path / 'remote.bin'}", str(dst)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert down.returncode == 0, down.stderr
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert hashlib.sha256((tmp_path / "remote.bin").read_bytes()).hexdigest() == digest
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == digest
