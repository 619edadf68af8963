"""What every client-side proxy type shares (client/proxy/proxy.go): the interface the session
knows proxies by, and the registry of types. A proxy module imports this one and nothing above."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar

from pyfrp.client.nathole import ControlChannel
from pyfrp.client.vnet import Controller
from pyfrp.config.model import ClientConfig, ProxyConfig
from pyfrp.log import PrefixLogger
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.ratelimit import bucket_for
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.msg import StartWorkConn

log = logging.getLogger("pyfrp.client.proxy")


class ClientProxy:
    """One configured proxy: turns each work connection frps starts for it into local traffic."""

    kind: ClassVar[str] = ""
    vnet: Controller | None = None  # the client's virtual network, for the virtual_net plugin

    def __init__(
        self, cfg: ProxyConfig, client: ClientConfig, logger: PrefixLogger, host: ControlChannel
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.host = host
        self.log = logger.child(cfg.name)
        # What frpc's /api/status shows (client/proxy WorkingStatus): "wait start" until
        # NewProxyResp, then "running" or "start error" with frps's text.
        self.status = "wait start"
        self.err = ""
        self.remote_addr = ""
        # transport.bandwidthLimit with the default mode: frpc meters it, all connections alike
        client_side = cfg.bandwidth_limit_mode != "server"
        self.bucket = bucket_for(cfg.bandwidth_limit) if client_side else None

    @property
    def running(self) -> bool:
        """frps accepted it (NewProxyResp without error)."""
        return self.status == "running"

    def wrap(self, conn: MessageConn) -> tuple[asyncio.Transport, bytes, bool]:
        """The work connection with the proxy's encryption/compression stacked on it: the top
        transport (give it a protocol before yielding), the bytes already read, whether it ended."""
        transport, pending, ended = conn.detach()
        top, pending = wrap_work_transport(
            transport,
            pending,
            token=self.client.token,
            use_encryption=self.cfg.use_encryption,
            use_compression=self.cfg.use_compression,
            bucket=self.bucket,
        )
        return top, pending, ended

    async def handle_work_conn(self, conn: MessageConn, start: StartWorkConn) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """The session ended: drop what outlives a work connection."""


def wire_name(user: str, name: str) -> str:
    """The name frps knows a proxy by: ``{user}.{name}`` when the client has a user."""
    return f"{user}.{name}" if user else name


PROXY_TYPES: dict[str, type[ClientProxy]] = {}


def register(kind: str) -> Callable[[type[ClientProxy]], type[ClientProxy]]:
    def deco(cls: type[ClientProxy]) -> type[ClientProxy]:
        cls.kind = kind
        PROXY_TYPES[kind] = cls
        return cls

    return deco
