"""The Go-template subset frp config files use: {{ .Envs.X }}, ranges, trim markers."""

from __future__ import annotations

import pytest

from pyfrp.config.template import parse_range_numbers, render
from pyfrp.errors import ConfigError

ENVS = {"FRP_TOKEN": "t0k", "PORT": "7000"}


def r(text: str) -> str:
    return render(text, ENVS, "f.toml")[0]


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ('auth.token = "{{ .Envs.FRP_TOKEN }}"', 'auth.token = "t0k"'),
        ("p = {{.Envs.PORT}}", "p = 7000"),
        ('t = "{{ $.Envs.FRP_TOKEN }}"', 't = "t0k"'),
        ('t = "{{ index .Envs "FRP_TOKEN" }}"', 't = "t0k"'),
        ("a\n{{/* comment */}}\nb", "a\n\nb"),
        ("a\n  {{- /* trimmed */ -}}  \nb", "ab"),
        ('{{ "lit" }} {{ 42 }}', "lit 42"),
        ("no template here {", "no template here {"),
    ],
)
def test_render(text: str, out: str) -> None:
    assert r(text) == out


def test_range_pairs_like_frps_docs() -> None:
    text = (
        '{{- range $_, $v := parseNumberRangePair "6000-6001,6007" "7000-7001,7007" }}\n'
        "[[proxies]]\n"
        'name = "tcp-{{ $v.First }}"\n'
        "remotePort = {{ $v.Second }}\n"
        "{{- end }}\n"
    )
    assert r(text) == (
        '\n[[proxies]]\nname = "tcp-6000"\nremotePort = 7000'
        '\n[[proxies]]\nname = "tcp-6001"\nremotePort = 7001'
        '\n[[proxies]]\nname = "tcp-6007"\nremotePort = 7007\n'
    )


def test_range_index_dot_and_nesting() -> None:
    text = '{{ range $i, $p := parseNumberRange "5-6" }}{{ $i }}:{{ $p }};{{ end }}'
    assert r(text) == "0:5;1:6;"
    assert r('{{ range parseNumberRange "1,3" }}<{{ . }}>{{ end }}') == "<1><3>"
    nested = (
        '{{ range $a := parseNumberRange "1-2" }}'
        '{{ range $b := parseNumberRange "8-9" }}{{ $a }}{{ $b }} {{ end }}{{ end }}'
    )
    assert r(nested) == "18 19 28 29 "
    assert r('{{ range $v := parseNumberRange "1" }}{{ $.Envs.PORT }}{{ end }}') == "7000"


def test_line_map_points_back_into_the_file() -> None:
    text = 'a\n{{- range $v := parseNumberRange "1-2" }}\nx{{ $v }}\n{{- end }}\nz\n'
    out, lines = render(text, {}, "f")
    assert out == "a\nx1\nx2\nz\n"
    assert lines[: out.count("\n")] == [1, 3, 3, 5]


def test_parse_range_numbers() -> None:
    assert parse_range_numbers("1000-1002, 2001") == [1000, 1001, 1002, 2001]
    with pytest.raises(ValueError, match="range number is invalid"):
        parse_range_numbers("3-1")
    with pytest.raises(ValueError, match="range number is invalid"):
        parse_range_numbers("1-2-3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = {{ .Envs.NOPE }}", "f.toml:1: undefined environment variable NOPE"),
        ("\n{{ index .Envs \"NOPE\" }}", "f.toml:2: undefined environment variable NOPE"),
        ("{{ range $v := parseNumberRange \"1\" }}", "f.toml:1: template: range without {{end}}"),
        ("{{ end }}", "f.toml:1: template: unexpected {{end}}"),
        ("{{ if 1 }}{{ end }}", "f.toml:1: template: {{if}} is not supported by pyfrp"),
        ("{{ printf \"%d\" 1 }}", "f.toml:1: template: cannot evaluate printf"),
        ("{{ $x }}", "f.toml:1: template: undefined variable $x"),
        ("a = 1\nb = {{ }}", "f.toml:2: template: missing value for command"),
        ('{{ range parseNumberRangePair "1-2" "3" }}{{ end }}',
         "f.toml:1: template: parseNumberRangePair: first and second range numbers are not in"),
        ('{{ range parseNumberRange "x" }}{{ end }}',
         'f.toml:1: template: parseNumberRange: range number is invalid: "x"'),
        ("{{ range $v := parseNumberRange \"1\" }}{{ .Envs.PORT }}{{ end }}",
         "f.toml:1: template: can't evaluate field Envs"),
    ],
)  # fmt: skip
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        r(text)
    assert str(info.value).startswith(message)


def test_ranges_are_capped() -> None:
    """frp has no cap; a typo such as 6000-600000 would otherwise expand to 594001 proxies."""
    assert len(parse_range_numbers("0-65535")) == 65536
    with pytest.raises(ValueError, match=r'range "1-100000" has more than 65536 numbers'):
        parse_range_numbers("1-100000")
