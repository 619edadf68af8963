"""frps's server plugins (pkg/plugin/server): HTTP webhooks asked about Login, NewProxy,
CloseProxy, Ping, NewWorkConn and NewUserConn, which may reject the operation, let it pass
unchanged, or rewrite its content.

The wire is frp's: ``POST {addr}{path}?version=0.1.0&op=NewProxy`` with ``X-Frp-Reqid`` and
``{"version", "op", "content"}``; the answer ``{"reject", "reject_reason", "unchange",
"content"}``. Plugins run in order; the first reject or error stops. ``https://`` addresses
verify the certificate only with ``tlsVerify``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyfrp.config.model import HttpPluginConfig
from pyfrp.errors import MessageError
from pyfrp.proto.msg import Login, Message, NewProxy, NewWorkConn, Ping

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

API_VERSION = "0.1.0"
OPS = ("Login", "NewProxy", "CloseProxy", "Ping", "NewWorkConn", "NewUserConn")
TIMEOUT = 30.0  # frp's http.Client has none; a hung plugin must not hold a login forever


def _client_error() -> type[Exception]:
    import aiohttp

    return aiohttp.ClientError


class PluginRejected(Exception):
    """The operation is refused: a plugin's reject_reason, or frp's text for a failed call."""


def plugin_url(p: HttpPluginConfig) -> str:
    url = f"{p.addr}{p.path}"
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url


@dataclass(slots=True)
class UserInfo:
    """Who asks (frp's plugin.UserInfo): the login's user, metas and run id."""

    user: str = ""
    metas: dict[str, str] = field(default_factory=dict)
    run_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "metas": self.metas or None, "run_id": self.run_id}


class PluginManager:
    def __init__(self, plugins: list[HttpPluginConfig]) -> None:
        self.plugins = plugins
        self._session: aiohttp.ClientSession | None = None
        self._notices: set[asyncio.Task[None]] = set()

    def handles(self, op: str) -> bool:
        return any(op in p.ops for p in self.plugins)

    async def close(self) -> None:
        for task in list(self._notices):
            task.cancel()
        await asyncio.gather(*self._notices, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, plugin: HttpPluginConfig, op: str, content: dict[str, Any]) -> Any:
        import aiohttp  # only frps with plugins pays for it (idle RSS)

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        url = plugin_url(plugin)
        # frp: InsecureSkipVerify unless tlsVerify
        tls = not (url.startswith("https://") and not plugin.tls_verify)
        body = {"version": API_VERSION, "op": op, "content": content}
        headers = {"X-Frp-Reqid": secrets.token_hex(8)}
        async with self._session.post(
            url, params={"version": API_VERSION, "op": op}, json=body, headers=headers, ssl=tls
        ) as resp:
            if resp.status != 200:
                raise OSError(f"do http request error code: {resp.status}")
            return await resp.json(content_type=None)

    async def _mutable(self, op: str, content: dict[str, Any]) -> dict[str, Any]:
        """handleMutableContent: each plugin of ``op`` in turn; its content replaces ours
        unless it answers ``unchange``."""
        reqid = secrets.token_hex(8)
        for plugin in self.plugins:
            if op not in plugin.ops:
                continue
            try:
                res = await self._call(plugin, op, content)
                if not isinstance(res, dict):
                    raise ValueError("the answer is not a JSON object")
            except (OSError, _client_error(), TimeoutError, ValueError) as exc:
                how = log.info if op == "NewUserConn" else log.warning
                how("[reqid: %s] send %s request to plugin [%s] error: %s", reqid, op,
                    plugin.name, exc)  # fmt: skip
                raise PluginRejected(f"send {op} request to plugin error") from None
            if res.get("reject"):
                raise PluginRejected(str(res.get("reject_reason") or ""))
            if not res.get("unchange"):
                new = res.get("content")
                content = new if isinstance(new, dict) else {}
        return content

    @staticmethod
    def _message(cls: type[Message], content: dict[str, Any]) -> Any:
        try:
            return cls.from_json(content)
        except MessageError as exc:
            raise PluginRejected(f"invalid content from plugin: {exc}") from None

    async def login(self, login: Login, client_address: str) -> Login:
        content = {**login.to_json(), "client_address": client_address}
        return self._message(Login, await self._mutable("Login", content))  # type: ignore[no-any-return]

    async def new_proxy(self, user: UserInfo, msg: NewProxy) -> NewProxy:
        content = {"user": user.to_json(), **msg.to_json()}
        return self._message(NewProxy, await self._mutable("NewProxy", content))  # type: ignore[no-any-return]

    async def ping(self, user: UserInfo, msg: Ping) -> Ping:
        content = {"user": user.to_json(), **msg.to_json()}
        return self._message(Ping, await self._mutable("Ping", content))  # type: ignore[no-any-return]

    async def new_work_conn(self, user: UserInfo, msg: NewWorkConn) -> NewWorkConn:
        content = {"user": user.to_json(), **msg.to_json()}
        return self._message(NewWorkConn, await self._mutable("NewWorkConn", content))  # type: ignore[no-any-return]

    async def new_user_conn(
        self, user: UserInfo, proxy_name: str, proxy_type: str, remote_addr: str
    ) -> None:
        content = {
            "user": user.to_json(),
            "proxy_name": proxy_name,
            "proxy_type": proxy_type,
            "remote_addr": remote_addr,
        }
        await self._mutable("NewUserConn", content)

    def notify_close_proxy(self, user: UserInfo, proxy_name: str) -> None:
        """Tell the CloseProxy plugins in the background: nothing waits for them (the proxy is
        already closed, and its control may be gone by the time they answer)."""
        task = asyncio.get_running_loop().create_task(self.close_proxy(user, proxy_name))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def close_proxy(self, user: UserInfo, proxy_name: str) -> None:
        """Every CloseProxy plugin is told; failures are logged, nothing is refused."""
        content = {"user": user.to_json(), "proxy_name": proxy_name}
        for plugin in self.plugins:
            if "CloseProxy" not in plugin.ops:
                continue
            try:
                await self._call(plugin, "CloseProxy", content)
            except (OSError, _client_error(), TimeoutError, ValueError) as exc:
                log.warning("send CloseProxy request to plugin [%s] error: %s", plugin.name, exc)
