"""TLS contexts as frp builds them (pkg/transport/tls.go).

frps without a configured certificate makes an RSA-2048 self-signed one at start-up. frpc verifies
nothing unless a trusted CA file is given (Go's InsecureSkipVerify), and sends its own certificate
when one is configured. frps with a trusted CA file requires and verifies client certificates.

Unlike Go frpc, pyfrpc resumes TLS sessions (``ClientContext.resume``): without tcp_mux every work
connection is a TLS handshake, and a resumed one spares frps its certificate signature.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
import time
from typing import TYPE_CHECKING

# cryptography's x509 (~3 MiB of RSS) loads only for a certificate to make or a chain to check:
# an idle frpc without trustedCaFile never needs it
if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa


def self_signed_cert(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """A certificate for ``key`` signed by itself: random serial, valid 10 years."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pyfrp")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


def self_signed_pem() -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): RSA-2048, self-signed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed_cert(key)
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _load_pem_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # ssl can only load certificates from files.
    with tempfile.TemporaryDirectory() as d:
        cert_path, key_path = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        with open(cert_path, "wb") as f:
            f.write(cert_pem)
        with open(key_path, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert_path, key_path)


def server_context(
    cert_file: str = "", key_file: str = "", trusted_ca_file: str = ""
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if cert_file and key_file:
        ctx.load_cert_chain(cert_file, key_file)
    else:
        _load_pem_pair(ctx, *self_signed_pem())
    if trusted_ca_file:
        from pyfrp.net import chainverify

        ctx.load_verify_locations(trusted_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
        chainverify.widen(ctx, trusted_ca_file)
    return ctx


class ClientContext(ssl.SSLContext):
    """A client context for connections to one server that resumes sessions: each connection
    offers ``resume``, the session (ticket) of an earlier full handshake. The event loop's TLS
    transport builds its SSLObject with ``wrap_bio`` and has no way to pass a session, so it is
    added here. A server that no longer accepts the ticket (restarted, expired) answers with a
    full handshake, whose ticket is taken instead.

    Reading a session, and offering it, costs Python a copy that parses the server's
    certificate again, so a full handshake's session is read once, ``ticket_wait`` seconds after
    it (a server sends its tickets within a round trip of the handshake, before any data), and a
    server whose sessions had no ticket ``TICKET_LOOKS`` times is taken to send none."""

    TICKET_LOOKS = 3
    ticket_wait = 1.0
    resume: ssl.SSLSession | None = None
    _fresh: ssl.SSLObject | None = None  # the oldest full handshake not looked at yet
    _fresh_at = 0.0
    _ticketless = 0  # full handshakes whose session had no ticket

    def offer(self) -> ssl.SSLSession | None:
        """Call before each handshake: what it will offer."""
        fresh = self._fresh
        if fresh is not None and time.monotonic() - self._fresh_at >= self.ticket_wait:
            self._fresh = None
            session = fresh.session
            if session is not None and session.has_ticket:
                self.resume, self._ticketless = session, 0
            else:
                self._ticketless += 1
        return self.resume

    def handshake_done(self, sslobj: ssl.SSLObject, offered: ssl.SSLSession | None) -> None:
        """Call after each handshake, with what ``offer`` returned before it."""
        if sslobj.session_reused:
            return
        if offered is not None and self.resume is offered:
            self.resume = None  # refused: offering it again would only cost a copy per dial
        if self._fresh is None and self._ticketless < self.TICKET_LOOKS:
            self._fresh, self._fresh_at = sslobj, time.monotonic()

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(
            incoming, outgoing, server_side, server_hostname, session or self.resume
        )


def client_context(
    cert_file: str = "", key_file: str = "", trusted_ca_file: str = "", server_name: str = ""
) -> ClientContext:
    """``server_name``: the name the server's certificate must carry when a CA is given (frpc's
    ``transport.tls.serverName``, else ``serverAddr``)."""
    ctx = ClientContext(ssl.PROTOCOL_TLS_CLIENT)
    if trusted_ca_file:
        from pyfrp.net import chainverify

        ctx.load_verify_locations(trusted_ca_file)
        chainverify.widen(ctx, trusted_ca_file, server_name)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file and key_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx
