"""frp's OIDC authentication without IO (pkg/auth/oidc.go).

frpc gets an access token with the OAuth2 client-credentials grant (golang.org/x/oauth2's
clientcredentials) and sends it as ``privilege_key``; frps verifies it as go-oidc's
``IDTokenVerifier`` does: signature against the issuer's JWKS, then issuer, audience, expiry.
The error texts are go-oidc's and x/oauth2's, since frps logs them and, with
``detailedErrorsToClient``, frpc prints them.

JOSE is joserfc's (typed and maintained). This module, and so joserfc, is imported only when
``auth.method = "oidc"``: idle processes do not pay for it.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlencode

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

from pyfrp.errors import OIDCError

# go-oidc's supportedAlgorithms; RS256 when discovery names none of them.
SUPPORTED_ALGS = (
    "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA",
)  # fmt: skip
DEFAULT_ALG = "RS256"
EXPIRY_DELTA = 10.0  # x/oauth2 refreshes a cached token this long before it expires


# --------------------------------------------------------------------------- client side


@dataclass(slots=True)
class ClientCredentials:
    """``auth.oidc.*`` of frpc: what the token request carries."""

    client_id: str
    client_secret: str = ""
    audience: str = ""
    scope: str = ""
    token_endpoint_url: str = ""
    additional_params: dict[str, str] = field(default_factory=dict)

    def form(self, *, in_params: bool) -> dict[str, str]:
        """The urlencoded body: x/oauth2 always sends ``scope`` (frp passes ``[]string{scope}``)
        and, when the secret goes in the body instead of Basic auth, the client's id and secret."""
        values = {"grant_type": "client_credentials", "scope": self.scope}
        values.update(self.additional_params)
        if self.audience:
            values["audience"] = self.audience
        if in_params:
            if self.client_id:
                values["client_id"] = self.client_id
            if self.client_secret:
                values["client_secret"] = self.client_secret
        return values

    def request(self, *, in_params: bool) -> tuple[bytes, dict[str, str]]:
        """Body and headers of one token request (first with Basic auth, as x/oauth2 probes)."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if not in_params:
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        body = urlencode(sorted(self.form(in_params=in_params).items())).encode()
        return body, headers


def validate_client(c: ClientCredentials) -> list[str]:
    """frp's ValidateOIDCClientCredentialsConfig, same texts."""
    errs = []
    if not c.client_id:
        errs.append("auth.oidc.clientID is required")
    url = c.token_endpoint_url
    if not url:
        errs.append("auth.oidc.tokenEndpointURL is required")
    else:
        scheme, sep, rest = url.partition("://")
        host = rest.split("/", 1)[0].split("?", 1)[0]
        if not sep or not scheme or not host:
            errs.append("auth.oidc.tokenEndpointURL must be an absolute http or https URL")
        elif scheme.lower() not in ("http", "https"):
            errs.append("auth.oidc.tokenEndpointURL must use http or https")
    if "scope" in c.additional_params:
        errs.append(
            "auth.oidc.additionalEndpointParams.scope is not allowed; use auth.oidc.scope instead"
        )
    if c.audience and "audience" in c.additional_params:
        errs.append(
            "cannot specify both auth.oidc.audience and auth.oidc.additionalEndpointParams.audience"
        )
    return errs


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_in: int  # seconds; 0: the provider gave no expiry


def parse_token_response(status: int, reason: str, content_type: str, body: bytes) -> AccessToken:
    """x/oauth2's doTokenRoundTrip: JSON or form-encoded; errors as RetrieveError prints them."""
    failed = not 200 <= status <= 299
    text = body.decode("utf-8", "replace")
    generic = OIDCError(f"oauth2: cannot fetch token: {status} {reason}\nResponse: {text}")
    mime = content_type.split(";", 1)[0].strip().lower()
    fields: dict[str, Any]
    if mime in ("application/x-www-form-urlencoded", "text/plain"):
        try:
            parsed = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError) as exc:
            if failed:
                raise generic from None
            raise OIDCError(f"oauth2: cannot parse response: {exc}") from None
        fields = {k: v[0] for k, v in parsed.items()}
        try:
            fields["expires_in"] = int(fields.get("expires_in", "0"))
        except ValueError:
            fields["expires_in"] = 0
    else:
        try:
            fields = json.loads(body)
            if not isinstance(fields, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            if failed:
                raise generic from None
            raise OIDCError(f"oauth2: cannot parse json: {exc}") from None
    code = fields.get("error") or ""
    if failed or code:
        if not code:
            raise generic
        text = f"oauth2: {_goq(str(code))}"
        for extra in ("error_description", "error_uri"):
            if fields.get(extra):
                text += f" {_goq(str(fields[extra]))}"
        raise OIDCError(text)
    token = fields.get("access_token")
    if not isinstance(token, str) or not token:
        raise OIDCError("oauth2: server response missing access_token")
    expires = fields.get("expires_in")
    return AccessToken(token, expires if isinstance(expires, int) and expires > 0 else 0)


class TokenCache:
    """x/oauth2's caching TokenSource as frp wraps it: the first token tells whether the
    provider sets an expiry; without one every request fetches a fresh token."""

    def __init__(self) -> None:
        self.caching: bool | None = None  # unknown until the first token
        self._token = ""
        self._expires_at = 0.0

    def cached(self, now: float) -> str | None:
        if self.caching and self._token and now < self._expires_at - EXPIRY_DELTA:
            return self._token
        return None

    def store(self, token: AccessToken, now: float) -> None:
        if self.caching is None:
            self.caching = token.expires_in > 0
        if self.caching:
            self._token = token.value
            # x/oauth2 caches a token without expiry forever once it is caching.
            self._expires_at = now + token.expires_in if token.expires_in else float("inf")


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True, slots=True)
class Discovery:
    issuer: str
    jwks_uri: str
    algs: tuple[str, ...]


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def parse_discovery(issuer: str, body: bytes) -> Discovery:
    """go-oidc's NewProvider checks on the discovery document."""
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise OIDCError(f"oidc: failed to decode provider discovery object: {exc}") from None
    if doc.get("issuer") != issuer:
        raise OIDCError(
            f"oidc: issuer URL provided to client ({_goq(issuer)}) did not match the issuer URL "
            f"returned by provider ({_goq(str(doc.get('issuer', '')))})"
        )
    algs = tuple(
        a for a in doc.get("id_token_signing_alg_values_supported") or () if a in SUPPORTED_ALGS
    )
    return Discovery(issuer, str(doc.get("jwks_uri", "")), algs or (DEFAULT_ALG,))


def parse_jwks(body: bytes) -> list[Key]:
    """The public keys of a JWKS document; entries of unknown types are skipped, as go-jose."""
    try:
        doc = json.loads(body)
        entries = doc["keys"]
        if not isinstance(entries, list):
            raise ValueError("keys is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise OIDCError(
            f"oidc: failed to decode keys: {exc} {body.decode('utf-8', 'replace')}"
        ) from None
    keys: list[Key] = []
    for entry in entries:
        try:
            keys.append(KeySet.import_key_set({"keys": [entry]}).keys[0])
        except (JoseError, ValueError, KeyError, TypeError):
            continue
    return keys


@dataclass(frozen=True, slots=True)
class Parsed:
    """A compact JWS with its header read but its signature not yet checked."""

    raw: str
    alg: str
    kid: str


def parse_jwt(raw: str, algs: Iterable[str]) -> Parsed:
    """go-jose's ParseSigned with the allowed algorithms (errors as go-oidc wraps them)."""
    allowed = list(algs)
    if raw.count(".") != 2:
        raise OIDCError(
            "oidc: malformed jwt: go-jose/go-jose: compact JWS format must have three parts"
        )
    try:
        header = jws.extract_compact(raw.encode()).headers()
    except (JoseError, ValueError, UnicodeError) as exc:
        raise OIDCError(f"oidc: malformed jwt: {exc}") from None
    alg = header.get("alg")
    if alg not in allowed:
        expected = "[" + " ".join(_goq(a) for a in allowed) + "]"
        raise OIDCError(
            f"oidc: malformed jwt: go-jose/go-jose: unexpected signature algorithm "
            f"{_goq(str(alg))}; expected {expected}"
        )
    kid = header.get("kid")
    return Parsed(raw, str(alg), kid if isinstance(kid, str) else "")


def verify_signature(token: Parsed, keys: Iterable[Key]) -> bytes | None:
    """The payload if a key with the token's kid (any key when it has none) signed it."""
    for key in keys:
        if token.kid and key.kid != token.kid:
            continue
        if not isinstance(key, RSAKey | ECKey | OKPKey):
            continue
        try:
            return jws.deserialize_compact(token.raw, key, algorithms=[token.alg]).payload
        except (JoseError, ValueError):
            continue
    return None


@dataclass(frozen=True, slots=True)
class Claims:
    issuer: str
    subject: str
    audience: tuple[str, ...]
    expiry: float


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """``auth.oidc.*`` of frps (an empty audience skips that check, as frp configures go-oidc)."""

    issuer: str
    audience: str = ""
    skip_expiry_check: bool = False
    skip_issuer_check: bool = False


def check_claims(payload: bytes, opts: VerifyOptions, now: float | None = None) -> Claims:
    """go-oidc's checks after the signature, in its order."""
    try:
        doc = json.loads(payload, parse_constant=_not_json)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        aud = doc.get("aud", [])
        audience = (aud,) if isinstance(aud, str) else tuple(str(a) for a in aud or ())
        exp = float(doc.get("exp") or 0)
        nbf = doc.get("nbf")
        nbf = float(nbf) if nbf is not None else None
        if not math.isfinite(exp) or (nbf is not None and not math.isfinite(nbf)):
            raise ValueError("exp or nbf out of range")  # Go's float64 refuses 1e999
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise OIDCError(f"oidc: failed to unmarshal claims: {exc}") from None
    claims = Claims(str(doc.get("iss", "")), str(doc.get("sub", "")), audience, exp)
    if not opts.skip_issuer_check and claims.issuer != opts.issuer:
        raise OIDCError(
            f"oidc: id token issued by a different provider, expected {_goq(opts.issuer)} "
            f"got {_goq(claims.issuer)}"
        )
    if opts.audience and opts.audience not in claims.audience:
        got = "[" + " ".join(_goq(a) for a in claims.audience) + "]"
        raise OIDCError(f"oidc: expected audience {_goq(opts.audience)} got {got}")
    if not opts.skip_expiry_check:
        now = time.time() if now is None else now
        if exp < now:
            raise OIDCError(f"oidc: token is expired (Token Expiry: {_gotime(exp)})")
        if nbf is not None and now + 300 < nbf:  # go-oidc's 5 minutes of clock skew
            raise OIDCError(
                f"oidc: current time {_gotime(now)} before the nbf (not before) time: "
                f"{_gotime(nbf)}"
            )
    return claims


def _not_json(name: str) -> float:
    """NaN and Infinity are Python's extension of JSON (an exp of NaN would never expire)."""
    raise ValueError(f"invalid JSON value {name}")


class SubjectBook:
    """frp's subjectsFromLogin: a later token (ping, work connection) must name a subject
    that some login had."""

    def __init__(self) -> None:
        self._subjects: set[str] = set()

    def add(self, subject: str) -> None:
        self._subjects.add(subject)

    def known(self, subject: str) -> bool:
        return subject in self._subjects


def _goq(s: str) -> str:
    """Go's %q for ordinary text."""
    return json.dumps(s, ensure_ascii=False)


def _gotime(ts: float) -> str:
    """Go's time.Time %v in the local zone (fractions only when present)."""
    dt = datetime.fromtimestamp(ts).astimezone()
    frac = f"{dt.microsecond / 1e6:.6f}".rstrip("0").rstrip(".")[1:] if dt.microsecond else ""
    return dt.strftime("%Y-%m-%d %H:%M:%S") + frac + dt.strftime(" %z %Z")
