"""HTTP for OIDC: frpc's token requests and frps's discovery and JWKS fetches.

aiohttp and joserfc load only when ``auth.method = "oidc"`` (idle RSS), so importing this module
is what pays for them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import aiohttp
from joserfc.jwk import Key

from pyfrp.errors import OIDCError
from pyfrp.proto.oidc import (
    AccessToken,
    Claims,
    ClientCredentials,
    Discovery,
    SubjectBook,
    TokenCache,
    VerifyOptions,
    check_claims,
    discovery_url,
    parse_discovery,
    parse_jwks,
    parse_jwt,
    parse_token_response,
    verify_signature,
)

HTTP_TIMEOUT = 30.0
MAX_BODY = 1 << 20  # x/oauth2 reads at most 1 MiB of a token response


def _errtext(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class TokenSource:
    """frpc's client-credentials token source (frp's oidcTokenSource around x/oauth2's)."""

    def __init__(
        self,
        creds: ClientCredentials,
        *,
        trusted_ca_file: str = "",
        insecure_skip_verify: bool = False,
        proxy_url: str = "",
    ) -> None:
        self.creds = creds
        self._cache = TokenCache()
        self._in_params: bool | None = None  # x/oauth2's auth style, probed until one works
        self._proxy = proxy_url or None
        # frp's own HTTP client ignores the environment's proxy; the default one honours it.
        custom = trusted_ca_file or insecure_skip_verify or proxy_url
        self._trust_env = not custom and _env_proxy_applies(creds.token_endpoint_url)
        self._ssl: ssl.SSLContext | bool = True
        if insecure_skip_verify:
            self._ssl = False
        elif trusted_ca_file:
            self._ssl = _ca_context(trusted_ca_file)
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """A token, fetched when none is cached (or ever, if the provider gives no expiry)."""
        async with self._lock:
            cached = self._cache.cached(time.time())
            if cached is not None:
                return cached
            got = await self._fetch()
            self._cache.store(got, time.time())
            return got.value

    async def _fetch(self) -> AccessToken:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=self._trust_env) as session:
            if self._in_params is not None:
                return await self._post(session, self._in_params)
            # x/oauth2 tries Basic auth first, then the secret in the body, and remembers.
            try:
                got = await self._post(session, False)
                self._in_params = False
            except OIDCError:
                got = await self._post(session, True)
                self._in_params = True
            return got

    async def _post(self, session: aiohttp.ClientSession, in_params: bool) -> AccessToken:
        body, headers = self.creds.request(in_params=in_params)
        try:
            async with session.post(
                self.creds.token_endpoint_url,
                data=body,
                headers=headers,
                ssl=self._ssl,
                proxy=self._proxy,
            ) as resp:
                data = await resp.content.read(MAX_BODY)
                return parse_token_response(
                    resp.status, resp.reason or "", resp.headers.get("Content-Type", ""), data
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise OIDCError(f'Post "{self.creds.token_endpoint_url}": {_errtext(exc)}') from None


class FileOrExecSource:
    """``auth.oidc.tokenSource``: the token is read anew for every message, as frp."""

    def __init__(self, path: str = "", argv: Sequence[str] = (), env: dict[str, str] | None = None):
        self.path = path
        self.argv = list(argv)
        self.env = env

    async def token(self) -> str:
        if self.path:
            try:
                return _read_text(self.path).strip()  # a small local file: no thread needed
            except OSError as exc:
                raise OIDCError(f"failed to read file {self.path}: {exc.strerror or exc}") from None
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE, env=self.env
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        except (OSError, TimeoutError) as exc:
            raise OIDCError(f"failed to execute command {self.argv[0]}: {exc}") from None
        if proc.returncode:
            raise OIDCError(
                f"failed to execute command {self.argv[0]}: exit status {proc.returncode}"
            )
        return out.decode("utf-8", "replace").strip()


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _ca_context(path: str) -> ssl.SSLContext:
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as exc:
        raise OIDCError(
            f"failed to create OIDC HTTP client: failed to read OIDC CA certificate file "
            f'"{path}": {exc.strerror or exc}'
        ) from None
    try:
        return ssl.create_default_context(cadata=pem.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError):
        raise OIDCError(
            "failed to create OIDC HTTP client: failed to parse OIDC CA certificate from "
            f'file "{path}"'
        ) from None


class Verifier:
    """frps's go-oidc verifier: discovery once at start, the JWKS fetched when a token's key
    is not among those known (key rotation), then the claims."""

    def __init__(self, opts: VerifyOptions, discovery: Discovery) -> None:
        self.opts = opts
        self.discovery = discovery
        self.subjects = SubjectBook()
        self._keys: list[Key] = []
        self._refresh: asyncio.Future[list[Key]] | None = None

    @classmethod
    async def discover(cls, opts: VerifyOptions) -> Verifier:
        """go-oidc's NewProvider (frps does not start when it fails)."""
        async with _session(opts.issuer) as session:
            try:
                async with session.get(discovery_url(opts.issuer)) as resp:
                    body = await resp.content.read(MAX_BODY)
                    if resp.status != 200:
                        raise OIDCError(
                            f"{resp.status} {resp.reason}: {body.decode('utf-8', 'replace')}"
                        )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise OIDCError(f'Get "{discovery_url(opts.issuer)}": {_errtext(exc)}') from None
        return cls(opts, parse_discovery(opts.issuer, body))

    async def verify(self, raw: str) -> Claims:
        token = parse_jwt(raw, self.discovery.algs)
        payload = verify_signature(token, self._keys)
        if payload is None:
            try:
                self._keys = await self._fetch_keys()
            except OIDCError as exc:
                raise OIDCError(f"failed to verify signature: fetching keys {exc}") from None
            payload = verify_signature(token, self._keys)
            if payload is None:
                raise OIDCError("failed to verify signature: failed to verify id token signature")
        return check_claims(payload, self.opts)

    async def _fetch_keys(self) -> list[Key]:
        # Concurrent logins with an unknown key share one request, as go-oidc's inflight.
        if self._refresh is None:
            self._refresh = asyncio.ensure_future(self._get_keys())
            self._refresh.add_done_callback(lambda _: setattr(self, "_refresh", None))
        return await asyncio.shield(self._refresh)

    async def _get_keys(self) -> list[Key]:
        url = self.discovery.jwks_uri
        async with _session(url) as session:
            try:
                async with session.get(url) as resp:
                    body = await resp.content.read(MAX_BODY)
                    if resp.status != 200:
                        raise OIDCError(
                            f"oidc: get keys failed: {resp.status} {resp.reason} "
                            f"{body.decode('utf-8', 'replace')}"
                        )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise OIDCError(f'oidc: get keys failed Get "{url}": {_errtext(exc)}') from None
        return parse_jwks(body)


def _session(url: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT), trust_env=_env_proxy_applies(url)
    )


def _env_proxy_applies(url: str) -> bool:
    """Go's ProxyFromEnvironment never proxies localhost or loopback addresses; aiohttp's
    trust_env would (and also reads .netrc), so it is only on for other hosts."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
