"""A broken config is a ConfigError, never another exception (which the CLI would show as a
traceback): the fixtures, mutated at random, in every format."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyfrp.config.load import load_client_config, load_server_config
from pyfrp.errors import ConfigError

DATA = Path(__file__).parent / "data"
FIXTURES = {p.name: p.read_text() for p in sorted(DATA.iterdir())}
PIECES = [*'[]{}=:,."\'\n #-_09az$\t', "{{", "}}", "{{ .Envs.X }}", "true", "null", "70000",
          "proxies", "type", "[[proxies]]", "- ", "range:"]  # fmt: skip

edit = st.tuples(st.sampled_from(["delete", "insert", "replace"]), st.floats(0, 1),
                 st.sampled_from(PIECES))  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(FIXTURES)), edits=st.lists(edit, min_size=1, max_size=6))
def test_mutated_configs_fail_cleanly(name: str, edits: list[tuple[str, float, str]]) -> None:
    text = FIXTURES[name]
    for op, where, piece in edits:
        pos = int(where * len(text))
        if op == "delete":
            text = text[:pos] + text[pos + 1 :]
        elif op == "insert":
            text = text[:pos] + piece + text[pos:]
        else:
            text = text[:pos] + piece + text[pos + 1 :]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_text(text)
        for load in (load_client_config, load_server_config):
            try:
                load(str(path), envs={})
            except ConfigError:
                pass
