"""Command lines of pyfrps and pyfrpc, shaped like frps and frpc."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from pyfrp import FRP_VERSION, __version__
from pyfrp.errors import ConfigError

log = logging.getLogger("pyfrp")


def _version() -> str:
    return f"pyfrp {__version__} (frp wire protocol {FRP_VERSION})"


def _parser(prog: str, what: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=f"{what} of pyfrp, a drop-in frp replacement"
    )
    p.add_argument("-c", "--config", default=f"./{prog.removeprefix('py')}.ini", help="config file")
    p.add_argument("-v", "--version", action="version", version=_version())
    return p


def _install_loop() -> None:
    if os.environ.get("PYFRP_LOOP") == "asyncio":  # for comparing loops
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _run(coro_factory: object) -> int:
    _install_loop()
    return asyncio.run(coro_factory())  # type: ignore[operator, no-any-return]


def frps_main(argv: Sequence[str] | None = None) -> int:
    from pyfrp.config.load import load_server_config
    from pyfrp.log import setup_logging
    from pyfrp.server.service import Server

    args = _parser("pyfrps", "the server (frps)").parse_args(argv)
    try:
        cfg, notices = load_server_config(args.config)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    setup_logging(cfg.log.to, cfg.log.level, cfg.log.disable_color)
    for n in notices:
        log.warning("%s", n)

    async def main() -> int:
        server = Server(cfg)
        try:
            await server.start()
        except OSError as exc:
            log.error("create server listener error, %s", exc)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("frps is stopping")
        await server.close()
        return 0

    return _run(main)


def frpc_main(argv: Sequence[str] | None = None) -> int:
    from pyfrp.client.service import Client
    from pyfrp.config.load import load_client_config
    from pyfrp.log import setup_logging

    args = _parser("pyfrpc", "the client (frpc)").parse_args(argv)
    try:
        cfg, notices = load_client_config(args.config)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    setup_logging(cfg.log.to, cfg.log.level, cfg.log.disable_color)
    for n in notices:
        log.warning("%s", n)

    async def main() -> int:
        client = Client(cfg)
        loop = asyncio.get_running_loop()
        task = loop.create_task(client.run())

        def on_signal() -> None:
            log.info("frpc is stopping")
            client.stop()
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            return await task
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # let CloseProxy and FIN frames leave
            return 0

    return _run(main)
