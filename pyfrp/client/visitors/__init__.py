"""Visitors (stcp, sudp, xtcp), one module per type, known to the session only through
``base.Visitor`` and the registry ``VISITOR_TYPES`` (type name -> class)."""

from pyfrp.client.visitors import stcp, sudp, xtcp
from pyfrp.client.visitors.base import VISITOR_TYPES, Visitor, VisitorHost

__all__ = ["VISITOR_TYPES", "Visitor", "VisitorHost", "stcp", "sudp", "xtcp"]
