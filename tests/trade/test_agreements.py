"""Agreements (moved from the trace domain): preset rules between a merchant and a
carrier, deposits that must cover their penalties, cold-chain readings judged exactly
across CEL/FAH/KEL, penalties paid from the responsible party's deposit (and the rest
recorded as debt). Each rule with its negative; the supply invariant after every block.

Dropped in the move, with the trace rules they tested: ``deadline`` rules (any bizStep
within a time) became ``late_arrival`` and ``late_shipment`` against a shipment's
planned legs (tests/trade/test_logistics.py); ``required_certificate`` at a bizStep is
the listings' rule now (a listing is published only while its required certificates
verify, and withdrawn when one is revoked); agreements name shipments, not EPCs or
GTINs.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.trade.vocabulary import DAY_MS
from tests.trade.conftest import World
from tests.trade.market_world import MERCHANT
from tests.trade.order_world import advance, eur
from tests.trade.shipping_world import (
    CARRIER,
    LAST_MILE,
    agreement,
    capture,
    paid_order,
    ship_order,
)

COLD = {"type": "temperature", "min": "2", "max": "8", "uom": "CEL",
        "penalty": eur(1_000)}
LATE = {"type": "late_arrival", "penalty": eur(4_000)}


def propose(world: World, rules: list[dict[str, Any]], *, by: str = MERCHANT,
            counterparty: str = CARRIER, until_ms: int = 30 * DAY_MS) -> str:
    result = world.ok(by, "propose_agreement", {
        "counterparty": counterparty, "rules": rules,
        "until": world.chain.next_time + until_ms})
    return str(world.events(result, "trade.agreement.proposed")[0]["agreement"])


def propose_code(world: World, rules: list[dict[str, Any]], **extra: Any) -> str:
    return world.code(MERCHANT, "propose_agreement", {
        "counterparty": CARRIER, "rules": rules,
        "until": world.chain.next_time + DAY_MS, **extra})


def lock(world: World, org: str, amount: int) -> None:
    world.fund(org, amount)
    world.ok(org, "deposit", {"money": eur(amount)})


# --- proposing, accepting, ending --------------------------------------------------------------


def test_the_responsible_partys_deposit_must_cover_its_penalties(world: World) -> None:
    deal = propose(world, [COLD, LATE])  # 10.00 + 40.00 from the carrier
    record = world.get(f"agreement/{deal}")
    assert [r["responsible"] for r in record["rules"]] == [CARRIER, CARRIER]
    assert record["required"] == [{"org": CARRIER, "money": eur(5_000)}]
    assert world.code(MERCHANT, "accept_agreement", {"agreement": deal}) == "forbidden"
    lock(world, CARRIER, 4_999)
    assert world.code(CARRIER, "accept_agreement", {"agreement": deal}) == \
        "insufficient_deposit"
    lock(world, CARRIER, 1)
    accepted = world.ok(CARRIER, "accept_agreement", {"agreement": deal})
    assert world.events(accepted, "trade.agreement.accepted")[0]["required"] == \
        record["required"]
    assert world.get(f"deposit_required/{CARRIER}/EUR") == 5_000
    assert world.code(CARRIER, "accept_agreement", {"agreement": deal}) == \
        "agreement_closed"
    # the requirement holds the deposit; a second agreement needs both covered
    assert world.code(CARRIER, "withdraw_deposit", {"money": eur(1)}) == "deposit_required"
    second = propose(world, [LATE])
    assert world.code(CARRIER, "accept_agreement", {"agreement": second}) == \
        "insufficient_deposit"
    lock(world, CARRIER, 4_000)
    world.ok(CARRIER, "accept_agreement", {"agreement": second})
    assert world.get(f"deposit_required/{CARRIER}/EUR") == 9_000
    assert sorted(world.get(f"agreements_of/{CARRIER}")) == sorted([deal, second])


def test_an_agreement_ends_only_after_its_term_and_releases_its_requirement(
        world: World) -> None:
    deal = agreement(world, [LATE], deposit=4_000, until_ms=10 * DAY_MS)
    assert world.code("anna", "end_agreement", {"agreement": deal}) == "forbidden"
    assert world.code(MERCHANT, "end_agreement", {"agreement": deal}) == \
        "agreement_running"
    advance(world, world.get(f"agreement/{deal}")["until"])
    ended = world.ok(CARRIER, "end_agreement", {"agreement": deal})
    assert world.events(ended, "trade.agreement.ended")[0]["status"] == "ended"
    assert world.get(f"deposit_required/{CARRIER}/EUR") is None
    assert world.get(f"agreements_of/{CARRIER}") is None
    world.ok(CARRIER, "withdraw_deposit", {"money": eur(4_000)})
    assert world.code(MERCHANT, "end_agreement", {"agreement": deal}) == \
        "agreement_closed"


def test_a_proposal_is_withdrawn_or_declined_and_never_accepted_after(world: World) -> None:
    first, second = propose(world, [LATE]), propose(world, [LATE])
    lock(world, CARRIER, 8_000)
    withdrawn = world.ok(MERCHANT, "end_agreement", {"agreement": first})
    assert world.events(withdrawn, "trade.agreement.ended")[0]["status"] == "withdrawn"
    declined = world.ok(CARRIER, "end_agreement", {"agreement": second})
    assert world.events(declined, "trade.agreement.ended")[0]["status"] == "declined"
    for deal in (first, second):
        assert world.code(CARRIER, "accept_agreement", {"agreement": deal}) == \
            "agreement_closed"
    late = propose(world, [LATE], until_ms=DAY_MS)
    advance(world, world.chain.time + DAY_MS)
    assert world.code(CARRIER, "accept_agreement", {"agreement": late}) == \
        "agreement_expired"
    assert world.code(CARRIER, "accept_agreement", {"agreement": "ef" * 32}) == "not_found"
    assert world.get(f"deposit_required/{CARRIER}/EUR") is None


def test_who_answers_for_a_rule(world: World) -> None:
    deal = propose(world, [LATE, {"type": "late_shipment", "penalty": eur(3_000)}])
    assert [r["responsible"] for r in world.get(f"agreement/{deal}")["rules"]] == \
        [CARRIER, MERCHANT]
    # between two consumers the roles decide nothing: the proposal must say
    assert world.code("anna", "propose_agreement", {
        "counterparty": "ben", "rules": [LATE], "until": world.chain.next_time + DAY_MS}
    ) == "bad_rule"
    named = {**LATE, "responsible": "ben"}
    world.ok("anna", "propose_agreement", {"counterparty": "ben", "rules": [named],
                                           "until": world.chain.next_time + DAY_MS})
    assert propose_code(world, [{**LATE, "responsible": "anna"}]) == "bad_rule"


def test_bad_proposals_are_refused(world: World) -> None:
    bad_rules: list[Any] = [
        {**COLD, "min": "8", "max": "2"},
        {"type": "deadline", "biz_step": "arriving", "penalty": eur(1)},
        {"type": "teleport", "penalty": eur(1)},
        {**LATE, "penalty": {"amount": 1, "currency": "XXX"}},
        {**LATE, "penalty": eur(0)},
        {**LATE, "biz_step": "arriving"},
        {**COLD, "uom": "FAR"},  # FAR is the farad
        {**COLD, "min": "2,5"},
        "late_arrival",
    ]
    for rule in bad_rules:
        assert propose_code(world, [rule]) in ("bad_rule", "bad_payload"), rule
    assert propose_code(world, []) == "bad_payload"
    assert propose_code(world, [LATE] * 17) == "bad_payload"
    assert propose_code(world, [LATE], counterparty=MERCHANT) == "bad_payload"
    assert propose_code(world, [LATE], counterparty="nobody") == "not_found"
    assert propose_code(world, [LATE], until=world.chain.time) == "bad_payload"
    assert propose_code(world, [LATE], until=world.chain.next_time + 3 * 365 * DAY_MS) == \
        "bad_payload"


def test_rules_with_non_finite_or_exponent_bounds_are_refused_not_crashing(
        world: World) -> None:
    for low, high in (("NaN", "8"), ("2", "sNaN"), ("-Infinity", "8"), ("1e5", "8"),
                      ("8", ""), ("2", "1" * 33), (True, "8")):
        assert propose_code(world, [{**COLD, "min": low, "max": high}]) == "bad_rule", \
            (low, high)


def test_fahrenheit_rules_use_the_fahrenheit_code(world: World) -> None:
    deal = propose(world, [{**COLD, "min": "35", "max": 46, "uom": "FAH"}])
    assert world.get(f"agreement/{deal}")["rules"][0]["max"] == "46"


def test_any_contract_exception_rejects_the_transaction_instead_of_stopping(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from decimal import InvalidOperation

    from services.trade import agreements

    def broken(*_: object) -> None:
        raise InvalidOperation("a contract bug")

    monkeypatch.setattr(agreements, "parse_rule", broken)
    assert propose_code(world, [LATE]) == "contract_error"


# --- the cold chain ------------------------------------------------------------------------------


def cold_shipment(world: World, rule: dict[str, Any] = COLD, deposit: int = 1_000) -> str:
    deal = agreement(world, [rule], deposit=deposit)
    ship_order(world, paid_order(world), agreement=deal)
    capture(world, CARRIER, "departing", temperatures=["4.5"])
    return deal


def penalties(result: Any) -> list[dict[str, Any]]:
    return [dict(e.attributes) for e in result.events if e.type == "trade.penalty.applied"]


def test_a_reading_outside_the_range_pays_the_merchant_from_the_carriers_deposit(
        world: World) -> None:
    deal = cold_shipment(world)
    assert world.balance(MERCHANT) == 0
    hot = capture(world, CARRIER, "transporting", temperatures=["3", "12.5"])
    (penalty,) = penalties(hot)
    assert penalty["agreement"] == deal and penalty["reason"] == "temperature"
    assert (penalty["payer"], penalty["payee"]) == (CARRIER, MERCHANT)
    assert penalty["money"] == eur(1_000) and penalty["paid"] == 1_000
    assert penalty["shortfall"] == 0
    assert penalty["evidence"]["event_hash"] == \
        world.events(hot, "trace.event.captured")[0]["event_hash"]
    assert "12.5 CEL" in penalty["evidence"]["detail"]
    assert world.balance(MERCHANT) == 1_000
    assert world.get(f"deposit/{CARRIER}/EUR") is None  # spent
    # once per shipment per rule
    assert penalties(capture(world, CARRIER, "arriving", temperatures=["30"])) == []


@pytest.mark.parametrize(("uom", "ok", "hot"), [("FAH", "46.4", "46.41"),
                                                ("KEL", "281.15", "281.16"),
                                                ("CEL", "8", "8.01"),
                                                ("CEL", "2", "1.99")])
def test_temperature_rules_compare_readings_across_units_exactly(
        world: World, uom: str, ok: str, hot: str) -> None:
    """A 2–8 °C rule judges Fahrenheit and kelvin readings exactly (8 °C = 46.4 °F =
    281.15 K): no float rounding either way."""
    cold_shipment(world)
    assert penalties(capture(world, CARRIER, "transporting", temperatures=[ok],
                             uom=uom)) == []
    assert len(penalties(capture(world, CARRIER, "transporting", temperatures=[hot],
                                 uom=uom))) == 1


def test_a_fahrenheit_rule_judges_celsius_readings(world: World) -> None:
    cold_shipment(world, {**COLD, "min": "35.6", "max": "46.4", "uom": "FAH"})
    assert penalties(capture(world, CARRIER, "transporting", temperatures=["8"])) == []
    assert len(penalties(capture(world, CARRIER, "transporting",
                                 temperatures=["8.001"]))) == 1


def test_a_temperature_without_a_unit_cannot_show_compliance(world: World) -> None:
    cold_shipment(world)
    assert len(penalties(capture(world, CARRIER, "transporting", temperatures=["5"],
                                 uom=None))) == 1


def test_the_beneficiary_cannot_cause_a_penalty_with_its_own_readings(world: World) -> None:
    # a rule the merchant answers for, paid to the carrier: the carrier's readings
    # prove nothing against the merchant
    lock(world, MERCHANT, 1_000)
    cold_shipment(world, {**COLD, "responsible": MERCHANT}, deposit=0)
    assert penalties(capture(world, CARRIER, "transporting", temperatures=["30"])) == []
    # and an organisation not in charge of the shipment is not heard at all
    deal = agreement(world, [COLD], deposit=1_000)
    ship_order(world, paid_order(world, "ben"), "sh-2", "CIM-2", agreement=deal)
    capture(world, CARRIER, "departing", "CIM-2")
    assert penalties(capture(world, MERCHANT, "inspecting", "CIM-2",
                             temperatures=["30"])) == []
    assert penalties(capture(world, LAST_MILE, "transporting", "CIM-2",
                             temperatures=["30"])) == []
    assert len(penalties(capture(world, CARRIER, "transporting", "CIM-2",
                                 temperatures=["30"]))) == 1


# --- penalties beyond the deposit -----------------------------------------------------------------


def test_a_penalty_beyond_the_deposit_takes_what_it_holds_and_records_the_debt(
        world: World) -> None:
    deal = agreement(world, [COLD], deposit=1_000)
    ship_order(world, paid_order(world), agreement=deal)
    ship_order(world, paid_order(world, "ben"), "sh-2", "CIM-2", agreement=deal)
    capture(world, CARRIER, "departing", temperatures=["30"])  # 10.00 paid
    capture(world, CARRIER, "departing", "CIM-2")
    second = capture(world, CARRIER, "transporting", "CIM-2", temperatures=["-5"])
    (penalty,) = penalties(second)
    assert (penalty["paid"], penalty["shortfall"]) == (0, 1_000)
    assert world.get(f"debt/{CARRIER}/EUR") == 1_000
    assert world.balance(MERCHANT) == 1_000
    assert world.get(f"agreement/{deal}")["penalties"] == 2
    world.check_supply()


def test_a_shipment_stays_bound_by_its_agreement_after_the_term(world: World) -> None:
    deal = agreement(world, [LATE], deposit=4_000, until_ms=DAY_MS)
    ship_order(world, paid_order(world), agreement=deal)
    capture(world, CARRIER, "departing")
    advance(world, world.get(f"agreement/{deal}")["until"])
    world.ok(CARRIER, "end_agreement", {"agreement": deal})
    world.ok(CARRIER, "withdraw_deposit", {"money": eur(4_000)})
    events = advance(world, world.get("shipment/sh-1")["legs"][0]["arrives"] + DAY_MS)
    (penalty,) = [dict(e.attributes) for e in events if e.type == "trade.penalty.applied"]
    assert (penalty["paid"], penalty["shortfall"]) == (0, 4_000)
    assert world.get(f"debt/{CARRIER}/EUR") == 4_000
    arrived = capture(world, CARRIER, "arriving")
    assert world.events(arrived, "trade.shipment.arrived")[0]["late"] is True
