"""pyfrps: the listener on bind_port, logins, work connections and the proxy registry
(server/service.go)."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import socket
from typing import TYPE_CHECKING, Any, cast

from pyfrp.config.model import ServerConfig
from pyfrp.config.reload import ReloadResult, plan
from pyfrp.errors import ConfigError, FrameError, MessageError, ProtocolError
from pyfrp.log import LEVELS
from pyfrp.net.bind import bind_socket
from pyfrp.net.handover import adopt_socket
from pyfrp.net.listen import FrpListener, bind_udp_socket, join_host_port
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.mux import MuxSession, MuxStream
from pyfrp.net.prelogin import PreLoginPool, default_limit
from pyfrp.net.tls import server_context
from pyfrp.proto import wire2
from pyfrp.proto.framing import MessageDecoder
from pyfrp.proto.msg import (
    Login,
    LoginResp,
    Message,
    NewProxy,
    NewVisitorConn,
    NewVisitorConnResp,
    NewWorkConn,
    StartWorkConn,
)
from pyfrp.server.auth import ServerAuth
from pyfrp.server.cluster import (
    Cluster,
    ClusterError,
    NatHoleRelay,
    parse_route_key,
    route_key,
)
from pyfrp.server.clusterview import ClusterView
from pyfrp.server.control import Control
from pyfrp.server.groups import GROUP_KINDS
from pyfrp.server.nathole import NatHoleController
from pyfrp.server.plugins import PluginManager, PluginRejected
from pyfrp.server.ports import PortError, PortManager
from pyfrp.server.proxies import PROXY_TYPES, Proxy, Resources
from pyfrp.server.proxies.tcp import TcpProxy
from pyfrp.server.proxies.vhost import build_domains
from pyfrp.server.stats import OFFLINE_KEPT
from pyfrp.version import FRP_VERSION
from pyfrp.vhost.http import VhostHttpServer
from pyfrp.vhost.https import VhostHttpsServer
from pyfrp.vhost.router import Elsewhere, RouteConflict, Router
from pyfrp.vhost.tcpmux import VhostTcpmuxServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from aioquic.asyncio.server import QuicServer

    from pyfrp.net.kcp import KcpServer
    from pyfrp.server.dashboard import Dashboard
    from pyfrp.server.sshgw import SshGateway

log = logging.getLogger(__name__)

# server/service.go connReadTimeout: the first message must arrive within 10 s.
CONN_READ_TIMEOUT = 10.0


def _key(peer: Any) -> tuple[str, int] | None:
    return (peer[0], peer[1]) if peer else None


class _IncomingConn(MessageConn):
    """A new frp connection (TCP, or a yamux stream) until its first message is dispatched.

    Work connections arrive at the connection rate, so this waits in callbacks, with one loop
    timer, rather than in a task.
    """

    __slots__ = ("_internal", "_server", "_timer", "v2_crypto")

    def __init__(self, server: Server, internal: bool = False) -> None:
        super().__init__()
        self._server = server
        self._internal = internal  # from the SSH tunnel gateway's in-process client
        self._timer: asyncio.TimerHandle | None = None
        # wire v2 control login: (AEAD algorithm, transcript hash) from the hellos
        self.v2_crypto: tuple[str, bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._timer = asyncio.get_running_loop().call_later(CONN_READ_TIMEOUT, self._timed_out)
        if not isinstance(transport, MuxStream):  # a session is counted whole (_MuxConn)
            self._server.prelogin.attach(self.peername, self.abort)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._timer is None:
            return
        try:
            msg = self._first_message()
        except ProtocolError as exc:
            self._settle()
            log.warning("closing connection from %s: %s", self.peername, exc)
            self.abort()
            return
        if msg is not None:
            self._settle()
            self._server.prelogin.release(self.peername)
            self._server.dispatch(self, msg, self._internal)

    def _first_message(self) -> Message | None:
        decoder = self._decoder
        if isinstance(decoder, MessageDecoder):
            # No v1 message type byte is "F": only a v2 client's magic starts that way.
            head = decoder.peek(len(wire2.MAGIC))
            if not wire2.MAGIC.startswith(head):
                return decoder.next_message()  # v1 (or the type byte error)
            if len(head) < len(wire2.MAGIC):
                return None
            decoder.feed(decoder.take_remaining()[len(wire2.MAGIC) :])
            self.use_v2()
            return self._first_message()
        frame = decoder.next_frame()
        if frame is None:
            return None
        frame_type, payload = frame
        if frame_type == wire2.FRAME_CLIENT_HELLO and self.v2_crypto is None:
            self._client_hello(payload)
            return self._first_message()
        if frame_type != wire2.FRAME_MESSAGE:
            raise FrameError(f"unexpected frame type {frame_type}, want {wire2.FRAME_MESSAGE}")
        return wire2.decode_message_payload(payload)

    def _client_hello(self, payload: bytes) -> None:
        try:
            algorithm = wire2.select_for_client_hello(payload)
        except ValueError as exc:
            self.send_raw(wire2.encode_frame(
                wire2.FRAME_SERVER_HELLO, wire2.server_hello("", b"", error=str(exc))
            ))  # fmt: skip
            raise MessageError(f"refused ClientHello: {exc}") from None
        hello = wire2.server_hello(algorithm, wire2.new_random())
        self.send_raw(wire2.encode_frame(wire2.FRAME_SERVER_HELLO, hello))
        self.v2_crypto = algorithm, wire2.transcript_hash(payload, hello)

    def eof_received(self) -> bool:
        self._settle()
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle()
        if not isinstance(self.transport, MuxStream):
            self._server.prelogin.release(self.peername)
        super().connection_lost(exc)

    def _settle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        log.info(
            "connection from %s sent no message within %.0f s, closing",
            self.peername,
            CONN_READ_TIMEOUT,
        )
        self.abort()


class _MuxConn(MuxSession):
    """A tcp_mux connection on bind_port. frpc opens its control stream at once, so a session
    that opens no stream within CONN_READ_TIMEOUT is closed (a slow or idle peer)."""

    def __init__(self, server: Server) -> None:
        super().__init__(
            client=False,
            on_stream=self._first_stream,
            keepalive_interval=server.cfg.tcp_mux_keepalive_interval,
        )
        self.server = server
        self._idle: asyncio.TimerHandle | None = None
        self.peer: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._idle = asyncio.get_running_loop().call_later(CONN_READ_TIMEOUT, self._no_stream)
        self.peer = _key(transport.get_extra_info("peername"))
        self.server.prelogin.attach(self.peer, self.abort)  # until a stream's first message
        self.server.sessions.add(self)

    def _first_stream(self, stream: MuxStream) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.on_stream = self.server._on_stream
        self.server._on_stream(stream)

    def _no_stream(self) -> None:
        log.info(
            "connection from %s opened no stream within %.0f s, closing",
            self.get_extra_info("peername"),
            CONN_READ_TIMEOUT,
        )
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.server.prelogin.release(self.peer)
        self.server.sessions.discard(self)
        super().connection_lost(exc)


class Server:
    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.controls: dict[str, Control] = {}
        self.proxies: dict[str, Proxy] = {}
        addr = cfg.effective_proxy_bind_addr
        self.res = Resources(
            cfg,
            tcp_ports=PortManager(addr, cfg.allow_ports),
            udp_ports=PortManager(addr, cfg.allow_ports, bind_udp_socket),
            nathole=NatHoleController(cfg.nathole_analysis_data_reserve_hours),
        )
        self.stats = self.res.stats
        self.prelogin = PreLoginPool(cfg.pre_login_limit or default_limit())
        self.sessions: set[_MuxConn] = set()  # tcp_mux connections on bind_port, closed at close()
        self.res.plugins = PluginManager(cfg.http_plugins) if cfg.http_plugins else None
        self.dashboard: Dashboard | None = None
        self.ssh_gateway: SshGateway | None = None
        self._listener: FrpListener | None = None
        self._kcp: KcpServer | None = None
        self._quic: QuicServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.bind_port = cfg.bind_port
        self.auth = ServerAuth(cfg)  # start() replaces it when OIDC needs discovery
        # How a reload reads the config file again (None: started from flags, nothing to read)
        self.config_path = ""
        self.config_loader: Callable[[], tuple[ServerConfig, list[str]]] | None = None
        # pyfrp.workers > 1: this process is one worker of several (server/cluster.py), and
        # the listening sockets, by role, come from the supervisor
        self.cluster: Cluster | None = None
        self.cluster_view: ClusterView | None = None  # the dashboard's, with workers
        self.inherited: dict[str, socket.socket] = {}
        self._claims: dict[str, list[tuple[str, str]]] = {}  # proxy name -> its cluster claims

    @property
    def first_worker(self) -> bool:
        """Serves what one process of the relay serves: the dashboard, kcp, quic, the SSH
        gateway (all of it when there are no workers)."""
        return self.cluster is None or self.cluster.index == 0

    @property
    def nathole(self) -> NatHoleController:
        return self.res.nathole

    @property
    def plugins(self) -> PluginManager | None:
        return self.res.plugins

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        cfg = self.cfg
        self.auth = await ServerAuth.create(cfg)  # OIDC discovery first, as frp's NewService
        tls_ctx = server_context(cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_trusted_ca_file)
        sock = self.inherited.pop("bind", None) or bind_socket(cfg.bind_addr, cfg.bind_port)
        self.bind_port = sock.getsockname()[1]
        self._listener = FrpListener(
            sock,
            self._protocol_factory,
            tls_context=tls_ctx,
            tls_force=cfg.tls_force or bool(cfg.tls_trusted_ca_file),
            prelogin=self.prelogin,
        )
        log.info("frps tcp listen on %s:%d", cfg.bind_addr, self.bind_port)
        if cfg.kcp_bind_port and self.first_worker:
            address = join_host_port(cfg.bind_addr, cfg.kcp_bind_port)
            from pyfrp.net.kcp import kcp_serve  # only with kcpBindPort (~1 MiB idle)

            try:
                self._kcp = await kcp_serve(
                    cfg.bind_addr, cfg.kcp_bind_port, self._listener.sniffer
                )
            except OSError as exc:
                raise OSError(f"listen on kcp udp address {address} error: {exc}") from exc
            log.info("frps kcp listen on udp %s", address)
        if cfg.quic_bind_port and self.first_worker:
            await self._start_quic()
        await self._start_vhosts()
        if self.cluster is not None:
            self._join_cluster(self.cluster)
        self._listener.start()
        if cfg.ssh_bind_port and self.first_worker:
            await self._start_ssh_gateway()
        if cfg.web.port and self.first_worker:
            from pyfrp.server.dashboard import Dashboard

            self.dashboard = Dashboard(self, cfg.web, cfg.enable_prometheus, view=self.cluster_view)
            await self.dashboard.web.start(self.inherited.pop("web", None))
            log.info("dashboard listen on %s", self.dashboard.web.address)
        self.spawn(self._clean_nathole())
        self.spawn(self._clean_stats())
        log.info("frps started successfully")

    def reload(self, everywhere: bool = True) -> ReloadResult:
        """Read the config file again and apply what can change while running (a pyfrp
        extension: SIGHUP, ``pyfrps reload``, the dashboard's ``PUT /api/reload``).

        All or nothing: a file that does not load changes nothing. Settings that need a restart
        keep their running values, one warning each; open tunnels and logged-in clients stay.
        """
        if everywhere and self.cluster is not None:
            self.cluster.reload_all()  # each worker reads the file and logs for itself
        if self.config_loader is None:
            err = "frps was started without a config file: nothing to reload"
            log.warning("reload frps config error: %s", err)
            return ReloadResult(error=err)
        log.info("reload frps config file [%s]", self.config_path)
        try:
            loaded, notices = self.config_loader()
        except ConfigError as exc:
            log.warning("reload frps config error: %s; the running config is kept", exc)
            return ReloadResult(error=str(exc))
        for n in notices:
            log.warning("%s", n)
        effective, changes = plan(self.cfg, loaded)
        self._apply(effective)
        for c in changes:
            if c.live:
                log.info("reload: %s changed to %s", c.key, c.shown(c.new))
            else:
                log.warning("reload: %s changed: needs a restart, kept %s", c.key, c.shown(c.old))
        applied = [c for c in changes if c.live]
        log.info(
            "success reload conf: %d setting(s) applied, %d need a restart",
            len(applied), len(changes) - len(applied),
        )  # fmt: skip
        # last, so that the lines above are written at the level the reload started with
        logging.getLogger().setLevel(LEVELS.get(effective.log.level.lower(), logging.INFO))
        return ReloadResult(changes=changes)

    def _apply(self, cfg: ServerConfig) -> None:
        """Run with ``cfg`` from now on: every part that copied a setting is told. Only
        assignments, so nothing here can fail halfway."""
        self.cfg = cfg
        self.res.cfg = cfg
        self.auth.cfg = cfg
        self.res.tcp_ports.allow = cfg.allow_ports
        self.res.udp_ports.allow = cfg.allow_ports
        http = self.res.vhost_http
        if http is not None:
            http.response_timeout = cfg.vhost_http_timeout if cfg.vhost_http_timeout > 0 else 60
            http.not_found_path = cfg.custom_404_page
        if self.res.vhost_tcpmux is not None:
            self.res.vhost_tcpmux.not_found_path = cfg.custom_404_page
        if self.dashboard is not None:
            self.dashboard.web.cfg = cfg.web

    def _join_cluster(self, cluster: Cluster) -> None:
        cluster.adopt = self._adopt
        cluster.drop_run = self._drop_run
        cluster.reload = lambda: self.reload(everywhere=False)
        cluster.on_route = self._remote_route
        self.res.group_port_bound = self._group_port_bound
        relay = NatHoleRelay(cluster)
        self.nathole.elsewhere = relay
        self.cluster_view = ClusterView(
            cluster, self.stats, lambda: {name: p.msg for name, p in self.proxies.items()}
        )

        def relayed(msg: dict[str, Any], data: bytes) -> None:
            if str(msg.get("kind")).startswith("stats_"):
                assert self.cluster_view is not None
                self.cluster_view.received(msg, data)
            else:
                relay.received(msg, self.nathole)

        cluster.on_relay = relayed
        res = self.res
        for kind, vhost in (
            ("http", res.vhost_http), ("https", res.vhost_https), ("tcpmux", res.vhost_tcpmux),
        ):  # fmt: skip
            if vhost is not None:
                vhost.hand_over = functools.partial(self._hand_user, kind)
        cluster.start()

    def _hand_user(self, kind: str, worker: int, transport: asyncio.Transport, data: bytes) -> None:
        assert self.cluster is not None
        self.cluster.hand_over(worker, kind, {}, transport, data, False)

    def _remote_route(self, msg: dict[str, Any]) -> None:
        """Another worker's vhost route came or went: requests for it are handed there."""
        kind, domain, location, user = parse_route_key(str(msg["key"]))
        vhost = {
            "http": self.res.vhost_http, "https": self.res.vhost_https,
            "tcpmux": self.res.vhost_tcpmux,
        }.get(kind)  # fmt: skip
        if vhost is None:
            return
        router: Router[Any] = vhost.router
        if msg["op"] == "group_route":
            # which workers have members of a group with this route: ours serve it here
            current = router.get(domain, location, user)
            if current is not None and not isinstance(current.payload, Elsewhere):
                return
            router.remove(domain, location, user)
            assert self.cluster is not None
            owners = [int(o) for o in msg["owners"] if int(o) != self.cluster.index]
            if owners:
                router.add(domain, location, user, Elsewhere(*owners))
            return
        if msg["op"] == "route_del":
            router.remove(domain, location, user)
            return
        try:
            router.add(domain, location, user, Elsewhere(int(msg["owner"])))
        except RouteConflict:
            log.warning("worker: route %s %s%s claimed twice", kind, domain, location)

    async def _drop_run(self, run_id: str) -> None:
        """Another worker took a login with this run id: our control with it goes."""
        ctl = self.controls.get(run_id)
        if ctl is not None:
            await ctl.replace()

    async def _adopt(
        self, kind: str, meta: dict[str, Any], sock: socket.socket, pending: bytes, ended: bool
    ) -> None:
        """A connection another worker handed us (server/cluster.py), with the bytes it read:
        a work or visitor connection for a control or proxy of ours, or a vhost client whose
        route is ours."""
        res = self.res
        factory: Callable[[], asyncio.BaseProtocol] | None = None
        if kind == "http" and res.vhost_http is not None:
            factory = res.vhost_http.protocol_factory
        elif kind in ("https", "tcpmux"):
            vhost = res.vhost_https if kind == "https" else res.vhost_tcpmux
            factory = vhost.conn_factory if vhost is not None else None
        msg: NewWorkConn | NewVisitorConn | None = None
        try:
            if kind == "work":
                msg = NewWorkConn.from_json(meta["msg"])
            elif kind == "visitor":
                msg = NewVisitorConn.from_json(meta["msg"])
            elif factory is None:
                raise MessageError(f"nothing here serves a {kind} connection")
        except (KeyError, TypeError, ProtocolError) as exc:
            log.warning("worker: bad hand-over: %s", exc)
            sock.close()
            return
        if msg is not None:
            factory = functools.partial(MessageConn.speaking, bool(meta.get("v2")))
        assert factory is not None
        try:
            proto = await adopt_socket(factory, sock, pending, ended)
        except OSError as exc:
            log.info("worker: handed-over connection lost: %s", exc)
            sock.close()
            return
        if isinstance(msg, NewWorkConn):
            self._work_conn(cast(MessageConn, proto), msg, handed=True)
        elif isinstance(msg, NewVisitorConn):
            self._visitor_conn(cast(MessageConn, proto), msg, user=str(meta.get("user", "")))

    def _hand_to(self, owner: int, conn: MessageConn, msg: Message, kind: str, **meta: Any) -> None:
        """Give a connection whose first message is ``msg`` to worker ``owner``."""
        assert self.cluster is not None
        if conn.transport is None or conn.transport.is_closing():
            return
        v2 = conn.v2
        transport, pending, ended = conn.detach()
        meta.update(msg=msg.to_json(), v2=v2)
        self.cluster.hand_over(owner, kind, meta, transport, pending, ended)

    async def _work_elsewhere(self, conn: MessageConn, msg: NewWorkConn) -> None:
        """A work connection whose control is not ours: to the worker that has it."""
        assert self.cluster is not None
        try:
            run = await self.cluster.run_owner(msg.run_id)
        except ClusterError as exc:
            log.warning("closing work connection from %s: %s", conn.peername, exc)
            conn.abort()
            return
        if run is None or run[0] == self.cluster.index:
            self._work_conn(conn, msg, handed=True)  # no control: refused as frps does
        else:
            self._hand_to(run[0], conn, msg, "work")

    async def _visitor_elsewhere(self, conn: MessageConn, msg: NewVisitorConn) -> None:
        """A visitor connection whose control or proxy is on another worker: its user is
        looked up, the connection goes to the proxy's worker."""
        assert self.cluster is not None
        user = ""
        try:
            if msg.run_id:
                ctl = self.controls.get(msg.run_id)
                run = None if ctl is not None else await self.cluster.run_owner(msg.run_id)
                if ctl is None and run is None:
                    err = f"no client control found for run id [{msg.run_id}]"
                    self._visitor_refused(conn, msg, err)
                    return
                user = ctl.user if ctl is not None else run[1] if run is not None else ""
            owner = None
            if msg.proxy_name not in self.res.visitor_targets:
                owner = await self.cluster.owner("proxy", msg.proxy_name)
        except ClusterError as exc:
            log.warning("closing visitor connection from %s: %s", conn.peername, exc)
            conn.abort()
            return
        if owner is None or owner == self.cluster.index:
            self._visitor_conn(conn, msg, user)
        else:
            self._hand_to(owner, conn, msg, "visitor", user=user)

    async def _start_ssh_gateway(self) -> None:
        from pyfrp.server.sshgw import SshGateway  # asyncssh loads only for the gateway

        try:
            self.ssh_gateway = SshGateway(self.cfg, self.accept_internal)
            await self.ssh_gateway.start()
        except (OSError, ValueError, ImportError) as exc:
            raise OSError(f"create ssh gateway error: {exc}") from exc
        log.info("frps sshTunnelGateway listen on port %d", self.cfg.ssh_bind_port)

    async def _start_quic(self) -> None:
        from pyfrp.net.quic import serve_transport, transport_configuration  # aioquic: ~4 MiB

        cfg = self.cfg
        quic_cfg = transport_configuration(
            False, cfg.quic_max_idle_timeout, cert_file=cfg.tls_cert_file, key_file=cfg.tls_key_file
        )
        address = join_host_port(cfg.bind_addr, cfg.quic_bind_port)
        try:
            self._quic = await serve_transport(
                cfg.bind_addr,
                cfg.quic_bind_port,
                quic_cfg,
                self._on_stream,
                cfg.tls_trusted_ca_file,
            )
        except OSError as exc:
            raise OSError(f"listen on quic udp address {address} error: {exc}") from exc
        log.info("frps quic listen on %s", address)

    async def _clean_stats(self) -> None:
        while True:
            await asyncio.sleep(12 * 3600)
            count, total = self.stats.clear_offline(OFFLINE_KEPT)
            log.debug("clear useless proxy statistics data count %d/%d", count, total)

    async def _clean_nathole(self) -> None:
        while True:
            await asyncio.sleep(3600)
            self.nathole.clean()

    async def _start_vhosts(self) -> None:
        cfg = self.cfg
        addr = cfg.effective_proxy_bind_addr
        listener = self._listener
        assert listener is not None
        # frp's mux: a vhost port equal to bind_port (on the same address) shares its listener.
        shared = addr == cfg.bind_addr
        if cfg.vhost_http_port:
            http = VhostHttpServer(
                response_timeout=cfg.vhost_http_timeout if cfg.vhost_http_timeout > 0 else 60,
                not_found_page=cfg.custom_404_page,
            )
            if shared and cfg.vhost_http_port == cfg.bind_port:
                http.port = self.bind_port
                listener.http_factory = http.protocol_factory
            else:
                # -1: a free port (API)
                await http.listen(
                    addr, max(cfg.vhost_http_port, 0), self.inherited.pop("http", None)
                )
                cfg.vhost_http_port = http.port
            self.res.vhost_http = http
            log.info("http service listen on %s:%d", addr, http.port)
        if cfg.vhost_https_port:
            https = VhostHttpsServer()
            if shared and cfg.vhost_https_port == cfg.bind_port:
                https.port = self.bind_port
                listener.https_factory = https.conn_factory
            else:
                await https.listen(
                    addr, max(cfg.vhost_https_port, 0), self.inherited.pop("https", None)
                )
                cfg.vhost_https_port = https.port
                log.info("https service listen on %s:%d", addr, https.port)
            self.res.vhost_https = https

        if cfg.tcpmux_httpconnect_port:
            tcpmux = VhostTcpmuxServer(
                passthrough=cfg.tcpmux_passthrough,
                version=FRP_VERSION,
                not_found_page=cfg.custom_404_page,
            )
            await tcpmux.listen(
                addr, max(cfg.tcpmux_httpconnect_port, 0), self.inherited.pop("tcpmux", None)
            )
            cfg.tcpmux_httpconnect_port = tcpmux.port
            self.res.vhost_tcpmux = tcpmux
            log.info("tcpmux httpconnect multiplexer listen on %s:%d", addr, tcpmux.port)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._kcp is not None:
            self._kcp.close()
            await self._kcp.wait_closed()
        if self._quic is not None:
            self._quic.close()
        if self.dashboard is not None:
            await self.dashboard.web.close()
        if self.ssh_gateway is not None:
            await self.ssh_gateway.close()
        res = self.res
        for vhost in (res.vhost_http, res.vhost_https, res.vhost_tcpmux):
            if vhost is not None:
                await vhost.close()
        for ctl in list(self.controls.values()):
            await ctl.replace()
        # then connections that never logged in, and tcp_mux sessions whatever they carried
        self.prelogin.close_all()
        for session in list(self.sessions):
            session.abort()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.plugins is not None:
            await self.plugins.close()
        # aborted transports close their sockets in a callback: let those run, so that every
        # socket is closed when close() returns (the Python API's caller may end its loop)
        await asyncio.sleep(0)

    def _protocol_factory(self) -> asyncio.BaseProtocol:
        if self.cfg.tcp_mux:
            return _MuxConn(self)
        return _IncomingConn(self)

    def _on_stream(self, stream: asyncio.Transport) -> None:
        conn = _IncomingConn(self)
        stream.set_protocol(conn)
        conn.connection_made(stream)

    async def accept_internal(self, sock: socket.socket) -> None:
        """A connection from the SSH tunnel gateway's in-process client (frp: the
        sshTunnelListener served with HandleListener(internal=true)): no TLS, no tcp_mux."""
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: _IncomingConn(self, internal=True), sock)

    def dispatch(self, conn: MessageConn, msg: Message, internal: bool = False) -> None:
        """Act on the first message of a new connection."""
        if isinstance(msg, NewWorkConn):
            self._work_conn(conn, msg)
        elif isinstance(msg, Login):
            self.spawn(self._login(conn, msg, internal))
        elif isinstance(msg, NewVisitorConn):
            self._visitor_conn(conn, msg)
        else:
            log.warning(
                "closing connection from %s: unexpected first message %s",
                conn.peername,
                type(msg).__name__,
            )
            conn.close()

    async def _login(self, conn: MessageConn, login: Login, internal: bool = False) -> None:
        peer = conn.peername
        # the gateway's connections have no address: frp's net.Pipe says "pipe"
        addr = f"{peer[0]}:{peer[1]}" if peer else ("pipe" if internal else "")
        log.info(
            "client login info: ip [%s] version [%s] hostname [%s] os [%s] arch [%s]",
            addr or "?", login.version, login.hostname, login.os, login.arch,
        )  # fmt: skip
        err = ""
        if self.plugins is not None and self.plugins.handles("Login"):
            try:
                login = await self.plugins.login(login, addr)
            except PluginRejected as exc:
                err = str(exc)
        # The gateway's client logs in without the token when ssh already checked a key.
        always_pass = internal and login.client_spec.always_auth_pass
        if not err and not always_pass:
            err = await self.auth.verify_login(login)
        v2_crypto = conn.v2_crypto if isinstance(conn, _IncomingConn) else None
        if not err and conn.v2 and v2_crypto is None:
            err = "create control crypto read writer: missing v2 crypto negotiation"
        if err:
            log.warning("register control error: %s", err)
            text = err if self.cfg.detailed_errors_to_client else "register control error"
            conn.send(LoginResp(version=FRP_VERSION, error=text))
            conn.close()
            return
        run_id = login.run_id or secrets.token_hex(8)
        if self.cluster is not None:  # a control of it on another worker closes first
            await self.cluster.claim_run(run_id, login.user)
        old = self.controls.get(run_id)
        if old is not None:
            await old.replace()
        conn.send(LoginResp(version=FRP_VERSION, run_id=run_id))
        ctl = Control(self, conn, login, run_id, internal=internal, always_pass=always_pass)
        ctl.v2_crypto = v2_crypto
        self.controls[run_id] = ctl
        self.stats.client_online(
            login.user, login.client_id, run_id, login.hostname, peer[0] if peer else "",
            login.version, "v2" if conn.v2 else "v1",
        )  # fmt: skip
        ctl.start()
        ctl.log.info("client login success, user [%s] pool_count [%d]", login.user, ctl.pool_count)

    def control_closed(self, ctl: Control) -> None:
        if self.controls.get(ctl.run_id) is ctl:
            del self.controls[ctl.run_id]
            self.stats.client_offline(ctl.run_id)
            if self.cluster is not None:
                self.cluster.release_run(ctl.run_id)

    def _work_conn(self, conn: MessageConn, msg: NewWorkConn, handed: bool = False) -> None:
        ctl = self.controls.get(msg.run_id)
        if ctl is None and self.cluster is not None and not handed:
            self.spawn(self._work_elsewhere(conn, msg))
            return
        if ctl is None:
            err = f"no client control found for run id [{msg.run_id}]"
            log.warning("%s, closing work connection from %s", err, conn.peername)
            conn.send(StartWorkConn(error=err))
            conn.close()
            return
        checked = "NewWorkConns" in self.cfg.auth_scopes
        if (self.plugins is not None and self.plugins.handles("NewWorkConn")) or (
            checked and self.auth.oidc is not None
        ):
            self.spawn(self._checked_work_conn(ctl, conn, msg))
            return
        err = ""
        if checked and not ctl.always_pass:
            err = self.auth.token_check(msg.privilege_key, msg.timestamp, "NewWorkConn")
        if self._work_conn_ok(conn, msg, err):
            ctl.add_work_conn(conn)

    async def _checked_work_conn(self, ctl: Control, conn: MessageConn, msg: NewWorkConn) -> None:
        err = ""
        if self.plugins is not None and self.plugins.handles("NewWorkConn"):
            try:
                msg = await self.plugins.new_work_conn(ctl.user_info, msg)
            except PluginRejected as exc:
                err = str(exc)
        if not err and not ctl.always_pass:
            err = await self.auth.verify_new_work_conn(msg)
        if self._work_conn_ok(conn, msg, err):
            ctl.add_work_conn(conn)

    def _work_conn_ok(self, conn: MessageConn, msg: NewWorkConn, err: str) -> bool:
        """Accepts the work connection unless a plugin or the auth check said ``err``."""
        cfg = self.cfg
        if not err:
            return True
        log.warning("invalid NewWorkConn with run id [%s]: %s", msg.run_id, err)
        text = err if cfg.detailed_errors_to_client else "invalid NewWorkConn"
        conn.send(StartWorkConn(error=text))
        conn.close()
        return False

    def _visitor_conn(
        self, conn: MessageConn, msg: NewVisitorConn, user: str | None = None
    ) -> None:
        """A visitor's connection for an stcp/sudp/xtcp proxy (RegisterVisitorConn); ``user``:
        its control's, when that was looked up already (another worker handed it here)."""
        target = self.res.visitor_targets.get(msg.proxy_name)
        elsewhere = target is None or (msg.run_id and msg.run_id not in self.controls)
        if user is None and self.cluster is not None and elsewhere:
            self.spawn(self._visitor_elsewhere(conn, msg))
            return
        try:
            if user is None:
                user = ""  # visitors older than frp 0.50 send no run id
                if msg.run_id:
                    ctl = self.controls.get(msg.run_id)
                    if ctl is None:
                        raise PortError(f"no client control found for run id [{msg.run_id}]")
                    user = ctl.user
            if target is None:
                raise PortError(f"custom listener for [{msg.proxy_name}] doesn't exist")
            target.admit(msg, user)
        except PortError as exc:
            self._visitor_refused(conn, msg, str(exc))
            return
        conn.send(NewVisitorConnResp(proxy_name=msg.proxy_name))
        v2 = conn.v2
        target.accept(msg, *conn.detach(), v2=v2)

    def _visitor_refused(self, conn: MessageConn, msg: NewVisitorConn, err: str) -> None:
        log.warning("register visitor conn error: %s", err)
        if not self.cfg.detailed_errors_to_client:
            err = "register visitor conn error"
        conn.send(NewVisitorConnResp(proxy_name=msg.proxy_name, error=err))
        conn.close()

    async def register_proxy(self, ctl: Control, msg: NewProxy) -> Proxy:
        name = msg.proxy_name
        ptype = msg.proxy_type or "tcp"
        if name in self.proxies:
            raise PortError(f"proxy [{name}] already exists")
        cls = PROXY_TYPES.get(ptype)
        if cls is None:
            raise PortError(f"proxy type [{ptype}] is not supported by pyfrps yet")
        limit = self.cfg.max_ports_per_client
        used = sum(p.uses_port for p in ctl.proxies.values())
        if cls.uses_port and 0 < limit <= used:
            raise PortError("exceed the max_ports_per_client")
        group_port = await self._claim_proxy(msg) if self.cluster is not None else 0
        proxy = cls(ctl, msg, self.res)
        if isinstance(proxy, TcpProxy):
            proxy.group_port = group_port
        try:
            await proxy.start()
        except BaseException:
            self._release_claims(name)
            raise
        self.proxies[name] = proxy
        self.stats.proxy_opened(name, ptype, ctl.user, ctl.login.client_id or ctl.run_id)
        return proxy

    async def _claim_proxy(self, msg: NewProxy) -> int:
        """The proxy's name, port and routes for this worker, across the relay (PortError as
        frp's if taken). Returns the port a tcp group's members elsewhere listen on, or 0."""
        assert self.cluster is not None
        name = msg.proxy_name
        try:
            if await self.cluster.claim("proxy", name) is not None:
                raise PortError(f"proxy [{name}] already exists")
            claims = self._claims[name] = [("proxy", name)]
            kind = msg.proxy_type or "tcp"
            if msg.group and kind in GROUP_KINDS:
                return await self._join_groups(msg, claims)
            ports = {"tcp": self.res.tcp_ports, "udp": self.res.udp_ports}.get(kind)
            if ports is not None and msg.remote_port and ports.allowed(msg.remote_port):
                # frp's words when its own proxy holds the port, not a failed bind's
                if await self.cluster.claim("port", f"{kind}:{msg.remote_port}") is not None:
                    self._release_claims(name)
                    used = "port already used"
                    raise PortError(
                        f"acquire port {msg.remote_port} error: {used}" if kind == "udp" else used
                    )
                claims.append(("port", f"{kind}:{msg.remote_port}"))
            for key in self._route_keys(msg):
                if await self.cluster.claim("route", key) is not None:
                    self._release_claims(name)
                    raise PortError("router config conflict")
                claims.append(("route", key))
        except ClusterError as exc:
            self._release_claims(name)
            raise PortError(str(exc)) from None
        return 0

    async def _join_groups(self, msg: NewProxy, claims: list[tuple[str, str]]) -> int:
        """A load-balancing group's member: its group (tcp), or the group of each of its routes,
        joined across the relay; every worker with members serves the port or route."""
        assert self.cluster is not None
        group = msg.group
        if msg.proxy_type in ("", "tcp"):
            if msg.remote_port and not self.res.tcp_ports.allowed(msg.remote_port):
                return 0  # the proxy's start says "port not allowed"
            where = f"tcp\n{group}"
            claim = ("port", f"tcp:{msg.remote_port}" if msg.remote_port else "")
            wheres: list[tuple[str, tuple[str, str], int | None]] = [
                (where, claim, msg.remote_port)
            ]
        else:
            wheres = [(key, ("route", key), None) for key in self._route_keys(msg)]
        port = 0
        try:
            for where, claim, params in wheres:
                port = await self.cluster.group_join(where, group, msg.group_key, params, claim)
                claims.append(("group", where))
        except PortError:
            self._release_claims(msg.proxy_name)
            raise
        return port

    def _group_port_bound(self, group: str, port: int) -> None:
        if self.cluster is not None:
            self.cluster.group_port(f"tcp\n{group}", port)

    def _route_keys(self, msg: NewProxy) -> list[str]:
        """The vhost routes a proxy will register, as the supervisor names them."""
        kind = msg.proxy_type
        res = self.res
        vhost = {"http": res.vhost_http, "https": res.vhost_https, "tcpmux": res.vhost_tcpmux}
        if vhost.get(kind) is None:
            return []
        try:
            domains = build_domains(msg, self.cfg.subdomain_host)
        except PortError:
            return []  # the proxy's start says so, in frp's words
        user = "" if kind == "https" else msg.route_by_http_user
        locations = (msg.locations or [""]) if kind == "http" else [""]
        return [route_key(kind, d, loc, user) for d in domains for loc in locations]

    def _release_claims(self, name: str) -> None:
        if self.cluster is not None:
            for kind, key in self._claims.pop(name, []):
                if kind == "group":
                    self.cluster.group_leave(key)
                else:
                    self.cluster.release(kind, key)

    def unregister_proxy(self, name: str) -> None:
        proxy = self.proxies.pop(name, None)
        if proxy is not None:
            self.stats.proxy_closed(name, proxy.kind)
            self._release_claims(name)
