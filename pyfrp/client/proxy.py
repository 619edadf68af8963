"""Client-side proxies (client/proxy/): turn a started work connection into a local connection."""

from __future__ import annotations

import asyncio
import logging

from pyfrp.config.model import ProxyConfig
from pyfrp.log import PrefixLogger
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.splice import HoldProtocol, splice
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.msg import StartWorkConn

log = logging.getLogger(__name__)

LOCAL_DIAL_TIMEOUT = 10.0


class TcpProxy:
    """A tcp proxy: dial local_ip:local_port for each work connection and splice."""

    def __init__(self, cfg: ProxyConfig, token: str, logger: PrefixLogger) -> None:
        self.cfg = cfg
        self.token = token
        self.log = logger.child(cfg.name)
        self.running = False

    async def handle_work_conn(self, conn: MessageConn, start: StartWorkConn) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(LOCAL_DIAL_TIMEOUT):  # no extra Task, unlike wait_for
                local, held = await loop.create_connection(
                    HoldProtocol, cfg.local_ip, cfg.local_port
                )
        except (OSError, TimeoutError) as exc:
            self.log.warning(
                "connect to local service [%s:%d] error: %s",
                cfg.local_ip,
                cfg.local_port,
                exc or "timeout",
            )
            conn.close()
            return
        transport, pending, ended = conn.detach()
        top, pending = wrap_work_transport(
            transport,
            pending,
            token=self.token,
            use_encryption=cfg.use_encryption,
            use_compression=cfg.use_compression,
        )
        self.log.debug(
            "join connections, user [%s:%d] local [%s:%d]",
            start.src_addr, start.src_port, cfg.local_ip, cfg.local_port,
        )  # fmt: skip
        try:
            await splice(
                top,
                local,
                a_pending=pending,
                a_ended=ended,
                b_pending=held.take(),
                b_ended=held.ended,
            )
        finally:
            top.close()
            local.close()
