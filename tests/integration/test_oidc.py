"""``auth.method = "oidc"``: pyfrpc fetches a token from a loopback OpenID provider
(client-credentials grant) and pyfrps verifies it against the provider's discovery and JWKS.
A good token connects; a wrong audience, an expired token or a foreign signature is refused
with frp's texts, on both sides."""

from __future__ import annotations

import re
from pathlib import Path

from joserfc.jwk import RSAKey

from tests.harness import Proc, Pyfrp, free_ports, wait_echo
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, oidc_provider


def server_conf(p: Provider, bind: int, extra: str = "") -> str:
    return (
        f'bindPort = {bind}\nauth.method = "oidc"\nauth.oidc.issuer = "{p.issuer}"\n'
        f'auth.oidc.audience = "frps"\n{extra}'
    )


def client_conf(
    p: Provider, bind: int, local: int, remote: int, extra: str = "", secret: str = CLIENT_SECRET
) -> str:
    return (
        f'serverPort = {bind}\nauth.method = "oidc"\nauth.oidc.clientID = "{CLIENT_ID}"\n'
        f'auth.oidc.clientSecret = "{secret}"\nauth.oidc.tokenEndpointURL = "{p.token_url}"\n'
        f"{extra}"
        f'[[proxies]]\nname = "tcp{remote}"\ntype = "tcp"\nlocalPort = {local}\n'
        f"remotePort = {remote}\n"
    )


def refused(pyfrp: Pyfrp, frps: Proc, p: Provider, bind: int, echo: int, remote: int) -> str:
    """Start a client that must be refused; returns the text frps gave for it."""
    frpc = pyfrp.frpc(client_conf(p, bind, echo, remote), suffix=".toml")
    pattern = r"login to the server failed: invalid OIDC token in login: (.*)"
    m = re.search(pattern, frpc.wait_log(pattern))
    assert m is not None
    assert frpc.p.wait(20) == 1  # loginFailExit
    assert f"register control error: invalid OIDC token in login: {m[1]}" in frps.log()
    return m[1]


def test_good_token_connects_bad_ones_are_refused(pyfrp: Pyfrp, echo: int) -> None:
    bind, good, bad = free_ports(3)
    with oidc_provider() as p:
        frps = pyfrp.frps(server_conf(p, bind), suffix=".toml")
        frps.wait_port(bind)
        frpc = pyfrp.frpc(client_conf(p, bind, echo, good), suffix=".toml")
        wait_echo(good, proc=frpc)
        assert p.requests[0]["basic"] == "1"  # x/oauth2 tries Basic auth first

        p.audience = "other"
        assert refused(pyfrp, frps, p, bind, echo, bad) == (
            'oidc: expected audience "frps" got ["other"]'
        )
        p.audience, p.lifetime = "frps", -60
        assert refused(pyfrp, frps, p, bind, echo, bad).startswith(
            "oidc: token is expired (Token Expiry: "
        )
        p.lifetime, p.signer = 3600, RSAKey.generate_key(2048, parameters={"kid": "k1"})
        assert refused(pyfrp, frps, p, bind, echo, bad) == (
            "failed to verify signature: failed to verify id token signature"
        )
        wait_echo(good, proc=frpc)  # the good client was never disturbed
        assert frps.alive()


def test_wrong_client_secret_gets_no_token(pyfrp: Pyfrp, echo: int) -> None:
    bind, remote = free_ports(2)
    with oidc_provider() as p:
        frps = pyfrp.frps(server_conf(p, bind), suffix=".toml")
        frps.wait_port(bind)
        frpc = pyfrp.frpc(client_conf(p, bind, echo, remote, secret="wrong"), suffix=".toml")
        frpc.wait_log(
            "connect to server error: couldn't generate OIDC token for login: "
            'oauth2: "invalid_client"'
        )
        assert frpc.p.wait(20) == 1
        assert p.token_count() == 0


def test_scoped_tokens_on_heartbeats_and_work_conns_legacy_ini(pyfrp: Pyfrp, echo: int) -> None:
    """The INI spellings, with every Ping and NewWorkConn carrying a token; a provider without
    expires_in makes pyfrpc fetch a fresh one each time, as frpc."""
    bind, remote = free_ports(2)
    scopes = "authenticate_heartbeats = true\nauthenticate_new_work_conns = true\n"
    with oidc_provider() as p:
        p.expires_in = None
        frps = pyfrp.frps(
            f"[common]\nbind_port = {bind}\nauthentication_method = oidc\n"
            f"oidc_issuer = {p.issuer}\noidc_audience = frps\n{scopes}"
        )
        frps.wait_port(bind)
        frpc = pyfrp.frpc(
            f"[common]\nserver_port = {bind}\nauthentication_method = oidc\n"
            f"oidc_client_id = {CLIENT_ID}\noidc_client_secret = {CLIENT_SECRET}\n"
            f"oidc_token_endpoint_url = {p.token_url}\noidc_audience = frps\noidc_scope = frp\n"
            f"oidc_additional_resource = tunnel\nheartbeat_interval = 1\nheartbeat_timeout = 30\n"
            "log_level = debug\n"
            f"{scopes}[tcp]\ntype = tcp\nlocal_port = {echo}\nremote_port = {remote}\n"
        )
        wait_echo(remote, proc=frpc)
        wait_echo(remote, proc=frpc)
        frpc.wait_log("send heartbeat to server", count=3)
        # Login, pings, work connections: each fetched its own token.
        assert p.token_count() >= 5
        first = p.requests[0]
        assert (first["audience"], first["scope"], first["resource"]) == ("frps", "frp", "tunnel")
        # A later token for another subject is refused (frp: "received different OIDC subject").
        p.subject = "intruder"
        frps.wait_log(
            r"received invalid ping: received different OIDC subject in login and ping. "
            r"new subject: intruder"
        )


def test_rotated_keys_and_a_token_file(pyfrp: Pyfrp, echo: int, tmp_path: Path) -> None:
    """A token signed with a key frps has not seen makes it fetch the JWKS again (key
    rotation); ``auth.oidc.tokenSource`` hands frpc a token from a file instead of the IdP."""
    bind, first, second, third = free_ports(4)
    with oidc_provider() as p:
        frps = pyfrp.frps(server_conf(p, bind), suffix=".toml")
        frps.wait_port(bind)
        wait_echo(first, proc=pyfrp.frpc(client_conf(p, bind, echo, first), suffix=".toml"))
        p.key = p.signer = RSAKey.generate_key(2048, parameters={"kid": "k2"})
        wait_echo(second, proc=pyfrp.frpc(client_conf(p, bind, echo, second), suffix=".toml"))
        token = tmp_path / "token"
        token.write_text(p.sign() + "\n")
        frpc = pyfrp.frpc(
            f'serverPort = {bind}\nauth.method = "oidc"\n'
            f'auth.oidc.tokenSource.type = "file"\nauth.oidc.tokenSource.file.path = "{token}"\n'
            f'[[proxies]]\nname = "t"\ntype = "tcp"\nlocalPort = {echo}\nremotePort = {third}\n',
            suffix=".toml",
        )
        wait_echo(third, proc=frpc)
        assert p.token_count() == 2  # the file client never asked the IdP


def test_frps_does_not_start_without_the_issuers_discovery(pyfrp: Pyfrp) -> None:
    bind, dead = free_ports(2)
    frps = pyfrp.frps(
        f'bindPort = {bind}\nauth.method = "oidc"\nauth.oidc.issuer = "http://127.0.0.1:{dead}"\n',
        suffix=".toml",
    )
    assert frps.p.wait(30) == 1
    assert "create OIDC token verifier error: Get " in frps.log()
    assert "frps started successfully" not in frps.log()
