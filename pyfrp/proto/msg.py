"""frp's v1 control messages (fatedier/frp pkg/msg/msg.go) as dataclasses.

Each message class knows its type byte and how to map itself to and from the JSON body that
Go's encoding/json produces: every field is ``omitempty`` except struct-typed ones
(``Login.client_spec``, ``NatHoleResp.detect_behavior``), ``[]byte`` travels as padded base64,
and a reader ignores unknown keys and matches key names case-insensitively. Parsing is strict
about types (an int field must be a JSON integer) because Go's decoder is.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, Union

from pyfrp.errors import MessageError

_JSON = dict[str, Any]
_T = TypeVar("_T")


# A field's decoder: (JSON value, where) -> Python value; raises MessageError naming ``where``.
_Decode = Callable[[Any, str], Any]


class _Codec:
    """Per-class field tables, built once at registration from the type hints, so that encoding
    and decoding a message does no type introspection (StartWorkConn and friends are on the
    per-connection path)."""

    __slots__ = ("by_lower", "cls", "encode")

    def __init__(self, cls: type[Any]) -> None:
        hints = typing.get_type_hints(cls)
        self.cls = cls
        # (attr, json key, always written, converter or None when the value is JSON as it is)
        self.encode: list[tuple[str, str, bool, Callable[[Any], Any] | None]] = []
        self.by_lower: dict[str, tuple[str, _Decode]] = {}
        for f in dataclasses.fields(cls):
            key = f.metadata.get("json", f.name)
            hint = hints[f.name]
            plain = hint in (str, int, bool, dict[str, str], list[str])
            self.encode.append(
                (f.name, key, bool(f.metadata.get("always")), None if plain else _to_json)
            )
            self.by_lower[key.lower()] = (f.name, _decoder_for(hint))


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _struct_to_json(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def _struct_to_json(obj: Any) -> _JSON:
    out: _JSON = {}
    for attr, key, always, conv in _codec_for(type(obj)).encode:
        value = getattr(obj, attr)
        # Go's omitempty: every zero value ("", 0, false, nil, empty map/slice) is left out.
        if always or value:
            out[key] = value if conv is None else conv(value)
    return out


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _dec_bool(value: Any, where: str) -> bool:
    if value is True or value is False:
        return value
    raise MessageError(f"{where}: expected a JSON boolean, got {_type_name(value)}")


def _dec_int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MessageError(f"{where}: expected a JSON integer, got {_type_name(value)} {value!r}")
    if not -(2**63) <= value < 2**63:
        raise MessageError(f"{where}: integer {value} does not fit in 64 bits")
    return value


def _dec_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MessageError(f"{where}: expected a JSON string, got {_type_name(value)}")
    return _valid_utf8(value)


def _valid_utf8(text: str) -> str:
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape: Go decodes it as U+FFFD
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _dec_bytes(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise MessageError(f"{where}: expected a base64 string, got {_type_name(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageError(f"{where}: invalid base64: {exc}") from exc


def _decoder_for(hint: Any) -> _Decode:
    """The decoder of one field type (Go's encoding/json rules, strict about JSON types)."""
    simple: dict[Any, _Decode] = {bool: _dec_bool, int: _dec_int, str: _dec_str, bytes: _dec_bytes}
    if hint in simple:
        return simple[hint]
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):  # Optional[X]: null stays None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        dec_inner = _decoder_for(inner)
        return lambda value, where: None if value is None else dec_inner(value, where)
    if origin is dict:
        dec_value = _decoder_for(typing.get_args(hint)[1])

        def dec_dict(value: Any, where: str) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise MessageError(f"{where}: expected a JSON object, got {_type_name(value)}")
            # keys get the same U+FFFD for a lone surrogate as values (they are re-encoded)
            return {_valid_utf8(k): dec_value(v, f"{where}.{k}") for k, v in value.items()}

        return dec_dict
    if origin is list:
        dec_elem = _decoder_for(typing.get_args(hint)[0])

        def dec_list(value: Any, where: str) -> list[Any]:
            if not isinstance(value, list):
                raise MessageError(f"{where}: expected a JSON array, got {_type_name(value)}")
            return [dec_elem(v, f"{where}[{i}]") for i, v in enumerate(value)]

        return dec_list
    if dataclasses.is_dataclass(hint):
        struct = typing.cast(type[Any], hint)

        def dec_struct(value: Any, where: str) -> Any:
            if not isinstance(value, dict):
                raise MessageError(f"{where}: expected a JSON object, got {_type_name(value)}")
            return _struct_from_json(struct, value, where)

        return dec_struct
    raise TypeError(f"unsupported field type {hint!r}")  # a bug in this module, not bad input


def _struct_from_json(cls: type[_T], obj: _JSON, where: str) -> _T:
    by_lower = _codec_for(cls).by_lower
    kwargs: dict[str, Any] = {}
    for key, value in obj.items():
        entry = by_lower.get(key) or by_lower.get(key.lower())
        if entry is None or value is None:  # Go ignores unknown keys; null leaves the zero value
            continue
        attr, dec = entry
        kwargs[attr] = dec(value, f"{where}.{key}")
    return cls(**kwargs)


_CODECS: dict[type[Any], _Codec] = {}


def _codec_for(cls: type[Any]) -> _Codec:
    codec = _CODECS.get(cls)
    if codec is None:
        codec = _CODECS[cls] = _Codec(cls)
    return codec


# ---------------------------------------------------------------------------- nested structs


@dataclass(slots=True)
class ClientSpec:
    type: str = ""
    always_auth_pass: bool = False


@dataclass(slots=True)
class UDPAddr:
    """Go's net.UDPAddr as encoding/json writes it: capitalised keys, Zone always present."""

    ip: str = field(default="", metadata={"json": "IP", "always": True})
    port: int = field(default=0, metadata={"json": "Port", "always": True})
    zone: str = field(default="", metadata={"json": "Zone", "always": True})


@dataclass(slots=True)
class PortsRange:
    from_: int = field(default=0, metadata={"json": "from"})
    to: int = 0


@dataclass(slots=True)
class NatHoleDetectBehavior:
    role: str = ""
    mode: int = 0
    ttl: int = 0
    send_delay_ms: int = 0
    read_timeout: int = 0
    candidate_ports: list[PortsRange] = field(default_factory=list)
    send_random_ports: int = 0
    listen_random_ports: int = 0


# ---------------------------------------------------------------------------- messages


class Message:
    """Base of all v1 messages. ``TYPE`` is the one-byte type on the wire."""

    __slots__ = ()
    TYPE: ClassVar[bytes] = b""

    def to_json(self) -> _JSON:
        return _struct_to_json(self)

    @classmethod
    def from_json(cls: type[_T], obj: _JSON) -> _T:
        return _struct_from_json(cls, obj, typing.cast(Any, cls).__name__)


MESSAGE_TYPES: dict[bytes, type[Message]] = {}


def _register(type_byte: bytes) -> typing.Callable[[type[_T]], type[_T]]:
    def deco(cls: type[_T]) -> type[_T]:
        typing.cast(Any, cls).TYPE = type_byte
        MESSAGE_TYPES[type_byte] = typing.cast(type[Message], cls)
        _codec_for(cls)
        return cls

    return deco


@_register(b"o")
@dataclass(slots=True)
class Login(Message):
    version: str = ""
    hostname: str = ""
    os: str = ""
    arch: str = ""
    user: str = ""
    privilege_key: str = ""
    timestamp: int = 0
    run_id: str = ""
    client_id: str = ""
    metas: dict[str, str] = field(default_factory=dict)
    client_spec: ClientSpec = field(default_factory=ClientSpec, metadata={"always": True})
    pool_count: int = 0


@_register(b"1")
@dataclass(slots=True)
class LoginResp(Message):
    version: str = ""
    run_id: str = ""
    error: str = ""


@_register(b"p")
@dataclass(slots=True)
class NewProxy(Message):
    proxy_name: str = ""
    proxy_type: str = ""
    use_encryption: bool = False
    use_compression: bool = False
    bandwidth_limit: str = ""
    bandwidth_limit_mode: str = ""
    group: str = ""
    group_key: str = ""
    metas: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    remote_port: int = 0
    custom_domains: list[str] = field(default_factory=list)
    subdomain: str = ""
    locations: list[str] = field(default_factory=list)
    http_user: str = ""
    http_pwd: str = ""
    host_header_rewrite: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    route_by_http_user: str = ""
    sk: str = ""
    allow_users: list[str] = field(default_factory=list)
    multiplexer: str = ""


@_register(b"2")
@dataclass(slots=True)
class NewProxyResp(Message):
    proxy_name: str = ""
    remote_addr: str = ""
    error: str = ""


@_register(b"c")
@dataclass(slots=True)
class CloseProxy(Message):
    proxy_name: str = ""


@_register(b"w")
@dataclass(slots=True)
class NewWorkConn(Message):
    run_id: str = ""
    privilege_key: str = ""
    timestamp: int = 0


@_register(b"r")
@dataclass(slots=True)
class ReqWorkConn(Message):
    pass


@_register(b"s")
@dataclass(slots=True)
class StartWorkConn(Message):
    proxy_name: str = ""
    src_addr: str = ""
    dst_addr: str = ""
    src_port: int = 0
    dst_port: int = 0
    error: str = ""


@_register(b"v")
@dataclass(slots=True)
class NewVisitorConn(Message):
    run_id: str = ""
    proxy_name: str = ""
    sign_key: str = ""
    timestamp: int = 0
    use_encryption: bool = False
    use_compression: bool = False


@_register(b"3")
@dataclass(slots=True)
class NewVisitorConnResp(Message):
    proxy_name: str = ""
    error: str = ""


@_register(b"h")
@dataclass(slots=True)
class Ping(Message):
    privilege_key: str = ""
    timestamp: int = 0


@_register(b"4")
@dataclass(slots=True)
class Pong(Message):
    error: str = ""


@_register(b"u")
@dataclass(slots=True)
class UDPPacket(Message):
    content: bytes = field(default=b"", metadata={"json": "c"})
    local_addr: UDPAddr | None = field(default=None, metadata={"json": "l"})
    remote_addr: UDPAddr | None = field(default=None, metadata={"json": "r"})

    @classmethod
    def from_json(cls: type[_T], obj: _JSON) -> _T:
        # The shape frps and frpc send for every datagram, decoded directly; anything else
        # (other keys, key case, types, nulls) takes the general path and its checks.
        c, r = obj.get("c"), obj.get("r")
        if (
            type(c) is str
            and obj.keys() <= {"c", "r"}
            and type(r) is dict
            and r.keys() == {"IP", "Port", "Zone"}
            and type(r["IP"]) is str
            and r["IP"].isascii()
            and type(r["Port"]) is int
            and -(2**63) <= r["Port"] < 2**63
            and type(r["Zone"]) is str
            and r["Zone"].isascii()
        ):
            content = _dec_bytes(c, "UDPPacket.c")
            packet = UDPPacket(content, None, UDPAddr(r["IP"], r["Port"], r["Zone"]))
            return typing.cast(_T, packet)
        return _struct_from_json(cls, obj, "UDPPacket")


@_register(b"i")
@dataclass(slots=True)
class NatHoleVisitor(Message):
    transaction_id: str = ""
    proxy_name: str = ""
    pre_check: bool = False
    protocol: str = ""
    sign_key: str = ""
    timestamp: int = 0
    mapped_addrs: list[str] = field(default_factory=list)
    assisted_addrs: list[str] = field(default_factory=list)


@_register(b"n")
@dataclass(slots=True)
class NatHoleClient(Message):
    transaction_id: str = ""
    proxy_name: str = ""
    sid: str = ""
    mapped_addrs: list[str] = field(default_factory=list)
    assisted_addrs: list[str] = field(default_factory=list)


@_register(b"m")
@dataclass(slots=True)
class NatHoleResp(Message):
    transaction_id: str = ""
    sid: str = ""
    protocol: str = ""
    candidate_addrs: list[str] = field(default_factory=list)
    assisted_addrs: list[str] = field(default_factory=list)
    detect_behavior: NatHoleDetectBehavior = field(
        default_factory=NatHoleDetectBehavior, metadata={"always": True}
    )
    error: str = ""


@_register(b"5")
@dataclass(slots=True)
class NatHoleSid(Message):
    transaction_id: str = ""
    sid: str = ""
    response: bool = False
    nonce: str = ""


@_register(b"6")
@dataclass(slots=True)
class NatHoleReport(Message):
    sid: str = ""
    success: bool = False
