"""Serialised items as the trace contract tracks them: the state key of an item's record
(``item/<canonical Digital Link>``), the identifiers that name one (serialised GTINs:
lots, cases and pallets are tracked through their events only), and the states an item
moves through along the supply chain.

Runs in every replica (:mod:`services.trace.contract`): it must never do I/O, read the
clock or draw randomness, and any change of behaviour forks the chain.
"""

from __future__ import annotations

from services.trace import identifiers

__all__ = ["STATE_BY_BIZSTEP", "TERMINAL_STATES", "item_key", "sgtin_of"]

# Item states along the supply chain (CBV bizSteps move items between them).
STATE_BY_BIZSTEP = {
    "commissioning": "commissioned", "encoding": "commissioned",
    "packing": "packed", "unpacking": "commissioned", "loading": "in_transit",
    "shipping": "in_transit", "departing": "in_transit", "arriving": "in_transit",
    "unloading": "in_transit", "receiving": "received", "storing": "received",
    "accepting": "received", "inspecting": None, "sampling": None,
    "retail_selling": "sold", "decommissioning": "decommissioned",
    "destroying": "decommissioned", "disposing": "decommissioned",
}
TERMINAL_STATES = frozenset({"decommissioned"})


def sgtin_of(identifier: str) -> identifiers.Sgtin | None:
    """The serialised GTIN ``identifier`` names (EPC URN or Digital Link), or None."""
    try:
        parsed = identifiers.parse_identifier(identifier)
    except identifiers.IdentifierError:
        return None
    return parsed if isinstance(parsed, identifiers.Sgtin) else None


def item_key(identifier: str, *, company_prefix_length: int | None = None) -> str | None:
    """The state key of a serialised item, from an EPC URN or a Digital Link."""
    sgtin = sgtin_of(identifier)
    return None if sgtin is None else f"item/{sgtin.to_digital_link()}"
