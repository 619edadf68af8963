"""``healthCheck``: frpc registers a proxy only while its local service answers, takes it off
frps when the checks fail and brings it back when they pass again (tcp and http checks)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.harness import HOST, Pyfrp, echo_server, free_ports, wait_echo, wait_port_closed
from tests.webclient import http_call


@contextmanager
def http_service() -> Iterator[int]:
    """200 for every path but /sick (503)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503 if self.path == "/sick" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


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
    with http_service() as local:
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
