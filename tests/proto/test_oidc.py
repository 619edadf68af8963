"""OIDC without IO: the token request frpc sends, the token responses it accepts, and frps's
verification of a JWT (signed here with keys generated here), with go-oidc's error texts."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from pyfrp.errors import OIDCError
from pyfrp.proto.oidc import (
    AccessToken,
    ClientCredentials,
    SubjectBook,
    TokenCache,
    VerifyOptions,
    check_claims,
    parse_discovery,
    parse_jwks,
    parse_jwt,
    parse_token_response,
    validate_client,
    verify_signature,
)

ISSUER = "https://issuer.example"
RSA = RSAKey.generate_key(2048, parameters={"kid": "r1"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "r1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "e1"})
JWKS = json.dumps({"keys": [RSA.as_dict(private=False), EC.as_dict(private=False)]}).encode()


def _token(key: Any = RSA, alg: str = "RS256", kid: str | None = "r1", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "svc", "aud": "frps", "iat": now, "exp": now + 60}
    body.update(claims)
    header = {"alg": alg, **({"kid": kid} if kid is not None else {})}
    return jwt.encode(header, body, key, algorithms=[alg])


def _verify(raw: str, opts: VerifyOptions | None = None, algs: tuple[str, ...] = ("RS256",)) -> Any:
    parsed = parse_jwt(raw, algs)
    payload = verify_signature(parsed, parse_jwks(JWKS))
    if payload is None:
        raise OIDCError("failed to verify signature: failed to verify id token signature")
    return check_claims(payload, opts or VerifyOptions(ISSUER, "frps"))


def test_a_good_token_verifies_to_its_subject() -> None:
    claims = _verify(_token())
    assert (claims.issuer, claims.subject, claims.audience) == (ISSUER, "svc", ("frps",))
    # A list audience holding ours, an ES256 key the discovery allows, and no kid at all.
    assert _verify(_token(aud=["x", "frps"])).audience == ("x", "frps")
    assert _verify(_token(EC, "ES256", "e1"), algs=("RS256", "ES256")).subject == "svc"
    assert _verify(_token(kid=None)).subject == "svc"


def test_a_token_signed_by_another_key_is_refused() -> None:
    with pytest.raises(OIDCError, match=r"^failed to verify signature: failed to verify id token"):
        _verify(_token(OTHER))
    tampered = _token().split(".")
    tampered[1] = base64.urlsafe_b64encode(b'{"sub":"admin"}').rstrip(b"=").decode()
    with pytest.raises(OIDCError, match="failed to verify id token signature"):
        _verify(".".join(tampered))


def test_algorithms_outside_the_discovered_ones_are_malformed() -> None:
    hs = jwt.encode({"alg": "HS256"}, {"sub": "x"}, _oct(), algorithms=["HS256"])
    with pytest.raises(OIDCError) as info:
        _verify(hs)
    assert str(info.value) == (
        'oidc: malformed jwt: go-jose/go-jose: unexpected signature algorithm "HS256"; '
        'expected ["RS256"]'
    )
    with pytest.raises(OIDCError, match=r"^oidc: malformed jwt: .*three parts$"):
        _verify("not-a-jwt")
    with pytest.raises(OIDCError, match=r"^oidc: malformed jwt: "):
        _verify("a.b.c")


def _oct() -> Any:
    from joserfc.jwk import OctKey

    return OctKey.generate_key(256)


def test_wrong_audience_issuer_and_expiry_use_go_oidc_texts() -> None:
    with pytest.raises(OIDCError) as info:
        _verify(_token(aud="other"))
    assert str(info.value) == 'oidc: expected audience "frps" got ["other"]'
    with pytest.raises(OIDCError) as info:
        _verify(_token(iss="https://evil.example"))
    assert str(info.value) == (
        'oidc: id token issued by a different provider, expected "https://issuer.example" '
        'got "https://evil.example"'
    )
    with pytest.raises(OIDCError, match=r"^oidc: token is expired \(Token Expiry: \d{4}-"):
        _verify(_token(exp=int(time.time()) - 5))
    with pytest.raises(OIDCError, match=r"before the nbf \(not before\) time"):
        _verify(_token(nbf=int(time.time()) + 3600))


def test_skips_and_an_empty_audience_accept_what_they_skip() -> None:
    opts = VerifyOptions(ISSUER, "", skip_expiry_check=True, skip_issuer_check=True)
    claims = _verify(_token(aud="any", iss="https://else", exp=1), opts)
    assert claims.subject == "svc"


def test_discovery_must_name_the_configured_issuer() -> None:
    doc: dict[str, Any] = {"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks"}
    d = parse_discovery(ISSUER, json.dumps(doc).encode())
    assert (d.jwks_uri, d.algs) == (ISSUER + "/jwks", ("RS256",))  # go-oidc's default
    doc["id_token_signing_alg_values_supported"] = ["HS256", "ES256", "none"]
    assert parse_discovery(ISSUER, json.dumps(doc).encode()).algs == ("ES256",)
    with pytest.raises(OIDCError) as info:
        parse_discovery(ISSUER + "/", json.dumps(doc).encode())
    assert str(info.value) == (
        'oidc: issuer URL provided to client ("https://issuer.example/") did not match the '
        'issuer URL returned by provider ("https://issuer.example")'
    )
    with pytest.raises(OIDCError, match=r"^oidc: failed to decode provider discovery object"):
        parse_discovery(ISSUER, b"<html>")


def test_jwks_skips_keys_it_cannot_read() -> None:
    doc = {"keys": [{"kty": "weird"}, RSA.as_dict(private=False)]}
    assert [k.kid for k in parse_jwks(json.dumps(doc).encode())] == ["r1"]
    with pytest.raises(OIDCError, match=r"^oidc: failed to decode keys"):
        parse_jwks(b"{}")


def test_later_tokens_must_name_a_subject_some_login_had() -> None:
    book = SubjectBook()
    book.add("svc")
    assert book.known("svc")
    assert not book.known("other")


# --------------------------------------------------------------------------- client side


def test_token_request_is_x_oauth2s_client_credentials_form() -> None:
    creds = ClientCredentials(
        "id&1", "s:ecret", "frps", "", "http://127.0.0.1/token", {"resource": "r"}
    )
    body, headers = creds.request(in_params=False)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    user, _, secret = base64.b64decode(headers["Authorization"][6:]).decode().partition(":")
    assert (user, secret) == ("id%261", "s%3Aecret")  # url.QueryEscape'd, as x/oauth2
    form = parse_qs(body.decode(), keep_blank_values=True)
    assert form == {
        "grant_type": ["client_credentials"],
        "scope": [""],
        "audience": ["frps"],
        "resource": ["r"],
    }
    body, headers = creds.request(in_params=True)
    assert "Authorization" not in headers
    form = parse_qs(body.decode())
    assert (form["client_id"], form["client_secret"]) == (["id&1"], ["s:ecret"])


def test_client_validation_texts_are_frps() -> None:
    assert validate_client(ClientCredentials("", token_endpoint_url="")) == [
        "auth.oidc.clientID is required",
        "auth.oidc.tokenEndpointURL is required",
    ]
    assert validate_client(ClientCredentials("c", token_endpoint_url="/token")) == [
        "auth.oidc.tokenEndpointURL must be an absolute http or https URL"
    ]
    assert validate_client(ClientCredentials("c", token_endpoint_url="ftp://h/t")) == [
        "auth.oidc.tokenEndpointURL must use http or https"
    ]
    params = {"scope": "x", "audience": "y"}
    assert validate_client(
        ClientCredentials(
            "c", audience="a", token_endpoint_url="https://h/t", additional_params=params
        )
    ) == [
        "auth.oidc.additionalEndpointParams.scope is not allowed; use auth.oidc.scope instead",
        "cannot specify both auth.oidc.audience and auth.oidc.additionalEndpointParams.audience",
    ]


def test_token_responses_json_form_and_errors() -> None:
    ok = parse_token_response(
        200, "OK", "application/json", b'{"access_token":"t","expires_in":60}'
    )
    assert ok == AccessToken("t", 60)
    form = parse_token_response(200, "OK", "text/plain", b"access_token=f&expires_in=5")
    assert form == AccessToken("f", 5)
    assert (
        parse_token_response(200, "OK", "application/json", b'{"access_token":"t"}').expires_in == 0
    )
    cases = {
        (401, b'{"error":"invalid_client"}'): 'oauth2: "invalid_client"',
        (400, b'{"error":"bad","error_description":"why"}'): 'oauth2: "bad" "why"',
        (200, b'{"error":"odd"}'): 'oauth2: "odd"',  # some servers say 200 with an error
        (500, b"oops"): "oauth2: cannot fetch token: 500 Internal\nResponse: oops",
        (200, b'{"token_type":"Bearer"}'): "oauth2: server response missing access_token",
    }
    for (status, body), text in cases.items():
        with pytest.raises(OIDCError) as info:
            parse_token_response(status, "Internal", "application/json", body)
        assert str(info.value) == text


def test_token_cache_reuses_until_ten_seconds_before_expiry() -> None:
    cache = TokenCache()
    assert cache.cached(0) is None
    cache.store(AccessToken("a", 60), 0)
    assert cache.cached(49) == "a"
    assert cache.cached(51) is None  # x/oauth2's expiryDelta
    # A provider that gives no expiry at first never gets its tokens cached.
    cache = TokenCache()
    cache.store(AccessToken("a", 0), 0)
    assert cache.cached(1) is None
    cache.store(AccessToken("b", 60), 1)
    assert cache.cached(2) is None
