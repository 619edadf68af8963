"""frp's stream cipher: AES-128-CFB with a lazily sent IV (fatedier/golib crypto).

Theory of operation
-------------------
Both the control channel (after Login/LoginResp) and per-proxy ``use_encryption`` work connections
wrap their byte stream the same way (golib crypto/encode.go and decode.go):

* key = PBKDF2-HMAC-SHA1(token, salt ``b"frp"``, 64 iterations, 16 bytes). Both frp binaries
  set ``crypto.DefaultSalt = "frp"`` at init; golib's default ``"crypto"`` never reaches the wire.
* Each direction has its own writer with a random 16-byte IV. The writer sends the IV as the first
  16 bytes of its *first* write, not when it is created, so neither side waits for the other.
* The cipher is AES in CFB mode with full 128-bit feedback (Go ``cipher.NewCFBEncrypter``, not
  CFB-8). One continuous keystream per direction: state carries across writes and partial blocks,
  so ``encrypt(a) + encrypt(b) == encrypt(a + b)`` apart from the IV prefix.

Both classes are pure: they take bytes and return bytes; the caller moves them.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms

try:
    # cryptography 48 moved CFB here; the primitives one warns (an error under our pytest
    # settings) and is slated for removal.
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

__all__ = [
    "ITERATIONS",
    "IV_SIZE",
    "KEY_SIZE",
    "SALT",
    "StreamDecryptor",
    "StreamEncryptor",
    "derive_key",
]

SALT: Final = b"frp"
ITERATIONS: Final = 64
KEY_SIZE: Final = 16
IV_SIZE: Final = 16


@functools.lru_cache(maxsize=64)
def derive_key(token: str | bytes) -> bytes:
    """Return the 16-byte AES key for ``token`` (the auth token, or a visitor's ``sk``).

    PBKDF2-HMAC-SHA1 with frp's salt; cached because it runs for every work connection.
    A ``str`` token is UTF-8 encoded, as Go's ``[]byte(token)`` does.
    """
    password = token.encode() if isinstance(token, str) else token
    return hashlib.pbkdf2_hmac("sha1", password, SALT, ITERATIONS, KEY_SIZE)


@functools.lru_cache(maxsize=64)
def _aes(key: bytes) -> algorithms.AES:
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES key must be {KEY_SIZE} bytes, got {len(key)}")
    return algorithms.AES(key)


def _cfb(key: bytes, iv: bytes) -> Cipher[CFB]:
    # Every work connection of a use_encryption proxy makes two of these with the same key.
    return Cipher(_aes(bytes(key)), CFB(iv))


class StreamEncryptor:
    """The writing half of one direction (golib crypto.Writer).

    Feed every outgoing write to :meth:`encrypt` and send exactly what it returns, in order.
    """

    __slots__ = ("_ctx", "_iv", "_iv_sent")

    def __init__(self, key: bytes, iv: bytes | None = None) -> None:
        """``iv`` defaults to 16 fresh random bytes; pass one only to get repeatable output."""
        if iv is None:
            iv = os.urandom(IV_SIZE)
        elif len(iv) != IV_SIZE:
            raise ValueError(f"IV must be {IV_SIZE} bytes, got {len(iv)}")
        self._iv = bytes(iv)
        self._iv_sent = False
        self._ctx: CipherContext = _cfb(key, self._iv).encryptor()

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the bytes to send for ``data``.

        The first non-empty call returns the IV followed by the ciphertext. An empty write
        returns ``b""`` and, before the first real write, does not emit the IV either.
        """
        if not len(data):
            return b""
        ciphertext = self._ctx.update(data)
        if self._iv_sent:
            return ciphertext
        self._iv_sent = True
        return self._iv + ciphertext


class StreamDecryptor:
    """The reading half of one direction (golib crypto.Reader).

    Feed every received chunk to :meth:`decrypt`, in order, split anywhere.
    """

    __slots__ = ("_ctx", "_iv_buf", "_key")

    def __init__(self, key: bytes) -> None:
        self._key = bytes(key)
        _aes(self._key)  # check the key now rather than at the first read
        self._iv_buf = bytearray()
        self._ctx: CipherContext | None = None

    def decrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the plaintext of ``data``.

        The first 16 bytes of the stream, over however many calls they arrive in, are the
        peer's IV; until all of them are here this returns ``b""``.
        """
        if self._ctx is not None:
            return self._ctx.update(data)
        self._iv_buf += data
        if len(self._iv_buf) < IV_SIZE:
            return b""
        iv = bytes(self._iv_buf[:IV_SIZE])
        rest = bytes(self._iv_buf[IV_SIZE:])
        self._iv_buf = bytearray()
        self._ctx = _cfb(self._key, iv).decryptor()
        return self._ctx.update(rest) if rest else b""
