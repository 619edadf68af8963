"""A loopback OpenID provider for the OIDC tests: discovery, JWKS and a client-credentials token
endpoint, like frp's e2e mock (test/e2e/mock/server/oidcserver). What it issues is set through
its attributes, so one provider can hand out a good token, then a bad one."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.harness import HOST, serving

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"


class Provider:
    def __init__(self) -> None:
        self.port = 0
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.signer = self.key  # another key: tokens whose signature the JWKS does not verify
        self.audience = "frps"
        self.subject = "test-service"
        self.lifetime = 3600  # the exp claim, seconds from now (negative: already expired)
        self.expires_in: int | None = 3600  # None: omitted from the token response
        self.requests: list[dict[str, str]] = []  # token requests' form fields (+ "basic")
        self.basic_ok = True  # False: client credentials only in the form, like Google's
        self.scheme = "http"
        self.lock = threading.Lock()

    @property
    def issuer(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.issuer + "/token"

    def sign(self, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.lifetime,
        }
        body.update(claims)
        return jwt.encode({"alg": "RS256", "kid": self.signer.kid, "typ": "JWT"}, body, self.signer)

    def token_count(self) -> int:
        with self.lock:
            return len(self.requests)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        p = self.server.provider
        if self.path == "/.well-known/openid-configuration":
            self._json(
                200,
                {
                    "issuer": p.issuer,
                    "token_endpoint": p.token_url,
                    "jwks_uri": p.issuer + "/jwks",
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        elif self.path == "/jwks":
            self._json(200, {"keys": [p.key.as_dict(private=False)]})
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        p = self.server.provider
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic ") and not p.basic_ok:
            self._json(400, {"error": "invalid_request", "error_description": "no Basic auth"})
            return
        if auth.startswith("Basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            cid, secret = unquote_plus(cid), unquote_plus(secret)
            form["basic"] = "1"
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        if form.get("grant_type") != "client_credentials":
            self._json(400, {"error": "unsupported_grant_type"})
            return
        if (cid, secret) != (CLIENT_ID, CLIENT_SECRET):
            self._json(401, {"error": "invalid_client"})
            return
        with p.lock:
            p.requests.append(form)
        resp: dict[str, Any] = {"access_token": p.sign(), "token_type": "Bearer"}
        if p.expires_in is not None:
            resp["expires_in"] = p.expires_in
        self._json(200, resp)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    provider: Provider


@contextmanager
def oidc_provider(tls: ssl.SSLContext | None = None) -> Iterator[Provider]:
    srv = _HTTPServer((HOST, 0), _Handler)
    srv.provider = Provider()
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
        srv.provider.scheme = "https"
    with serving(srv) as port:
        srv.provider.port = port
        yield srv.provider
