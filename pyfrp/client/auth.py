"""What frpc puts in privilege_key (frp's auth.Setter): an MD5 of the token and a timestamp, or
an OIDC access token. Login always carries it; Ping and NewWorkConn only with the
``auth.additionalScopes`` that name them."""

from __future__ import annotations

import time
from typing import Protocol

from pyfrp.config.model import ClientConfig
from pyfrp.errors import ConfigError, OIDCError
from pyfrp.proto.auth import privilege_key
from pyfrp.proto.msg import Login, NewWorkConn, Ping


class _Tokens(Protocol):
    async def token(self) -> str: ...


class ClientAuth:
    """Fills privilege_key; with OIDC, raises OIDCError when no token can be had."""

    def __init__(self, cfg: ClientConfig) -> None:
        self.cfg = cfg
        self._tokens: _Tokens | None = None
        if cfg.auth_method == "oidc":
            self._tokens = _oidc_tokens(cfg)

    async def _key(self, ts: int, what: str) -> str:
        if self._tokens is None:
            return privilege_key(self.cfg.token, ts)
        try:
            return await self._tokens.token()
        except OIDCError as exc:
            if self.cfg.oidc.token_file or self.cfg.oidc.token_command:
                raise OIDCError(f"couldn't acquire OIDC token for {what}: {exc}") from None
            raise OIDCError(f"couldn't generate OIDC token for {what}: {exc}") from None

    async def set_login(self, msg: Login) -> None:
        msg.timestamp = int(time.time())
        msg.privilege_key = await self._key(msg.timestamp, "login")

    async def set_ping(self, msg: Ping) -> None:
        if "HeartBeats" in self.cfg.auth_scopes:
            if self._tokens is None:
                msg.timestamp = int(time.time())
            msg.privilege_key = await self._key(msg.timestamp, "login")

    async def set_new_work_conn(self, msg: NewWorkConn) -> None:
        if "NewWorkConns" in self.cfg.auth_scopes:
            if self._tokens is None:
                msg.timestamp = int(time.time())
            msg.privilege_key = await self._key(msg.timestamp, "login")


def _oidc_tokens(cfg: ClientConfig) -> _Tokens:
    # aiohttp and joserfc load here only (idle RSS of token-auth clients).
    from pyfrp.net.oidc import FileOrExecSource, TokenSource
    from pyfrp.proto.oidc import ClientCredentials

    o = cfg.oidc
    if o.token_file or o.token_command:
        return FileOrExecSource(o.token_file, o.token_command, o.token_command_env)
    creds = ClientCredentials(
        o.client_id,
        o.client_secret,
        o.audience,
        o.scope,
        o.token_endpoint_url,
        dict(o.additional_endpoint_params),
    )
    try:
        return TokenSource(
            creds,
            trusted_ca_file=o.trusted_ca_file,
            insecure_skip_verify=o.insecure_skip_verify,
            proxy_url=o.proxy_url,
        )
    except OIDCError as exc:  # frp fails to start the service
        raise ConfigError(str(exc)) from None
