"""``healthCheck``: frpc registers a proxy only while its local service answers, takes it off
frps when the checks fail and brings it back when they pass again (tcp and http checks)."""

from __future__ import annotations

from tests.harness import (
    HOST,
    Pyfrp,
    echo_server,
    free_ports,
    http_service,
    wait_echo,
    wait_port_closed,
)
from tests.webclient import http_call


def test_tcp_check_takes_the_proxy_down_and_up(pyfrp: Pyfrp) -> None:
    bind, remote, local = free_ports(3)
    frps = pyfrp.frps(f"bindPort = {bind}\n", suffix=".toml")
    frps.wait_port(bind)
    frpc = pyfrp.frpc(
        f'serverPort = {bind}\n[[proxies]]\nname = "db"\ntype = "tcp"\nlocalPort = {local}\n'
        f'remotePort = {remote}\nhealthCheck.type = "tcp"\nhealthCheck.intervalSeconds = 1\n',
        suffix=".toml",
    )
    frpc.wait_log(r"\[db\] do one health check failed")
    assert "new proxy [db]" not in frps.log()  # never registered while the service is down
    with echo_server(local):
        frpc.wait_log(r"\[db\] health check success")
        wait_echo(remote, proc=frpc)
    frpc.wait_log(r"\[db\] health check failed")
    wait_port_closed(remote)
    frps.wait_log(r"close proxy \[db\] success")
    with echo_server(local):
        frpc.wait_log(r"\[db\] health check success", count=2)
        wait_echo(remote, proc=frpc)


def test_http_check_needs_a_2xx(pyfrp: Pyfrp) -> None:
    bind, vhost = free_ports(2)
    frps = pyfrp.frps(f"bindPort = {bind}\nvhostHTTPPort = {vhost}\n", suffix=".toml")
    frps.wait_port(bind)
    with http_service(lambda path: 503 if path == "/sick" else 200) as local:
        frpc = pyfrp.frpc(
            f'serverPort = {bind}\n[[proxies]]\nname = "web"\ntype = "http"\nlocalPort = {local}\n'
            'customDomains = ["hc.example"]\nhealthCheck.type = "http"\n'
            'healthCheck.path = "/sick"\nhealthCheck.intervalSeconds = 1\n'
            '[[proxies]]\nname = "ok"\ntype = "http"\n'
            f'localPort = {local}\ncustomDomains = ["ok.example"]\nhealthCheck.type = "http"\n'
            'healthCheck.path = "/"\nhealthCheck.intervalSeconds = 1\n',
            suffix=".toml",
        )
        frpc.wait_log(r"\[ok\] start proxy success")
        log = frpc.wait_log(r"\[web\] do one health check failed: .*\[503\] not 2xx")
        assert "[web] start proxy success" not in log
        url = f"http://{HOST}:{vhost}/"
        assert http_call("GET", url, headers={"Host": "ok.example"}).status == 200
        assert http_call("GET", url, headers={"Host": "hc.example"}).status == 404
