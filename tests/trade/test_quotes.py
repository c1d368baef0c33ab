"""Cross-currency orders: the buyer pays in its own currency under a payment provider's
signed quote; the provider redeems that and issues the listing's currency into escrow.
The signature, the expiry on block time, single use, the provider and its key, the
currencies and the rounding (up, for the buyer, exactly) are each checked."""

from __future__ import annotations

from typing import Any

import pytest

from services.trade.money import quote_digest
from services.trade.vocabulary import QUOTE_MS_MAX
from tests.trade.conftest import World
from tests.trade.market_world import add_org, publish_listing
from tests.trade.order_world import (
    address,
    configure_fee,
    eur,
    install_order_path,
    order_payload,
    total_of,
)


@pytest.fixture
def listing(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    install_order_path(monkeypatch)
    configure_fee(world)
    return publish_listing(world)  # 25.00 EUR, rail 5.00: an order of one is 30.00


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def pay(world: World, listing: dict[str, Any], quote: dict[str, Any], *,
        buyer: str = "li", **change: Any) -> dict[str, Any]:
    payload = order_payload(listing, address(world, buyer), quote=quote)
    return {**payload, **change}


@pytest.fixture
def li(world: World) -> str:
    """A consumer in the EU who holds yuan."""
    add_org(world, "li", ("consumer",))
    return "li"


def test_paying_in_yuan_converts_into_euro_escrow_rounded_up(
        world: World, listing: dict[str, Any], li: str) -> None:
    # 1 CNY costs 0.128 EUR: 30.00 EUR cost 234.375 CNY, the buyer pays 234.38
    world.fund(li, 30_000, "CNY")
    quote = world.quote("CNY", "EUR", 128, 1_000)
    result = world.ok(li, "place_order", pay(world, listing, quote))
    (paid,) = world.events(result, "trade.order.paid")
    assert paid["paid"] == cny(23_438) and paid["escrow"] == eur(3_000)
    assert paid["quote_provider"] == "paybank" and paid["quote_nonce"] == quote["nonce"]
    assert world.balance(li, "CNY") == 30_000 - 23_438
    assert world.balance(li, "EUR") == 0
    order = world.get(f"order/{paid['order']}")
    assert order["escrow"] == eur(3_000) and order["paid"] == cny(23_438)
    assert order["quote"] == {"provider": "paybank", "nonce": quote["nonce"],
                              "from": "CNY", "to": "EUR", "rate_num": 128,
                              "rate_den": 1_000}
    assert world.get("supply/CNY") == {"issued": 30_000, "redeemed": 23_438}
    assert world.get("supply/EUR") == {"issued": 3_000, "redeemed": 0}
    assert world.get(f"quote_used/paybank/{quote['nonce']}") == world.chain.height


def test_an_exact_rate_needs_no_rounding_and_yen_have_no_minor_unit(
        world: World, listing: dict[str, Any], li: str) -> None:
    world.fund(li, 24_000, "CNY")
    world.ok(li, "place_order", pay(world, listing, world.quote("CNY", "EUR", 125, 1_000)))
    assert world.balance(li, "CNY") == 0  # 30.00 / 0.125 = 240.00 exactly
    world.fund(li, 5_000, "JPY")
    # 1 JPY costs 0.0062 EUR: 30.00 EUR cost 4838.7 yen, the buyer pays 4839
    world.ok(li, "place_order", pay(world, listing, world.quote(
        "JPY", "EUR", 62, 10_000, nonce="02" * 32)))
    assert world.balance(li, "JPY") == 5_000 - 4_839


def test_a_quote_is_used_once(world: World, listing: dict[str, Any], li: str) -> None:
    world.fund(li, 100_000, "CNY")
    quote = world.quote("CNY", "EUR", 128, 1_000)
    world.ok(li, "place_order", pay(world, listing, quote))
    assert world.code(li, "place_order", pay(world, listing, quote)) == "quote_used"
    world.fund("anna", 100_000, "CNY")
    assert world.code("anna", "place_order", pay(world, listing, quote, buyer="anna")) \
        == "quote_used"


def test_a_refused_order_leaves_its_quote_unused(
        world: World, listing: dict[str, Any], li: str) -> None:
    quote = world.quote("CNY", "EUR", 128, 1_000)
    world.fund(li, 23_437, "CNY")  # one fen short
    assert world.code(li, "place_order", pay(world, listing, quote)) == \
        "insufficient_funds"
    assert world.code(li, "place_order", pay(world, listing, quote, total=eur(2_999))) \
        == "total_mismatch"
    assert world.get(f"quote_used/paybank/{quote['nonce']}") is None
    world.fund(li, 1, "CNY")
    world.ok(li, "place_order", pay(world, listing, quote))
    assert world.balance(li, "CNY") == 0


def test_a_quote_expires_on_block_time(world: World, listing: dict[str, Any],
                                       li: str) -> None:
    world.fund(li, 100_000, "CNY")
    quote = world.quote("CNY", "EUR", 128, 1_000, expires_in_ms=60_000)
    assert world.code(li, "place_order", pay(world, listing, quote),
                      time=quote["expires"] + 1) == "quote_expired"
    too_long = world.quote("CNY", "EUR", 128, 1_000, expires_in_ms=QUOTE_MS_MAX + 1,
                           nonce="03" * 32)
    assert world.code(li, "place_order", pay(world, listing, too_long)) == "bad_quote"
    last_moment = world.quote("CNY", "EUR", 128, 1_000, expires_in_ms=60_000,
                              nonce="04" * 32)
    world.ok(li, "place_order", pay(world, listing, last_moment),
             time=last_moment["expires"])


def _signed(world: World, signer: str, body: dict[str, Any]) -> dict[str, Any]:
    key = world.keys[signer]
    body = {**body, "key_id": key.key_id}
    return {**body, "signature": key.sign(quote_digest(body)).hex()}


def test_only_a_payment_providers_own_key_signs_a_quote(
        world: World, listing: dict[str, Any], li: str) -> None:
    world.fund(li, 100_000, "CNY")
    good = world.quote("CNY", "EUR", 128, 1_000)
    body = {k: v for k, v in good.items() if k not in ("signature", "key_id")}
    forged = _signed(world, "shenzhen-gadgets", body)  # says paybank, signed by another
    assert world.code(li, "place_order", pay(world, listing, forged)) == "bad_quote"
    own = _signed(world, "shenzhen-gadgets", {**body, "provider": "shenzhen-gadgets"})
    assert world.code(li, "place_order", pay(world, listing, own)) == "bad_quote"
    tampered = {**good, "rate_num": 129}  # a better rate than was signed
    assert world.code(li, "place_order", pay(world, listing, tampered)) == "bad_quote"
    other_nonce = {**good, "nonce": "05" * 32}
    assert world.code(li, "place_order", pay(world, listing, other_nonce)) == "bad_quote"
    assert world.code(li, "place_order", pay(world, listing, {**good, "nonce": "x"})) \
        == "bad_payload"
    assert world.code(li, "place_order", pay(world, listing, {**good, "extra": 1})) \
        == "bad_payload"
    world.ok(li, "place_order", pay(world, listing, good))


def test_the_quote_must_convert_into_the_listings_currency(
        world: World, listing: dict[str, Any], li: str) -> None:
    world.fund(li, 100_000, "CNY")
    to_dollars = world.quote("CNY", "USD", 14, 100)
    assert world.code(li, "place_order", pay(world, listing, to_dollars)) == \
        "currency_mismatch"
    same = world.quote("EUR", "EUR", 1, 1, nonce="06" * 32)
    assert world.code(li, "place_order", pay(world, listing, same)) == "bad_payload"
    euro_total = pay(world, listing, world.quote("CNY", "EUR", 128, 1_000,
                                                 nonce="07" * 32))
    assert world.code(li, "place_order", {**euro_total, "total": cny(23_438)}) == \
        "currency_mismatch"  # the total is always in the listing's currency
    assert world.code(li, "place_order", pay(world, listing, world.quote(
        "CNY", "EUR", 0, 1_000, nonce="08" * 32))) == "bad_payload"


def test_a_cancelled_quoted_order_refunds_the_escrows_currency(
        world: World, listing: dict[str, Any], li: str) -> None:
    world.fund(li, 23_438, "CNY")
    result = world.ok(li, "place_order", pay(world, listing,
                                             world.quote("CNY", "EUR", 128, 1_000)))
    order_id = world.events(result, "trade.order.placed")[0]["order"]
    world.ok(li, "cancel_order", {"order": order_id})
    assert world.balance(li, "EUR") == total_of(listing)  # the escrow was in euro
    assert world.balance(li, "CNY") == 0
