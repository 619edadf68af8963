"""``auth.additionalScopes`` (INI ``authenticate_heartbeats``, ``authenticate_new_work_conns``):
frps checks the token on every Ping and NewWorkConn too, and refuses those without it."""

from __future__ import annotations

from tests.harness import Pyfrp, free_ports, wait_echo

SCOPES = 'auth.additionalScopes = ["HeartBeats", "NewWorkConns"]\n'


def test_scoped_client_works_unscoped_one_is_refused(pyfrp: Pyfrp, echo: int) -> None:
    bind, good, bad = free_ports(3)
    frps = pyfrp.frps(f'bindPort = {bind}\nauth.token = "t0k"\n{SCOPES}', suffix=".toml")
    frps.wait_port(bind)
    ok = pyfrp.frpc(
        f'serverPort = {bind}\nauth.token = "t0k"\n{SCOPES}transport.heartbeatInterval = 1\n'
        f'[[proxies]]\nname = "good"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {good}\n',
        suffix=".toml",
    )
    wait_echo(good, proc=ok)
    unscoped = pyfrp.frpc(
        f'serverPort = {bind}\nauth.token = "t0k"\ntransport.heartbeatInterval = 1\n'
        f'[[proxies]]\nname = "bad"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {bad}\n',
        suffix=".toml",
    )
    unscoped.wait_log(r"\[bad\] start proxy success")  # the login itself is fine
    frps.wait_log(r"invalid NewWorkConn with run id \[\w+\]: token in NewWorkConn doesn't match")
    # frpc ends a session whose Pong carries an error (and logs in again, to the same end).
    unscoped.wait_log("pong contains error: token in heartbeat doesn't match token")
    wait_echo(good, proc=ok)  # the scoped client was never disturbed
