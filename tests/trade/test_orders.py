"""Orders in escrow: placing pays into escrow and reserves stock; cancellation before
shipment refunds; release on the buyer's confirmation or the window's end on block
time, less the fee; the late-shipment penalty from the merchant's deposit; every
transition checked — each rule with its negative, the supply invariant after every
block."""

from __future__ import annotations

from typing import Any

import pytest

from services.trade import orders
from services.trade.vocabulary import CONFIRM_MS, DAY_MS
from tests.trade.conftest import World, tag
from tests.trade.market_world import add_org, publish_listing
from tests.trade.order_world import (
    FEE_BPS,
    address,
    advance,
    configure_fee,
    deliver,
    eur,
    install_order_path,
    order_payload,
    place,
    ship,
    total_of,
)

PENALTY = 300  # the listing's late-shipment penalty (minor units)


@pytest.fixture
def listing(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    install_order_path(monkeypatch)
    configure_fee(world)
    return publish_listing(world, late_shipment_penalty=PENALTY)


def order(world: World, order_id: str) -> dict[str, Any]:
    record: dict[str, Any] = world.get(f"order/{order_id}")
    return record


def stock(world: World, listing: dict[str, Any]) -> int:
    return int(world.get(f"listing/{listing['merchant']}/{listing['id']}")["stock"])


# --- placing -----------------------------------------------------------------------------------

def test_placing_pays_the_total_into_escrow_and_reserves_stock(
        world: World, listing: dict[str, Any]) -> None:
    world.fund("anna", 10_000)
    payload = order_payload(listing, address(world, "anna"), quantity=2, method="air")
    result = world.ok("anna", "place_order", payload)
    (placed,) = world.events(result, "trade.order.placed")
    order_id = placed["order"]
    total = 2 * 2_500 + 1_500
    assert placed == {"order": order_id, "buyer": "anna", "merchant": "shenzhen-gadgets",
                      "listing": "tea-1", "quantity": 2, "total": eur(total),
                      "shipping": "air", "ship_to": "DE"}
    assert world.events(result, "trade.order.paid") == [{
        "order": order_id, "buyer": "anna", "paid": eur(total), "escrow": eur(total),
        "quote_provider": None, "quote_nonce": None}]
    assert world.balance("anna") == 10_000 - total
    record = order(world, order_id)
    assert set(record) == {
        "id", "buyer", "merchant", "listing", "quantity", "unit_price", "shipping",
        "ship_to", "address", "total", "paid", "quote", "escrow", "status", "created",
        "shipment", "shipped_at", "delivered_at", "dispute", "return", "closed_at",
        "released", "refunded", "fee", "counted"}
    assert record["status"] == "paid" and record["escrow"] == eur(total)
    assert record["shipping"] == {"method": "air", "price": eur(1_500), "days": 7}
    assert record["unit_price"] == eur(2_500) and record["address"] == payload["address"]
    assert record["created"] == world.chain.time
    assert stock(world, listing) == 98
    assert world.get(f"order_terms/{order_id}") == {
        "dispatch_days": 2, "return_days": 14, "late_shipment_penalty": eur(PENALTY)}


def test_an_order_must_match_the_listing(world: World, listing: dict[str, Any]) -> None:
    world.fund("anna", 100_000)
    home = address(world, "anna")
    ok = order_payload(listing, home)

    def code(**change: Any) -> str:
        return world.code("anna", "place_order", {**ok, **change})

    assert code(total=eur(total_of(listing) + 1)) == "total_mismatch"
    assert code(total=eur(total_of(listing) - 1)) == "total_mismatch"
    assert code(total={"amount": total_of(listing), "currency": "CNY"}) == \
        "currency_mismatch"
    assert code(total={"amount": "3000", "currency": "EUR"}) == "bad_payload"
    assert code(quantity=0) == "bad_payload"
    assert code(quantity=True) == "bad_payload"
    assert code(quantity=101, total=eur(total_of(listing, 101))) == "out_of_stock"
    assert code(shipping="sea") == "shipping_unavailable"
    assert code(shipping="boat") == "bad_payload"
    assert code(ship_to="IT") == "destination_not_served"
    assert code(ship_to="de") == "bad_payload"
    assert code(listing={"merchant": "shenzhen-gadgets", "id": "nope"}) == \
        "listing_not_found"
    assert code(listing={"merchant": "shenzhen-gadgets"}) == "bad_payload"
    assert code(listing={"merchant": "anna", "id": "tea-1"}) == "merchant_not_verified"
    assert world.balance("anna") == 100_000 and stock(world, listing) == 100


def test_the_address_is_the_buyers_own_live_address_record(
        world: World, listing: dict[str, Any]) -> None:
    world.fund("anna", 100_000)
    ok = order_payload(listing, address(world, "anna"))
    assert world.code("anna", "place_order", {**ok, "address": address(world, "ben")}) \
        == "bad_address"  # ben's, not anna's
    assert world.code("anna", "place_order", {**ok, "address": "ab" * 32}) == "bad_address"
    assert world.code("anna", "place_order", {**ok, "address": "not hex"}) == "bad_payload"
    trader = world.get("merchant/shenzhen-gadgets")["records"]["name"]
    assert world.code("shenzhen-gadgets", "place_order", {**ok, "address": trader}) \
        == "bad_address"  # the merchant's own record, but of category name


def test_the_buyer_must_hold_the_total(world: World, listing: dict[str, Any]) -> None:
    world.fund("anna", total_of(listing) - 1)
    payload = order_payload(listing, address(world, "anna"))
    assert world.code("anna", "place_order", payload) == "insufficient_funds"
    world.fund("anna", 1)
    world.ok("anna", "place_order", payload)
    assert world.balance("anna") == 0


def test_a_withdrawn_listing_or_a_suspended_merchant_sells_nothing(
        world: World, listing: dict[str, Any]) -> None:
    world.fund("anna", 100_000)
    payload = order_payload(listing, address(world, "anna"))
    world.ok("shenzhen-gadgets", "withdraw_listing", {"listing": "tea-1"})
    assert world.code("anna", "place_order", payload) == "listing_not_active"
    publish_listing(world, "tea-2")
    world.ok("operator", "suspend_merchant", {"org": "shenzhen-gadgets",
                                              "reason": "illegal_products"})
    second = order_payload(world.get("listing/shenzhen-gadgets/tea-2"),
                           address(world, "anna"))
    assert world.code("anna", "place_order", second) == "merchant_not_verified"


# --- cancellation ------------------------------------------------------------------------------

def test_buyer_or_merchant_cancels_before_shipment_for_a_full_refund(
        world: World, listing: dict[str, Any]) -> None:
    first = place(world, "anna", listing, quantity=3)
    assert stock(world, listing) == 97
    assert world.code("ben", "cancel_order", {"order": first}) == "forbidden"
    result = world.ok("anna", "cancel_order", {"order": first})
    assert world.events(result, "trade.order.cancelled") == [{
        "order": first, "by": "anna", "buyer": "anna", "merchant": "shenzhen-gadgets"}]
    assert world.events(result, "trade.escrow.refunded") == [{
        "order": first, "buyer": "anna", "money": eur(total_of(listing, 3)),
        "reason": "cancelled"}]
    assert world.balance("anna") == total_of(listing, 3)
    assert stock(world, listing) == 100
    record = order(world, first)
    assert record["status"] == "refunded" and record["escrow"] == eur(0)
    assert record["refunded"] == eur(total_of(listing, 3))
    assert record["closed_at"] == world.chain.time
    assert world.code("anna", "cancel_order", {"order": first}) == "order_closed"
    assert world.code("operator", "t_ship", {"order": first, "shipment": "s"}) == \
        "order_closed"
    second = place(world, "ben", listing)
    world.ok("shenzhen-gadgets", "cancel_order", {"order": second})
    assert world.balance("ben") == total_of(listing)


def test_no_cancellation_after_shipment(world: World, listing: dict[str, Any]) -> None:
    order_id = place(world, "anna", listing)
    ship(world, order_id)
    for org in ("anna", "shenzhen-gadgets"):
        assert world.code(org, "cancel_order", {"order": order_id}) == \
            "order_not_cancellable"
    assert world.code("anna", "cancel_order", {"order": "ab" * 32}) == "not_found"
    assert world.code("anna", "cancel_order", {"order": "x"}) == "bad_payload"


# --- release -----------------------------------------------------------------------------------

def test_the_buyers_confirmation_releases_less_the_fee_and_counts_the_sale(
        world: World, listing: dict[str, Any]) -> None:
    order_id = place(world, "anna", listing, quantity=4)
    total = total_of(listing, 4)
    assert world.code("anna", "confirm_receipt", {"order": order_id}) == \
        "order_not_delivered"
    ship(world, order_id, "ab" * 32)
    assert order(world, order_id)["shipment"] == "ab" * 32
    assert world.code("anna", "confirm_receipt", {"order": order_id}) == \
        "order_not_delivered"
    deliver(world, order_id)
    assert world.code("shenzhen-gadgets", "confirm_receipt", {"order": order_id}) == \
        "forbidden"
    result = world.ok("anna", "confirm_receipt", {"order": order_id})
    fee = total * FEE_BPS // 10_000
    assert world.events(result, "trade.escrow.released") == [{
        "order": order_id, "merchant": "shenzhen-gadgets", "money": eur(total - fee),
        "fee": eur(fee), "fee_org": "operator"}]
    assert world.events(result, "trade.order.confirmed") == [{
        "order": order_id, "buyer": "anna", "by": "buyer"}]
    assert world.balance("shenzhen-gadgets") == total - fee
    assert world.balance("operator") == fee
    record = order(world, order_id)
    assert record["status"] == "settled" and record["counted"] is True
    assert record["released"] == eur(total - fee) and record["fee"] == eur(fee)
    assert record["escrow"] == eur(0)
    assert world.get("stats/listing/shenzhen-gadgets/tea-1") == {
        "orders": 1, "units": 4, "amount": {"EUR": total}}


def test_release_happens_once_and_never_after_a_refund(
        world: World, listing: dict[str, Any]) -> None:
    order_id = place(world, "anna", listing)
    ship(world, order_id)
    deliver(world, order_id)
    world.ok("anna", "confirm_receipt", {"order": order_id})
    merchant = world.balance("shenzhen-gadgets")
    assert world.code("anna", "confirm_receipt", {"order": order_id}) == "order_closed"
    assert world.code("operator", "t_release", {"order": order_id}) == "order_closed"
    assert world.code("operator", "t_refund", {"order": order_id, "amount": 1}) == \
        "order_closed"  # no refund after release (a return goes through returns.py)
    assert world.code("anna", "cancel_order", {"order": order_id}) == "order_closed"
    assert world.code("operator", "t_split", {"order": order_id, "refund_bps": 5_000}) \
        == "order_closed"
    refunded = place(world, "ben", listing)
    world.ok("ben", "cancel_order", {"order": refunded})
    assert world.code("operator", "t_release", {"order": refunded}) == "order_closed"
    assert world.balance("shenzhen-gadgets") == merchant


def test_the_window_releases_on_block_time_when_the_buyer_stays_silent(
        world: World, listing: dict[str, Any]) -> None:
    order_id = place(world, "anna", listing)
    ship(world, order_id)
    result = world.ok("operator", "t_deliver", {"order": order_id})
    delivered_at = world.chain.time
    assert world.events(result, "trade.order.delivered") == [{
        "order": order_id, "buyer": "anna", "shipment": order(world, order_id)["shipment"],
        "confirm_by": delivered_at + CONFIRM_MS}]
    advance(world, delivered_at + CONFIRM_MS - 1)
    assert order(world, order_id)["status"] == "delivered"
    events = advance(world, delivered_at + CONFIRM_MS)
    assert [e.type for e in events] == ["trade.escrow.released", "trade.order.confirmed"]
    assert dict(events[1].attributes) == {"order": order_id, "buyer": "anna",
                                          "by": "window"}
    assert order(world, order_id)["status"] == "settled"
    assert order(world, order_id)["closed_at"] == delivered_at + CONFIRM_MS


def test_a_frozen_order_is_not_released_by_the_window(
        world: World, listing: dict[str, Any]) -> None:
    order_id = place(world, "anna", listing)
    ship(world, order_id)
    deliver(world, order_id)
    world.ok("operator", "t_freeze", {"order": order_id, "dispute": "cd" * 32})
    assert order(world, order_id)["dispute"] == "cd" * 32
    assert world.code("operator", "t_freeze", {"order": order_id, "dispute": "x"}) == \
        "order_not_disputable"
    advance(world, world.chain.time + 2 * CONFIRM_MS)
    assert order(world, order_id)["status"] == "disputed"
    assert world.code("anna", "confirm_receipt", {"order": order_id}) == "order_frozen"
    assert world.code("anna", "cancel_order", {"order": order_id}) == \
        "order_not_cancellable"
    world.ok("operator", "t_release", {"order": order_id})  # the dispute decided
    assert order(world, order_id)["status"] == "settled"


def test_an_order_disputed_in_transit_records_its_delivery_and_stays_frozen(
        world: World, listing: dict[str, Any]) -> None:
    order_id = place(world, "anna", listing)
    ship(world, order_id)
    world.ok("operator", "t_freeze", {"order": order_id, "dispute": "cd" * 32})
    result = world.ok("operator", "t_deliver", {"order": order_id})
    assert world.events(result, "trade.order.delivered")[0]["confirm_by"] is None
    record = order(world, order_id)
    assert record["status"] == "disputed" and record["delivered_at"] == world.chain.time
    assert world.code("operator", "t_deliver", {"order": order_id}) == "order_not_shipped"
    advance(world, world.chain.time + 2 * CONFIRM_MS)
    assert order(world, order_id)["status"] == "disputed"


# --- the functions for disputes and returns ------------------------------------------------------

def test_a_split_divides_the_escrow_and_the_fee_falls_on_the_merchants_part(
        world: World, listing: dict[str, Any]) -> None:
    order_id = place(world, "anna", listing)  # 3000
    ship(world, order_id)
    world.ok("operator", "t_freeze", {"order": order_id, "dispute": "cd" * 32})
    assert world.code("operator", "t_split", {"order": order_id, "refund_bps": 10_001}) \
        == "bad_payload"
    result = world.ok("operator", "t_split", {"order": order_id, "refund_bps": 3_333})
    to_buyer = 3_000 * 3_333 // 10_000  # 999, rounded down
    fee = (3_000 - to_buyer) * FEE_BPS // 10_000
    assert world.events(result, "trade.escrow.split") == [{
        "order": order_id, "buyer": "anna", "merchant": "shenzhen-gadgets",
        "refund_bps": 3_333, "refunded": eur(to_buyer),
        "money": eur(3_000 - to_buyer - fee), "fee": eur(fee), "fee_org": "operator"}]
    assert world.balance("anna") == to_buyer
    assert world.balance("shenzhen-gadgets") == 3_000 - to_buyer - fee
    record = order(world, order_id)
    assert record["status"] == "split" and record["counted"] is False
    assert world.code("operator", "t_split", {"order": order_id, "refund_bps": 0}) == \
        "order_closed"


def test_a_refund_returns_the_amount_and_the_rest_goes_to_the_merchant(
        world: World, listing: dict[str, Any]) -> None:
    order_id = place(world, "anna", listing)  # 3000
    ship(world, order_id)
    assert world.code("operator", "t_refund", {"order": order_id, "amount": 3_001}) == \
        "refund_too_large"
    assert world.code("operator", "t_refund", {"order": order_id, "amount": 0}) == \
        "refund_too_large"
    result = world.ok("operator", "t_refund", {"order": order_id, "amount": 1_000})
    assert world.balance("anna") == 1_000
    fee = 2_000 * FEE_BPS // 10_000
    assert world.events(result, "trade.escrow.refunded") == [{
        "order": order_id, "buyer": "anna", "money": eur(1_000), "reason": "refund"}]
    assert world.events(result, "trade.escrow.released") == [{
        "order": order_id, "merchant": "shenzhen-gadgets", "money": eur(2_000 - fee),
        "fee": eur(fee), "fee_org": "operator"}]
    assert world.balance("shenzhen-gadgets") == 2_000 - fee
    record = order(world, order_id)
    assert record["status"] == "refunded" and record["refunded"] == eur(1_000)
    assert record["released"] == eur(2_000 - fee) and record["escrow"] == eur(0)


def test_every_transition_is_checked(world: World, listing: dict[str, Any]) -> None:
    order_id = place(world, "anna", listing)
    assert world.code("operator", "t_deliver", {"order": order_id}) == "order_not_shipped"
    assert world.code("operator", "t_release", {"order": order_id}) == \
        "order_not_delivered"
    assert world.code("operator", "t_freeze", {"order": order_id, "dispute": "d"}) == \
        "order_not_disputable"
    assert world.code("operator", "t_split", {"order": order_id, "refund_bps": 1}) == \
        "order_not_disputable"
    ship(world, order_id)
    assert world.code("operator", "t_ship", {"order": order_id, "shipment": "s"}) == \
        "order_not_paid"
    assert world.code("operator", "t_release", {"order": order_id}) == \
        "order_not_delivered"
    deliver(world, order_id)
    assert world.code("operator", "t_deliver", {"order": order_id}) == "order_not_shipped"
    assert world.code("operator", "t_ship", {"order": "ab" * 32, "shipment": "s"}) == \
        "not_found"


def test_delivered_buyers_join_the_juror_pool_most_recent_kept(
        world: World, listing: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orders, "JURORS_MAX", 2)
    times = {}
    for buyer in ("anna", "ben", "anna", "chloe"):
        order_id = place(world, buyer, listing)
        ship(world, order_id)
        deliver(world, order_id)
        times[buyer] = world.chain.time
    assert world.get("jurors") == [["anna", times["anna"]], ["chloe", times["chloe"]]]


# --- late shipment -----------------------------------------------------------------------------

def test_a_late_shipment_pays_the_penalty_from_the_deposit_once(
        world: World, listing: dict[str, Any]) -> None:
    world.fund("shenzhen-gadgets", 1_000)
    world.ok("shenzhen-gadgets", "deposit", {"money": eur(1_000)})
    order_id = place(world, "anna", listing)
    due = world.chain.time + 2 * DAY_MS  # the listing's dispatch_days
    assert not [e for e in advance(world, due - 1) if e.type == "trade.penalty.applied"]
    events = [e for e in advance(world, due) if e.type == "trade.penalty.applied"]
    assert [dict(e.attributes) for e in events] == [{
        "reason": "late_shipment", "order": order_id, "payer": "shenzhen-gadgets",
        "payee": "anna", "money": eur(PENALTY), "paid": PENALTY, "shortfall": 0}]
    assert world.balance("anna") == PENALTY
    assert world.get("deposit/shenzhen-gadgets/EUR") == 1_000 - PENALTY
    assert not [e for e in advance(world, due + 10 * DAY_MS)
                if e.type == "trade.penalty.applied"]
    ship(world, order_id)  # late, but it goes on
    assert order(world, order_id)["status"] == "shipped"


def test_a_penalty_the_deposit_cannot_cover_becomes_debt(
        world: World, listing: dict[str, Any]) -> None:
    world.fund("shenzhen-gadgets", 100)
    world.ok("shenzhen-gadgets", "deposit", {"money": eur(100)})
    place(world, "anna", listing)
    events = [e for e in advance(world, world.chain.time + 2 * DAY_MS)
              if e.type == "trade.penalty.applied"]
    assert [(e.attributes["paid"], e.attributes["shortfall"]) for e in events] == \
        [(100, PENALTY - 100)]
    assert world.get("debt/shenzhen-gadgets/EUR") == PENALTY - 100
    assert world.balance("anna") == 100


def test_no_penalty_when_shipped_or_cancelled_in_time_or_none_is_set(
        world: World, listing: dict[str, Any]) -> None:
    world.fund("shenzhen-gadgets", 1_000)
    world.ok("shenzhen-gadgets", "deposit", {"money": eur(1_000)})
    shipped = place(world, "anna", listing)
    ship(world, shipped)
    cancelled = place(world, "ben", listing)
    world.ok("ben", "cancel_order", {"order": cancelled})
    plain = publish_listing(world, "tea-2")  # no late_shipment_penalty
    place(world, "chloe", plain)
    events = advance(world, world.chain.time + 3 * DAY_MS)
    assert not [e for e in events if e.type == "trade.penalty.applied"]
    assert world.get("deposit/shenzhen-gadgets/EUR") == 1_000


def test_an_organisation_buying_from_itself_moves_money_but_no_volume(
        world: World, listing: dict[str, Any]) -> None:
    add_org(world, "shill", ("consumer",))
    world.fund("shill", total_of(listing))
    world.ok("paybank", "issue", {"to": "shenzhen-gadgets", "money": eur(1),
                                  "reference": "shared", "account_tag": tag("shill")})
    order_id = place(world, "shill", listing, fund=False)
    ship(world, order_id)
    deliver(world, order_id)
    world.ok("shill", "confirm_receipt", {"order": order_id})
    assert order(world, order_id)["counted"] is False
    assert world.get("stats/listing/shenzhen-gadgets/tea-1") is None
