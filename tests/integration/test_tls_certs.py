"""tls_cert_file / tls_key_file / tls_trusted_ca_file / tls_server_name as frp uses them.

frps with a trusted CA requires client certificates signed by it (mutual TLS, tls_only implied);
frpc with a trusted CA verifies the server's chain and name.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import threading
from pathlib import Path

import pytest
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


def _ca(d: Path, cn: str, stem: str = "") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
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
    (d / f"{stem or cn}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(
    d: Path,
    cn: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    dns: str,
    stem: str = "",
    ip: str = "",
) -> None:
    names: list[x509.GeneralName] = [x509.DNSName(dns)]
    if ip:
        names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca[1], hashes.SHA256())
    )
    (d / f"{stem or cn}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, d / f"{stem or cn}.key")


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


def test_leaf_named_like_its_ca(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    """frp's own e2e certificates: the CA and the leaf are both CN=127.0.0.1. OpenSSL alone takes
    such a leaf for a self-signed one and refuses it; Go builds the chain and accepts it, and so
    must pyfrp, on both sides, while a leaf of the same name from another CA stays refused."""
    d = tmp_path / "pki"
    d.mkdir()
    ca = _ca(d, "127.0.0.1", "ca")
    _leaf(d, "127.0.0.1", ca, "localhost", "leaf", ip="127.0.0.1")
    _leaf(d, "127.0.0.1", _ca(d, "127.0.0.1", "other-ca"), "localhost", "stranger", "127.0.0.1")
    plain = ssl.create_default_context(cafile=str(d / "ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed"):
        _handshake(plain, d / "leaf.crt", d / "leaf.key")

    bind, remote, remote2, remote3 = free_ports(4)
    frps = pyfrp.frps(
        f"[common]\nbind_port = {bind}\ntls_cert_file = {d}/leaf.crt\n"
        f"tls_key_file = {d}/leaf.key\ntls_trusted_ca_file = {d}/ca.crt\n"
    )
    frps.wait_port(bind)
    mutual = f"tls_trusted_ca_file = {d}/ca.crt\n"
    good = pyfrp.frpc(
        _frpc(
            bind,
            remote,
            echo,
            f"tls_cert_file = {d}/leaf.crt\ntls_key_file = {d}/leaf.key\n" + mutual,
        )
    )
    good.wait_log(r"\[e\] start proxy success")
    assert_echo(remote, os.urandom(100_000))
    # The server's name is checked on the fallback path too.
    wrong_name = pyfrp.frpc(
        _frpc(
            bind,
            remote2,
            echo,
            f"tls_cert_file = {d}/leaf.crt\ntls_key_file = {d}/leaf.key\n{mutual}"
            "tls_server_name = example.com\n",
        )
    )
    assert wrong_name.p.wait(30) == 1
    assert "certificate verify failed" in wrong_name.log()
    # A client certificate of the same name from another CA is refused by frps.
    stranger = pyfrp.frpc(
        _frpc(
            bind,
            remote3,
            echo,
            f"tls_cert_file = {d}/stranger.crt\ntls_key_file = {d}/stranger.key\n",
        )
    )
    assert stranger.p.wait(30) == 1
    assert "start proxy success" not in wrong_name.log() + stranger.log()
    assert_echo(remote, os.urandom(1000))


def _handshake(client: ssl.SSLContext, cert: Path, key: Path) -> None:
    """One TLS handshake over a socket pair, the server presenting ``cert``."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    a, b = socket.socketpair()
    with a, b:
        srv = threading.Thread(target=_serve_one, args=(server, b), daemon=True)
        srv.start()
        try:
            client.wrap_socket(a, server_hostname="127.0.0.1").close()
        finally:
            srv.join(10)


def _serve_one(ctx: ssl.SSLContext, sock: socket.socket) -> None:
    try:
        ctx.wrap_socket(sock, server_side=True).close()
    except (ssl.SSLError, OSError):
        pass
