"""Returns: the EU consumer's right of withdrawal and the merchant's own return policy.

``trade.request_return {order, reason}`` by the buyer of a delivered order within the
withdrawal window — 14 days after delivery for an EU destination (Directive 2011/83/EU
Art. 9), or the listing's return days if longer (``return_days`` as they were when the
order was placed) — is authorised at once: withdrawal needs no one's consent. The
return's id is the RMA (the requesting transaction's hash). It works after the escrow
was released too: the right outlives the confirmation window.

The buyer ships the parcel back like any shipment (logistics, ``return_of``); its proof
of delivery calls :func:`returned`: the buyer gets the order's total back — from the
escrow if the order still holds it, else from the merchant's balance, then its deposit,
any shortfall recorded as the merchant's debt — the stock is restored and the order
ends ``refunded``. The merchant refunds the whole total (delivery included, Art.
13(1)); the platform's fee on an earlier release stays with the platform.

A return whose parcel is not delivered back ``RETURN_LAPSE_MS`` after the request
lapses (deadline ``withdrawal:<order>``): the order settles (its escrow, if held, is
released). A parcel that arrives after the lapse is refunded all the same.

State (under ``trade/``)::

    return/<order>  {rma, order, buyer, merchant, reason, status (authorised | refunded
                    | lapsed), requested, window_ends, lapses_at, bucket, refunded,
                    closed_at}

Refusal codes: ``not_found``, ``forbidden``, ``order_closed``, ``order_frozen``,
``order_not_delivered``, ``return_exists``, ``return_window_closed``,
``order_not_returning``, ``bad_payload``.

Events::

    trade.return.requested   {order, rma, buyer, merchant, reason}
    trade.return.authorised  {order, rma, merchant, window_ends, lapses_at}
    trade.return.refunded    {order, rma, buyer, merchant, money, escrow, balance,
                              deposit, debt} (minor units from each source)
    trade.return.lapsed      {order, rma, buyer, merchant}

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ledger.core import deadlines
from services.ledger.core.contract import BlockContext, TxContext, _Scope
from services.trade import orders
from services.trade.money import Money
from services.trade.vocabulary import (
    DAY_MS,
    EU_COUNTRIES,
    HEX64_RE,
    RETURN_LAPSE_MS,
    RETURN_REASONS,
    WITHDRAWAL_MS,
    ActionSpec,
    BlockHandler,
    DeadlineHandler,
    text_id,
)

__all__ = ["ACTIONS", "DEADLINES", "return_of", "returned", "window_ends"]


def return_of(ctx: _Scope, order_id: str) -> dict[str, Any] | None:
    value = ctx.get(f"return/{order_id}")
    return value if isinstance(value, dict) else None


def window_ends(ctx: _Scope, order: Mapping[str, Any]) -> int | None:
    """When the buyer's right to return ``order`` ends (None: never delivered, or no
    right: a destination outside the EU and a listing without returns)."""
    if order["delivered_at"] is None:
        return None
    statutory = WITHDRAWAL_MS if order["ship_to"] in EU_COUNTRIES else 0
    policy = int(orders.terms_of(ctx, order).get("return_days") or 0) * DAY_MS
    window = max(statutory, policy)
    return int(order["delivered_at"]) + window if window else None


def _returnable(ctx: TxContext) -> dict[str, Any]:
    order_id = text_id(ctx, ctx.payload.get("order"), "order", HEX64_RE)
    order = orders.order_of(ctx, order_id)
    if order is None:
        ctx.fail("not_found", f"no order {order_id}")
    if ctx.sender_org != order["buyer"]:
        ctx.fail("forbidden", "only the order's buyer returns it")
    if order["return"] is not None:
        ctx.fail("return_exists", f"order {order_id} is returned under {order['return']}")
    status = order["status"]
    if status in ("refunded", "split"):
        ctx.fail("order_closed", f"order {order_id} is {status}")
    if status == "disputed":
        ctx.fail("order_frozen", f"order {order_id} is disputed: its dispute decides")
    if status not in ("delivered", "settled"):
        ctx.fail("order_not_delivered", f"order {order_id} is {status}")
    return order


def request_return(ctx: TxContext) -> None:
    """The buyer withdraws: the return is authorised at once (its RMA)."""
    order = _returnable(ctx)
    reason = ctx.payload.get("reason")
    if not isinstance(reason, str) or reason not in RETURN_REASONS:
        ctx.fail("bad_payload", f"reason must be one of {sorted(RETURN_REASONS)}")
    ends = window_ends(ctx, order)
    if ends is None or ctx.time > ends:
        ctx.fail("return_window_closed", f"order {order['id']} can no longer be returned")
    rma = ctx.tx.hash.hex()
    orders.begin_return(ctx, order, rma)
    lapses_at = ctx.time + RETURN_LAPSE_MS
    bucket = deadlines.schedule(ctx, lapses_at, f"withdrawal:{order['id']}")
    ctx.put(f"return/{order['id']}", {
        "rma": rma, "order": order["id"], "buyer": order["buyer"],
        "merchant": order["merchant"], "reason": reason, "status": "authorised",
        "requested": ctx.time, "window_ends": ends, "lapses_at": lapses_at,
        "bucket": bucket, "refunded": None, "closed_at": None})
    ctx.emit("trade.return.requested", {"order": order["id"], "rma": rma,
                                        "buyer": order["buyer"],
                                        "merchant": order["merchant"], "reason": reason})
    ctx.emit("trade.return.authorised", {"order": order["id"], "rma": rma,
                                         "merchant": order["merchant"],
                                         "window_ends": ends, "lapses_at": lapses_at})


def returned(ctx: _Scope, order_id: str) -> dict[str, Any]:
    """The return parcel was delivered back to the merchant (called by logistics): the
    buyer is refunded, the stock restored; the order ends ``refunded``. Returns the
    return record."""
    record = return_of(ctx, order_id)
    if record is None or record["status"] == "refunded":
        orders.refuse(ctx, "order_not_returning", f"order {order_id} has no open return")
    if record["status"] == "lapsed":
        orders.begin_return(ctx, order_id, record["rma"])
    else:
        deadlines.cancel(ctx, record["bucket"], f"withdrawal:{order_id}")
    order = orders.order_of(ctx, order_id)
    if order is None or order["status"] != "returning":
        orders.refuse(ctx, "order_not_returning", f"order {order_id} is not returning")
    total = Money(order["total"]["amount"], order["total"]["currency"])
    amount = total.amount - int(order["refunded"]["amount"])
    sources = orders.refund(ctx, order, amount)
    orders.restock(ctx, order)
    record.update(status="refunded", closed_at=ctx.time,
                  refunded=Money(amount, total.currency).to_wire())
    ctx.put(f"return/{order_id}", record)
    ctx.emit("trade.return.refunded", {
        "order": order_id, "rma": record["rma"], "buyer": order["buyer"],
        "merchant": order["merchant"], "money": record["refunded"],
        "escrow": sources.get("escrow", 0), "balance": sources.get("balance", 0),
        "deposit": sources.get("deposit", 0), "debt": sources.get("debt", 0)})
    return record


def _on_lapse(ctx: BlockContext, item_id: str, data: Any) -> None:
    """The parcel never came back: the order settles."""
    order_id = item_id.split(":", 1)[1]
    record = return_of(ctx, order_id)
    order = orders.order_of(ctx, order_id)
    if record is None or record["status"] != "authorised" or order is None \
            or order["status"] != "returning":
        return
    orders.end_return(ctx, order)
    record.update(status="lapsed", closed_at=ctx.time)
    ctx.put(f"return/{order_id}", record)
    ctx.emit("trade.return.lapsed", {"order": order_id, "rma": record["rma"],
                                     "buyer": record["buyer"],
                                     "merchant": record["merchant"]})


ACTIONS: dict[str, ActionSpec] = {
    "request_return": (request_return, frozenset({"order", "reason"}), frozenset()),
}
DEADLINES: dict[str, DeadlineHandler] = {"withdrawal": _on_lapse}
ON_BLOCK: tuple[BlockHandler, ...] = ()
