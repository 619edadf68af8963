"""Reading a config file: format detection, TOML/YAML/JSON parsing, and where each key sits.

Detection follows frp (pkg/config/load.go): a file with a ``[common]`` section is the legacy
INI format, whatever its name. Anything else is a "v1" file: frp tries TOML, then JSON (when
the text starts with ``{``), then YAML. The extension is a hint: ``.toml`` files are only read
as TOML, and for ``.json``/``.yaml``/``.yml`` that format is tried first and its error is the
one reported when nothing parses. A file without a known extension gets frp's order, and its
error is the one of the format the text looks like.

Each v1 parse also returns ``lines``: the line of every key path, e.g. ``("proxies", 1,
"localPort") -> 14``. YAML and JSON positions are exact (from the YAML composer and a small
JSON scan). For TOML, whose stdlib parser gives no positions, a light scan of the text
tracks the current ``[table]``/``[[array]]`` and records where each key is first written.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyfrp.errors import ConfigError

if TYPE_CHECKING:
    import yaml

KeyPath = tuple[str | int, ...]
LineMap = Callable[[int], int]  # line of the parsed (rendered) text -> line of the file


def same_line(n: int) -> int:
    return n


def line_map(source_lines: list[int]) -> LineMap:
    """From template.render's list: rendered line n came from file line source_lines[n - 1]."""
    return lambda n: source_lines[n - 1] if 0 < n <= len(source_lines) else n


_COMMON = re.compile(r"^[ \t]*\[[ \t]*common[ \t]*\][ \t]*(?:[#;].*)?$", re.MULTILINE)
_EXT = {".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: cannot read config file: no such file or directory") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: cannot read config file: it is a directory") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read config file: permission denied") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot read config file: not UTF-8 text (byte {exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None


def is_legacy_ini(text: str) -> bool:
    """frp's DetectLegacyINIFormat: the text has a ``[common]`` section."""
    return _COMMON.search(text) is not None


@dataclass(slots=True)
class Document:
    """A parsed v1 file: its top-level table and the line of each key path."""

    path: str
    fmt: str  # toml, json, yaml
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, key: KeyPath) -> int | None:
        """The line of ``key``, or of its nearest enclosing table that has one."""
        for n in range(len(key), 0, -1):
            found = self.lines.get(key[:n])
            if found is not None:
                return found
        return None

    def loc(self, key: KeyPath) -> str:
        """``file:line`` of ``key`` (just ``file`` when the line is unknown)."""
        line = self.line(key)
        return f"{self.path}:{line}" if line else self.path

    def where(self, key: KeyPath) -> str:
        """``file:line: dotted.key``."""
        return f"{self.loc(key)}: {dotted(key)}" if key else self.loc(key)


def dotted(key: KeyPath) -> str:
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def parse_v1(text: str, path: str, lines: LineMap = same_line) -> Document:
    hint = _EXT.get(os.path.splitext(path)[1].lower(), "")
    if hint == "toml":
        return _parse("toml", text, path, lines)
    looks_json = text.lstrip().startswith("{")
    order = ["toml", "json" if looks_json else "yaml"]
    if hint:
        order = [hint, *(f for f in order if f != hint)]
    errors: dict[str, ConfigError] = {}
    for fmt in order:
        try:
            return _parse(fmt, text, path, lines)
        except ConfigError as exc:
            errors[fmt] = exc
    raise errors[hint or _looks_like(text, looks_json)]


def _parse(fmt: str, text: str, path: str, lines: LineMap) -> Document:
    try:
        return _PARSERS[fmt](text, path, lines)
    except RecursionError:  # every parser (and our line finders) recurses per nesting level
        raise ConfigError(f"{path}: invalid {fmt.upper()}: nested too deeply") from None


def _looks_like(text: str, looks_json: bool) -> str:
    if looks_json:
        return "json"
    for raw in text.splitlines():
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("[") or re.match(r"^[\w.\"'-]+\s*=", s):
            return "toml"
        return "yaml"
    return "toml"


def _top(data: Any, path: str, fmt: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: invalid {fmt.upper()}: the top level must be a table of keys")
    return data


# -------------------------------------------------------------------------------------- TOML

_TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


def _toml(text: str, path: str, lines: LineMap) -> Document:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_LINE.search(msg)
        loc = f"{path}:{lines(int(m.group(1)))}" if m else path
        msg = _TOML_LINE.sub("", msg).strip()
        col = f" (column {m.group(2)})" if m else ""
        raise ConfigError(f"{loc}: invalid TOML: {msg}{col}") from None
    return Document(path, "toml", _top(data, path, "toml"), _mapped(toml_lines(text), lines))


_KEY_PART = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*(\.)?""")


def _split_key(s: str) -> list[str] | None:
    parts: list[str] = []
    pos = 0
    while pos < len(s):
        m = _KEY_PART.match(s, pos)
        if m is None:
            return None
        tok = m.group(1)
        parts.append(json.loads(tok) if tok[0] == '"' else tok.strip("'"))
        pos = m.end()
        if not m.group(2):
            break
    return parts if s[pos:].strip() == "" else None


def toml_lines(text: str) -> dict[KeyPath, int]:
    """Best-effort line of every key path in a TOML text (first occurrence wins)."""
    lines: dict[KeyPath, int] = {}
    arrays: dict[KeyPath, int] = {}  # array-of-tables path -> its current index
    table: KeyPath = ()
    closing: str | None = None  # inside a multi-line string

    def resolve(parts: list[str]) -> KeyPath:
        out: KeyPath = ()
        for p in parts:
            out = (*out, p)
            if out in arrays:
                out = (*out, arrays[out])
        return out

    def record(key: KeyPath, n: int) -> None:
        for i in range(1, len(key) + 1):
            lines.setdefault(key[:i], n)

    for n, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if closing is not None:
            if closing in s:
                closing = None
            continue
        if not s or s.startswith("#"):
            continue
        if s.startswith("[["):
            end = s.find("]]")
            parts = _split_key(s[2:end]) if end > 0 else None
            if parts:
                base = (*resolve(parts[:-1]), parts[-1])
                arrays[base] = arrays.get(base, -1) + 1
                table = (*base, arrays[base])
                record(table, n)
            continue
        if s.startswith("["):
            end = s.find("]")
            parts = _split_key(s[1:end]) if end > 0 else None
            if parts:
                table = resolve(parts)
                record(table, n)
            continue
        eq = _assignment(s)
        if eq is None:
            continue
        parts = _split_key(s[:eq])
        if parts:
            record(table + tuple(parts), n)
        value = s[eq + 1 :].lstrip()
        for q in ('"""', "'''"):
            if value.startswith(q) and value.count(q) == 1:
                closing = q
    return lines


def _assignment(s: str) -> int | None:
    """Index of the ``=`` of a ``key = value`` line, skipping quoted key parts."""
    quote = ""
    for i, c in enumerate(s):
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "=":
            return i
    return None


# -------------------------------------------------------------------------------------- JSON


def _json(text: str, path: str, lines: LineMap) -> Document:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{lines(exc.lineno)}: invalid JSON: {exc.msg}") from None
    return Document(path, "json", _top(data, path, "json"), _mapped(json_lines(text), lines))


_JSON_SCALAR = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")
_JSON_WS = re.compile(r"\s*")


def json_lines(text: str) -> dict[KeyPath, int]:
    """The line of every key path in a valid JSON text."""
    lines: dict[KeyPath, int] = {}
    newlines = [i for i, c in enumerate(text) if c == "\n"]

    def line_at(pos: int) -> int:
        lo, hi = 0, len(newlines)
        while lo < hi:
            mid = (lo + hi) // 2
            if newlines[mid] < pos:
                lo = mid + 1
            else:
                hi = mid
        return lo + 1

    def ws(pos: int) -> int:
        m = _JSON_WS.match(text, pos)
        return m.end() if m else pos

    def value(pos: int, key: KeyPath) -> int:
        pos = ws(pos)
        c = text[pos]
        if c == "{":
            pos = ws(pos + 1)
            if text[pos] == "}":
                return pos + 1
            while True:
                name, end = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
                child = (*key, name)
                lines.setdefault(child, line_at(pos))
                pos = ws(end)
                pos = value(pos + 1, child)  # skip ':'
                pos = ws(pos)
                if text[pos] == "}":
                    return pos + 1
                pos = ws(pos + 1)  # skip ','
        if c == "[":
            pos = ws(pos + 1)
            if text[pos] == "]":
                return pos + 1
            i = 0
            while True:
                child = (*key, i)
                lines.setdefault(child, line_at(ws(pos)))
                pos = ws(value(pos, child))
                if text[pos] == "]":
                    return pos + 1
                pos += 1
                i += 1
        if c == '"':
            return int(json.decoder.scanstring(text, pos + 1)[1])  # type: ignore[attr-defined]
        m = _JSON_SCALAR.match(text, pos)
        assert m is not None
        return m.end()

    try:
        value(0, ())
    except (IndexError, ValueError, AssertionError):
        pass  # positions are best effort; json.loads already accepted the text
    return lines


# -------------------------------------------------------------------------------------- YAML


@functools.cache
def _loader() -> type[yaml.SafeLoader]:
    """YAML 1.1 like go-yaml v2 (which frp uses), except that timestamps stay strings, as they
    do when frp turns YAML into JSON. Built on first use: PyYAML takes ~20 ms to import."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


def _yaml(text: str, path: str, lines: LineMap) -> Document:
    import yaml

    try:
        loader = _loader()(text)  # its reader refuses control characters up front
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{path}:{lines(line)}: invalid YAML: unacceptable character "
            f"#x{exc.character:04x}: {exc.reason}"
        ) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = f"{path}:{lines(mark.line + 1)}" if mark else path
        raise ConfigError(f"{loc}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    data = _top(data, path, "yaml")
    # frp (strict mode) drops top-level keys starting with "." so they can hold YAML anchors.
    data = {str(k): v for k, v in data.items() if not str(k).startswith(".")}
    where: dict[KeyPath, int] = {}
    if node is not None:
        _yaml_lines(node, (), where)
    return Document(path, "yaml", _stringify_keys(data), _mapped(where, lines))


def _yaml_lines(node: yaml.Node, key: KeyPath, lines: dict[KeyPath, int]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            child = (*key, str(k.value))
            lines.setdefault(child, k.start_mark.line + 1)
            _yaml_lines(v, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*key, i)
            lines.setdefault(child, item.start_mark.line + 1)
            _yaml_lines(item, child, lines)


def _stringify_keys(value: Any) -> Any:
    """YAML allows non-string keys (``1: x``); frp's YAML-to-JSON step turns them into strings."""
    if isinstance(value, dict):
        return {str(k): _stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v) for v in value]
    return value


def _mapped(where: dict[KeyPath, int], lines: LineMap) -> dict[KeyPath, int]:
    return {k: lines(n) for k, n in where.items()}


_PARSERS = {"toml": _toml, "json": _json, "yaml": _yaml}
