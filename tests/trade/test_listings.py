"""Listings: published only with proven claims (a registered product, certificates that
vouch now), withdrawn when a certificate is revoked or expires; stock; the authentic
volume (settled orders only, never self-dealing) — each rule with its negative."""

from __future__ import annotations

from typing import Any

import pytest

from services.ledger.core.contract import BlockContext, TxContext
from services.ledger.core.errors import TransactionFailed
from services.ledger.core.state import StateView
from services.trade import listings
from services.trade.vocabulary import DAY_MS, LISTINGS_PER_MERCHANT_MAX
from tests.trade.conftest import World, tag
from tests.trade.market_world import (
    CERTIFIER,
    GTIN,
    MERCHANT,
    PLATFORM,
    add_org,
    certify,
    default_shipping,
    gtin,
    hexdigest,
    listing_payload,
    privacy_tx,
    publish_listing,
    put_state,
    register_product,
    revoke_certificate,
    trace_tx,
    verify_merchant,
)


def eur(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR"}


def ready(world: World, *types: str) -> None:
    """A verified merchant, the product, a certificate of each type: nothing listed."""
    register_product(world)
    for cert_type in types:
        certify(world, cert_type=cert_type)
    verify_merchant(world)


# --- publishing ----------------------------------------------------------------------------------

def test_a_verified_merchant_publishes_with_the_proofs_of_its_claims(world: World) -> None:
    ready(world, "CE", "ISO9001")
    result = world.ok(MERCHANT, "publish_listing", listing_payload(
        certificates=["ISO9001", "CE"], late_shipment_penalty=300, ships_to=["PL", "DE"]))
    assert world.events(result, "trade.listing.published") == [{
        "merchant": MERCHANT, "listing": "tea-1", "gtin": GTIN, "price": eur(2_500),
        "stock": 100, "ships_to": ["DE", "PL"], "certificates": ["CE", "ISO9001"]}]
    listing = world.get(f"listing/{MERCHANT}/tea-1")
    assert listing["status"] == "active" and listing["late_shipment_penalty"] == eur(300)
    assert set(listing["certified_by"]) == {"CE", "ISO9001"}
    for cert_type, root in listing["certified_by"].items():
        anchor = world.chain.get(f"trace/anchor/{root}")
        assert anchor["type"] == cert_type and anchor["subject"]["id"] == GTIN
    assert listing["shipping"] == sorted(default_shipping(), key=lambda o: o["method"])
    assert world.get(f"listings_of_gtin/{GTIN}") == [f"{MERCHANT}/tea-1"]
    assert world.get(f"listing_count/{MERCHANT}") == 1


def test_the_product_must_be_registered_in_trace(world: World) -> None:
    ready(world)
    assert world.code(MERCHANT, "publish_listing", listing_payload(gtin=gtin(99))
                      ) == "product_not_found"
    assert world.code(MERCHANT, "publish_listing", listing_payload(gtin="123")
                      ) == "bad_payload"


def test_a_missing_certificate_refuses_the_listing(world: World) -> None:
    ready(world, "CE")
    assert world.code(MERCHANT, "publish_listing", listing_payload(
        certificates=["CE", "HALAL"])) == "certificate_required"
    other = register_product(world, gtin(2))
    certify(world, other, "HALAL")  # another product's certificate proves nothing here
    assert world.code(MERCHANT, "publish_listing", listing_payload(
        certificates=["HALAL"])) == "certificate_required"
    assert world.code(MERCHANT, "publish_listing", listing_payload(
        certificates=["NOT_A_TYPE"])) == "bad_payload"
    assert world.code(MERCHANT, "publish_listing", listing_payload(
        certificates=["CE", "CE"])) == "bad_payload"
    world.ok(MERCHANT, "publish_listing", listing_payload(certificates=[]))  # none claimed


def test_an_expired_or_not_yet_valid_certificate_refuses_the_listing(world: World) -> None:
    verify_merchant(world)
    certify(world, cert_type="CE", valid_for_ms=10_000)
    later = world.chain.next_time + 20_000
    assert world.code(MERCHANT, "publish_listing", listing_payload(), time=later
                      ) == "certificate_required"
    certify(world, cert_type="ISO9001", valid_from=world.chain.next_time + DAY_MS)
    assert world.code(MERCHANT, "publish_listing", listing_payload(
        certificates=["ISO9001"])) == "certificate_required"


def test_a_revoked_certificate_refuses_the_listing(world: World) -> None:
    ready(world, "CE")
    root = world.chain.get(f"trace/cert_subject/product:{GTIN}")[0]
    revoke_certificate(world, root)
    assert world.code(MERCHANT, "publish_listing", listing_payload()
                      ) == "certificate_required"
    # a certificate of a body accredited by the chain, not any root, is what vouches
    assert world.chain.get(f"trace/anchor/{root}")["issuer"] == CERTIFIER


def test_destinations_are_eu_member_states_with_the_right_of_withdrawal(world: World
                                                                       ) -> None:
    ready(world, "CE")
    for ships_to in (["DE", "GB"], ["CN"], ["US", "FR"]):
        assert world.code(MERCHANT, "publish_listing", listing_payload(ships_to=ships_to)
                          ) == "destination_not_served", ships_to
    malformed: list[Any] = [[], ["DE", "DE"], ["de"], ["DEU"], ["D\u00c9"], "DE"]
    for ships_to in malformed:
        assert world.code(MERCHANT, "publish_listing", listing_payload(ships_to=ships_to)
                          ) == "bad_payload", ships_to
    assert world.code(MERCHANT, "publish_listing", listing_payload(return_days=13)
                      ) == "return_days_too_short"
    world.ok(MERCHANT, "publish_listing", listing_payload(return_days=30))


def test_prices_are_in_one_currency_in_integer_minor_units(world: World) -> None:
    ready(world, "CE")
    cny = [{"method": "rail", "price": {"amount": 500, "currency": "CNY"}, "days": 18}]
    assert world.code(MERCHANT, "publish_listing", listing_payload(shipping=cny)
                      ) == "currency_mismatch"
    payload = listing_payload(late_shipment_penalty=100)
    payload["late_shipment_penalty"] = {"amount": 100, "currency": "USD"}
    assert world.code(MERCHANT, "publish_listing", payload) == "currency_mismatch"
    for price in ({"amount": "25", "currency": "EUR"}, {"amount": 0, "currency": "EUR"},
                  {"amount": 1, "currency": "XYZ"}, {"amount": True, "currency": "EUR"},
                  {"amount": 10**15 + 1, "currency": "EUR"}, "25 EUR"):
        assert world.code(MERCHANT, "publish_listing", {**listing_payload(),
                                                        "price": price}) == "bad_payload"
    world.ok(MERCHANT, "publish_listing", listing_payload(
        currency="CNY", price=18_000, late_shipment_penalty=1_000))
    assert world.get(f"listing/{MERCHANT}/tea-1")["price"] == {"amount": 18_000,
                                                              "currency": "CNY"}


def test_shipping_options_and_terms_are_checked(world: World) -> None:
    ready(world, "CE")
    option = {"method": "rail", "price": eur(500), "days": 18}
    bad_shipping: list[Any] = [
        [], [{**option, "method": "teleport"}], [option, option],
        [{**option, "days": 0}], [{**option, "days": 121}], [{**option, "note": "fast"}],
        [option] * 9, "rail"]
    for shipping in bad_shipping:
        assert world.code(MERCHANT, "publish_listing", {**listing_payload(),
                                                        "shipping": shipping}
                          ) == "bad_payload", shipping
    for field, value in (("dispatch_days", 0), ("dispatch_days", 61), ("stock", -1),
                         ("stock", 10**9 + 1), ("return_days", 366), ("listing", "Tea 1"),
                         ("listing", "t\u00e9")):
        assert world.code(MERCHANT, "publish_listing", {**listing_payload(),
                                                        field: value}
                          ) == "bad_payload", (field, value)


def test_a_listing_id_is_published_once_and_again_after_withdrawal(world: World) -> None:
    publish_listing(world)
    assert world.code(MERCHANT, "publish_listing", listing_payload()) == "listing_exists"
    world.ok(MERCHANT, "withdraw_listing", {"listing": "tea-1"})
    world.ok(MERCHANT, "publish_listing", listing_payload(price=2_700))
    listing = world.get(f"listing/{MERCHANT}/tea-1")
    assert listing["status"] == "active" and listing["price"] == eur(2_700)
    assert world.get(f"listing_count/{MERCHANT}") == 1
    assert world.get(f"listings_of_gtin/{GTIN}") == [f"{MERCHANT}/tea-1"]


def test_listings_are_bounded_per_merchant_and_per_product(world: World) -> None:
    ready(world, "CE")
    put_state(world, {f"trade/listing_count/{MERCHANT}": LISTINGS_PER_MERCHANT_MAX})
    assert world.code(MERCHANT, "publish_listing", listing_payload()) == "too_many_listings"
    put_state(world, {f"trade/listing_count/{MERCHANT}": 0,
                      f"trade/listings_of_gtin/{GTIN}": [
                          f"x/{i}" for i in range(listings.LISTINGS_PER_GTIN_MAX)]})
    assert world.code(MERCHANT, "publish_listing", listing_payload()) == "too_many_listings"


# --- updating and withdrawing ------------------------------------------------------------------

def test_the_merchant_updates_price_and_stock(world: World) -> None:
    publish_listing(world)
    result = world.ok(MERCHANT, "update_listing", {"listing": "tea-1", "price": eur(2_900)})
    assert world.events(result, "trade.listing.updated") == [{
        "merchant": MERCHANT, "listing": "tea-1", "price": eur(2_900), "stock": 100}]
    world.ok(MERCHANT, "update_listing", {"listing": "tea-1", "stock": 7})
    assert world.get(f"listing/{MERCHANT}/tea-1")["stock"] == 7
    assert world.code(MERCHANT, "update_listing", {"listing": "tea-1"}) == "bad_payload"
    assert world.code(MERCHANT, "update_listing", {
        "listing": "tea-1", "price": {"amount": 100, "currency": "CNY"}}
    ) == "currency_mismatch"
    assert world.code(MERCHANT, "update_listing", {"listing": "tea-1", "stock": -3}
                      ) == "bad_payload"
    assert world.code(MERCHANT, "update_listing", {"listing": "nope", "stock": 3}
                      ) == "listing_not_found"


def test_only_its_merchant_changes_or_withdraws_a_listing(world: World) -> None:
    publish_listing(world)
    add_org(world, "copycat", ("merchant",))
    verify_merchant(world, "copycat")
    # another merchant names its own (missing) listing of that id
    assert world.code("copycat", "update_listing", {"listing": "tea-1", "stock": 0}
                      ) == "listing_not_found"
    assert world.code("copycat", "withdraw_listing", {"listing": "tea-1"}
                      ) == "listing_not_found"
    assert world.code("anna", "update_listing", {"listing": "tea-1", "stock": 0}
                      ) == "merchant_not_verified"
    assert world.get(f"listing/{MERCHANT}/tea-1")["stock"] == 100


def test_withdrawal_takes_the_listing_off_sale(world: World) -> None:
    publish_listing(world)
    result = world.ok(MERCHANT, "withdraw_listing", {"listing": "tea-1"})
    assert world.events(result, "trade.listing.withdrawn") == [{
        "merchant": MERCHANT, "listing": "tea-1", "gtin": GTIN,
        "reason": "withdrawn_by_merchant", "cert_type": None}]
    assert world.get(f"listings_of_gtin/{GTIN}") is None
    assert world.code(MERCHANT, "withdraw_listing", {"listing": "tea-1"}
                      ) == "listing_not_active"
    assert world.code(MERCHANT, "update_listing", {"listing": "tea-1", "stock": 1}
                      ) == "listing_not_active"


# --- certificates revoked or expired after publication -------------------------------------------

def test_a_revoked_certificate_withdraws_the_listings_that_claim_it(world: World) -> None:
    publish_listing(world, "tea-1", certificates=["CE", "ORGANIC"])
    publish_listing(world, "tea-2", certificates=["ORGANIC"])
    other = gtin(2)
    publish_listing(world, "mug-1", gtin=other, certificates=["CE"])
    add_org(world, "copycat", ("merchant",))
    publish_listing(world, "resold", merchant="copycat", certificates=["CE"])
    root = world.get(f"listing/{MERCHANT}/tea-1")["certified_by"]["CE"]
    result = revoke_certificate(world, root)
    assert world.events(result, "trade.listing.withdrawn") == [{
        "merchant": merchant, "listing": listing, "gtin": GTIN,
        "reason": "certificate_revoked", "cert_type": "CE"}
        for merchant, listing in (("copycat", "resold"), (MERCHANT, "tea-1"))]
    assert world.get(f"listing/{MERCHANT}/tea-1")["status"] == "withdrawn"
    assert world.get(f"listing/{MERCHANT}/tea-2")["status"] == "active"  # no CE claimed
    assert world.get(f"listing/{MERCHANT}/mug-1")["status"] == "active"  # another GTIN
    assert world.get(f"listings_of_gtin/{GTIN}") == [f"{MERCHANT}/tea-2"]


def test_one_revoked_certificate_of_a_batch_withdraws_too(world: World) -> None:
    publish_listing(world)
    root = world.get(f"listing/{MERCHANT}/tea-1")["certified_by"]["CE"]
    result = trace_tx(world, CERTIFIER, "revoke_certificate", {
        "merkle_root": root, "target_hash": hexdigest("one leaf")})
    assert [e["reason"] for e in world.events(result, "trade.listing.withdrawn")] == [
        "certificate_revoked"]


def test_another_certificate_in_force_keeps_the_listing(world: World) -> None:
    publish_listing(world)
    first = world.get(f"listing/{MERCHANT}/tea-1")["certified_by"]["CE"]
    second = certify(world, cert_type="CE")
    result = revoke_certificate(world, first)
    assert not world.events(result, "trade.listing.withdrawn")
    listing = world.get(f"listing/{MERCHANT}/tea-1")
    assert listing["status"] == "active" and listing["certified_by"] == {"CE": second}


def test_a_revocation_in_the_publishing_block_withdraws_at_its_end(world: World) -> None:
    ready(world, "CE")
    root = world.chain.get(f"trace/cert_subject/product:{GTIN}")[0]
    publish = world.chain.tx(world.keys[MERCHANT], "trade.publish_listing", listing_payload())
    revoke = world.chain.tx(world.keys[CERTIFIER], "trace.revoke_certificate",
                            {"merkle_root": root})
    result = world.chain.block([publish, revoke])
    assert not result.rejected
    assert world.get(f"listing/{MERCHANT}/tea-1")["status"] == "withdrawn"


def test_an_expired_certificate_withdraws_the_listing_when_it_ends(world: World) -> None:
    ready(world)
    certify(world, cert_type="CE", valid_for_ms=DAY_MS)
    certify(world, cert_type="ISO9001", valid_for_ms=10 * DAY_MS)
    world.ok(MERCHANT, "publish_listing", listing_payload(certificates=["CE", "ISO9001"]))
    listing = world.get(f"listing/{MERCHANT}/tea-1")
    ends = listing["certified_until"]
    assert ends == world.chain.get(
        f"trace/anchor/{listing['certified_by']['CE']}")["valid_until"]
    before = world.chain.block([], time=ends - 1)  # (a day of deadline buckets a block)
    assert not [e for e in before.events if e.type == "trade.listing.withdrawn"]
    result = world.chain.block([], time=ends)
    assert world.events(result, "trade.listing.withdrawn") == [{
        "merchant": MERCHANT, "listing": "tea-1", "gtin": GTIN,
        "reason": "certificate_expired", "cert_type": "CE"}]


def test_a_renewed_certificate_takes_over_at_expiry(world: World) -> None:
    ready(world)
    certify(world, cert_type="CE", valid_for_ms=DAY_MS)
    world.ok(MERCHANT, "publish_listing", listing_payload())
    ends = world.get(f"listing/{MERCHANT}/tea-1")["certified_until"]
    renewed = certify(world, cert_type="CE", valid_for_ms=300 * DAY_MS)
    world.chain.block([], time=ends - 1)  # deadlines walk at most a day of buckets a block
    result = world.chain.block([], time=ends)
    assert not [e for e in result.events if e.type == "trade.listing.withdrawn"]
    listing = world.get(f"listing/{MERCHANT}/tea-1")
    assert listing["status"] == "active" and listing["certified_by"] == {"CE": renewed}
    assert listing["certified_until"] > ends


# --- stock (for the order flow) ----------------------------------------------------------------

def tx_context(world: World, org: str) -> tuple[StateView, TxContext]:
    view = world.chain.view()
    tx = world.chain.tx(world.keys[org], "trade.withdraw_listing", {"listing": "x"},
                        nonce=0)
    roles = frozenset(world.chain.get(f"consortium/org/{org}")["roles"])
    return view, TxContext(view, "trade", [], 0, world.chain.height + 1,
                           world.chain.next_time, tx, org, frozenset({"admin"}), roles)


def block_context(world: World) -> tuple[StateView, BlockContext]:
    view = world.chain.view()
    return view, BlockContext(view, "trade", [], None, world.chain.height + 1,
                              world.chain.next_time)


def refusal(call: Any) -> str:
    with pytest.raises(TransactionFailed) as refused:
        call()
    return str(refused.value.code)


def present(view: StateView, key: str) -> Any:
    value = view.get(key)
    assert value is not None, key
    return value


def listing_in(ctx: TxContext, listing_id: str) -> dict[str, Any]:
    listing = listings.listing_of(ctx, MERCHANT, listing_id)
    assert listing is not None
    return listing


def test_reserve_takes_stock_and_restock_gives_it_back(world: World) -> None:
    publish_listing(world, stock=5)
    view, ctx = tx_context(world, "anna")
    listing = listing_in(ctx, "tea-1")
    listings.reserve(ctx, listing, 3)
    assert present(view, f"trade/listing/{MERCHANT}/tea-1")["stock"] == 2
    assert refusal(lambda: listings.reserve(ctx, listing, 3)) == "out_of_stock"
    listings.restock(ctx, listing, 3)
    assert present(view, f"trade/listing/{MERCHANT}/tea-1")["stock"] == 5
    assert listings.listing_of(ctx, MERCHANT, "nope") is None


def test_nothing_is_reserved_of_a_withdrawn_listing_or_a_suspended_merchant(world: World
                                                                           ) -> None:
    publish_listing(world)
    publish_listing(world, "tea-2")
    world.ok(MERCHANT, "withdraw_listing", {"listing": "tea-2"})
    _, ctx = tx_context(world, "anna")
    withdrawn = listing_in(ctx, "tea-2")
    assert refusal(lambda: listings.reserve(ctx, withdrawn, 1)) == "listing_not_active"
    world.ok(PLATFORM, "suspend_merchant", {"org": MERCHANT, "reason": "fraud"})
    _, ctx = tx_context(world, "anna")
    active = listing_in(ctx, "tea-1")
    assert refusal(lambda: listings.reserve(ctx, active, 1)) == "merchant_not_verified"


# --- authentic volume ----------------------------------------------------------------------------

def order(buyer: str, quantity: int = 2, total: int = 5_500, listing: str = "tea-1",
          currency: str = "EUR") -> dict[str, Any]:
    return {"id": hexdigest(f"order/{buyer}/{quantity}/{total}"), "buyer": buyer,
            "merchant": MERCHANT, "listing": listing, "quantity": quantity,
            "total": {"amount": total, "currency": currency}, "status": "settled",
            "counted": False}


def test_settled_orders_count_once_and_a_refund_takes_them_out(world: World) -> None:
    publish_listing(world)
    view, ctx = block_context(world)
    first, second = order("anna"), order("ben", 1, 3_000)
    listings.record_settlement(ctx, first)
    listings.record_settlement(ctx, second)
    listings.record_settlement(ctx, first)  # counted already: left alone
    assert first["counted"] is True and second["counted"] is True
    expected = {"orders": 2, "units": 3, "amount": {"EUR": 8_500}}
    assert view.get(f"trade/stats/listing/{MERCHANT}/tea-1") == expected
    assert view.get(f"trade/stats/merchant/{MERCHANT}") == expected
    listings.record_settlement(ctx, order("chloe", 1, 900, "tea-2", "CNY"))
    assert view.get(f"trade/stats/merchant/{MERCHANT}") == {
        "orders": 3, "units": 4, "amount": {"CNY": 900, "EUR": 8_500}}
    listings.uncount_settlement(ctx, second)
    listings.uncount_settlement(ctx, second)  # once only
    assert second.get("counted") is False
    assert view.get(f"trade/stats/listing/{MERCHANT}/tea-1") == {
        "orders": 1, "units": 2, "amount": {"EUR": 5_500}}


def test_self_dealing_never_counts(world: World) -> None:
    publish_listing(world)
    world.fund(MERCHANT, 100)  # paybank remembers the merchant's account tag
    world.ok("paybank", "issue", {"to": "ben", "money": eur(100), "reference": "r-ben",
                                  "account_tag": tag(MERCHANT)})  # ben pays from it
    view, ctx = block_context(world)
    own, shared, honest = order(MERCHANT), order("ben"), order("anna")
    for each in (own, shared, honest):
        listings.record_settlement(ctx, each)
    assert (own["counted"], shared["counted"], honest["counted"]) == (False, False, True)
    assert present(view, f"trade/stats/merchant/{MERCHANT}")["orders"] == 1
    assert listings.self_dealing(ctx, "ben", MERCHANT)
    assert not listings.self_dealing(ctx, "anna", MERCHANT)


def test_an_order_through_the_contract_counts_when_settled(world: World) -> None:
    """The order flow of orders.py end to end (delivery is forced: logistics proves it)."""
    publish_listing(world)
    world.fund("anna", 10_000)
    privacy_tx(world, "anna", "register_key", {
        "scope": "self", "public_key": hexdigest("x25519/anna"), "country": "DE"})
    anna = f"key:{world.keys['anna'].key_id}"
    created = privacy_tx(world, "anna", "create_record", {
        "category": "address", "jurisdiction": "DE", "holders": [anna],
        "commitment": hexdigest("c/anna"), "ciphertext_hash": hexdigest("x/anna"),
        "wrap_hashes": {anna: hexdigest("w/anna")}})
    address = next(e.attributes["record_id"] for e in created.events
                   if e.type == "privacy.record.created")
    placed = world.ok("anna", "place_order", {
        "listing": {"merchant": MERCHANT, "id": "tea-1"}, "quantity": 2,
        "shipping": "rail", "ship_to": "DE", "address": address, "total": eur(5_500)})
    order_id = world.events(placed, "trade.order.placed")[0]["order"]
    assert world.get(f"listing/{MERCHANT}/tea-1")["stock"] == 98
    record = world.get(f"order/{order_id}")
    put_state(world, {f"trade/order/{order_id}": {
        **record, "status": "delivered", "delivered_at": world.chain.time}})
    world.ok("anna", "confirm_receipt", {"order": order_id})
    assert world.get(f"order/{order_id}")["counted"] is True
    assert world.get(f"stats/listing/{MERCHANT}/tea-1") == {
        "orders": 1, "units": 2, "amount": {"EUR": 5_500}}
