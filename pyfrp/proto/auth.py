"""frp token authentication (pkg/auth/token.go, pkg/util/util/util.go GetAuthKey)."""

from __future__ import annotations

import hashlib
import hmac


def privilege_key(token: str, timestamp: int) -> str:
    """Lowercase hex MD5 of the token followed by the decimal timestamp, no separator."""
    return hashlib.md5(f"{token}{timestamp}".encode()).hexdigest()


def verify_privilege_key(token: str, timestamp: int, key: str) -> bool:
    """frps's check: recompute from its own token and the peer's timestamp; constant time.

    Like frps, the timestamp's freshness is not checked.
    """
    return hmac.compare_digest(
        privilege_key(token, timestamp).encode(), key.encode("utf-8", "surrogatepass")
    )


def same_secret(given: str, expected: str) -> bool:
    """Credentials compared in constant time (text from the wire may hold any bytes)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )
