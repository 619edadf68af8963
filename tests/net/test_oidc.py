"""The OIDC HTTP side against a loopback provider: frpc's token source (caching, x/oauth2's
auth-style probe, TLS with ``trustedCaFile`` / ``insecureSkipVerify``) and frps's verifier
(discovery, JWKS, key rotation)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from joserfc.jwk import RSAKey

from pyfrp.errors import OIDCError
from pyfrp.net.oidc import TokenSource, Verifier
from pyfrp.proto.oidc import ClientCredentials, VerifyOptions
from tests.integration.test_tls_certs import _ca, _leaf
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, oidc_provider


def _source(
    p: Provider, trusted_ca_file: str = "", insecure_skip_verify: bool = False
) -> TokenSource:
    creds = ClientCredentials(CLIENT_ID, CLIENT_SECRET, "frps", "", p.token_url)
    return TokenSource(
        creds, trusted_ca_file=trusted_ca_file, insecure_skip_verify=insecure_skip_verify
    )


async def test_tokens_are_cached_only_when_the_provider_says_how_long() -> None:
    with oidc_provider() as p:
        src = _source(p)
        assert await src.token() == await src.token()
        assert p.token_count() == 1
        p.expires_in = None
        src = _source(p)
        await src.token()
        await src.token()
        assert p.token_count() == 3  # no expiry: a fresh token every time, as frp


async def test_a_provider_refusing_basic_auth_gets_the_secret_in_the_form() -> None:
    with oidc_provider() as p:
        p.basic_ok = False
        src = _source(p)
        p.expires_in = None
        await src.token()
        await src.token()
        assert [r.get("basic") for r in p.requests] == [None, None]
        assert p.requests[0]["client_id"] == CLIENT_ID


async def test_https_token_endpoint_with_trusted_ca_or_no_verification(tmp_path: Path) -> None:
    ca = _ca(tmp_path, "idp-ca")
    _leaf(tmp_path, "idp", ca, "idp.example", ip="127.0.0.1")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "idp.crt", tmp_path / "idp.key")
    with oidc_provider(tls) as p:
        assert await _source(p, trusted_ca_file=str(tmp_path / "idp-ca.crt")).token()
        assert await _source(p, insecure_skip_verify=True).token()
        with pytest.raises(OIDCError, match=rf'^Post "{p.token_url}": .*certificate verify'):
            await _source(p).token()
    with pytest.raises(OIDCError, match="failed to read OIDC CA certificate file"):
        _source(p, trusted_ca_file=str(tmp_path / "missing.crt"))


async def test_verifier_discovers_and_follows_key_rotation() -> None:
    with oidc_provider() as p:
        v = await Verifier.discover(VerifyOptions(p.issuer, "frps"))
        assert (await v.verify(p.sign())).subject == "test-service"
        p.key = p.signer = RSAKey.generate_key(2048, parameters={"kid": "k2"})
        assert (await v.verify(p.sign(sub="rotated"))).subject == "rotated"
        p.signer = RSAKey.generate_key(2048, parameters={"kid": "k2"})
        with pytest.raises(OIDCError) as info:
            await v.verify(p.sign())
        assert str(info.value) == "failed to verify signature: failed to verify id token signature"
    with pytest.raises(OIDCError, match=r'^Get "http://127\.0\.0\.1:\d+/\.well-known/'):
        await Verifier.discover(VerifyOptions(p.issuer))
