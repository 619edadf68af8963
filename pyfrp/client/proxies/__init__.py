"""Client-side proxies, one module per type, known to the session only through
``base.ClientProxy`` and the registry ``PROXY_TYPES`` (type name -> class)."""

from pyfrp.client.proxies import tcp, udp, xtcp
from pyfrp.client.proxies.base import PROXY_TYPES, ClientProxy

__all__ = ["PROXY_TYPES", "ClientProxy", "tcp", "udp", "xtcp"]
