"""Health checks of a proxy's local service (client/health/health.go): a TCP connect or an HTTP
GET every ``intervalSeconds``; frpc registers the proxy only while the service is healthy.

frp's order: the first check runs at once and the proxy stays unregistered until one succeeds
("health check success" sends NewProxy); ``maxFailed`` failures in a row take it down
("health check failed" sends CloseProxy). Unlike frp, whose count of failures never resets, a
success starts the count again, so ``maxFailed`` means the same every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyfrp.config.model import ProxyConfig
from pyfrp.log import PrefixLogger
from pyfrp.net import resolve

if TYPE_CHECKING:
    import aiohttp


def check_url(cfg: ProxyConfig) -> str:
    path = cfg.health_check.path
    return f"http://{cfg.local_ip}:{cfg.local_port}{'' if path.startswith('/') else '/'}{path}"


async def check_once(cfg: ProxyConfig, session: aiohttp.ClientSession | None) -> None:
    """One check; raises OSError/TimeoutError (aiohttp.ClientError for http) with why."""
    hc = cfg.health_check
    async with asyncio.timeout(hc.timeout):
        if hc.type == "tcp":
            transport, _ = await resolve.create_connection(
                asyncio.Protocol, cfg.local_ip, cfg.local_port
            )
            transport.close()
            return
        assert session is not None
        headers = {h.get("name", ""): h.get("value", "") for h in hc.headers}
        async with session.get(check_url(cfg), headers=headers, allow_redirects=False) as resp:
            await resp.read()
            if resp.status // 100 != 2:
                raise OSError(f"do http health check, StatusCode is [{resp.status}] not 2xx")


async def monitor(
    cfg: ProxyConfig,
    log: PrefixLogger,
    healthy: Callable[[], None],
    unhealthy: Callable[[], None],
) -> None:
    """Check until cancelled, calling ``healthy``/``unhealthy`` when the state changes."""
    hc = cfg.health_check
    failures: tuple[type[BaseException], ...] = (OSError, TimeoutError)
    session = None
    if hc.type == "http":
        import aiohttp  # only for http checks (idle RSS)

        session = aiohttp.ClientSession()
        failures = (*failures, aiohttp.ClientError)
    ok = False
    failed = 0
    try:
        while True:
            try:
                await check_once(cfg, session)
            except failures as exc:
                log.warning("do one health check failed: %s", exc or type(exc).__name__)
                failed += 1
                if ok and failed >= hc.max_failed:
                    log.warning("health check status change to failed")
                    ok = False
                    log.info("health check failed")
                    unhealthy()
            else:
                failed = 0
                if not ok:
                    log.info("health check status change to success")
                    ok = True
                    log.info("health check success")
                    healthy()
            await asyncio.sleep(hc.interval)
    finally:
        if session is not None:
            await session.close()
