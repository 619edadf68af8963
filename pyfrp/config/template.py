"""The part of Go's text/template that frp config files use (pkg/config/load.go, template.go).

frp renders every config file, INI or v1, as a Go template before parsing it, with
``{{ .Envs.NAME }}`` bound to the environment and, for v1 files, two helpers for port ranges::

    auth.token = "{{ .Envs.FRP_TOKEN }}"
    {{- range $_, $v := parseNumberRangePair "6000-6006,6007" "7000-7006,7007" }}
    [[proxies]]
    name = "tcp-{{ $v.First }}"
    localPort = {{ $v.First }}
    remotePort = {{ $v.Second }}
    {{- end }}

What is supported: ``{{ .Envs.X }}``, ``{{ $.Envs.X }}``, ``{{ index .Envs "X" }}``, comments
``{{/* */}}``, the ``{{-``/``-}}`` trim markers, ``range`` over ``parseNumberRange`` and
``parseNumberRangePair`` with or without ``$i, $v :=`` (``.First``/``.Second`` on pairs), string
and integer literals. Anything else is a ConfigError naming the line, so a file never renders
into something silently different from what frp would produce.

One deliberate difference: Go renders a missing variable as ``<no value>`` (the template has no
``missingkey`` option), so a typo in a variable name becomes a token of ``<no value>``. Here it is
an error naming the variable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pyfrp.errors import ConfigError


def q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class NumberPair:
    first: int
    second: int


MAX_RANGE = 65536  # numbers in one range spec; frp has no limit, but these are port numbers


def parse_range_numbers(spec: str) -> list[int]:
    """frp util.ParseRangeNumbers: ``1000-1002,2001`` -> [1000, 1001, 1002, 2001]."""
    out: list[int] = []
    for part in spec.strip().split(","):
        bounds = part.split("-")
        try:
            nums = [int(b.strip(), 10) for b in bounds]
        except ValueError:
            raise ValueError(f"range number is invalid: {q(part.strip())}") from None
        if len(nums) == 1:
            out.append(nums[0])
        elif len(nums) == 2 and nums[0] <= nums[1]:
            if nums[1] - nums[0] >= MAX_RANGE - len(out):
                raise ValueError(f"range {q(part.strip())} has more than {MAX_RANGE} numbers")
            out.extend(range(nums[0], nums[1] + 1))
        else:
            raise ValueError(f"range number is invalid: {q(part.strip())}")
    return out


def _pairs(first: str, second: str) -> list[NumberPair]:
    a, b = parse_range_numbers(first), parse_range_numbers(second)
    if len(a) != len(b):
        raise ValueError("first and second range numbers are not in pairs")
    return [NumberPair(x, y) for x, y in zip(a, b, strict=True)]


# ---------------------------------------------------------------------------------- parsing

_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(\$?[A-Za-z_.][\w.$]*)|(-?\d+)|(:=|,))')


@dataclass(slots=True)
class _Text:
    text: str
    line: int  # source line where the text starts


@dataclass(slots=True)
class _Print:
    words: list[str]
    line: int


@dataclass(slots=True)
class _Range:
    vars: list[str]
    words: list[str]
    line: int
    body: list[_Text | _Print | _Range] = field(default_factory=list)


_Node = _Text | _Print | _Range


def _words(expr: str, line: int, path: str) -> list[str]:
    words: list[str] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f"{path}:{line}: template: cannot parse {{{{ {expr} }}}}")
        if m.group(1) is not None:
            words.append('"' + bytes(m.group(1), "utf-8").decode("unicode_escape"))
        else:
            words.append(m.group(2) or m.group(3) or m.group(4))
        pos = m.end()
    return words


def _parse(text: str, path: str) -> list[_Node]:
    root: list[_Node] = []
    stack: list[_Range] = []
    pos = 0
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if m.group(1):
            chunk = chunk.rstrip(" \t\r\n")
        (stack[-1].body if stack else root).append(_Text(chunk, text.count("\n", 0, pos) + 1))
        pos = m.end()
        if m.group(3):
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
        line = text.count("\n", 0, m.start()) + 1
        expr = m.group(2).strip()
        target = stack[-1].body if stack else root
        if expr.startswith("/*"):
            if not expr.endswith("*/"):
                raise ConfigError(f"{path}:{line}: template: unclosed comment")
            continue
        words = _words(expr, line, path)
        if not words:
            raise ConfigError(f"{path}:{line}: template: missing value for command")
        if words[0] == "end":
            if not stack or len(words) != 1:
                raise ConfigError(f"{path}:{line}: template: unexpected {{{{end}}}}")
            stack.pop()
            continue
        if words[0] == "range":
            rest = words[1:]
            names: list[str] = []
            if ":=" in rest:
                i = rest.index(":=")
                names = [w for w in rest[:i] if w != ","]
                rest = rest[i + 1 :]
                if not 1 <= len(names) <= 2 or not all(n.startswith("$") for n in names):
                    raise ConfigError(f"{path}:{line}: template: bad range variables")
            node = _Range(names, rest, line)
            target.append(node)
            stack.append(node)
            continue
        if words[0] in ("if", "else", "with", "define", "template", "block", "break"):
            raise ConfigError(
                f"{path}:{line}: template: {{{{{words[0]}}}}} is not supported by pyfrp"
                " (only .Envs, range over parseNumberRange/parseNumberRangePair, and end)"
            )
        target.append(_Print(words, line))
    if stack:
        raise ConfigError(f"{path}:{stack[-1].line}: template: range without {{{{end}}}}")
    root.append(_Text(text[pos:], text.count("\n", 0, pos) + 1))
    return root


# ------------------------------------------------------------------------------- evaluation


@dataclass(slots=True)
class _Scope:
    envs: Mapping[str, str]
    dot: object
    vars: dict[str, object]


def _field(value: object, name: str, line: int, path: str) -> object:
    if isinstance(value, NumberPair) and name in ("First", "Second"):
        return value.first if name == "First" else value.second
    raise ConfigError(f"{path}:{line}: template: can't evaluate field {name}")


def _env(envs: Mapping[str, str], name: str, line: int, path: str) -> str:
    try:
        return envs[name]
    except KeyError:
        raise ConfigError(
            f"{path}:{line}: undefined environment variable {name} (used as {{{{ .Envs.{name} }}}})"
        ) from None


def _operand(word: str, scope: _Scope, line: int, path: str) -> object:
    if word.startswith('"'):
        return word[1:]
    if re.fullmatch(r"-?\d+", word):
        return int(word)
    parts = word.split(".")
    head, rest = parts[0], parts[1:]
    value: object
    if head == "$" or (head == "" and scope.dot is None):
        # `.Envs.X` at top level, `$.Envs.X` anywhere
        if rest[:1] == ["Envs"]:
            if len(rest) == 2:
                return _env(scope.envs, rest[1], line, path)
            if len(rest) == 1:
                return scope.envs
        raise ConfigError(f"{path}:{line}: template: can't evaluate {word}")
    if head == "":
        value = scope.dot
        rest = [r for r in rest if r]
    elif head.startswith("$"):
        if head not in scope.vars:
            raise ConfigError(f"{path}:{line}: template: undefined variable {head}")
        value = scope.vars[head]
    else:
        raise ConfigError(f"{path}:{line}: template: function {q(head)} not defined")
    for name in rest:
        value = _field(value, name, line, path)
    return value


def _call(words: list[str], scope: _Scope, line: int, path: str) -> object:
    if not words:  # `{{ }}`, or an action a stray brace emptied
        raise ConfigError(f"{path}:{line}: template: missing value for command")
    fn, args = words[0], words[1:]
    try:
        if fn == "parseNumberRange" and len(args) == 1:
            return parse_range_numbers(str(_operand(args[0], scope, line, path)))
        if fn == "parseNumberRangePair" and len(args) == 2:
            a, b = (str(_operand(w, scope, line, path)) for w in args)
            return _pairs(a, b)
    except ValueError as exc:
        raise ConfigError(f"{path}:{line}: template: {fn}: {exc}") from None
    if fn == "index" and len(args) == 2:
        coll = _operand(args[0], scope, line, path)
        key = _operand(args[1], scope, line, path)
        if coll is scope.envs and isinstance(key, str):
            return _env(scope.envs, key, line, path)
        raise ConfigError(f"{path}:{line}: template: index of a non-map value")
    if len(words) == 1:
        return _operand(fn, scope, line, path)
    raise ConfigError(f"{path}:{line}: template: cannot evaluate {' '.join(words)}")


def _show(value: object) -> str:
    if isinstance(value, NumberPair):
        return f"{{{value.first} {value.second}}}"
    return str(value)


Piece = tuple[str, int]  # rendered text, the source line it starts on


def _exec(nodes: list[_Node], scope: _Scope, out: list[Piece], path: str) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append((node.text, node.line))
        elif isinstance(node, _Print):
            out.append((_show(_call(node.words, scope, node.line, path)), node.line))
        else:
            items = _call(node.words, scope, node.line, path)
            if not isinstance(items, list):
                raise ConfigError(f"{path}:{node.line}: template: range can't iterate")
            for i, item in enumerate(items):
                names = node.vars
                bound = dict(scope.vars)
                if len(names) == 1:
                    bound[names[0]] = item
                elif len(names) == 2:
                    bound[names[0]], bound[names[1]] = i, item
                _exec(node.body, _Scope(scope.envs, item, bound), out, path)


def render(text: str, envs: Mapping[str, str], path: str) -> tuple[str, list[int]]:
    """Render ``text`` like frp's RenderWithTemplate.

    Returns the text and, for each rendered line (index 0 = line 1), the source line it came
    from, so errors can name lines of the file the user wrote even after a ``range``.
    """
    if "{{" not in text:
        return text, list(range(1, text.count("\n") + 2))
    pieces: list[Piece] = []
    _exec(_parse(text, path), _Scope(envs, None, {}), pieces, path)
    lines: list[int | None] = [None]
    for chunk, line in pieces:
        segments = chunk.split("\n")
        for i, seg in enumerate(segments):
            if i:
                lines.append(None)
            if lines[-1] is None and (seg or i < len(segments) - 1):
                lines[-1] = line + i
    out: list[int] = []
    for n in lines:
        out.append(n if n is not None else (out[-1] if out else 1))
    return "".join(c for c, _ in pieces), out
