"""Accept the certificate chains Go's verifier accepts where OpenSSL refuses them.

A leaf whose subject equals its issuer's (frp's own e2e certificates: CA and leaf are both
``CN=127.0.0.1``) looks self-signed to OpenSSL, which then fails the chain with "self-signed
certificate" at depth 0 instead of looking for the issuer in the trust store; Go builds the chain
by issuer name and signature and accepts it. Python's ssl has no verify callback, so
``widen(ctx, ...)`` installs OpenSSL's ``SSL_CTX_set_cert_verify_callback`` through ctypes: the
callback runs OpenSSL's own verification first and, only when that fails with exactly this
error, verifies the chain again with ``cryptography``'s X.509 verifier against the same trusted
CA file (signatures, validity, CA constraints, extended key usage, and the server name on the
client side). Everything OpenSSL accepts or rejects for another reason is left as it was.
"""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import logging
import ssl
from typing import Any

from cryptography import x509
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    ServerVerifier,
    Store,
)

log = logging.getLogger("pyfrp.tls")

_DEPTH_ZERO_SELF_SIGNED_CERT = 18  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_lib: Any = None


def _openssl() -> Any:
    """libssl/libcrypto as Python's own _ssl module links them (dlsym searches its deps)."""
    global _lib
    if _lib is None:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        for name, res, args in (
            (
                "SSL_CTX_set_cert_verify_callback",
                None,
                [ctypes.c_void_p, _CALLBACK, ctypes.c_void_p],
            ),
            ("SSL_CTX_get_verify_mode", ctypes.c_int, [ctypes.c_void_p]),
            ("X509_verify_cert", ctypes.c_int, [ctypes.c_void_p]),
            ("X509_STORE_CTX_get_error", ctypes.c_int, [ctypes.c_void_p]),
            ("X509_STORE_CTX_get_error_depth", ctypes.c_int, [ctypes.c_void_p]),
            ("X509_STORE_CTX_set_error", None, [ctypes.c_void_p, ctypes.c_int]),
            ("X509_STORE_CTX_get0_cert", ctypes.c_void_p, [ctypes.c_void_p]),
            ("X509_STORE_CTX_get0_untrusted", ctypes.c_void_p, [ctypes.c_void_p]),
            ("OPENSSL_sk_num", ctypes.c_int, [ctypes.c_void_p]),
            ("OPENSSL_sk_value", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int]),
            ("i2d_X509", ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _lib = lib
    return _lib


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` inside an ``ssl.SSLContext`` (CPython: the field after PyObject_HEAD),
    checked against the verify mode Python set on it before it is used."""
    lib = _openssl()
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    # SSL_VERIFY_PEER = 1, | SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 2 for CERT_REQUIRED on a server.
    want = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}[ctx.verify_mode]
    if not ptr or lib.SSL_CTX_get_verify_mode(ptr) & 1 != want & 1:
        raise RuntimeError("cannot find OpenSSL's SSL_CTX in this Python's ssl.SSLContext")
    return int(ptr)


def _der(lib: Any, x509_ptr: int) -> bytes:
    size = lib.i2d_X509(x509_ptr, None)
    if size <= 0:
        raise ValueError("i2d_X509 failed")
    buf = ctypes.create_string_buffer(size)
    cursor = ctypes.c_char_p(ctypes.addressof(buf))  # i2d_X509 advances it
    lib.i2d_X509(x509_ptr, ctypes.byref(cursor))
    return buf.raw


def _policy(cafile: str) -> PolicyBuilder:
    with open(cafile, "rb") as f:
        roots = x509.load_pem_x509_certificates(f.read())
    # The Web PKI profile's checks, less the extensions Go does not require: key identifiers
    # and a CA's key usage (OpenSSL does not require those either).
    ca, ee = ExtensionPolicy.webpki_defaults_ca(), ExtensionPolicy.webpki_defaults_ee()
    for ext in (x509.AuthorityKeyIdentifier, x509.SubjectKeyIdentifier, x509.KeyUsage):
        ca = ca.may_be_present(ext, Criticality.AGNOSTIC, None)
    ee = ee.may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    return PolicyBuilder().store(Store(roots)).extension_policies(ca_policy=ca, ee_policy=ee)


def _subject(server_name: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(server_name))
    except ValueError:
        return x509.DNSName(server_name)


def widen(ctx: ssl.SSLContext, cafile: str, server_name: str | None = None) -> None:
    """Make ``ctx`` (verifying peers against ``cafile``) also accept chains whose leaf has its
    issuer's name. ``server_name``: the name a client checks in the server's certificate; None
    on a server, which checks client certificates."""
    lib = _openssl()
    ptr = _ssl_ctx_pointer(ctx)
    policy = _policy(cafile)

    def verifier(now: datetime.datetime) -> ServerVerifier | ClientVerifier:
        p = policy.time(now)
        if server_name is None:
            return p.build_client_verifier()
        return p.build_server_verifier(_subject(server_name))

    def callback(store_ctx: int, _arg: int) -> int:
        try:
            if lib.X509_verify_cert(store_ctx) == 1:
                return 1
            if (
                lib.X509_STORE_CTX_get_error(store_ctx) != _DEPTH_ZERO_SELF_SIGNED_CERT
                or lib.X509_STORE_CTX_get_error_depth(store_ctx) != 0
            ):
                return 0
            leaf = x509.load_der_x509_certificate(
                _der(lib, lib.X509_STORE_CTX_get0_cert(store_ctx))
            )
            if leaf.issuer != leaf.subject:
                return 0
            stack = lib.X509_STORE_CTX_get0_untrusted(store_ctx)
            chain = [
                x509.load_der_x509_certificate(_der(lib, lib.OPENSSL_sk_value(stack, i)))
                for i in range(lib.OPENSSL_sk_num(stack) if stack else 0)
            ]
            verifier(datetime.datetime.now(datetime.UTC)).verify(
                leaf, [c for c in chain if c != leaf]
            )
        except Exception as exc:  # a refusal, or a failure to read: the handshake fails
            log.warning("certificate verify failed: %s", exc)
            return 0
        lib.X509_STORE_CTX_set_error(store_ctx, 0)
        return 1

    cb = _CALLBACK(callback)
    lib.SSL_CTX_set_cert_verify_callback(ptr, cb, None)
    ctx._pyfrp_verify_callback = cb  # type: ignore[attr-defined]  # keep it alive with ctx


def verify_peer(
    cafile: str, server_name: str | None, leaf: x509.Certificate, chain: list[x509.Certificate]
) -> None:
    """Go's check of a peer's chain against ``cafile``, for a TLS stack that takes no callback
    (aioquic): a server's for ``server_name``, a client's when it is None. Raises
    ``ssl.SSLCertVerificationError``."""
    policy = _policy(cafile).time(datetime.datetime.now(datetime.UTC))
    untrusted = [c for c in chain if c != leaf]
    try:
        if server_name is None:
            policy.build_client_verifier().verify(leaf, untrusted)
        else:
            policy.build_server_verifier(_subject(server_name)).verify(leaf, untrusted)
    except Exception as exc:
        raise ssl.SSLCertVerificationError(f"certificate verify failed: {exc}") from exc
