"""Server-side proxies, one module per type, known to the control and the service only through
``base.Proxy`` and the registry ``PROXY_TYPES`` (type name -> class)."""

from pyfrp.server.proxies import stcp, tcp, tcpmux, udp, vhost, xtcp
from pyfrp.server.proxies.base import PROXY_TYPES, Proxy, ProxyHost, Resources, VisitorTarget

__all__ = [
    "PROXY_TYPES",
    "Proxy",
    "ProxyHost",
    "Resources",
    "VisitorTarget",
    "stcp",
    "tcp",
    "tcpmux",
    "udp",
    "vhost",
    "xtcp",
]
