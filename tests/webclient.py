"""A blocking HTTP client for the tests of the dashboard and admin API (stdlib only)."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any


@dataclass
class Resp:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http_call(
    method: str,
    url: str,
    auth: str | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Resp:
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Resp(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.headers, e.read())


def wait_json(url: str, auth: str | None, ok: Callable[[Any], bool], timeout: float = 15.0) -> Any:
    """GET ``url`` until its JSON satisfies ``ok``; the last answer in the failure message."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        resp = http_call("GET", url, auth)
        if resp.status == 200:
            last = resp.json()
            if ok(last):
                return last
        else:
            last = (resp.status, resp.body)
        time.sleep(0.05)
    raise AssertionError(f"{url}: condition not met within {timeout}s; last: {last}")
