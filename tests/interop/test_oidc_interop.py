"""OIDC authentication with native Go frp 0.70.1 on the other side, both ways: Go frpc's tokens
(x/oauth2) verified by pyfrps, pyfrpc's verified by Go frps (go-oidc), from one loopback
OpenID provider; refusals carry the same go-oidc texts."""

from __future__ import annotations

from pathlib import Path

import pytest
from joserfc.jwk import RSAKey

from tests.conftest import start_any
from tests.harness import Proc, Pyfrp, free_ports, wait_echo
from tests.integration.test_oidc import client_conf, server_conf
from tests.oidc_provider import oidc_provider

pytestmark = pytest.mark.interop


def start(pyfrp: Pyfrp, tmp: Path, kind: str, config: str, tag: str = "") -> Proc:
    proc = start_any(pyfrp, tmp, kind, config, tag, ".toml")
    if proc not in pyfrp.procs:
        pyfrp.procs.append(proc)  # stopped with the pyfrp ones, even on failure
    return proc


PAIRS = [("pyfrps", "frpc-native"), ("frps-native", "pyfrpc")]
IDS = [f"{c}->{s}" for s, c in PAIRS]
SCOPES = 'auth.additionalScopes = ["HeartBeats", "NewWorkConns"]\n'


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=IDS)
def test_oidc_login_heartbeats_and_refusals(
    pyfrp: Pyfrp, tmp_path: Path, echo: int, server: str, client: str
) -> None:
    bind, good, bad = free_ports(3)
    with oidc_provider() as p:
        frps = start(pyfrp, tmp_path, server, server_conf(p, bind, SCOPES))
        frps.wait_port(bind)
        extra = f'{SCOPES}transport.heartbeatInterval = 1\nlog.level = "debug"\n'
        frpc = start(pyfrp, tmp_path, client, client_conf(p, bind, echo, good, extra), "good")
        wait_echo(good, proc=frpc)
        wait_echo(good, proc=frpc)  # another work connection, with its own token check
        frpc.wait_log("send heartbeat to server", count=3)
        assert "invalid ping" not in frps.log()
        assert "invalid NewWorkConn" not in frps.log()

        refusals = [
            ("audience", "other", 'oidc: expected audience \\"frps\\" got [\\"other\\"]'),
            ("lifetime", -60, "oidc: token is expired (Token Expiry: "),
            (
                "signer",
                RSAKey.generate_key(2048, parameters={"kid": "k1"}),
                "failed to verify signature: failed to verify id token signature",
            ),
        ]
        for n, (attr, value, text) in enumerate(refusals):
            saved = getattr(p, attr)
            setattr(p, attr, value)
            bad_client = start(pyfrp, tmp_path, client, client_conf(p, bind, echo, bad), f"bad{n}")
            assert bad_client.p.wait(20) == 1  # loginFailExit
            setattr(p, attr, saved)
            plain = text.replace('\\"', '"')
            assert f"register control error: invalid OIDC token in login: {plain}" in frps.log()
            assert plain in bad_client.log() or text in bad_client.log()
        wait_echo(good, proc=frpc)  # the good client was never disturbed
