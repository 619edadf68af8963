"""frps's check of privilege_key (frp's auth.Verifier): the token's MD5, or an OIDC token from
the configured issuer. Login is always checked; Ping and NewWorkConn only with the
``auth.additionalScopes`` that name them. Each check returns frp's error text, or ""."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pyfrp.config.model import ServerConfig
from pyfrp.errors import OIDCError
from pyfrp.proto.auth import verify_privilege_key
from pyfrp.proto.msg import Login, NewWorkConn, Ping

if TYPE_CHECKING:
    from pyfrp.net.oidc import Verifier


class ServerAuth:
    def __init__(self, cfg: ServerConfig, oidc: Verifier | None = None) -> None:
        self.cfg = cfg
        self.oidc = oidc

    @classmethod
    async def create(cls, cfg: ServerConfig) -> ServerAuth:
        """With OIDC, the issuer's discovery document first (raises OIDCError, as frps panics)."""
        if cfg.auth_method != "oidc":
            return cls(cfg)
        # aiohttp and joserfc load here only (idle RSS of token-auth servers).
        from pyfrp.net.oidc import Verifier
        from pyfrp.proto.oidc import VerifyOptions

        o = cfg.oidc
        opts = VerifyOptions(o.issuer, o.audience, o.skip_expiry_check, o.skip_issuer_check)
        return cls(cfg, await Verifier.discover(opts))

    def _stale(self, timestamp: int, what: str) -> str:
        skew = self.cfg.login_max_clock_skew
        if skew > 0 and abs(time.time() - timestamp) > skew:
            return (
                f"timestamp in {what} is more than {skew} s away from frps's clock "
                "(pyfrp.loginMaxClockSkew): a replay, or a client clock to fix"
            )
        return ""

    async def verify_login(self, msg: Login) -> str:
        if self.oidc is None:
            if not verify_privilege_key(self.cfg.token, msg.timestamp, msg.privilege_key):
                return "token in login doesn't match token from configuration"
            return self._stale(msg.timestamp, "login")
        try:
            claims = await self.oidc.verify(msg.privilege_key)
        except OIDCError as exc:
            return f"invalid OIDC token in login: {exc}"
        self.oidc.subjects.add(claims.subject)
        return ""

    def token_check(self, key: str, timestamp: int, what: str) -> str:
        """The token flavour's check of a Ping or NewWorkConn, which needs no await."""
        if verify_privilege_key(self.cfg.token, timestamp, key):
            return self._stale(timestamp, what)
        return f"token in {what} doesn't match token from configuration"

    async def _verify_later(self, key: str, timestamp: int, what: str) -> str:
        if self.oidc is None:
            return self.token_check(key, timestamp, what)
        # frp says "ping" for work connections too.
        try:
            claims = await self.oidc.verify(key)
        except OIDCError as exc:
            return f"invalid OIDC token in ping: {exc}"
        if not self.oidc.subjects.known(claims.subject):
            return (
                f"received different OIDC subject in login and ping. new subject: {claims.subject}"
            )
        return ""

    async def verify_ping(self, msg: Ping) -> str:
        if "HeartBeats" not in self.cfg.auth_scopes:
            return ""
        return await self._verify_later(msg.privilege_key, msg.timestamp, "heartbeat")

    async def verify_new_work_conn(self, msg: NewWorkConn) -> str:
        if "NewWorkConns" not in self.cfg.auth_scopes:
            return ""
        return await self._verify_later(msg.privilege_key, msg.timestamp, "NewWorkConn")
