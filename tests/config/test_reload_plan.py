"""What a reload of pyfrps's config applies and what it keeps (config/reload.py)."""

from __future__ import annotations

from pyfrp.config.model import ServerConfig, WebServerConfig
from pyfrp.config.reload import LIVE, plan


def test_live_settings_applied_restart_ones_kept() -> None:
    running = ServerConfig(bind_port=7000, token="a", allow_ports=[(1000, 2000)])
    loaded = ServerConfig(
        bind_port=7001,
        vhost_http_port=8080,
        token="b",
        allow_ports=[(3000, 3000)],
        web=WebServerConfig(port=7500, user="u", password="p"),
    )
    effective, changes = plan(running, loaded)
    assert effective.token == "b"
    assert effective.allow_ports == [(3000, 3000)]
    assert effective.web.user == "u"
    assert effective.web.password == "p"
    assert effective.bind_port == 7000  # needs a restart: kept
    assert effective.vhost_http_port == 0
    assert effective.web.port == 0
    kept = {c.key: c.shown(c.old) for c in changes if not c.live}
    assert kept == {"bindPort": "7000", "vhostHTTPPort": "0", "webServer.port": "0"}
    applied = {c.key: c.shown(c.new) for c in changes if c.live}
    assert applied == {
        "auth.token": "(hidden)",  # secrets are never shown
        "allowPorts": "3000",
        "webServer.user": "'u'",
        "webServer.password": "(hidden)",
    }
    assert loaded.bind_port == 7001  # the loaded config is left alone


def test_nothing_changed_nothing_to_do() -> None:
    effective, changes = plan(ServerConfig(token="x"), ServerConfig(token="x"))
    assert changes == []
    assert effective == ServerConfig(token="x")


def test_every_live_setting_exists_in_the_model() -> None:
    cfg = ServerConfig()
    for path in LIVE:
        obj: object = cfg
        for part in path.split("."):
            obj = getattr(obj, part)  # AttributeError: a misspelt LIVE entry
