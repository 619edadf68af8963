"""Command lines of pyfrps and pyfrpc, shaped like frps and frpc (cmd/frps, cmd/frpc/sub).

    pyfrps [-c FILE | --bind_port 7000 --token x ...]    pyfrpc [-c FILE]
    pyfrps verify -c FILE                                pyfrpc verify -c FILE
                                                         pyfrpc tcp|udp|http|https|... [flags]

Common to both: ``--strict_config`` (also ``--strict_config=false``), ``-v/--version``. As in
frp (cobra/pflag), ``--bind-port`` and ``--bind_port`` are the same flag, and a boolean flag
takes ``--flag`` or ``--flag=false``. A bad configuration prints one message (file, line, key)
to stderr and exits 1; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from pyfrp.config import schema
from pyfrp.config.decode import Strict, convert_text, proxy_schema, visitor_schema
from pyfrp.config.flags import (
    CLIENT_FLAGS,
    PROXY_FLAGS,
    SERVER_FLAGS,
    VISITOR_FLAGS,
    VISITOR_TYPES_WITH_COMMAND,
    Flag,
    flag_help,
)
from pyfrp.config.model import ClientConfig, ServerConfig
from pyfrp.config.schema import Kind, Opt
from pyfrp.errors import ConfigError
from pyfrp.version import FRP_VERSION, __version__

if TYPE_CHECKING:
    from pyfrp.server.supervisor import Worker

log = logging.getLogger("pyfrp")

_UNSUPPORTED_COMMANDS = ("nathole", "completion")
# frpc's admin commands (cmd/frpc/sub/admin.go): they call the running frpc's admin API.
_ADMIN_COMMANDS = {
    "reload": "Hot-Reload frpc configuration",
    "status": "Overview of all proxies status",
    "stop": "Stop the running frpc",
}


def _version() -> str:
    # frp's own output first (scripts compare it), then what this program is.
    return f"{FRP_VERSION} (pyfrp {__version__})"


class _Help(argparse.HelpFormatter):
    """Flags listed as cobra lists them: ``-p, --bind-port int   bind port (default 7000)``,
    under the spelling frp 0.70 documents (the underscore one works too)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=40, width=110)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        short = [o for o in action.option_strings if not o.startswith("--")]
        long = [o for o in action.option_strings if o.startswith("--")]
        name = next((o for o in long if "_" not in o), long[0])
        head = f"{short[0]}, " if short else "    "
        word = action.metavar if isinstance(action.metavar, str) and action.nargs != 0 else ""
        return f"{head}{name} {word}".rstrip()


class _Parser(argparse.ArgumentParser):
    """argparse that exits 1 on a usage error (cobra's code), not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _spellings(name: str) -> list[str]:
    names = [f"--{name}"]
    for alt in (name.replace("_", "-"), name.replace("-", "_")):
        if f"--{alt}" not in names:
            names.append(f"--{alt}")
    return names


def _add_flag(
    p: argparse.ArgumentParser,
    f: Flag,
    flat: dict[str, Opt],
    dest_prefix: str = "",
    scope: str = "",
) -> None:
    names = ([f"-{f.short}"] if f.short else []) + _spellings(f.name)
    dest = dest_prefix + f.name.replace("-", "_")
    word, text = flag_help(f, flat, scope)
    p.add_argument(*names, dest=dest, default=argparse.SUPPRESS, metavar=word, help=text)


def _bool_spellings() -> set[str]:
    flags = [
        *SERVER_FLAGS,
        *CLIENT_FLAGS,
        *VISITOR_FLAGS,
        *(f for fs in PROXY_FLAGS.values() for f in fs),
    ]
    names = {n for f in flags if f.boolean for n in _spellings(f.name)}
    return names | set(_spellings("strict_config"))


def _normalize(argv: Sequence[str]) -> list[str]:
    """pflag booleans: a bare ``--tls_only`` means ``--tls_only=true`` and takes no argument."""
    bools = _bool_spellings()
    return [f"{a}=true" if a in bools else a for a in argv]


def _globals(p: argparse.ArgumentParser, who: str, default_config: str | None) -> None:
    # SUPPRESS keeps a subcommand's parser from resetting what the root parser already read.
    default = f' (default "{default_config}")' if default_config else ""
    p.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        metavar="string",
        help=f"config file of {who}{default}",
    )
    p.add_argument(
        *reversed(_spellings("strict_config")),
        dest="strict_config",
        default=argparse.SUPPRESS,
        metavar="",
        help="strict config parsing mode: unknown fields, and settings pyfrp does not implement"
        " yet, are errors (default true)",
    )
    p.add_argument(
        *_spellings("allow-unsafe"), dest="allow_unsafe", action="append",
        default=argparse.SUPPRESS, metavar="strings",
        help="allowed unsafe features, one or more of: TokenSourceExec",
    )  # fmt: skip
    p.add_argument(
        "-v", "--version", action="version", version=_version(), help=f"version of {who}"
    )


def _unsafe(args: argparse.Namespace) -> frozenset[str]:
    """``--allow-unsafe=A,B`` (repeatable, as pflag's StringSlice)."""
    given = getattr(args, "allow_unsafe", None) or []
    return frozenset(f.strip() for item in given for f in item.split(",") if f.strip())


def _strict(args: argparse.Namespace) -> Strict:
    raw = getattr(args, "strict_config", None)
    if raw is None:
        return None
    value = convert_text(Opt(Kind.BOOL), raw, "command line: --strict_config")
    return bool(value)


def _given(args: argparse.Namespace, flags: Sequence[Flag], prefix: str = "") -> dict[str, str]:
    out = {}
    for f in flags:
        value = getattr(args, prefix + f.name.replace("-", "_"), None)
        if value is not None:
            out[f.name] = value
    return out


def _fail(exc: ConfigError) -> int:
    print(exc, file=sys.stderr)
    return 1


def _install_loop() -> None:
    if os.environ.get("PYFRP_LOOP") == "asyncio":  # for comparing loops
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _tune_malloc() -> None:
    """Keep glibc from handing heap memory back to the kernel after every TLS read.

    The loop's TLS transport reads with ``SSLObject.read(256 KiB)``: each read allocates 256 KiB
    and frees it at once. With glibc's default (dynamic) thresholds that free trims the heap top,
    so the next read pays brk and page faults again: 3-4x the cost of the read itself, per TLS
    record burst (measured with cProfile on pyfrps, tcp_mux over TLS: 47 -> 14 us per read).
    Fixed thresholds (mmap above 1 MiB, trim above 4 MiB) keep that buffer's pages.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1024 * 1024)
    mallopt(m_trim_threshold, 4 * 1024 * 1024)


def _run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    _tune_malloc()
    _install_loop()
    return asyncio.run(main())


def _start_logging(cfg: ServerConfig | ClientConfig, notices: list[str]) -> bool:
    from pyfrp.log import setup_logging

    try:
        setup_logging(cfg.log.to, cfg.log.level, cfg.log.max_days, cfg.log.disable_color)
    except OSError as exc:
        print(f"cannot open log file {cfg.log.to}: {exc.strerror or exc}", file=sys.stderr)
        return False
    for n in notices:
        log.warning("%s", n)
    return True


def _verify(who: str, path: str, load: Callable[[], list[str]]) -> int:
    try:
        notices = load()
    except ConfigError as exc:
        return _fail(exc)
    for n in notices:
        print(f"WARNING: {n}")
    print(f"{who}: the configuration file {path} syntax is ok")
    return 0


# ------------------------------------------------------------------------------------- frps


def _frps_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="pyfrps",
        usage="%(prog)s [flags]\n       %(prog)s verify -c FILE\n       %(prog)s reload -c FILE",
        description="pyfrps is the server of pyfrp, a drop-in replacement for frps"
        f" {FRP_VERSION} (https://github.com/fatedier/frp)",
        formatter_class=_Help,
        allow_abbrev=False,
    )
    _globals(p, "frps", None)
    p.add_argument(
        "command",
        nargs="?",
        choices=["verify", "reload"],
        help="verify: check that the config file is valid; reload: make the running pyfrps"
        " started with this config file read it again (pyfrp extension)",
    )
    for f in SERVER_FLAGS:
        _add_flag(p, f, schema.SERVER, scope="frps")
    return p


def frps_config(argv: Sequence[str]) -> tuple[ServerConfig, list[str]]:
    """What ``pyfrps ARGV`` would run with: from ``-c FILE``, or from flags alone (as frps,
    flags are ignored when a file is given). Raises ConfigError."""
    from pyfrp.config.flags import server_from_flags
    from pyfrp.config.load import load_server_config

    args = _frps_parser().parse_args(_normalize(argv))
    path: str | None = getattr(args, "config", None)
    strict = _strict(args)
    given = _given(args, SERVER_FLAGS)
    if not path:
        return server_from_flags(given, strict)
    cfg, notices = load_server_config(path, strict, allow_unsafe=_unsafe(args))
    if given:
        notices.append(
            f"command line: --{next(iter(given))}: options other than -c are ignored when a"
            " config file is given, as in frps"
        )
    return cfg, notices


def frps_main(argv: Sequence[str] | None = None) -> int:
    from pyfrp.config.load import load_server_config

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _frps_parser().parse_args(_normalize(argv))
    path: str | None = getattr(args, "config", None)
    try:
        if args.command == "verify":
            if not path:
                print("frps: the configuration file is not specified")
                return 0
            strict = _strict(args)
            unsafe = _unsafe(args)
            return _verify(
                "frps", path, lambda: load_server_config(path, strict, allow_unsafe=unsafe)[1]
            )
        if args.command == "reload":
            return _frps_reload(path, _strict(args), _unsafe(args))
        cfg, notices = frps_config(argv)
    except ConfigError as exc:
        return _fail(exc)
    from pyfrp.server.supervisor import worker_env

    worker = worker_env()
    # a worker's supervisor has said all this already
    if not _start_logging(cfg, notices if worker is None else []):
        return 1
    if worker is None:
        if path:
            log.info("frps uses config file: %s", path)
        else:
            log.info("frps uses command line arguments for config")
    if worker is None and cfg.effective_workers > 1:
        from pyfrp.server.supervisor import Supervisor

        return _run(Supervisor(cfg, argv, cfg.effective_workers).run)
    if path:
        strict, unsafe = _strict(args), _unsafe(args)
        return _run(
            lambda: _serve(
                cfg, path, lambda: load_server_config(path, strict, allow_unsafe=unsafe), worker
            )
        )
    return _run(lambda: _serve(cfg, worker=worker))


def _frps_reload(path: str | None, strict: Strict, unsafe: frozenset[str]) -> int:
    """``pyfrps reload -c FILE`` (pyfrp extension)."""
    from pyfrp.config.load import load_server_config
    from pyfrp.server import reloadctl

    if not path:
        print("frps: the configuration file is not specified", file=sys.stderr)
        return 1
    try:
        cfg, _ = load_server_config(path, strict, allow_unsafe=unsafe)
    except ConfigError as exc:  # nothing is sent: the running pyfrps would refuse it too
        return _fail(exc)
    try:
        for line in reloadctl.reload(cfg, path):
            print(line)
    except reloadctl.ReloadError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


async def _serve(
    cfg: ServerConfig,
    path: str = "",
    loader: Callable[[], tuple[ServerConfig, list[str]]] | None = None,
    worker: Worker | None = None,
) -> int:
    from pyfrp.errors import OIDCError
    from pyfrp.server.service import Server

    server = Server(cfg)
    server.config_path, server.config_loader = path, loader
    if worker is not None:
        from pyfrp.server.cluster import Cluster

        index, count, link, server.inherited = worker
        server.cluster = Cluster(index, count, link)
    loop = asyncio.get_running_loop()
    # SIGHUP reloads (pyfrp extension); until frps has started it must not kill it either.
    loop.add_signal_handler(
        signal.SIGHUP, lambda: log.warning("frps is still starting: reload ignored")
    )
    try:
        await server.start()
        if server.cluster is not None:
            server.cluster.send({"op": "started"})  # a worker that fails before stops frps
    except OSError as exc:
        log.error("create server listener error, %s", exc)
        return 1
    except OIDCError as exc:  # frps panics when the issuer's discovery fails
        log.error("create OIDC token verifier error: %s", exc)
        return 1
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if server.cluster is not None:  # the supervisor gone: stop as on SIGTERM, then exit 1
        server.cluster.on_lost = stop.set
    # a worker's SIGHUP is its own (the supervisor tells every worker of its own)
    loop.add_signal_handler(signal.SIGHUP, lambda: server.reload(everywhere=worker is None))
    await stop.wait()
    log.info("frps is stopping")
    await server.close()
    return 1 if server.cluster is not None and server.cluster.lost else 0


# ------------------------------------------------------------------------------------- frpc


def _frpc_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="pyfrpc",
        usage="%(prog)s [flags]\n       %(prog)s [command]",
        description="pyfrpc is the client of pyfrp, a drop-in replacement for frpc"
        f" {FRP_VERSION} (https://github.com/fatedier/frp)",
        formatter_class=_Help,
        allow_abbrev=False,
    )
    _globals(p, "frpc", "./frpc.ini")
    sub = p.add_subparsers(
        dest="command", metavar="command", parser_class=_Parser, title="available commands",
        prog="pyfrpc",
    )  # fmt: skip
    v = sub.add_parser(
        "verify", help="Verify that the configures is valid", formatter_class=_Help,
        allow_abbrev=False,
    )  # fmt: skip
    _globals(v, "frpc", "./frpc.ini")
    for ptype, flags in PROXY_FLAGS.items():
        what = f"Run frpc with a single {ptype} proxy"
        q = sub.add_parser(
            ptype, help=what, description=what, usage="%(prog)s [flags]",
            formatter_class=_Help, allow_abbrev=False,
        )  # fmt: skip
        _globals(q, "frpc", None)
        for f in CLIENT_FLAGS:
            _add_flag(q, f, schema.CLIENT, "c_")
        for f in flags:
            _add_flag(q, f, proxy_schema(ptype), "p_")
        if ptype in VISITOR_TYPES_WITH_COMMAND:
            what = f"Run frpc with a single {ptype} visitor"
            vs = q.add_subparsers(dest="visitor", metavar="command", parser_class=_Parser)
            v = vs.add_parser(
                "visitor", help=what, description=what, usage=f"pyfrpc {ptype} visitor [flags]",
                formatter_class=_Help, allow_abbrev=False,
            )  # fmt: skip
            _globals(v, "frpc", None)
            for f in VISITOR_FLAGS:
                _add_flag(v, f, visitor_schema(ptype), "v_", scope="visitor")
    for name, what in _ADMIN_COMMANDS.items():
        a = sub.add_parser(
            name, help=what, description=what, usage=f"pyfrpc {name} [flags]",
            formatter_class=_Help, allow_abbrev=False,
        )  # fmt: skip
        _globals(a, "frpc", "./frpc.ini")
        a.add_argument(
            *_spellings("api-timeout"), dest="api_timeout", default="30s", metavar="duration",
            help='Timeout for admin API calls (default 30s)',
        )  # fmt: skip
    for name in _UNSUPPORTED_COMMANDS:
        sub.add_parser(name, help="not supported yet by pyfrpc", allow_abbrev=False)
    p.add_argument(
        *_spellings("config_dir"), dest="config_dir", default=argparse.SUPPRESS, metavar="string",
        help="config directory, run one frpc service for each file in config directory",
    )  # fmt: skip
    return p


def _positionals(argv: Sequence[str]) -> list[str]:
    """The words of ``argv`` that are not options or an option's value (close enough to tell
    the command before argparse sees flags it does not know)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = "=" not in a and a not in _bool_spellings() and a not in ("-h", "--help")
        else:
            out.append(a)
    return out


def frpc_config(argv: Sequence[str]) -> tuple[ClientConfig, list[str]]:
    """What ``pyfrpc ARGV`` would run with: ``-c FILE`` or a quick command (``tcp ...``).
    Raises ConfigError."""
    from pyfrp.config.flags import client_from_flags
    from pyfrp.config.load import load_client_config

    args = _frpc_parser().parse_args(_normalize(argv))
    strict = _strict(args)
    if getattr(args, "visitor", None):  # frp gives a visitor command no server flags
        visitor = _given(args, VISITOR_FLAGS, "v_")
        return client_from_flags(args.command, {}, visitor, strict, visitor=True)
    if args.command in PROXY_FLAGS:
        common = _given(args, CLIENT_FLAGS, "c_")
        proxy = _given(args, PROXY_FLAGS[args.command], "p_")
        return client_from_flags(args.command, common, proxy, strict)
    path = getattr(args, "config", None) or "./frpc.ini"
    return load_client_config(path, strict, allow_unsafe=_unsafe(args))


def frpc_main(argv: Sequence[str] | None = None) -> int:
    from pyfrp.config.load import load_client_config

    argv = list(sys.argv[1:] if argv is None else argv)
    words = _positionals(argv)
    if words and words[0] in _UNSUPPORTED_COMMANDS:
        print(f"frpc {words[0]}: not supported yet by pyfrpc", file=sys.stderr)
        return 1
    args = _frpc_parser().parse_args(_normalize(argv))
    command = args.command
    path: str = getattr(args, "config", None) or "./frpc.ini"
    config_dir: str | None = getattr(args, "config_dir", None)
    try:
        if command == "verify":
            strict = _strict(args)
            unsafe = _unsafe(args)
            return _verify(
                "frpc", path, lambda: load_client_config(path, strict, allow_unsafe=unsafe)[1]
            )
        if command in _ADMIN_COMMANDS:
            return _admin(command, path, args)
        if config_dir and command is None:
            return _config_dir(config_dir, _strict(args), _unsafe(args))
        cfg, notices = frpc_config(argv)
    except ConfigError as exc:
        return _fail(exc)
    if not _start_logging(cfg, notices):
        return 1
    if command is None:
        log.info("start frpc service for config file [%s]", path)
    unsafe = _unsafe(args)
    return _run(lambda: _clients([(cfg, path if command is None else "")], unsafe))


def _duration(raw: str) -> float:
    """A Go duration such as 30s, 1m30s, 500ms."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise ConfigError(f'command line: --api-timeout: invalid duration "{raw}"')
    return sum(float(n) * units[u] for n, u in parts)


def _admin(command: str, path: str, args: argparse.Namespace) -> int:
    from pyfrp.client import adminctl
    from pyfrp.config.load import load_client_config

    strict = _strict(args)
    timeout = _duration(args.api_timeout)
    try:
        cfg, _ = load_client_config(path, strict, allow_unsafe=_unsafe(args))
    except ConfigError as exc:
        print(exc)
        return 1
    if cfg.web.port <= 0:
        print("web server port should be set if you want to use this feature")
        return 1
    try:
        if command == "reload":
            print(adminctl.reload(cfg, strict is not False, timeout))
        elif command == "stop":
            print(adminctl.stop(cfg, timeout))
        else:
            print(adminctl.status(cfg, timeout))
    except adminctl.AdminError as exc:
        print(exc)
        return 1
    return 0


def _config_dir(directory: str, strict: Strict, unsafe: frozenset[str]) -> int:
    """frpc --config_dir: one client per file under the directory, in one process."""
    from pyfrp.config.load import load_client_config

    loaded: list[tuple[ClientConfig, str]] = []
    notices: list[str] = []
    for root, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            path = os.path.join(root, name)
            cfg, more = load_client_config(path, strict, allow_unsafe=unsafe)
            loaded.append((cfg, path))
            notices.extend(more)
    if not loaded:
        print(f"no config file found in {directory}", file=sys.stderr)
        return 1
    if not _start_logging(loaded[0][0], notices):
        return 1
    for _, path in loaded:
        log.info("start frpc service for config file [%s]", path)
    return _run(lambda: _clients(loaded, unsafe))


async def _clients(configs: list[tuple[ClientConfig, str]], unsafe: frozenset[str]) -> int:
    from pyfrp.client.service import Client

    try:
        clients = [Client(cfg, path, unsafe) for cfg, path in configs]
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        log.info("frpc is stopping")
        for client in clients:
            client.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    codes = await asyncio.gather(*(c.run() for c in clients))
    await asyncio.sleep(0.05)  # let CloseProxy and FIN frames leave
    return max(codes)
