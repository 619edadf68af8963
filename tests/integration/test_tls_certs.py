"""tls_cert_file / tls_key_file / tls_trusted_ca_file / tls_server_name as frp uses them.

frps with a trusted CA requires client certificates signed by it (mutual TLS, tls_only implied);
frpc with a trusted CA verifies the server's chain and name.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness import Pyfrp, assert_echo, free_ports

_NOW = datetime.datetime.now(datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _ca(d: Path, cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (d / f"{cn}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(
    d: Path, cn: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], dns: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        .sign(ca[1], hashes.SHA256())
    )
    (d / f"{cn}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, d / f"{cn}.key")


def _pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    d.mkdir()
    ca = _ca(d, "ca")
    _leaf(d, "server", ca, "frps.example.com")
    _leaf(d, "client", ca, "frpc.example.com")
    other = _ca(d, "other-ca")
    _leaf(d, "stranger", other, "frpc.example.com")
    return d


def _frpc(bind: int, remote: int, echo: int, extra: str) -> str:
    return (
        f"[common]\nserver_addr = 127.0.0.1\nserver_port = {bind}\ntls_enable = true\n{extra}"
        f"[e]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
    )


def test_mutual_tls_with_configured_certificates(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    bind, remote, remote2, remote3 = free_ports(4)
    frps = pyfrp.frps(
        f"[common]\nbind_port = {bind}\ntls_cert_file = {pki}/server.crt\n"
        f"tls_key_file = {pki}/server.key\ntls_trusted_ca_file = {pki}/ca.crt\n"
    )
    frps.wait_port(bind)
    good = pyfrp.frpc(
        _frpc(
            bind,
            remote,
            echo,
            f"tls_cert_file = {pki}/client.crt\ntls_key_file = {pki}/client.key\n"
            f"tls_trusted_ca_file = {pki}/ca.crt\ntls_server_name = frps.example.com\n",
        )
    )
    good.wait_log(r"\[e\] start proxy success")
    assert_echo(remote, os.urandom(200_000))

    # No client certificate: the server requires one.
    anonymous = pyfrp.frpc(_frpc(bind, remote2, echo, ""))
    assert anonymous.p.wait(30) == 1
    # A certificate from another CA is refused as well.
    stranger = pyfrp.frpc(
        _frpc(
            bind,
            remote3,
            echo,
            f"tls_cert_file = {pki}/stranger.crt\ntls_key_file = {pki}/stranger.key\n",
        )
    )
    assert stranger.p.wait(30) == 1
    assert "start proxy success" not in anonymous.log() + stranger.log()
    assert_echo(remote, os.urandom(1000))  # the verified client is unaffected


def test_client_verifies_server_name(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    bind, remote = free_ports(2)
    frps = pyfrp.frps(
        f"[common]\nbind_port = {bind}\ntls_cert_file = {pki}/server.crt\n"
        f"tls_key_file = {pki}/server.key\n"
    )
    frps.wait_port(bind)
    wrong = pyfrp.frpc(
        _frpc(
            bind,
            remote,
            echo,
            f"tls_trusted_ca_file = {pki}/ca.crt\ntls_server_name = other.example.com\n",
        )
    )
    assert wrong.p.wait(30) == 1
    assert "certificate verify failed" in wrong.log()
    right = pyfrp.frpc(
        _frpc(
            bind,
            remote,
            echo,
            f"tls_trusted_ca_file = {pki}/ca.crt\ntls_server_name = frps.example.com\n",
        )
    )
    right.wait_log(r"\[e\] start proxy success")
    assert_echo(remote, os.urandom(10_000))
