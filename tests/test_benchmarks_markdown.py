"""benchmarks/matrix.py renders the README's tables from a run's JSON, ratios oriented so that
>= 1.00x means pyfrp is as good as Go frp or better."""

from __future__ import annotations

from typing import Any

from benchmarks.matrix import markdown

DOC: dict[str, Any] = {
    "meta": {
        "date": "2026-12-06 08:50 UTC",
        "machine": "x86_64",
        "cores": 2,
        "python": "3.11.7",
        "go_version": "0.70.1",
        "params": {
            "total_mib": 256,
            "repeat": 3,
            "vhost_repeat": 3,
            "vhost_seconds": 3.0,
            "vhost_conns": 8,
        },
    },
    "sections": [
        {
            "title": "HTTP vhost",
            "rows": [
                {
                    "test": "13 B, keep-alive",
                    "unit": "req/s",
                    "better": "higher",
                    "pyfrp": 3000.0,
                    "go": 4000.0,
                    "direct": 40000.0,
                },
                {
                    "test": "13 B, keep-alive, p50",
                    "unit": "ms",
                    "better": "lower",
                    "pyfrp": 2.0,
                    "go": 1.5,
                    "direct": 0.17,
                },
                {
                    "test": "WebSocket 32 B messages",
                    "unit": "msg/s",
                    "better": "higher",
                    "pyfrp": 5000.0,
                    "go": None,
                    "direct": None,
                },
            ],
        }
    ],
}


def test_rate_row_shows_pyfrp_over_go() -> None:
    assert "| 13 B, keep-alive | req/s | 3000 | 4000 | 0.75x | 40000 |" in markdown(DOC)


def test_latency_row_shows_go_over_pyfrp() -> None:
    assert "| 13 B, keep-alive, p50 | ms | 2.00 | 1.50 | 0.75x | 0.17 |" in markdown(DOC)


def test_missing_go_value_has_no_ratio() -> None:
    assert "| WebSocket 32 B messages | msg/s | 5000 | - | - | - |" in markdown(DOC)


def test_header_says_what_was_run() -> None:
    text = markdown(DOC)
    assert "Go frp 0.70.1" in text
    assert "256 MiB per row" in text
    assert "**HTTP vhost**" in text
