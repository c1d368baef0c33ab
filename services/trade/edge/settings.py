"""The trade domain's options: section ``trade`` of a service's settings
(``ECOSPHERE_TRADE__...``)."""

from __future__ import annotations

from services.ledger.node.settings import Strict


class TradeSettings(Strict):
    """The trade edge's limits (the gateway plugin adds its own as it grows)."""
