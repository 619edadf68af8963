"""The default Go baseline: native frp 0.70.1 as ../shared/peers/native builds it."""

from __future__ import annotations

import os
from pathlib import Path


def native_go() -> tuple[str, str]:
    """(frps, frpc) paths: $FRPS_GO/$FRPC_GO, else the native build when it is there, else ""."""
    root = Path(os.environ.get("FRP_NATIVE_DIR") or Path.home() / ".cache" / "frp-native") / "bin"
    built = [str(root / n) if os.access(root / n, os.X_OK) else "" for n in ("frps", "frpc")]
    return os.environ.get("FRPS_GO") or built[0], os.environ.get("FRPC_GO") or built[1]
