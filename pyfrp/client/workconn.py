"""Dialling one work connection (client/control.go handleReqWorkConn): the same in pyfrpc's
main process and in its helpers (``pyfrp.workers``)."""

from __future__ import annotations

from pyfrp.client.connector import Connector
from pyfrp.config.model import ClientConfig
from pyfrp.errors import ProtocolError
from pyfrp.log import PrefixLogger
from pyfrp.net.msgconn import MessageConn
from pyfrp.proto import wire2
from pyfrp.proto.msg import NewWorkConn, StartWorkConn


async def connect(connector: Connector, cfg: ClientConfig) -> MessageConn:
    """A new logical connection to frps in message mode, in the configured wire protocol."""
    conn = await connector.connect()
    if cfg.wire_protocol == wire2.PROTOCOL_V2:
        conn.send_raw(wire2.MAGIC)
        conn.use_v2()
    return conn


def local_name(user: str, wire: str) -> str:
    """frpc strips exactly one ``{user}.`` from names frps sends back."""
    return wire.removeprefix(f"{user}.") if user else wire


async def dial_work_conn(
    connector: Connector, cfg: ClientConfig, msg: NewWorkConn, log: PrefixLogger
) -> tuple[MessageConn, StartWorkConn, str] | None:
    """Send ``msg`` (NewWorkConn, auth filled) on a new connection and read frps's
    StartWorkConn: the connection, the message and the proxy's local name; None, logged as frpc
    does, when that fails."""
    try:
        conn = await connect(connector, cfg)
        conn.send(msg)
    except (ConnectionError, OSError, ProtocolError, TimeoutError) as exc:
        log.warning("start new work connection error: %s", exc)
        return None
    try:
        start = await conn.recv_as(StartWorkConn)
    except (ConnectionError, OSError, ProtocolError) as exc:
        # frps closes surplus work connections (pool full); frpc logs this at trace level.
        log.debug("work connection closed before response StartWorkConn message: %s", exc)
        conn.close()
        return None
    if start.error:
        # frpc's level; frps 0.70 answers this way when its work connection pool is full.
        log.error("StartWorkConn contains error: %s", start.error)
        conn.close()
        return None
    return conn, start, local_name(cfg.user, start.proxy_name)
