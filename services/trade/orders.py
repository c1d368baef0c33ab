"""Orders in escrow: the buyer's payment waits in the order until delivery is proven.

Placing an order pays its total at once from the buyer's balance (or, under a payment
provider's signed quote, from the buyer's balance in another currency) into the order's
escrow and reserves the stock. The escrow is emptied once, by one of:

* **release** to the merchant (less the platform's fee) when the buyer confirms receipt,
  when the confirmation window (``CONFIRM_MS`` of block time after delivery) ends with
  the buyer silent, or when a dispute decides so;
* **refund** to the buyer on cancellation before shipment, on a dispute's decision, or
  when a returned parcel arrives back (returns.py; after a release the merchant's
  balance, then its deposit pays, the rest is its debt);
* **split** between them by a dispute's decision.

A late shipment (not shipped ``dispatch_days`` after payment) pays the listing's
``late_shipment_penalty`` from the merchant's deposit to the buyer, once.

State (under ``trade/``)::

    order/<id>        the order (id: the placing transaction's hash), fields below
    order_terms/<id>  the listing's terms when it was placed: {dispatch_days,
                      return_days, late_shipment_penalty} (a listing may change later)
    jurors            [[org, delivered_at], ...]: buyers with a delivery, oldest first,
                      one entry per organisation, the JURORS_MAX most recent (the pool
                      dispute panels are drawn from, disputes.py)

An order: ``{id, buyer, merchant, listing, quantity, unit_price, shipping: {method,
price, days}, ship_to, address, total, paid, quote, escrow, status, created, shipment,
shipped_at, delivered_at, dispute, return, closed_at, released, refunded, fee,
counted}``. Money fields are wire amounts in the listing's currency except ``paid``
(what left the buyer: the quote's ``from`` currency under a quote); ``escrow`` is what
the order still holds, ``released`` what the merchant received, ``fee`` what the
platform took, ``refunded`` what the buyer got back.

Statuses::

    paid ──ship──> shipped ──deliver──> delivered ──confirm / window──> settled
     │                │                    │  └─request_return──> returning ──> refunded
     └─cancel─> refunded  └─freeze──> disputed ──> settled | refunded | split

``settled``, ``refunded`` and ``split`` are terminal: nothing changes them (refusal
``order_closed``), with one exception the law makes: the EU consumer's right of
withdrawal reaches past the release, so a ``settled`` order may still become
``returning`` (returns.py) and then ``refunded`` from the merchant's balance.

Functions for the other modules (a transaction's refusal is ``ctx.fail``; a block hook
must check ``status`` first, since a broken rule there stops the replica):
:func:`order_of`, :func:`mark_shipped`, :func:`mark_delivered`, :func:`release`,
:func:`refund`, :func:`split`, :func:`freeze`, and for returns.py
:func:`begin_return`, :func:`end_return`. Each takes the order's id (or its record,
whose id is used: the record is read again).

Refusal codes: ``not_found``, ``forbidden``, ``listing_not_found``,
``listing_not_active``, ``merchant_not_verified``, ``out_of_stock``,
``shipping_unavailable``, ``destination_not_served``, ``bad_address``,
``total_mismatch``, ``currency_mismatch``, ``insufficient_funds``, ``bad_quote``,
``quote_expired``, ``quote_used``, ``order_closed``, ``order_not_cancellable``,
``order_not_paid``, ``order_not_shipped``, ``order_not_delivered``, ``order_frozen``,
``order_not_disputable``, ``order_not_returning``, ``refund_too_large``,
``bad_payload``.

Events (ids, codes, numbers and amounts only)::

    trade.order.placed     {order, buyer, merchant, listing, quantity, total, shipping
                            (method), ship_to}
    trade.order.paid       {order, buyer, paid, escrow, quote_provider, quote_nonce}
    trade.order.cancelled  {order, by, buyer, merchant}
    trade.order.shipped    {order, merchant, shipment}
    trade.order.delivered  {order, buyer, shipment, confirm_by (None: disputed)}
    trade.order.confirmed  {order, buyer, by: buyer | window}
    trade.escrow.released  {order, merchant, money (the merchant's), fee, fee_org}
    trade.escrow.refunded  {order, buyer, money, reason: cancelled | dispute | returned
                            | refund}
    trade.escrow.split     {order, buyer, merchant, refund_bps, refunded, money, fee,
                            fee_org}
    trade.penalty.applied  {reason: late_shipment, order, payer, payee, money, paid,
                            shortfall}

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

from services.ledger.core import deadlines
from services.ledger.core.contract import BlockContext, TxContext, _Scope
from services.ledger.core.errors import InvariantViolation
from services.privacy.records import live_record, record_of
from services.trade import accounts, listings, merchants
from services.trade.money import Money, convert, money, parse_quote
from services.trade.vocabulary import (
    AMOUNT_MAX,
    BPS,
    CONFIRM_MS,
    COUNTRY_RE,
    DAY_MS,
    HEX64_RE,
    ID_RE,
    JURORS_MAX,
    ORG_RE,
    QUANTITY_MAX,
    SHIPPING_METHODS,
    ActionSpec,
    BlockHandler,
    DeadlineHandler,
    integer,
    order_key,
    text_id,
)

__all__ = ["ACTIONS", "DEADLINES", "OPEN", "TERMINAL", "begin_return", "end_return",
           "freeze", "mark_delivered", "mark_shipped", "order_of", "refund", "refuse",
           "release", "restock", "split", "terms_of"]

OPEN: Final = frozenset({"paid", "shipped", "delivered", "disputed", "returning"})
TERMINAL: Final = frozenset({"settled", "refunded", "split"})

OrderRef = str | Mapping[str, Any]


# --- reading --------------------------------------------------------------------------------

def order_of(ctx: _Scope, order: OrderRef) -> dict[str, Any] | None:
    """The order record, or None."""
    value = ctx.get(order_key(_id_of(order)))
    return value if isinstance(value, dict) else None


def terms_of(ctx: _Scope, order: OrderRef) -> dict[str, Any]:
    """The listing's terms as they were when the order was placed."""
    value = ctx.get(f"order_terms/{_id_of(order)}")
    return value if isinstance(value, dict) else {}


def _id_of(order: OrderRef) -> str:
    return order if isinstance(order, str) else str(order["id"])


def _m(wire: Mapping[str, Any]) -> Money:
    return Money(int(wire["amount"]), str(wire["currency"]))


def refuse(ctx: _Scope, code: str, message: str) -> NoReturn:
    """Refuse the transaction; in a block hook (whose caller must have checked the
    order's status) a broken rule is a bug that must stop the replica."""
    if isinstance(ctx, TxContext):
        ctx.fail(code, message)
    raise InvariantViolation(f"a block hook broke an order rule ({code}): {message}")


def _load(ctx: _Scope, order: OrderRef, *statuses: str) -> dict[str, Any]:
    """The order, in one of ``statuses`` (none given: any open status)."""
    record = order_of(ctx, order)
    if record is None:
        refuse(ctx, "not_found", f"no order {_id_of(order)}")
    status = record["status"]
    if status in TERMINAL and status not in statuses:
        refuse(ctx, "order_closed", f"order {record['id']} is {status}: it never changes")
    return record


def _save(ctx: _Scope, order: dict[str, Any]) -> None:
    ctx.put(order_key(order["id"]), order)


def _close(ctx: _Scope, order: dict[str, Any], status: str) -> None:
    order.update(status=status, closed_at=ctx.time)
    _save(ctx, order)


# --- placing --------------------------------------------------------------------------------

def _listing(ctx: TxContext) -> dict[str, Any]:
    ref = ctx.payload.get("listing")
    if not isinstance(ref, dict) or set(ref) != {"merchant", "id"}:
        ctx.fail("bad_payload", "listing must be {merchant, id}")
    merchant = text_id(ctx, ref["merchant"], "listing.merchant", ORG_RE)
    listing_id = text_id(ctx, ref["id"], "listing.id", ID_RE)
    merchants.require_verified(ctx, merchant)
    listing = listings.listing_of(ctx, merchant, listing_id)
    if listing is None:
        ctx.fail("listing_not_found", f"{merchant} has no listing {listing_id}")
    if listing["status"] != "active":
        ctx.fail("listing_not_active", f"listing {merchant}/{listing_id} is "
                                       f"{listing['status']}")
    return listing


def _shipping(ctx: TxContext, listing: Mapping[str, Any]) -> dict[str, Any]:
    method = ctx.payload.get("shipping")
    if not isinstance(method, str) or method not in SHIPPING_METHODS:
        ctx.fail("bad_payload", f"shipping must be one of {sorted(SHIPPING_METHODS)}")
    for option in listing["shipping"]:
        if option["method"] == method:
            return {"method": method, "price": dict(option["price"]),
                    "days": option["days"]}
    ctx.fail("shipping_unavailable", f"the listing does not ship by {method}")


def _address(ctx: TxContext) -> str:
    """The buyer's own live delivery address in the vault (its record id)."""
    record_id = text_id(ctx, ctx.payload.get("address"), "address", HEX64_RE)
    record = record_of(ctx.read, record_id)
    if record is None or not live_record(record) or record["category"] != "address" \
            or record["subject"] != ctx.sender:
        ctx.fail("bad_address", "address must name a live vault record of category "
                                "address whose subject is the sending key")
    return record_id


def _total(ctx: TxContext, listing: Mapping[str, Any], quantity: int,
           shipping: Mapping[str, Any]) -> Money:
    price = _m(listing["price"])
    total = money(ctx, ctx.payload.get("total"), "total", positive=True,
                  currency=price.currency)
    expected = quantity * price.amount + _m(shipping["price"]).amount
    if total.amount != expected:
        ctx.fail("total_mismatch", f"total must be quantity x price + shipping = "
                                   f"{expected} minor units of {price.currency}")
    return total


def _pay(ctx: TxContext, buyer: str, total: Money) -> tuple[Money, dict[str, Any] | None]:
    """Move ``total`` from the buyer into escrow (the caller records it on the order):
    directly, or converted under a quote (the buyer's ``from`` money is redeemed at the
    provider, which issues ``total`` in the listing's currency)."""
    raw = ctx.payload.get("quote")
    if raw is None:
        accounts.debit(ctx, buyer, total)
        return total, None
    quote = parse_quote(ctx, raw)
    if quote.target != total.currency:
        ctx.fail("currency_mismatch", f"the quote converts into {quote.target}, the "
                                      f"listing sells in {total.currency}")
    paid = convert(quote, total)
    if paid.amount > AMOUNT_MAX:
        ctx.fail("bad_payload", "the converted amount is too large")
    accounts.redeem_from(ctx, quote.provider, buyer, paid)
    accounts.issue_to(ctx, quote.provider, buyer, total)
    accounts.debit(ctx, buyer, total)
    return paid, {"provider": quote.provider, "nonce": quote.nonce, "from": quote.source,
                  "to": quote.target, "rate_num": quote.rate_num,
                  "rate_den": quote.rate_den}


def place_order(ctx: TxContext) -> None:
    listing = _listing(ctx)
    quantity = integer(ctx, ctx.payload.get("quantity"), "quantity", 1, QUANTITY_MAX)
    shipping = _shipping(ctx, listing)
    ship_to = text_id(ctx, ctx.payload.get("ship_to"), "ship_to", COUNTRY_RE)
    if ship_to not in listing["ships_to"]:
        ctx.fail("destination_not_served", f"the listing does not ship to {ship_to}")
    address = _address(ctx)
    total = _total(ctx, listing, quantity, shipping)
    listings.reserve(ctx, listing, quantity)
    buyer, order_id = ctx.sender_org, ctx.tx.hash.hex()
    paid, quote = _pay(ctx, buyer, total)
    zero = Money(0, total.currency).to_wire()
    order = {"id": order_id, "buyer": buyer, "merchant": listing["merchant"],
             "listing": listing["id"], "quantity": quantity,
             "unit_price": dict(listing["price"]), "shipping": shipping,
             "ship_to": ship_to, "address": address, "total": total.to_wire(),
             "paid": paid.to_wire(), "quote": quote, "escrow": total.to_wire(),
             "status": "paid", "created": ctx.time, "shipment": None,
             "shipped_at": None, "delivered_at": None, "dispute": None, "return": None,
             "closed_at": None, "released": zero, "refunded": zero, "fee": zero,
             "counted": False}
    _save(ctx, order)
    terms = {"dispatch_days": listing["dispatch_days"],
             "return_days": listing["return_days"],
             "late_shipment_penalty": listing.get("late_shipment_penalty")}
    ctx.put(f"order_terms/{order_id}", terms)
    deadlines.schedule(ctx, ctx.time + terms["dispatch_days"] * DAY_MS,
                       f"dispatch:{order_id}")
    ctx.emit("trade.order.placed", {
        "order": order_id, "buyer": buyer, "merchant": order["merchant"],
        "listing": order["listing"], "quantity": quantity, "total": total.to_wire(),
        "shipping": shipping["method"], "ship_to": ship_to})
    ctx.emit("trade.order.paid", {
        "order": order_id, "buyer": buyer, "paid": paid.to_wire(),
        "escrow": total.to_wire(),
        "quote_provider": None if quote is None else quote["provider"],
        "quote_nonce": None if quote is None else quote["nonce"]})


# --- the buyer's and the merchant's actions -----------------------------------------------------

def _order_payload(ctx: TxContext) -> dict[str, Any]:
    return _load(ctx, text_id(ctx, ctx.payload.get("order"), "order", HEX64_RE))


def cancel_order(ctx: TxContext) -> None:
    """Buyer or merchant, before shipment: full refund, stock restored."""
    order = _order_payload(ctx)
    if ctx.sender_org not in (order["buyer"], order["merchant"]):
        ctx.fail("forbidden", "only the order's buyer or merchant cancels it")
    if order["status"] != "paid":
        ctx.fail("order_not_cancellable", f"order {order['id']} is {order['status']}: "
                                          "only an order not yet shipped is cancelled")
    _pay_buyer(ctx, order, _m(order["escrow"]).amount, "cancelled")
    restock(ctx, order)
    _close(ctx, order, "refunded")
    ctx.emit("trade.order.cancelled", {"order": order["id"], "by": ctx.sender_org,
                                       "buyer": order["buyer"],
                                       "merchant": order["merchant"]})


def confirm_receipt(ctx: TxContext) -> None:
    """The buyer received the goods: the escrow goes to the merchant."""
    order = _order_payload(ctx)
    if ctx.sender_org != order["buyer"]:
        ctx.fail("forbidden", "only the order's buyer confirms receipt")
    if order["status"] in ("disputed", "returning"):
        ctx.fail("order_frozen", f"order {order['id']} is {order['status']}")
    if order["status"] != "delivered":
        ctx.fail("order_not_delivered", f"order {order['id']} is {order['status']}")
    release(ctx, order)
    ctx.emit("trade.order.confirmed", {"order": order["id"], "buyer": order["buyer"],
                                       "by": "buyer"})


# --- functions for logistics, disputes and returns ------------------------------------------

def mark_shipped(ctx: _Scope, order: OrderRef, shipment: str) -> dict[str, Any]:
    """The merchant handed the goods over (logistics created the shipment)."""
    record = _load(ctx, order)
    if record["status"] != "paid":
        refuse(ctx, "order_not_paid", f"order {record['id']} is {record['status']}")
    record.update(status="shipped", shipment=shipment, shipped_at=ctx.time)
    _save(ctx, record)
    ctx.emit("trade.order.shipped", {"order": record["id"], "merchant": record["merchant"],
                                     "shipment": shipment})
    return record


def mark_delivered(ctx: _Scope, order: OrderRef) -> dict[str, Any]:
    """Proof of delivery: the confirmation window starts, the buyer joins the juror
    pool. A disputed order (frozen while shipped) records the delivery and stays
    disputed: its dispute decides."""
    record = _load(ctx, order)
    disputed = record["status"] == "disputed" and record["delivered_at"] is None
    if record["status"] != "shipped" and not disputed:
        refuse(ctx, "order_not_shipped", f"order {record['id']} is {record['status']}")
    confirm_by = None
    record["delivered_at"] = ctx.time
    if not disputed:
        confirm_by = ctx.time + CONFIRM_MS
        record["status"] = "delivered"
        deadlines.schedule(ctx, confirm_by, f"confirm:{record['id']}")
    _save(ctx, record)
    _add_juror(ctx, record["buyer"])
    ctx.emit("trade.order.delivered", {"order": record["id"], "buyer": record["buyer"],
                                       "shipment": record["shipment"],
                                       "confirm_by": confirm_by})
    return record


def _add_juror(ctx: _Scope, org: str) -> None:
    pool = [entry for entry in ctx.get("jurors") or [] if entry[0] != org]
    pool.append([org, ctx.time])
    ctx.put("jurors", pool[-JURORS_MAX:])


def release(ctx: _Scope, order: OrderRef) -> dict[str, Any]:
    """The escrow to the merchant, less the platform's fee (status ``settled``); the
    sale counts in the listing's authentic volume."""
    record = _load(ctx, order)
    if record["status"] not in ("delivered", "disputed"):
        refuse(ctx, "order_not_delivered", f"order {record['id']} is {record['status']}")
    amount = _m(record["escrow"]).amount
    _pay_merchant(ctx, record, amount)
    record["status"] = "settled"
    record["closed_at"] = ctx.time
    listings.record_settlement(ctx, record)  # sets record["counted"]
    _save(ctx, record)
    return record


def refund(ctx: _Scope, order: OrderRef, amount: int | Money) -> dict[str, int]:
    """Give the buyer ``amount`` (minor units of the order's currency) back and close the
    order ``refunded``: from the escrow as far as it holds, the rest from the merchant's
    balance, then its deposit, any shortfall as the merchant's debt (a return after
    release); what the escrow holds beyond ``amount`` goes to the merchant (less the
    fee). Returns where the refund came from: {escrow, balance, deposit, debt}."""
    record = _load(ctx, order)
    total = _m(record["total"])
    value = amount.amount if isinstance(amount, Money) else amount
    if isinstance(amount, Money) and amount.currency != total.currency:
        refuse(ctx, "currency_mismatch", f"order {record['id']} is in {total.currency}")
    if not 0 < value <= total.amount - _m(record["refunded"]).amount:
        refuse(ctx, "refund_too_large", f"a refund of order {record['id']} is in "
                                         f"[1, {total.amount}] minor units")
    held = _m(record["escrow"]).amount
    from_escrow = min(held, value)
    sources = _pay_buyer(ctx, record, from_escrow, _reason(record))
    sources.update(_merchant_pays(ctx, record, value - from_escrow))
    if held > from_escrow:
        _pay_merchant(ctx, record, held - from_escrow)
    listings.uncount_settlement(ctx, record)  # a sale refunded after all: no volume
    _close(ctx, record, "refunded")
    return sources


def restock(ctx: _Scope, order: Mapping[str, Any]) -> None:
    """The order's units back into its listing's stock (cancelled, or returned)."""
    listing = listings.listing_of(ctx, order["merchant"], order["listing"])
    if listing is not None:
        listings.restock(ctx, listing, order["quantity"])


def _reason(order: Mapping[str, Any]) -> str:
    if order["return"] is not None:
        return "returned"
    return "dispute" if order["dispute"] is not None else "refund"


def split(ctx: _Scope, order: OrderRef, refund_bps: int) -> dict[str, Any]:
    """A dispute's split: ``refund_bps`` of the escrow (rounded down) to the buyer, the
    rest to the merchant less the fee (status ``split``)."""
    record = _load(ctx, order)
    if record["status"] not in ("shipped", "delivered", "disputed"):
        refuse(ctx, "order_not_disputable", f"order {record['id']} is "
                                             f"{record['status']}")
    if isinstance(refund_bps, bool) or not 0 <= refund_bps <= BPS:
        refuse(ctx, "bad_payload", f"refund_bps must be in [0, {BPS}]")
    held = _m(record["escrow"])
    to_buyer = held.amount * refund_bps // BPS
    if to_buyer:
        _credit_buyer(ctx, record, to_buyer)
    net, fee, fee_org = _pay_merchant(ctx, record, held.amount - to_buyer, event=False)
    _close(ctx, record, "split")
    ctx.emit("trade.escrow.split", {"order": record["id"], "buyer": record["buyer"],
                                    "merchant": record["merchant"],
                                    "refund_bps": refund_bps,
                                    "refunded": Money(to_buyer, held.currency).to_wire(),
                                    "money": net.to_wire(), "fee": fee.to_wire(),
                                    "fee_org": fee_org})
    return record


def freeze(ctx: _Scope, order: OrderRef, dispute: str) -> dict[str, Any]:
    """A dispute was opened: the escrow stays until it is decided (the confirmation
    window no longer releases it)."""
    record = _load(ctx, order)
    if record["status"] not in ("shipped", "delivered"):
        refuse(ctx, "order_not_disputable", f"order {record['id']} is "
                                             f"{record['status']}")
    record.update(status="disputed", dispute=dispute)
    _save(ctx, record)
    return record


def begin_return(ctx: _Scope, order: OrderRef, rma: str) -> dict[str, Any]:
    """A return was authorised (returns.py), or a lapsed one's parcel arrived after all:
    the escrow, if still held, stays until the parcel is back. A settled order reopens
    here: the right of withdrawal outlives the release."""
    record = _load(ctx, order, "settled")
    if record["status"] not in ("delivered", "settled") \
            or record["return"] not in (None, rma):
        refuse(ctx, "order_not_delivered", f"order {record['id']} is {record['status']}")
    record.update(status="returning", closed_at=None)
    record["return"] = rma
    _save(ctx, record)
    return record


def end_return(ctx: _Scope, order: OrderRef) -> dict[str, Any]:
    """A return lapsed (the parcel never came back): the order settles, releasing the
    escrow if it still holds it."""
    record = _load(ctx, order)
    if record["status"] != "returning":
        refuse(ctx, "order_not_returning", f"order {record['id']} is {record['status']}")
    if _m(record["escrow"]).amount:
        record["status"] = "delivered"
        _save(ctx, record)
        return release(ctx, record)
    _close(ctx, record, "settled")
    return record


# --- money out of the escrow (through accounts only) --------------------------------------

def _take_escrow(record: dict[str, Any], amount: int) -> Money:
    held = _m(record["escrow"])
    if not 0 <= amount <= held.amount:
        raise InvariantViolation(f"order {record['id']} holds {held.amount}, "
                                 f"cannot pay {amount}")
    record["escrow"] = Money(held.amount - amount, held.currency).to_wire()
    return Money(amount, held.currency)


def _credit_buyer(ctx: _Scope, record: dict[str, Any], amount: int) -> None:
    paid = _take_escrow(record, amount)
    accounts.credit(ctx, record["buyer"], paid)
    refunded = _m(record["refunded"])
    record["refunded"] = Money(refunded.amount + amount, refunded.currency).to_wire()


def _pay_buyer(ctx: _Scope, record: dict[str, Any], amount: int, reason: str
               ) -> dict[str, int]:
    if amount:
        _credit_buyer(ctx, record, amount)
        ctx.emit("trade.escrow.refunded", {
            "order": record["id"], "buyer": record["buyer"],
            "money": Money(amount, record["total"]["currency"]).to_wire(),
            "reason": reason})
    return {"escrow": amount}


def _merchant_pays(ctx: _Scope, record: dict[str, Any], amount: int) -> dict[str, int]:
    """The rest of a refund after the escrow: the merchant's balance, then its deposit,
    then its debt (checked before debiting: this runs in block hooks too)."""
    currency = record["total"]["currency"]
    have = accounts.balance(ctx, record["merchant"], currency)
    from_balance = min(have, amount)
    if from_balance:
        accounts.debit(ctx, record["merchant"], Money(from_balance, currency))
        accounts.credit(ctx, record["buyer"], Money(from_balance, currency))
    from_deposit, debt = 0, 0
    if amount > from_balance:
        from_deposit, debt = accounts.pay_penalty(
            ctx, record["merchant"], record["buyer"],
            Money(amount - from_balance, currency))
    refunded = _m(record["refunded"])
    record["refunded"] = Money(refunded.amount + from_balance + from_deposit,
                               currency).to_wire()
    return {"balance": from_balance, "deposit": from_deposit, "debt": debt}


def _pay_merchant(ctx: _Scope, record: dict[str, Any], amount: int, *,
                  event: bool = True) -> tuple[Money, Money, str | None]:
    """``amount`` of the escrow to the merchant, the fee to the platform (event
    ``trade.escrow.released``, unless the caller reports it otherwise: a split)."""
    paid = _take_escrow(record, amount)
    fee_amount, fee_org = accounts.fee_of(ctx, paid.amount)
    fee, net = Money(fee_amount, paid.currency), Money(paid.amount - fee_amount,
                                                       paid.currency)
    if fee_amount and fee_org is not None:
        accounts.credit(ctx, fee_org, fee)
    accounts.credit(ctx, record["merchant"], net)
    for field, add in (("released", net), ("fee", fee)):
        before = _m(record[field])
        record[field] = Money(before.amount + add.amount, add.currency).to_wire()
    if event:
        ctx.emit("trade.escrow.released", {"order": record["id"],
                                           "merchant": record["merchant"],
                                           "money": net.to_wire(), "fee": fee.to_wire(),
                                           "fee_org": fee_org})
    return net, fee, fee_org


# --- deadlines -----------------------------------------------------------------------------

def _on_confirm(ctx: BlockContext, item_id: str, data: Any) -> None:
    """The confirmation window ended with the buyer silent: release, unless the order is
    disputed, being returned or closed meanwhile."""
    order = order_of(ctx, item_id.split(":", 1)[1])
    if order is None or order["status"] != "delivered":
        return
    release(ctx, order)
    ctx.emit("trade.order.confirmed", {"order": order["id"], "buyer": order["buyer"],
                                       "by": "window"})


def _on_dispatch(ctx: BlockContext, item_id: str, data: Any) -> None:
    """Not shipped ``dispatch_days`` after payment: the listing's late-shipment penalty
    from the merchant's deposit to the buyer (what the deposit lacks becomes debt)."""
    order = order_of(ctx, item_id.split(":", 1)[1])
    if order is None or order["status"] != "paid":
        return
    penalty = terms_of(ctx, order).get("late_shipment_penalty")
    if not penalty or not penalty["amount"]:
        return
    amount = _m(penalty)
    paid, shortfall = accounts.pay_penalty(ctx, order["merchant"], order["buyer"], amount)
    ctx.emit("trade.penalty.applied", {
        "reason": "late_shipment", "order": order["id"], "payer": order["merchant"],
        "payee": order["buyer"], "money": amount.to_wire(), "paid": paid,
        "shortfall": shortfall})


ACTIONS: dict[str, ActionSpec] = {
    "place_order": (place_order, frozenset({"listing", "quantity", "shipping", "ship_to",
                                            "address", "total"}), frozenset({"quote"})),
    "cancel_order": (cancel_order, frozenset({"order"}), frozenset()),
    "confirm_receipt": (confirm_receipt, frozenset({"order"}), frozenset()),
}
DEADLINES: dict[str, DeadlineHandler] = {"confirm": _on_confirm, "dispatch": _on_dispatch}
ON_BLOCK: tuple[BlockHandler, ...] = ()
