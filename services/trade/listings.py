"""Listings: what a verified merchant offers, claiming only what the chain proves.

State (under ``trade/``)::

    listing/<org>/<id>         {merchant, id, gtin, price, stock, ships_to [countries],
                                shipping [{method, price, days}], dispatch_days,
                                return_days, certificates [types], certified_by
                                {type: merkle root}, certified_until (ms or None),
                                late_shipment_penalty (money or None),
                                status: active|withdrawn, published, updated,
                                withdrawn_at, withdraw_reason}
    listings_of_gtin/<gtin>    ["<org>/<id>", ...] the active listings of a product
    listing_count/<org>        listings the merchant ever created (limit)
    stats/listing/<org>/<id>   {orders, units, amount {CUR: minor units}}
    stats/merchant/<org>       the same over all its listings

Money on the wire is ``{amount, currency}``; a listing's prices (goods, shipping,
late-shipment penalty) are in one currency.

**Proven claims.** A listing is published only for a product registered in trace and
only if every required certificate type has a certificate that vouches now (trace's
rule: in validity, not revoked, from a body accredited when it issued); the root each
claim rests on is kept (``certified_by``). The listing is withdrawn
(``trade.listing.withdrawn``) in the block a certificate of its GTIN is revoked
(trace's ``trace.certificate.revoked``) unless another certificate of that type still
vouches, and when the earliest of its certificates expires (deadline ``certexpiry``)
unless another has taken over.

**Authentic volume.** :func:`record_settlement` counts an order in the listing's and
the merchant's stats when its escrow is released to the merchant, never when buyer
and merchant are one organisation (one organisation's keys included) or share a
payment account tag (``accounts.tags_of``). :func:`uncount_settlement` takes a
refunded order out again.

Refusals: ``bad_payload``, ``currency_mismatch``, ``merchant_not_verified``,
``product_not_found``, ``certificate_required``, ``destination_not_served``,
``return_days_too_short``, ``listing_exists``, ``listing_not_found``,
``listing_not_active``, ``too_many_listings``, ``out_of_stock``.

Events: ``trade.listing.published {merchant, listing, gtin, price, stock, ships_to,
certificates}``, ``trade.listing.updated {merchant, listing, price, stock}``,
``trade.listing.withdrawn {merchant, listing, gtin, reason, cert_type}`` (reason
``withdrawn_by_merchant`` | ``certificate_revoked`` | ``certificate_expired``;
cert_type None when the merchant withdrew).

This module never does I/O.
"""

from __future__ import annotations

from typing import Any, Final

from services.ledger.core import deadlines
from services.ledger.core.contract import BlockContext, TxContext, _Scope
from services.trace.certificates import CERT_TYPES, anchor_of, certificate_root
from services.trace.registry import product_of
from services.trade.accounts import tags_of
from services.trade.merchants import require_verified
from services.trade.money import Money, money
from services.trade.vocabulary import (
    CERTIFICATES_PER_LISTING_MAX,
    COUNTRY_RE,
    DAY_MS,
    DISPATCH_DAYS_MAX,
    EU_COUNTRIES,
    GTIN_RE,
    LISTINGS_PER_MERCHANT_MAX,
    RETURN_DAYS_MAX,
    SHIPPING_METHODS,
    SHIPPING_OPTIONS_MAX,
    SHIPS_TO_MAX,
    STOCK_MAX,
    WITHDRAWAL_MS,
    ActionSpec,
    BlockHandler,
    DeadlineHandler,
    as_list,
    integer,
    listing_key,
    text_id,
)

__all__ = ["ACTIONS", "DEADLINES", "LISTINGS_PER_GTIN_MAX", "ON_BLOCK", "listing_of",
           "record_settlement", "reserve", "restock", "self_dealing", "uncount_settlement"]

#: active listings of one product (the revocation hook reads them all in one block)
LISTINGS_PER_GTIN_MAX: Final = 1_000
SHIPPING_DAYS_MAX: Final = 120  # one shipping option's promised days
#: the EU right of withdrawal in days (Directive 2011/83/EU Art. 9)
WITHDRAWAL_DAYS: Final = WITHDRAWAL_MS // DAY_MS
STATS_MAX: Final = 2**53 - 1  # what a state integer holds; counters saturate there
REVOKED_EVENT: Final = "trace.certificate.revoked"  # trace's revocation (certificates.py)
EXPIRY_KIND: Final = "certexpiry"


# --- for the other modules ---------------------------------------------------------------------

def listing_of(ctx: _Scope, merchant: str, listing_id: str) -> dict[str, Any] | None:
    value = ctx.get(listing_key(merchant, listing_id))
    return value if isinstance(value, dict) else None


def _put(ctx: _Scope, listing: dict[str, Any]) -> None:
    ctx.put(listing_key(listing["merchant"], listing["id"]), listing)


def reserve(ctx: TxContext, listing: dict[str, Any], quantity: int) -> None:
    """Take ``quantity`` units of an active listing of a verified merchant out of stock
    (an order placed); writes the listing. Refusals: ``listing_not_active``,
    ``merchant_not_verified``, ``out_of_stock``."""
    if listing["status"] != "active":
        ctx.fail("listing_not_active", f"listing {listing['id']} is {listing['status']}")
    require_verified(ctx, listing["merchant"])
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        ctx.fail("bad_payload", "quantity must be a positive integer")
    if listing["stock"] < quantity:
        ctx.fail("out_of_stock", f"listing {listing['id']} has {listing['stock']} units")
    listing["stock"] -= quantity
    _put(ctx, listing)


def restock(ctx: _Scope, listing: dict[str, Any], quantity: int) -> None:
    """Put ``quantity`` units back (an order cancelled, goods returned), whatever the
    listing's status; never refuses (block hooks call it). Writes the listing."""
    listing["stock"] = min(listing["stock"] + max(quantity, 0), STOCK_MAX)
    _put(ctx, listing)


def self_dealing(ctx: _Scope, buyer: str, merchant: str) -> bool:
    """Buyer and merchant are one organisation (which holds every key of it) or share a
    payment account: such an order proves no sale."""
    return buyer == merchant or bool(tags_of(ctx, buyer) & tags_of(ctx, merchant))


def _listing_id(order: dict[str, Any]) -> str:
    listing = order["listing"]
    return str(listing["id"]) if isinstance(listing, dict) else str(listing)


def _count(ctx: _Scope, key: str, order: dict[str, Any], sign: int) -> None:
    stats = ctx.get(key) or {"orders": 0, "units": 0, "amount": {}}
    total = order["total"]
    amounts = dict(stats["amount"])
    amounts[total["currency"]] = _clamp(amounts.get(total["currency"], 0)
                                        + sign * total["amount"])
    ctx.put(key, {"orders": _clamp(stats["orders"] + sign),
                  "units": _clamp(stats["units"] + sign * order["quantity"]),
                  "amount": {c: amounts[c] for c in sorted(amounts)}})


def _clamp(value: int) -> int:
    return min(max(value, 0), STATS_MAX)


def record_settlement(ctx: _Scope, order: dict[str, Any]) -> None:
    """An order's escrow was released to the merchant: count it in the listing's and the
    merchant's volume unless it is self-dealing. Sets ``order["counted"]``; the caller
    writes the order. Counting twice is impossible (a counted order is left alone)."""
    if order.get("counted") is True:
        return
    counted = not self_dealing(ctx, order["buyer"], order["merchant"])
    order["counted"] = counted
    if counted:
        _count(ctx, f"stats/listing/{order['merchant']}/{_listing_id(order)}", order, 1)
        _count(ctx, f"stats/merchant/{order['merchant']}", order, 1)


def uncount_settlement(ctx: _Scope, order: dict[str, Any]) -> None:
    """A counted order was refunded after all (a return): take it out of the volume.
    Sets ``order["counted"]`` to False; the caller writes the order."""
    if order.get("counted") is not True:
        return
    order["counted"] = False
    _count(ctx, f"stats/listing/{order['merchant']}/{_listing_id(order)}", order, -1)
    _count(ctx, f"stats/merchant/{order['merchant']}", order, -1)


# --- certificates: the claims and their proofs ----------------------------------------------------

def _certify(ctx: _Scope, gtin: str, types: list[str],
             found: dict[tuple[str, str], str | None] | None = None
             ) -> tuple[dict[str, str], int | None, str | None]:
    """({type: root vouching now}, the earliest end of their validity, the first type
    with no certificate vouching now or None). ``found`` caches trace's answers within
    one block hook (every listing of a product asks the same)."""
    cache = {} if found is None else found
    roots: dict[str, str] = {}
    until: int | None = None
    for cert_type in types:
        if (gtin, cert_type) not in cache:
            cache[(gtin, cert_type)] = certificate_root(ctx.read, gtin, cert_type, ctx.time)
        root = cache[(gtin, cert_type)]
        if root is None:
            return roots, until, cert_type
        roots[cert_type] = root
        anchor = anchor_of(ctx.read, root)
        end = int(anchor["valid_until"]) if anchor is not None else ctx.time
        until = end if until is None else min(until, end)
    return roots, until, None


def _schedule_expiry(ctx: _Scope, listing: dict[str, Any]) -> None:
    until = listing["certified_until"]
    if until is not None:
        deadlines.schedule(ctx, until, f"{EXPIRY_KIND}:{listing['merchant']}/{listing['id']}",
                           {"merchant": listing["merchant"], "listing": listing["id"],
                            "until": until})


def _withdraw(ctx: _Scope, listing: dict[str, Any], reason: str,
              cert_type: str | None) -> None:
    listing.update(status="withdrawn", withdrawn_at=ctx.time, withdraw_reason=reason,
                   updated=ctx.time)
    _put(ctx, listing)
    ref = f"{listing['merchant']}/{listing['id']}"
    key = f"listings_of_gtin/{listing['gtin']}"
    refs = [r for r in ctx.get(key) or [] if r != ref]
    if refs:
        ctx.put(key, refs)
    else:
        ctx.delete(key)
    ctx.emit("trade.listing.withdrawn", {"merchant": listing["merchant"],
                                         "listing": listing["id"], "gtin": listing["gtin"],
                                         "reason": reason, "cert_type": cert_type})


def _recheck(ctx: _Scope, listing: dict[str, Any], reason: str,
             found: dict[tuple[str, str], str | None] | None = None) -> None:
    """Withdraw an active listing whose claims no longer hold, or re-point them to the
    certificates that vouch now."""
    roots, until, missing = _certify(ctx, listing["gtin"], listing["certificates"], found)
    if missing is not None:
        _withdraw(ctx, listing, reason, missing)
        return
    if roots != listing["certified_by"] or until != listing["certified_until"]:
        listing.update(certified_by=roots, certified_until=until)
        _put(ctx, listing)
        _schedule_expiry(ctx, listing)


def withdraw_revoked(ctx: BlockContext) -> None:
    """ON_BLOCK: the listings of every product a certificate was revoked for in this block
    are checked again (bounded: LISTINGS_PER_GTIN_MAX per product)."""
    seen: set[tuple[str, str]] = set()
    found: dict[tuple[str, str], str | None] = {}
    for event in ctx.events_so_far:
        if event.type != REVOKED_EVENT:
            continue
        anchor = anchor_of(ctx.read, str(event.attributes.get("merkle_root")))
        if anchor is None or anchor["subject"]["kind"] != "product":
            continue
        gtin, cert_type = str(anchor["subject"]["id"]), str(anchor["type"])
        if (gtin, cert_type) in seen:
            continue
        seen.add((gtin, cert_type))
        for ref in list(ctx.get(f"listings_of_gtin/{gtin}") or []):
            merchant, _, listing_id = ref.partition("/")
            listing = listing_of(ctx, merchant, listing_id)
            if listing is not None and listing["status"] == "active" \
                    and cert_type in listing["certificates"]:
                _recheck(ctx, listing, "certificate_revoked", found)


def certificate_expiry(ctx: BlockContext, item_id: str, data: Any) -> None:
    """Deadline ``certexpiry``: the earliest certificate of a listing ended (a stale item,
    from before the listing was re-pointed or republished, is ignored)."""
    listing = listing_of(ctx, str(data["merchant"]), str(data["listing"]))
    if listing is None or listing["status"] != "active" \
            or listing["certified_until"] != data["until"]:
        return
    _recheck(ctx, listing, "certificate_expired")


# --- parsing -------------------------------------------------------------------------------------

def _ships_to(ctx: TxContext) -> list[str]:
    raw = as_list(ctx, ctx.payload.get("ships_to"), "ships_to", SHIPS_TO_MAX)
    countries = [text_id(ctx, c, "ships_to[]", COUNTRY_RE) for c in raw]
    if not countries or len(set(countries)) != len(countries):
        ctx.fail("bad_payload", "ships_to names at least one country, each once")
    outside = sorted(set(countries) - EU_COUNTRIES)
    if outside:
        ctx.fail("destination_not_served", f"listings ship to EU member states only, not "
                                           f"{outside}")
    return sorted(countries)


def _shipping(ctx: TxContext, currency: str) -> list[dict[str, Any]]:
    raw = as_list(ctx, ctx.payload.get("shipping"), "shipping", SHIPPING_OPTIONS_MAX)
    options: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"method", "price", "days"}:
            ctx.fail("bad_payload", "a shipping option is {method, price, days}")
        method = item["method"]
        if not isinstance(method, str) or method not in SHIPPING_METHODS:
            ctx.fail("bad_payload", f"shipping method is one of {sorted(SHIPPING_METHODS)}")
        if any(o["method"] == method for o in options):
            ctx.fail("bad_payload", f"shipping method {method} is offered twice")
        price = money(ctx, item["price"], "shipping.price", currency=currency)
        days = integer(ctx, item["days"], "shipping.days", 1, SHIPPING_DAYS_MAX)
        options.append({"method": method, "price": price.to_wire(), "days": days})
    if not options:
        ctx.fail("bad_payload", "a listing offers at least one shipping option")
    return sorted(options, key=lambda o: str(o["method"]))


def _certificate_types(ctx: TxContext) -> list[str]:
    raw = as_list(ctx, ctx.payload.get("certificates"), "certificates",
                  CERTIFICATES_PER_LISTING_MAX)
    if not all(isinstance(t, str) and t in CERT_TYPES for t in raw) \
            or len(set(raw)) != len(raw):
        ctx.fail("bad_payload", f"certificates are distinct types of {sorted(CERT_TYPES)}")
    return sorted(raw)


def _gtin(ctx: TxContext) -> str:
    gtin = text_id(ctx, ctx.payload.get("gtin"), "gtin", GTIN_RE)
    if product_of(ctx.read, gtin) is None:
        ctx.fail("product_not_found", f"product {gtin} is not registered in trace")
    return gtin


def _own_listing(ctx: TxContext) -> dict[str, Any]:
    listing_id = text_id(ctx, ctx.payload.get("listing"), "listing")
    listing = listing_of(ctx, ctx.sender_org, listing_id)
    if listing is None:
        ctx.fail("listing_not_found", f"{ctx.sender_org} has no listing {listing_id}")
    return listing


# --- actions -------------------------------------------------------------------------------------

def _terms(ctx: TxContext) -> dict[str, Any]:
    """Everything a publication states, parsed and checked (no state but trace's)."""
    price = money(ctx, ctx.payload.get("price"), "price", positive=True)
    ships_to = _ships_to(ctx)
    return_days = integer(ctx, ctx.payload.get("return_days"), "return_days", 0,
                          RETURN_DAYS_MAX)
    if EU_COUNTRIES & set(ships_to) and return_days < WITHDRAWAL_DAYS:
        ctx.fail("return_days_too_short", f"EU consumers may withdraw within "
                                          f"{WITHDRAWAL_DAYS} days of delivery")
    penalty = ctx.payload.get("late_shipment_penalty")
    if penalty is not None:
        penalty = money(ctx, penalty, "late_shipment_penalty", positive=True,
                        currency=price.currency).to_wire()
    return {"gtin": _gtin(ctx), "price": price.to_wire(),
            "stock": integer(ctx, ctx.payload.get("stock"), "stock", 0, STOCK_MAX),
            "ships_to": ships_to, "shipping": _shipping(ctx, price.currency),
            "dispatch_days": integer(ctx, ctx.payload.get("dispatch_days"),
                                     "dispatch_days", 1, DISPATCH_DAYS_MAX),
            "return_days": return_days, "certificates": _certificate_types(ctx),
            "late_shipment_penalty": penalty}


def _claim_slot(ctx: TxContext) -> None:
    """A new listing id: within the merchant's limit."""
    count_key = f"listing_count/{ctx.sender_org}"
    count = ctx.get(count_key) or 0
    if count >= LISTINGS_PER_MERCHANT_MAX:
        ctx.fail("too_many_listings", f"a merchant has at most {LISTINGS_PER_MERCHANT_MAX} "
                                      "listings (withdrawn ones can be published again)")
    ctx.put(count_key, count + 1)


def publish_listing(ctx: TxContext) -> None:
    """Publish a new listing, or publish a withdrawn one again under new terms."""
    require_verified(ctx, ctx.sender_org)
    listing_id = text_id(ctx, ctx.payload.get("listing"), "listing")
    old = listing_of(ctx, ctx.sender_org, listing_id)
    if old is not None and old["status"] == "active":
        ctx.fail("listing_exists", f"listing {listing_id} is active (update or withdraw it)")
    terms = _terms(ctx)
    roots, until, missing = _certify(ctx, terms["gtin"], terms["certificates"])
    if missing is not None:
        ctx.fail("certificate_required", f"no {missing} certificate of product "
                 f"{terms['gtin']} vouches now (missing, expired or revoked)")
    index_key = f"listings_of_gtin/{terms['gtin']}"
    refs = list(ctx.get(index_key) or [])
    if len(refs) >= LISTINGS_PER_GTIN_MAX:
        ctx.fail("too_many_listings", f"product {terms['gtin']} has "
                                      f"{LISTINGS_PER_GTIN_MAX} active listings")
    if old is None:
        _claim_slot(ctx)
    listing = {"merchant": ctx.sender_org, "id": listing_id, **terms,
               "certified_by": roots, "certified_until": until, "status": "active",
               "published": ctx.time, "updated": ctx.time, "withdrawn_at": None,
               "withdraw_reason": None}
    _put(ctx, listing)
    ctx.put(index_key, sorted([*refs, f"{ctx.sender_org}/{listing_id}"]))
    _schedule_expiry(ctx, listing)
    ctx.emit("trade.listing.published", {
        "merchant": ctx.sender_org, "listing": listing_id, "gtin": terms["gtin"],
        "price": terms["price"], "stock": terms["stock"], "ships_to": terms["ships_to"],
        "certificates": terms["certificates"]})


def update_listing(ctx: TxContext) -> None:
    """A new price (same currency: the shipping prices are in it) or stock."""
    require_verified(ctx, ctx.sender_org)
    listing = _own_listing(ctx)
    if listing["status"] != "active":
        ctx.fail("listing_not_active", f"listing {listing['id']} is {listing['status']}")
    if "price" not in ctx.payload and "stock" not in ctx.payload:
        ctx.fail("bad_payload", "an update names a price, a stock or both")
    if "price" in ctx.payload:
        price: Money = money(ctx, ctx.payload["price"], "price", positive=True,
                             currency=listing["price"]["currency"])
        listing["price"] = price.to_wire()
    if "stock" in ctx.payload:
        listing["stock"] = integer(ctx, ctx.payload["stock"], "stock", 0, STOCK_MAX)
    listing["updated"] = ctx.time
    _put(ctx, listing)
    ctx.emit("trade.listing.updated", {"merchant": ctx.sender_org, "listing": listing["id"],
                                       "price": listing["price"], "stock": listing["stock"]})


def withdraw_listing(ctx: TxContext) -> None:
    """The merchant takes a listing off sale (a suspended merchant too); orders already
    placed go on."""
    listing = _own_listing(ctx)
    if listing["status"] != "active":
        ctx.fail("listing_not_active", f"listing {listing['id']} is {listing['status']}")
    _withdraw(ctx, listing, "withdrawn_by_merchant", None)


_PUBLISH_FIELDS: Final = frozenset({"listing", "gtin", "price", "stock", "ships_to",
                                    "shipping", "dispatch_days", "return_days",
                                    "certificates"})

#: action -> (handler, required payload fields, optional payload fields)
ACTIONS: dict[str, ActionSpec] = {
    "publish_listing": (publish_listing, _PUBLISH_FIELDS,
                        frozenset({"late_shipment_penalty"})),
    "update_listing": (update_listing, frozenset({"listing"}), frozenset({"price", "stock"})),
    "withdraw_listing": (withdraw_listing, frozenset({"listing"}), frozenset()),
}
DEADLINES: dict[str, DeadlineHandler] = {EXPIRY_KIND: certificate_expiry}
ON_BLOCK: tuple[BlockHandler, ...] = (withdraw_revoked,)
