"""Reviews: only the buyer of a delivered order rates it, once, and the review names
the order — the chain's proof that a sale and a delivery happened.

State (under ``trade/``)::

    review/<order>             {order, buyer, merchant, listing, rating (1..5),
                                comment_digest (SHA-256 of the text kept off chain, or
                                None), at, counted}
    rating/listing/<org>/<id>  {count, sum}: the counted ratings of a listing
    rating/merchant/<org>      {count, sum}: of all the merchant's listings

A review of a self-dealing order (buyer and merchant one organisation or sharing a
payment account: :func:`listings.self_dealing`) is kept but not counted in the ratings
(``counted`` false), as its sale is not counted in the volume.

``trade.review {order, rating, comment_digest?}``. Refusals: ``bad_payload``,
``not_found``, ``forbidden`` (not the order's buyer), ``order_not_delivered`` (the
order is neither delivered nor settled), ``review_exists``.

Event: ``trade.review.posted {order, buyer, merchant, listing, rating, comment_digest,
counted}``.

This module never does I/O.
"""

from __future__ import annotations

from typing import Any, Final

from services.ledger.core.contract import TxContext, _Scope
from services.trade.listings import self_dealing
from services.trade.orders import order_of
from services.trade.vocabulary import (
    HEX64_RE,
    ActionSpec,
    BlockHandler,
    DeadlineHandler,
    digest,
    integer,
    text_id,
)

__all__ = ["ACTIONS", "RATING_MAX", "RATING_MIN", "REVIEWABLE", "rating_of", "review_of"]

RATING_MIN: Final = 1
RATING_MAX: Final = 5
#: order statuses whose buyer may review: the goods arrived (and were not sent back)
REVIEWABLE: Final = frozenset({"delivered", "settled"})
_SUM_MAX: Final = 2**53 - 1


def review_of(ctx: _Scope, order: str) -> dict[str, Any] | None:
    value = ctx.get(f"review/{order}")
    return value if isinstance(value, dict) else None


def rating_of(ctx: _Scope, key: str) -> dict[str, int]:
    """``{count, sum}`` under ``rating/<key>`` (``listing/<org>/<id>`` or
    ``merchant/<org>``): the average is sum / count, computed by whoever shows it."""
    value = ctx.get(f"rating/{key}")
    return dict(value) if isinstance(value, dict) else {"count": 0, "sum": 0}


def _add_rating(ctx: _Scope, key: str, rating: int) -> None:
    stats = rating_of(ctx, key)
    ctx.put(f"rating/{key}", {"count": min(stats["count"] + 1, _SUM_MAX),
                              "sum": min(stats["sum"] + rating, _SUM_MAX)})


def review(ctx: TxContext) -> None:
    order_id = text_id(ctx, ctx.payload.get("order"), "order", HEX64_RE)
    rating = integer(ctx, ctx.payload.get("rating"), "rating", RATING_MIN, RATING_MAX)
    comment = ctx.payload.get("comment_digest")
    comment_digest = None if comment is None else digest(ctx, comment, "comment_digest")
    order = order_of(ctx, order_id)
    if order is None:
        ctx.fail("not_found", f"no order {order_id}")
    if order["buyer"] != ctx.sender_org:
        ctx.fail("forbidden", "only the order's buyer reviews it")
    if order["status"] not in REVIEWABLE:
        ctx.fail("order_not_delivered", f"order {order_id} is {order['status']}: only a "
                                        "delivered order is reviewed")
    if review_of(ctx, order_id) is not None:
        ctx.fail("review_exists", f"order {order_id} was reviewed")
    merchant, listing = str(order["merchant"]), str(order["listing"])
    counted = not self_dealing(ctx, order["buyer"], merchant)
    ctx.put(f"review/{order_id}", {
        "order": order_id, "buyer": order["buyer"], "merchant": merchant,
        "listing": listing, "rating": rating, "comment_digest": comment_digest,
        "at": ctx.time, "counted": counted})
    if counted:
        _add_rating(ctx, f"listing/{merchant}/{listing}", rating)
        _add_rating(ctx, f"merchant/{merchant}", rating)
    ctx.emit("trade.review.posted", {
        "order": order_id, "buyer": order["buyer"], "merchant": merchant,
        "listing": listing, "rating": rating, "comment_digest": comment_digest,
        "counted": counted})


#: action -> (handler, required payload fields, optional payload fields)
ACTIONS: dict[str, ActionSpec] = {
    "review": (review, frozenset({"order", "rating"}), frozenset({"comment_digest"})),
}
DEADLINES: dict[str, DeadlineHandler] = {}
ON_BLOCK: tuple[BlockHandler, ...] = ()
