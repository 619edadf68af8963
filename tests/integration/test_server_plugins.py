"""frps's server plugins end to end: a webhook (a real HTTP server on loopback) sees Login,
NewProxy, Ping, NewWorkConn, NewUserConn and CloseProxy in frp's JSON and can reject an
operation or rewrite it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.harness import HOST, Pyfrp, closed_without_reply, free_ports, wait_echo, wait_port_closed

Decide = Callable[[str, dict[str, Any]], dict[str, Any]]


@contextmanager
def plugin_server(decide: Decide) -> Iterator[tuple[int, list[tuple[str, dict[str, Any]]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path.startswith("/handler?")
            assert body["version"] == "0.1.0"
            assert self.headers["X-Frp-Reqid"]
            seen.append((body["op"], body["content"]))
            out = json.dumps(decide(body["op"], body["content"])).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer((HOST, 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield int(srv.server_address[1]), seen
    finally:
        srv.shutdown()
        srv.server_close()


def test_plugins_reject_rewrite_and_hear_of_everything(pyfrp: Pyfrp, echo: int) -> None:
    bind, asked, moved, refused = free_ports(4)

    def decide(op: str, content: dict[str, Any]) -> dict[str, Any]:
        if op == "Login" and (content.get("metas") or {}).get("token") != "123":
            return {"reject": True, "reject_reason": "invalid token"}
        if op == "NewProxy" and content["proxy_name"] == "moved":
            return {"unchange": False, "content": {**content, "remote_port": moved}}
        if op == "NewUserConn" and content["proxy_name"] == "guarded":
            return {"reject": True, "reject_reason": "not today"}
        return {"unchange": True}

    with plugin_server(decide) as (port, seen):
        frps = pyfrp.frps(
            f'bindPort = {bind}\n[[httpPlugins]]\nname = "hook"\naddr = "127.0.0.1:{port}"\n'
            'path = "/handler"\n'
            'ops = ["Login", "NewProxy", "CloseProxy", "Ping", "NewWorkConn", "NewUserConn"]\n',
            suffix=".toml",
        )
        frps.wait_port(bind)
        stranger = pyfrp.frpc(f"serverPort = {bind}\nloginFailExit = true\n", suffix=".toml")
        assert stranger.p.wait(20) == 1
        assert "invalid token" in stranger.log()
        frpc = pyfrp.frpc(
            f'serverPort = {bind}\nmetadatas.token = "123"\ntransport.heartbeatInterval = 1\n'
            f'[[proxies]]\nname = "moved"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {asked}\n'
            f'[[proxies]]\nname = "guarded"\ntype = "tcp"\nlocalPort = {echo}\n'
            f"remotePort = {refused}\n",
            suffix=".toml",
        )
        wait_echo(moved, proc=frpc)  # the plugin's port, not the asked one
        frpc.wait_log(r"\[guarded\] start proxy success")
        with socket.create_connection((HOST, refused), 5) as user:
            user.settimeout(5)
            user.sendall(b"hi")
            assert closed_without_reply(user)  # closed by frps: the plugin said no
        frps.wait_log(r"the user conn \[127\.0\.0\.1:\d+\] was rejected, err:not today")
        frpc.stop()
        wait_port_closed(moved)
        end = time.monotonic() + 10
        while not any(op == "CloseProxy" for op, _ in seen) and time.monotonic() < end:
            time.sleep(0.05)  # told after the proxy closed, without holding anything up
        ops = [op for op, _ in seen]
        for op in ("Login", "NewProxy", "NewWorkConn", "NewUserConn", "Ping", "CloseProxy"):
            assert op in ops, (op, ops)
        login = next(c for op, c in seen if op == "Login" and c.get("metas"))
        assert login["client_address"].startswith("127.0.0.1:")
        close = next(c for op, c in seen if op == "CloseProxy")
        assert close["user"]["run_id"]
        assert close["user"]["metas"] == {"token": "123"}
        assert close["proxy_name"] in ("moved", "guarded")
