"""Orders on the trade test World: a buyer's delivery address, placing an order, block
time moving forward, and a test-only path into the order functions other modules call.

* ``address(world, org, country="DE") -> record id``: a live privacy record of
  category ``address`` whose subject is ``org``'s admin key (made once, then reused).
* ``order_payload(listing, address, ...)`` / ``place(world, buyer, listing, ...)
  -> order id``: ``trade.place_order`` (``place`` funds the buyer first unless told not
  to, and checks the supply invariant).
* ``advance(world, to)``: empty blocks up to block time ``to``, at most one deadline
  walk (a day) apart so every deadline due by then has fired; the supply invariant is
  checked after every block.
* ``install_order_path(monkeypatch)``: test-only actions ``trade.t_ship {order,
  shipment}``, ``t_deliver``, ``t_release``, ``t_refund {order, amount}``, ``t_split
  {order, refund_bps}``, ``t_freeze {order, dispute}``, ``t_returned {order}`` calling
  ``orders.mark_shipped`` ... ``returns.returned`` in a transaction, as logistics and
  disputes do (for the rules of those functions, independently of their callers).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from services.ledger.core import deadlines
from services.ledger.core.contract import TxContext
from services.trade import contract, orders, returns
from services.trade.vocabulary import ActionSpec
from tests.trade.conftest import World
from tests.trade.market_world import privacy_tx

FEE_BPS = 250  # the platform's fee in the order tests (2.5 %)
#: a block this long after the previous one walks every deadline bucket up to its time
STEP_MS = (deadlines.WALK_BUCKETS_MAX - 1) * deadlines.BUCKET_MS


def eur(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR"}


def _hex(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def address(world: World, org: str, country: str = "DE") -> str:
    key = world.keys[org]
    subject = f"key:{key.key_id}"
    for record_id in world.chain.get(f"privacy/subject/{key.key_id}") or []:
        record = world.chain.get(f"privacy/record/{record_id}")
        if record["category"] == "address" and record["status"] == "active":
            return str(record_id)
    if world.chain.get(f"privacy/enckey/{subject}") is None:
        privacy_tx(world, org, "register_key", {
            "scope": "self", "public_key": _hex(f"x25519/{subject}"), "country": country})
    tx = world.chain.tx(key, "privacy.create_record", {
        "category": "address", "jurisdiction": country, "holders": [subject],
        "commitment": _hex(f"c/{org}/{world.chain.height}"),
        "ciphertext_hash": _hex(f"x/{org}/{world.chain.height}"),
        "wrap_hashes": {subject: _hex(f"w/{org}")}})
    result = world.chain.block([tx])
    assert not result.rejected, [r.code for r in result.rejected]
    return tx.hash.hex()


def total_of(listing: dict[str, Any], quantity: int = 1, method: str = "rail") -> int:
    shipping = next(o for o in listing["shipping"] if o["method"] == method)
    return int(quantity * listing["price"]["amount"] + shipping["price"]["amount"])


def order_payload(listing: dict[str, Any], address_id: str, *, quantity: int = 1,
                  method: str = "rail", ship_to: str = "DE", total: int | None = None,
                  quote: dict[str, Any] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "listing": {"merchant": listing["merchant"], "id": listing["id"]},
        "quantity": quantity, "shipping": method, "ship_to": ship_to,
        "address": address_id,
        "total": {"amount": total_of(listing, quantity, method) if total is None
                  else total, "currency": listing["price"]["currency"]}}
    if quote is not None:
        payload["quote"] = quote
    return payload


def place(world: World, buyer: str, listing: dict[str, Any], *, quantity: int = 1,
          method: str = "rail", ship_to: str = "DE", fund: bool = True,
          time: int | None = None) -> str:
    """A paid order (the buyer funded with exactly its total first); its id."""
    if fund:
        world.fund(buyer, total_of(listing, quantity, method),
                   listing["price"]["currency"])
    payload = order_payload(listing, address(world, buyer), quantity=quantity,
                            method=method, ship_to=ship_to)
    result = world.ok(buyer, "place_order", payload, time=time)
    (placed,) = world.events(result, "trade.order.placed")
    return str(placed["order"])


def advance(world: World, to: int) -> list[Any]:
    """Empty blocks until block time ``to``; the events they emitted."""
    events: list[Any] = []
    while world.chain.time < to:
        result = world.chain.block([], time=min(to, world.chain.time + STEP_MS))
        world.check_supply()
        events.extend(result.events)
    return events


def configure_fee(world: World) -> None:
    if (world.get("config") or {}).get("fee_bps") != FEE_BPS:
        world.ok("operator", "configure", {"fee_bps": FEE_BPS, "fee_org": "operator"})


# --- the test-only path into the order functions ---------------------------------------------

def _order(ctx: TxContext) -> str:
    return str(ctx.payload["order"])


def _ship(ctx: TxContext) -> None:
    orders.mark_shipped(ctx, _order(ctx), str(ctx.payload["shipment"]))


def _deliver(ctx: TxContext) -> None:
    orders.mark_delivered(ctx, _order(ctx))


def _release(ctx: TxContext) -> None:
    orders.release(ctx, _order(ctx))


def _refund(ctx: TxContext) -> None:
    orders.refund(ctx, _order(ctx), ctx.payload["amount"])


def _split(ctx: TxContext) -> None:
    orders.split(ctx, _order(ctx), ctx.payload["refund_bps"])


def _freeze(ctx: TxContext) -> None:
    orders.freeze(ctx, _order(ctx), str(ctx.payload["dispute"]))


def _returned(ctx: TxContext) -> None:
    returns.returned(ctx, _order(ctx))


_PATH: dict[str, ActionSpec] = {
    "t_ship": (_ship, frozenset({"order", "shipment"}), frozenset()),
    "t_deliver": (_deliver, frozenset({"order"}), frozenset()),
    "t_release": (_release, frozenset({"order"}), frozenset()),
    "t_refund": (_refund, frozenset({"order", "amount"}), frozenset()),
    "t_split": (_split, frozenset({"order", "refund_bps"}), frozenset()),
    "t_freeze": (_freeze, frozenset({"order", "dispute"}), frozenset()),
    "t_returned": (_returned, frozenset({"order"}), frozenset()),
}


def install_order_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for action, spec in _PATH.items():
        monkeypatch.setitem(contract._ACTIONS, action, spec)


def ship(world: World, order: str, shipment: str | None = None) -> None:
    world.ok("operator", "t_ship", {"order": order, "shipment": shipment or _hex(order)})


def deliver(world: World, order: str) -> None:
    world.ok("operator", "t_deliver", {"order": order})
