"""frps's 404 page (pkg/util/vhost/resource.go), or the operator's ``custom404Page`` file."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

NOT_FOUND_PAGE = b"""<!DOCTYPE html>
<html>
<head>
<title>Not Found</title>
<style>
    body {
        width: 35em;
        margin: 0 auto;
        font-family: Tahoma, Verdana, Arial, sans-serif;
    }
</style>
</head>
<body>
<h1>The page you requested was not found.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
<p>The server is powered by <a href="https://github.com/fatedier/frp">frp</a>.</p>
<p><em>Faithfully yours, frp.</em></p>
</body>
</html>
"""


def not_found_page(path: str = "") -> bytes:
    if path:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            log.warning("read custom 404 page error: %s", exc)
    return NOT_FOUND_PAGE
