"""The shape the code promises: no import cycle among pyfrp's modules (TYPE_CHECKING imports
count too), and the layers point one way (proto below net below vhost below server/client)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "pyfrp"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                if name in modules and name != mod:
                    graph[mod].add(name)
    return graph


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_layers_point_one_way() -> None:
    below = {
        "pyfrp.proto": (
            "pyfrp.net",
            "pyfrp.vhost",
            "pyfrp.web",
            "pyfrp.server",
            "pyfrp.client",
            "pyfrp.cli",
        ),
        "pyfrp.net": ("pyfrp.vhost", "pyfrp.server", "pyfrp.client", "pyfrp.cli"),
        "pyfrp.vhost": ("pyfrp.server", "pyfrp.client", "pyfrp.cli"),
        "pyfrp.web": ("pyfrp.server", "pyfrp.client", "pyfrp.cli"),
        "pyfrp.server": ("pyfrp.client",),
        "pyfrp.client": ("pyfrp.server",),
    }
    bad = [
        f"{m} imports {d}"
        for m, deps in _graph().items()
        for layer, forbidden in below.items()
        if m == layer or m.startswith(layer + ".")
        for d in deps
        if any(d == f or d.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, "\n".join(sorted(bad))


def test_web_stack_loads_only_when_used() -> None:
    """aiohttp and prometheus_client cost an idle pyfrps/pyfrpc ~11 MiB of RSS: they load with a
    web server, server plugins, http health checks or OIDC (with joserfc), not at start; asyncssh
    only with sshTunnelGateway.bindPort, python-socks with a proxyURL, dnspython with a
    dnsServer; aioquic, websockets and the KCP stack with their transport (or xtcp's hole);
    snappy's cramjam and google-crc32c with the first use_compression connection;
    cryptography's x509 with a certificate to make (frps's self-signed one) or a chain to check."""
    lazy = (
        "aiohttp", "prometheus_client", "joserfc", "asyncssh", "python_socks", "dns", "aioquic",
        "websockets", "pyfrp.net.kcp", "cramjam", "google_crc32c", "cryptography.x509",
    )  # fmt: skip
    loaded = _loaded_by("pyfrp.cli, pyfrp.server.service, pyfrp.client.service", lazy)
    assert loaded == []


def test_client_leaves_the_http_front_end_to_frps() -> None:
    """pyfrpc loads frps's HTTP vhost front end (~2 MiB of RSS) only for an http2*/https2*
    plugin's first connection."""
    assert _loaded_by("pyfrp.cli, pyfrp.client.service", ("pyfrp.vhost.http",)) == []


def _loaded_by(imports: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after ``import <imports>``."""
    import json
    import subprocess
    import sys

    wanted = json.dumps(sorted(modules))
    code = (
        f"import json, sys, {imports}; print(json.dumps([m for m in {wanted} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: list[str] = json.loads(out.stdout)
    return result


def test_the_supervisor_loads_none_of_the_relay() -> None:
    """pyfrps's supervisor (workers > 1) binds sockets and keeps tables: without cryptography
    and the server's own modules it stays ~10 MiB lighter than a worker."""
    heavy = ("cryptography", "pyfrp.server.service", "pyfrp.net.listen", "pyfrp.proto.msg")
    assert _loaded_by("pyfrp.cli, pyfrp.config.load, pyfrp.server.supervisor", heavy) == []
