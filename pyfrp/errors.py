"""One exception tree for the whole package.

PyfrpError
├── ProtocolError            the bytes on a connection broke the protocol; close that connection
│   ├── FrameError           v1 message framing (type byte, length)
│   ├── MessageError         a frame's JSON body
│   ├── CryptoError          stream cipher / snappy framing
│   └── YamuxError           yamux session; carries the GoAway code it maps to
├── ConfigError              a configuration file or flag; names file, line and key
├── AuthError                the server refused a login or a work connection (its text)
├── OIDCError                an OIDC token could not be obtained or verified (frp's text)
└── ProxyError               a proxy could not be registered or started
"""

from __future__ import annotations


class PyfrpError(Exception):
    """Base of every error pyfrp raises on purpose."""


class ProtocolError(PyfrpError):
    """The peer sent bytes that break the protocol. Close that one connection."""


class FrameError(ProtocolError):
    """A v1 frame header was invalid (unknown type byte, bad length)."""


class MessageError(ProtocolError):
    """A v1 frame's JSON body was invalid or of the wrong shape."""


class CryptoError(ProtocolError):
    """Encrypted or compressed stream bytes were invalid."""


class YamuxError(ProtocolError):
    """A yamux session error; ``go_away_code`` is the code to send before closing."""

    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2

    def __init__(self, message: str, go_away_code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.go_away_code = go_away_code


class ConfigError(PyfrpError):
    """A configuration value is wrong. The message names the file, line and key."""


class AuthError(PyfrpError):
    """The server refused us; the message is the server's text."""


class OIDCError(PyfrpError):
    """An OIDC token could not be obtained (frpc) or verified (frps); str() is frp's text."""


class ProxyError(PyfrpError):
    """A proxy could not be registered or started."""
