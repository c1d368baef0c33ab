"""The trade domain's edge: what the gateway serves of it (routes under ``/v1/trade``,
views, partner events). Being built (docs/adr/0009-trade.md): until it lands, trade's
transactions go through ``POST /v1/transactions`` and its state through the generic
routes."""

from __future__ import annotations

from services.gateway.plugin import DomainEdge

__all__ = ["EDGE"]

EDGE = DomainEdge("trade")
