"""Reviews: only the buyer of a delivered order, once per order, naming the order; a
self-dealing order's review is not counted — each rule with its negative."""

from __future__ import annotations

from typing import Any

import pytest

from services.ledger.core.errors import InvalidTransaction
from tests.trade.conftest import World, digest, tag
from tests.trade.market_world import MERCHANT, hexdigest, publish_listing, put_state


def an_order(world: World, buyer: str = "anna", status: str = "delivered",
             listing: str = "tea-1") -> str:
    """An order of ``buyer`` in ``status``, as orders.py and logistics leave it (written
    directly: this module is about what happens after)."""
    order_id = hexdigest(f"order/{buyer}/{status}/{listing}/{world.chain.height}")
    total = {"amount": 5_500, "currency": "EUR"}
    put_state(world, {f"trade/order/{order_id}": {
        "id": order_id, "buyer": buyer, "merchant": MERCHANT, "listing": listing,
        "quantity": 2, "total": total, "escrow": {"amount": 0, "currency": "EUR"},
        "status": status, "created": world.chain.time,
        "delivered_at": world.chain.time if status in ("delivered", "settled") else None,
        "counted": False}})
    return order_id


def review(order: str, rating: int = 5, **extra: Any) -> dict[str, Any]:
    return {"order": order, "rating": rating, **extra}


def test_the_buyer_of_a_delivered_order_reviews_it_once(world: World) -> None:
    publish_listing(world)
    order = an_order(world)
    result = world.ok("anna", "review", review(order, 4, comment_digest=digest("great")))
    assert world.events(result, "trade.review.posted") == [{
        "order": order, "buyer": "anna", "merchant": MERCHANT, "listing": "tea-1",
        "rating": 4, "comment_digest": digest("great"), "counted": True}]
    stored = world.get(f"review/{order}")
    assert stored["rating"] == 4 and stored["order"] == order and stored["counted"]
    assert world.code("anna", "review", review(order, 1)) == "review_exists"
    world.ok("ben", "review", review(an_order(world, "ben", "settled"), 2))
    assert world.get(f"rating/listing/{MERCHANT}/tea-1") == {"count": 2, "sum": 6}
    assert world.get(f"rating/merchant/{MERCHANT}") == {"count": 2, "sum": 6}


def test_only_the_orders_buyer_reviews(world: World) -> None:
    publish_listing(world)
    order = an_order(world)
    assert world.code("ben", "review", review(order)) == "forbidden"
    assert world.code(MERCHANT, "review", review(order)) == "forbidden"
    assert world.code("anna", "review", review(hexdigest("no order"))) == "not_found"


@pytest.mark.parametrize("status", ["paid", "shipped", "disputed", "returning", "refunded",
                                    "split"])
def test_no_review_without_a_delivered_order(world: World, status: str) -> None:
    publish_listing(world)
    assert world.code("anna", "review", review(an_order(world, status=status))
                      ) == "order_not_delivered"


def test_ratings_and_digests_are_checked(world: World) -> None:
    publish_listing(world)
    order = an_order(world)
    for payload in (review(order, 0), review(order, 6), review(order, True),
                    review(order, "5"),  # type: ignore[arg-type]
                    review(order, comment_digest="Great tea!"),
                    review(order, comment_digest=digest("x").upper()),
                    review("ORDER")):
        assert world.code("anna", "review", payload) == "bad_payload", payload
    assert world.get(f"review/{order}") is None


def test_a_self_dealing_orders_review_is_kept_but_not_counted(world: World) -> None:
    publish_listing(world)
    world.fund(MERCHANT, 100)
    world.ok("paybank", "issue", {"to": "ben", "money": {"amount": 1, "currency": "EUR"},
                                  "reference": "r-ben", "account_tag": tag(MERCHANT)})
    shared = world.ok("ben", "review", review(an_order(world, "ben"), 5))
    assert world.events(shared, "trade.review.posted")[0]["counted"] is False
    world.ok(MERCHANT, "review", review(an_order(world, MERCHANT), 5))
    assert world.get(f"rating/listing/{MERCHANT}/tea-1") is None
    world.ok("anna", "review", review(an_order(world), 3))
    assert world.get(f"rating/listing/{MERCHANT}/tea-1") == {"count": 1, "sum": 3}


def test_a_review_carries_no_free_text(world: World) -> None:
    tx = world.chain.tx(world.keys["anna"], "trade.review", {
        **review(hexdigest("o")), "comment": "Great tea, fast delivery"})
    with pytest.raises(InvalidTransaction) as refused:
        world.chain.check_static(tx)
    assert refused.value.code == "bad_payload"
