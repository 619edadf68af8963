"""frps's SSH tunnel gateway (pkg/ssh): ``ssh -R :80:127.0.0.1:8080 v0@frps -p 2200 tcp -r 9090``
registers a proxy as if an frpc had asked for it.

As in frp, each ssh connection becomes an in-process frp client: it logs in over an internal
connection to the server (``accept_internal``, frp's sshTunnelListener), sends NewProxy, and
answers each ReqWorkConn with an internal work connection; when StartWorkConn arrives it opens a
``forwarded-tcpip`` channel back to the ssh client and splices the two. What the server does
(auth, server plugins, ports, routes, logs, the dashboard) is therefore what it does for frpc.
Messages for the user go to the first session channel; the proxy lives until the ssh connection
ends. asyncssh is imported only when ``sshTunnelGateway.bindPort`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh

from pyfrp.config.model import ServerConfig
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.splice import join
from pyfrp.net.sshchan import ChannelTransport
from pyfrp.proto import sshcmd
from pyfrp.proto.auth import privilege_key
from pyfrp.proto.msg import (
    ClientSpec,
    Login,
    LoginResp,
    NewProxy,
    NewProxyResp,
    NewWorkConn,
    Ping,
    ReqWorkConn,
    StartWorkConn,
)
from pyfrp.version import FRP_VERSION

log = logging.getLogger(__name__)

DEFAULT_AUTOGEN_KEY = "./.autogen_ssh_key"
WAIT_COMMAND = 3.0  # the tcpip-forward request and the exec command, after authentication
WAIT_PROXY = 1.0  # NewProxyResp (frp: waitProxyStatusReady)
HEARTBEAT_INTERVAL = 30.0  # frpc's default heartbeat and frp's ssh keepalive
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}

# frp's internal listener: hand a connected socket to the server.
PutConn = Callable[[socket.socket], Awaitable[None]]


def load_host_key(cfg: ServerConfig) -> asyncssh.SSHKey:
    """privateKeyFile, else the key kept at autoGenPrivateKeyPath, else a new RSA key written
    there (mode 0600), as frp's NewGateway does."""
    if cfg.ssh_private_key_file:
        with open(cfg.ssh_private_key_file, "rb") as f:
            return asyncssh.import_private_key(f.read())
    path = cfg.ssh_auto_gen_private_key_path or DEFAULT_AUTOGEN_KEY
    data = b""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        data = f.read()
    if data:
        return asyncssh.import_private_key(data)
    key = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("pkcs1-pem"))
    return key


def load_authorized_keys(path: str) -> dict[bytes, str]:
    """Public key blob -> user (the key's comment, trimmed), reread at each attempt like frp."""
    with open(path, "rb") as f:
        text = f.read().decode()
    users: dict[bytes, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = asyncssh.import_public_key(line)
        except asyncssh.KeyImportError:
            # a line with options first (no-pty,from="..." ssh-ed25519 AAAA... user)
            key = asyncssh.import_public_key(line.split(None, 1)[-1])
        users[key.public_data] = (key.get_comment() or "").strip()
    return users


class SshGateway:
    def __init__(self, cfg: ServerConfig, put_conn: PutConn) -> None:
        self.cfg = cfg
        self.put_conn = put_conn
        self.host_key = load_host_key(cfg)
        self._server: asyncssh.SSHAcceptor | None = None
        self.port = cfg.ssh_bind_port

    async def start(self) -> None:
        logging.getLogger("asyncssh").setLevel(logging.WARNING)  # it logs every channel at INFO
        self._server = await asyncssh.create_server(
            lambda: _Tunnel(self),
            self.cfg.bind_addr,
            self.cfg.ssh_bind_port,
            server_host_keys=[self.host_key],
            keepalive_interval=HEARTBEAT_INTERVAL,
            reuse_address=True,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class _Listener(asyncssh.SSHListener):
    """Accepts the client's tcpip-forward; connections come from frps, not from a socket."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self._port = port

    def get_port(self) -> int:
        return self._port

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


class _Session(asyncssh.SSHServerSession[str]):
    """A session channel: its exec command is the proxy wanted; the first one gets messages."""

    def __init__(self, tunnel: _Tunnel) -> None:
        self.tunnel = tunnel
        self.chan: asyncssh.SSHServerChannel[str] | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[str]) -> None:
        self.chan = chan
        if self.tunnel.first_chan is None:
            self.tunnel.first_chan = chan

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        if command and not self.tunnel.command.done():  # frp waits on for a non-empty one
            self.tunnel.command.set_result(command)
        return True

    def eof_received(self) -> bool:
        return True  # keep the channel for messages (frp ignores input)


class _Tunnel(asyncssh.SSHServer):
    """One ssh connection: frp's TunnelServer with its virtual client."""

    def __init__(self, gw: SshGateway) -> None:
        self.gw = gw
        loop = asyncio.get_running_loop()
        self.forward: asyncio.Future[tuple[str, int]] = loop.create_future()
        self.command: asyncio.Future[str] = loop.create_future()
        self.first_chan: asyncssh.SSHServerChannel[str] | None = None
        self.conn: asyncssh.SSHServerConnection | None = None
        self.user = ""
        self.peer = ""
        self.closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._joins: list[Any] = []
        self.run_id = ""

    # -- asyncssh.SSHServer
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def begin_auth(self, username: str) -> bool:
        return bool(self.gw.cfg.ssh_authorized_keys_file)  # False: no authentication needed

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        try:
            users = load_authorized_keys(self.gw.cfg.ssh_authorized_keys_file)
        except (OSError, ValueError, asyncssh.KeyImportError) as exc:
            log.error("load authorized keys file error: %s", exc)
            return False
        user = users.get(key.public_data)
        if user is None:
            log.debug("unknown public key for remoteAddr %r", self.peer)
            return False
        self.user = user
        return True

    def auth_completed(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def server_requested(self, listen_host: str, listen_port: int) -> asyncssh.SSHListener:
        if not self.forward.done():
            self.forward.set_result((listen_host, listen_port))
        return _Listener(listen_port)

    def session_requested(self) -> asyncssh.SSHServerSession[str]:
        return _Session(self)

    # -- the tunnel
    def write(self, text: str) -> None:
        """frp's writeToClient: a line on the first session channel, if it is still open."""
        chan = self.first_chan
        if chan is not None and not chan.is_closing():
            with contextlib.suppress(Exception):
                chan.write(text + "\n")

    def _close_ssh(self) -> None:
        if self.conn is not None:
            self.conn.close()

    async def _run(self) -> None:
        try:
            try:
                async with asyncio.timeout(WAIT_COMMAND):
                    addr = await self.forward
                    command = await self.command
            except TimeoutError:
                log.error("ssh tunnel server run error: get addr and extra payload timeout")
                return
            try:
                cmd = sshcmd.parse(command)
            except sshcmd.HelpRequested as exc:
                self.write(str(exc))
                return
            except sshcmd.CommandError as exc:
                self.write(str(exc))
                log.error("ssh tunnel server run error: parse flags from ssh client error: %s", exc)
                return
            if self.user:
                cmd.user = self.user
            await self._client(addr, cmd)
        finally:
            for task in list(self._tasks):
                task.cancel()
            for joined in self._joins:
                joined.abort()
            log.debug("ssh tunnel connection from %s closed", self.peer)
            await self._end()

    async def _end(self) -> None:
        """Close the session channel first, so that the client prints what it was sent before
        it sees the connection go (OpenSSH drops unprinted output on a disconnect)."""
        chan = self.first_chan
        if chan is not None and not chan.is_closing() and not self.closed.is_set():
            chan.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.closed.wait()
        self._close_ssh()

    async def _dial(self) -> MessageConn:
        """A connection to the server through its internal listener."""
        ours, theirs = socket.socketpair()
        try:
            await self.gw.put_conn(theirs)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(MessageConn, sock=ours)
        return conn

    async def _client(self, addr: tuple[str, int], cmd: sshcmd.TunnelCommand) -> None:
        """frp's virtual client: login, one proxy, work connections, until ssh ends."""
        token = cmd.token  # unchecked when ssh authenticated the key (ClientSpec.always_auth_pass)
        ctl = await self._dial()
        try:
            now = int(time.time())
            ctl.send(
                Login(
                    version=FRP_VERSION,
                    hostname=socket.gethostname(),
                    os="linux",
                    arch=_GOARCH.get(platform.machine(), platform.machine()),
                    user=cmd.user,
                    privilege_key=privilege_key(token, now),
                    timestamp=now,
                    client_id=cmd.client_id,
                    client_spec=ClientSpec(
                        type="ssh-tunnel",
                        always_auth_pass=bool(self.gw.cfg.ssh_authorized_keys_file),
                    ),
                    pool_count=1,
                )
            )
            resp = await ctl.recv_as(LoginResp)
            if resp.error:
                self.write(
                    f"login to the server failed: {resp.error}. With loginFailExit enabled, "
                    "no additional retries will be attempted"
                )
                return
            self.run_id = resp.run_id
            ctl.send(_new_proxy(cmd))
            await self._serve(ctl, addr, cmd, token)
        except (ConnectionError, OSError) as exc:
            log.debug("ssh tunnel client: %s", exc)
        finally:
            ctl.close()

    async def _serve(
        self, ctl: MessageConn, addr: tuple[str, int], cmd: sshcmd.TunnelCommand, token: str
    ) -> None:
        name = f"{cmd.user}.{cmd.name}" if cmd.user else cmd.name
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(WAIT_PROXY, self._not_ready)
        heartbeat = loop.create_task(self._heartbeat(ctl, token))
        self._tasks.add(heartbeat)
        lost = loop.create_task(self.closed.wait())
        try:
            while True:
                recv = loop.create_task(ctl.recv())
                done, _ = await asyncio.wait({recv, lost}, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    return
                msg = recv.result()
                if isinstance(msg, ReqWorkConn):
                    task = loop.create_task(self._work_conn(addr, token))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif isinstance(msg, NewProxyResp) and msg.proxy_name == name:
                    if deadline.cancelled():
                        continue
                    deadline.cancel()
                    if msg.error:
                        log.warning("wait proxy status ready error: %s", msg.error)
                        self.write(msg.error)
                        return
                    self.write(_success(cmd, msg.remote_addr))
        finally:
            deadline.cancel()
            heartbeat.cancel()
            lost.cancel()

    def _not_ready(self) -> None:
        log.warning("wait proxy status ready error: wait proxy status ready timeout")
        self.write("wait proxy status ready timeout")
        if self._task is not None:
            self._task.cancel()  # _run ends the session

    async def _heartbeat(self, ctl: MessageConn, token: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            now = int(time.time())
            ctl.send(Ping(privilege_key=privilege_key(token, now), timestamp=now))

    async def _work_conn(self, addr: tuple[str, int], token: str) -> None:
        conn = await self._dial()
        try:
            now = int(time.time())
            conn.send(
                NewWorkConn(
                    run_id=self.run_id, privilege_key=privilege_key(token, now), timestamp=now
                )
            )
            start = await conn.recv_as(StartWorkConn)
            if start.error or self.conn is None:
                conn.close()
                return
            chan = ChannelTransport()
            # frp sends the forwarded address as the origin too (not the real source).
            host, port = addr
            await self.conn.create_connection(lambda: chan.session, host, port, host, port)
        except (ConnectionError, OSError, asyncssh.Error) as exc:
            log.debug("open conn error: %s", exc)
            conn.close()
            return
        transport, pending, ended = conn.detach()
        chan.pause_reading()
        joined = join(transport, chan, a_pending=pending, a_ended=ended)
        if not joined.done:
            self._joins.append(joined)
            joined.on_done = lambda: self._joins.remove(joined)


def _new_proxy(cmd: sshcmd.TunnelCommand) -> NewProxy:
    """NewProxy as frpc's MarshalToMsg fills it for this type."""
    msg = NewProxy(
        proxy_name=f"{cmd.user}.{cmd.name}" if cmd.user else cmd.name,
        proxy_type=cmd.proxy_type,
        metas=dict(cmd.metas),
        annotations=dict(cmd.annotations),
    )
    t = cmd.proxy_type
    if t == "tcp":
        msg.remote_port = cmd.remote_port
    if t in ("http", "https", "tcpmux"):
        msg.custom_domains = list(cmd.custom_domains)
        msg.subdomain = cmd.subdomain
    if t in ("http", "tcpmux"):
        msg.http_user = cmd.http_user
        msg.http_pwd = cmd.http_pwd
    if t == "http":
        msg.locations = list(cmd.locations)
        msg.host_header_rewrite = cmd.host_header_rewrite
    if t == "tcpmux":
        msg.multiplexer = cmd.multiplexer
    if t == "stcp":
        msg.sk = cmd.sk
        msg.allow_users = list(cmd.allow_users)
    return msg


def _success(cmd: sshcmd.TunnelCommand, remote_addr: str) -> str:
    """frp's createSuccessInfo (the user and name as the ssh user gave them)."""
    return (
        "\nfrp (via SSH) (Ctrl+C to quit)\n\n"
        f"User: {cmd.user}\n"
        f"ProxyName: {cmd.name}\n"
        f"Type: {cmd.proxy_type}\n"
        f"RemoteAddress: {remote_addr}\n"
    )
