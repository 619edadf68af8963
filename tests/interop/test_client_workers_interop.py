"""pyfrpc with ``pyfrp.workers = 2`` against native Go frps 0.70.1: the helper's own
connections (with tcp_mux, its own yamux session) carry work connections that Go frps takes by
run id, so the local service is dialled by both pyfrpc processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import Pyfrp
from tests.integration.test_client_workers import check_spread

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("mux", [True, False], ids=["tcp_mux", "no-mux"])
def test_pyfrpc_workers_through_go_frps(pyfrp: Pyfrp, tmp_path: Path, echo: int, mux: bool) -> None:
    check_spread(pyfrp, tmp_path, echo, "frps-native", mux)
