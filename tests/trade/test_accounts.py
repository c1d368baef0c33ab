"""Money: issuance by payment providers only, payouts, deposits, quotes, the fee, and
the supply invariant after every block."""

from __future__ import annotations

from services.trade.money import CURRENCIES, Money, Quote, convert
from tests.trade.conftest import World, tag


def eur(amount: int) -> dict[str, object]:
    return {"amount": amount, "currency": "EUR"}


def test_only_a_payment_provider_issues_and_each_reference_once(world: World) -> None:
    world.fund("anna", 10_000)
    assert world.balance("anna") == 10_000
    assert world.get("supply/EUR") == {"issued": 10_000, "redeemed": 0}
    payload = {"to": "anna", "money": eur(5), "reference": "ref-x", "account_tag": tag("a")}
    assert world.code("shenzhen-gadgets", "issue", payload) == "forbidden"
    world.ok("paybank", "issue", payload)
    assert world.code("paybank", "issue", payload) == "duplicate_reference"
    assert world.code("paybank", "issue", {**payload, "reference": "ref-y",
                                           "to": "nobody"}) == "not_found"
    assert world.code("paybank", "issue", {**payload, "reference": "ref-z",
                                           "money": {"amount": "15", "currency": "EUR"}}
                      ) == "bad_payload"
    assert world.code("paybank", "issue", {**payload, "reference": "ref-z",
                                           "money": {"amount": 5, "currency": "XXX"}}
                      ) == "bad_payload"


def test_a_payout_destroys_money_only_when_the_provider_paid(world: World) -> None:
    world.fund("shenzhen-gadgets", 1_000)
    result = world.ok("shenzhen-gadgets", "request_payout", {
        "provider": "paybank", "money": eur(600), "account_tag": tag("sz")})
    (requested,) = world.events(result, "trade.payout.requested")
    assert world.balance("shenzhen-gadgets") == 400
    payout = requested["payout"]
    assert world.code("anna", "complete_payout", {"payout": payout, "reference": "w1"}
                      ) == "forbidden"
    world.ok("paybank", "complete_payout", {"payout": payout, "reference": "w1"})
    assert world.get("supply/EUR") == {"issued": 1_000, "redeemed": 600}
    assert world.code("paybank", "complete_payout", {"payout": payout, "reference": "w1"}
                      ) == "payout_closed"
    assert world.code("paybank", "fail_payout", {"payout": payout}) == "payout_closed"
    assert world.code("shenzhen-gadgets", "request_payout", {
        "provider": "paybank", "money": eur(401), "account_tag": tag("sz")}
    ) == "insufficient_funds"
    second = world.events(world.ok("shenzhen-gadgets", "request_payout", {
        "provider": "paybank", "money": eur(400), "account_tag": tag("sz")}),
        "trade.payout.requested")[0]["payout"]
    world.ok("paybank", "fail_payout", {"payout": second})
    assert world.balance("shenzhen-gadgets") == 400  # the money came back


def test_deposits_lock_and_unlock(world: World) -> None:
    world.fund("rail-express", 5_000)
    world.ok("rail-express", "deposit", {"money": eur(3_000)})
    assert world.balance("rail-express") == 2_000
    assert world.get("deposit/rail-express/EUR") == 3_000
    assert world.code("rail-express", "deposit", {"money": eur(2_001)}) == \
        "insufficient_funds"
    assert world.code("rail-express", "withdraw_deposit", {"money": eur(3_001)}) == \
        "insufficient_deposit"
    world.ok("rail-express", "withdraw_deposit", {"money": eur(1_000)})
    assert world.balance("rail-express") == 3_000


def test_the_platform_sets_the_fee(world: World) -> None:
    assert world.code("shenzhen-gadgets", "configure", {"fee_bps": 100,
                                                        "fee_org": "operator"}) == "forbidden"
    assert world.code("operator", "configure", {"fee_bps": 2_001, "fee_org": "operator"}
                      ) == "bad_payload"
    world.ok("operator", "configure", {"fee_bps": 250, "fee_org": "operator"})
    assert world.get("config")["fee_bps"] == 250


def test_unknown_payload_fields_are_refused_statically(world: World) -> None:
    import pytest

    from services.ledger.core.errors import InvalidTransaction

    tx = world.chain.tx(world.keys["paybank"], "trade.issue", {
        "to": "anna", "money": eur(5), "reference": "r", "account_tag": tag("a"),
        "payer_name": "Anna Schmidt"})
    with pytest.raises(InvalidTransaction) as refused:
        world.chain.check_static(tx)
    assert refused.value.code == "bad_payload"


def test_conversion_rounds_up_for_the_buyer_exactly() -> None:
    quote = Quote("paybank", "EUR", "CNY", 789, 100, 0, "00" * 32, "k", b"")
    assert convert(quote, Money(789, "CNY")) == Money(100, "EUR")  # 7.89 CNY = 1.00 EUR
    assert convert(quote, Money(790, "CNY")) == Money(101, "EUR")  # rounded up
    yen = Quote("paybank", "EUR", "JPY", 160, 1, 0, "00" * 32, "k", b"")
    assert convert(yen, Money(160, "JPY")) == Money(100, "EUR")
    assert convert(yen, Money(161, "JPY")) == Money(101, "EUR")
    assert CURRENCIES["JPY"] == 0
