"""Returns: the EU consumer's 14-day right of withdrawal (or the listing's longer return
days), authorised at once; the parcel's arrival back refunds the buyer from the escrow,
or from the merchant's balance, deposit and then debt if it was released already; the
stock comes back; a return never sent back lapses. Each rule with its negative, the
supply invariant after every block."""

from __future__ import annotations

from typing import Any

import pytest

from services.trade.vocabulary import CONFIRM_MS, DAY_MS, RETURN_LAPSE_MS, WITHDRAWAL_MS
from tests.trade.conftest import World
from tests.trade.market_world import publish_listing
from tests.trade.order_world import (
    FEE_BPS,
    advance,
    configure_fee,
    deliver,
    eur,
    install_order_path,
    place,
    ship,
    total_of,
)


@pytest.fixture
def listing(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    install_order_path(monkeypatch)
    configure_fee(world)
    return publish_listing(world)  # 25.00 EUR, rail 5.00, return_days 14


def delivered(world: World, listing: dict[str, Any], buyer: str = "anna",
              quantity: int = 1) -> str:
    order_id = place(world, buyer, listing, quantity=quantity)
    ship(world, order_id)
    deliver(world, order_id)
    return order_id


def request(world: World, order_id: str, reason: str = "withdrawal", *,
            time: int | None = None) -> dict[str, Any]:
    result = world.ok("anna", "request_return", {"order": order_id, "reason": reason},
                      time=time)
    (authorised,) = world.events(result, "trade.return.authorised")
    return authorised


def order(world: World, order_id: str) -> dict[str, Any]:
    record: dict[str, Any] = world.get(f"order/{order_id}")
    return record


def stock(world: World) -> int:
    return int(world.get("listing/shenzhen-gadgets/tea-1")["stock"])


def test_a_return_before_release_is_refunded_from_the_escrow_and_restocked(
        world: World, listing: dict[str, Any]) -> None:
    order_id = delivered(world, listing, quantity=2)
    delivered_at = world.chain.time
    total = total_of(listing, 2)
    result = world.ok("anna", "request_return", {"order": order_id,
                                                 "reason": "defective"})
    rma = world.events(result, "trade.return.requested")[0]["rma"]
    assert world.events(result, "trade.return.requested") == [{
        "order": order_id, "rma": rma, "buyer": "anna", "merchant": "shenzhen-gadgets",
        "reason": "defective"}]
    assert world.events(result, "trade.return.authorised") == [{
        "order": order_id, "rma": rma, "merchant": "shenzhen-gadgets",
        "window_ends": delivered_at + WITHDRAWAL_MS,
        "lapses_at": world.chain.time + RETURN_LAPSE_MS}]
    assert order(world, order_id)["status"] == "returning"
    assert order(world, order_id)["return"] == rma
    assert world.get(f"return/{order_id}")["status"] == "authorised"
    advance(world, delivered_at + 2 * CONFIRM_MS)  # the window does not release it
    assert order(world, order_id)["escrow"] == eur(total)
    assert world.code("anna", "confirm_receipt", {"order": order_id}) == "order_frozen"
    assert stock(world) == 98
    result = world.ok("operator", "t_returned", {"order": order_id})
    assert world.events(result, "trade.escrow.refunded") == [{
        "order": order_id, "buyer": "anna", "money": eur(total), "reason": "returned"}]
    assert world.events(result, "trade.return.refunded") == [{
        "order": order_id, "rma": rma, "buyer": "anna", "merchant": "shenzhen-gadgets",
        "money": eur(total), "escrow": total, "balance": 0, "deposit": 0, "debt": 0}]
    assert world.balance("anna") == total and world.balance("shenzhen-gadgets") == 0
    assert stock(world) == 100
    record = order(world, order_id)
    assert record["status"] == "refunded" and record["refunded"] == eur(total)
    assert world.get(f"return/{order_id}")["status"] == "refunded"
    assert world.code("operator", "t_returned", {"order": order_id}) == \
        "order_not_returning"
    assert world.code("anna", "request_return", {"order": order_id,
                                                 "reason": "withdrawal"}) == "return_exists"


def test_a_return_after_release_is_refunded_by_the_merchant_and_uncounted(
        world: World, listing: dict[str, Any]) -> None:
    order_id = delivered(world, listing)
    total = total_of(listing)
    fee = total * FEE_BPS // 10_000
    advance(world, world.chain.time + CONFIRM_MS)  # released by the window
    assert order(world, order_id)["status"] == "settled"
    assert world.get("stats/merchant/shenzhen-gadgets")["orders"] == 1
    world.fund("shenzhen-gadgets", 1_000)
    request(world, order_id)  # day 7 of 14: the right outlives the release
    assert order(world, order_id)["status"] == "returning"
    result = world.ok("operator", "t_returned", {"order": order_id})
    assert world.events(result, "trade.return.refunded")[0] | {"rma": None} == {
        "order": order_id, "rma": None, "buyer": "anna", "merchant": "shenzhen-gadgets",
        "money": eur(total), "escrow": 0, "balance": total, "deposit": 0, "debt": 0}
    assert world.balance("anna") == total
    assert world.balance("shenzhen-gadgets") == total - fee + 1_000 - total
    assert world.balance("operator") == fee  # the platform keeps its fee
    assert world.get("stats/merchant/shenzhen-gadgets")["orders"] == 0
    record = order(world, order_id)
    assert record["status"] == "refunded" and record["counted"] is False


def test_what_the_merchants_balance_lacks_comes_from_its_deposit_then_is_debt(
        world: World, listing: dict[str, Any]) -> None:
    order_id = delivered(world, listing)
    world.ok("anna", "confirm_receipt", {"order": order_id})
    earned = world.balance("shenzhen-gadgets")
    world.ok("shenzhen-gadgets", "deposit", {"money": eur(earned - 100)})
    request(world, order_id)
    result = world.ok("operator", "t_returned", {"order": order_id})
    (refunded,) = world.events(result, "trade.return.refunded")
    total = total_of(listing)
    assert (refunded["balance"], refunded["deposit"], refunded["debt"]) == \
        (100, earned - 100, total - earned)
    assert world.balance("anna") == earned
    assert world.get("debt/shenzhen-gadgets/EUR") == total - earned
    assert order(world, order_id)["refunded"] == eur(earned)


def test_the_withdrawal_window_is_14_days_after_delivery(
        world: World, listing: dict[str, Any]) -> None:
    late = delivered(world, listing)
    delivered_at = world.chain.time
    assert world.code("anna", "request_return", {"order": late, "reason": "withdrawal"},
                      time=delivered_at + WITHDRAWAL_MS + 1) == "return_window_closed"
    last_day = delivered(world, listing)
    request(world, last_day, time=world.chain.time + WITHDRAWAL_MS)


def test_a_longer_return_policy_extends_the_window(
        world: World, listing: dict[str, Any]) -> None:
    generous = publish_listing(world, "tea-2", return_days=30)
    order_id = delivered(world, generous)
    ends = request(world, order_id, time=world.chain.time + 20 * DAY_MS)["window_ends"]
    assert ends == order(world, order_id)["delivered_at"] + 30 * DAY_MS


def test_only_the_buyer_of_a_delivered_order_returns_it(
        world: World, listing: dict[str, Any]) -> None:
    paid = place(world, "anna", listing)
    payload = {"order": paid, "reason": "withdrawal"}
    assert world.code("anna", "request_return", payload) == "order_not_delivered"
    ship(world, paid)
    assert world.code("anna", "request_return", payload) == "order_not_delivered"
    deliver(world, paid)
    assert world.code("ben", "request_return", payload) == "forbidden"
    assert world.code("shenzhen-gadgets", "request_return", payload) == "forbidden"
    assert world.code("anna", "request_return", {**payload, "reason": "bored"}) == \
        "bad_payload"
    assert world.code("anna", "request_return", {**payload, "order": "ab" * 32}) == \
        "not_found"
    cancelled = place(world, "anna", listing)
    world.ok("anna", "cancel_order", {"order": cancelled})
    assert world.code("anna", "request_return", {**payload, "order": cancelled}) == \
        "order_closed"
    disputed = delivered(world, listing)
    world.ok("operator", "t_freeze", {"order": disputed, "dispute": "cd" * 32})
    assert world.code("anna", "request_return", {**payload, "order": disputed}) == \
        "order_frozen"
    world.ok("operator", "t_split", {"order": disputed, "refund_bps": 5_000})
    assert world.code("anna", "request_return", {**payload, "order": disputed}) == \
        "order_closed"
    assert world.code("operator", "t_returned", {"order": paid}) == "order_not_returning"


def test_a_return_never_sent_back_lapses_and_the_order_settles(
        world: World, listing: dict[str, Any]) -> None:
    order_id = delivered(world, listing)
    total = total_of(listing)
    lapses_at = request(world, order_id)["lapses_at"]
    advance(world, lapses_at - 1)
    assert order(world, order_id)["status"] == "returning"
    events = advance(world, lapses_at)
    assert [e.type for e in events] == ["trade.escrow.released", "trade.return.lapsed"]
    assert order(world, order_id)["status"] == "settled"
    assert world.get(f"return/{order_id}")["status"] == "lapsed"
    fee = total * FEE_BPS // 10_000
    assert world.balance("shenzhen-gadgets") == total - fee
    # the parcel arrives after all: the buyer is refunded, by the merchant now (which
    # holds the total less the fee: the rest is its debt)
    world.ok("operator", "t_returned", {"order": order_id})
    assert world.balance("anna") == total - fee
    assert world.get("debt/shenzhen-gadgets/EUR") == fee
    assert order(world, order_id)["status"] == "refunded"
    assert world.get(f"return/{order_id}")["status"] == "refunded"


def test_a_lapsed_return_of_a_settled_order_leaves_it_settled(
        world: World, listing: dict[str, Any]) -> None:
    order_id = delivered(world, listing)
    world.ok("anna", "confirm_receipt", {"order": order_id})
    merchant = world.balance("shenzhen-gadgets")
    lapses_at = request(world, order_id)["lapses_at"]
    events = advance(world, lapses_at)
    assert [e.type for e in events] == ["trade.return.lapsed"]
    assert order(world, order_id)["status"] == "settled"
    assert world.balance("shenzhen-gadgets") == merchant
