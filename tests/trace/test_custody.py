"""Custody and decommissioning (docs/adr/0005-clone-verdicts.md, amended): an item's
custodian is its brand owner from commissioning and changes only with its holder's
consent (the holder names the next one in an event's destinationList, who takes over
with its next event); only the brand owner or the custodian decommissions an item —
decommissioning ends its life on the chain, so no other party that can capture events
may do it."""

from __future__ import annotations

from typing import Any

import pytest

from services.trace.capture import REJECTION_REASONS, custodian_of
from services.trace.epcis_values import BIZ_STEPS
from services.trace.items import STATE_BY_BIZSTEP, TERMINAL_STATES, item_key
from tests.ledger.core.conftest import event_types, rejected_codes
from tests.trace.scenario import Org, Scenario, build, sgtin


@pytest.fixture
def s() -> Scenario:
    return build()


def item(s: Scenario, serial: str) -> dict[str, Any]:
    key = item_key(sgtin(serial))
    assert key is not None
    found: dict[str, Any] = s.chain.get(f"trace/{key}")
    return found


def commission(s: Scenario, *serials: str) -> None:
    result = s.capture(s.maker, s.event(s.maker, [sgtin(x) for x in serials],
                                        "commissioning"))
    assert not result.rejected, rejected_codes(result)


def pgln(org: Org) -> str:
    """The party GLN of an organisation (the scenario registers its GLN)."""
    return f"urn:epc:id:pgln:{org.cp}.00001"


def step(s: Scenario, org: Org, serial: str, biz_step: str, *,
         to: list[tuple[str, str]] | None = None, **extra: Any) -> dict[str, Any]:
    """An event of ``org`` at its own location; ``to``: its destinationList."""
    event = s.event(org, [sgtin(serial)], biz_step, **extra)
    if to:
        event["destinationList"] = [{"type": kind, "destination": where}
                                    for kind, where in to]
    return event


def destroy(s: Scenario, org: Org, serial: str) -> Any:
    return s.capture(org, step(s, org, serial, "decommissioning", disposition="destroyed"))


def test_a_party_without_custody_cannot_decommission_anyones_item(s: Scenario) -> None:
    """Review finding 1 (amplifier): any organisation with a capture role decommissioned
    any item at its own site; since ADR 0005 the genuine owner's next tap was a clone
    verdict, and the item could never be captured again."""
    commission(s, "8001")
    tag = s.tag("8001")
    for stranger in (s.carrier, s.retailer, s.certifier):
        refused = destroy(s, stranger, "8001")
        assert rejected_codes(refused) == ["not_custodian"], stranger.id
    assert item(s, "8001")["state"] == "commissioned"
    tapped = s.scan(s.operator, "8001", "DE", proof=s.tap(tag, "8001", 1))
    assert "trace.clone.suspected" not in event_types(tapped)
    assert "trace.anomaly.raised" not in event_types(tapped)
    assert not destroy(s, s.maker, "8001").rejected  # the brand owner may
    assert item(s, "8001")["state"] == "decommissioned"


def test_every_decommissioning_step_is_guarded(s: Scenario) -> None:
    commission(s, "8002")
    ending = [b for b, state in STATE_BY_BIZSTEP.items()
              if state in TERMINAL_STATES and b in BIZ_STEPS]
    assert {"decommissioning", "destroying"} <= set(ending)
    for biz_step in ending:
        refused = s.capture(s.carrier, step(s, s.carrier, "8002", biz_step))
        assert rejected_codes(refused) == ["not_custodian"], biz_step


def test_custody_moves_only_when_its_holder_hands_it_over(s: Scenario) -> None:
    """The maker ships to the carrier (possessing_party), the carrier takes custody with
    its next event and may then destroy the goods; the maker, as brand owner, still
    may; the retailer, never handed them, may not."""
    commission(s, "8003", "8004")
    assert custodian_of(item(s, "8003")) == "shenzhen-maker"
    shipped = s.capture(s.maker, step(s, s.maker, "8003", "shipping",
                                      to=[("possessing_party", pgln(s.carrier)),
                                          ("owning_party", pgln(s.retailer))]))
    assert not shipped.rejected
    assert item(s, "8003")["custody_to"] == "rail-carrier"
    assert custodian_of(item(s, "8003")) == "shenzhen-maker"
    s.capture(s.carrier, step(s, s.carrier, "8003", "receiving"))
    record = item(s, "8003")
    assert custodian_of(record) == "rail-carrier" and "custody_to" not in record
    assert rejected_codes(destroy(s, s.retailer, "8003")) == ["not_custodian"]
    assert not destroy(s, s.carrier, "8003").rejected
    # the destination location names the next holder when no possessing_party does
    s.capture(s.maker, step(s, s.maker, "8004", "shipping",
                            to=[("location", s.retailer.location)]))
    assert item(s, "8004")["custody_to"] == "eu-retail"


def test_the_party_handed_the_goods_may_destroy_them_at_once(s: Scenario) -> None:
    """A recycler's single 'destroying' event takes the custody its holder offered."""
    commission(s, "8005")
    s.capture(s.maker, step(s, s.maker, "8005", "shipping",
                            to=[("possessing_party", pgln(s.carrier))]))
    assert not destroy(s, s.carrier, "8005").rejected
    assert item(s, "8005")["state"] == "decommissioned"


def test_claiming_custody_takes_nothing(s: Scenario) -> None:
    """A party's own 'receiving' of goods nobody handed it, or a hand-over named by a
    party that does not hold the goods, changes no custody."""
    commission(s, "8006")
    s.capture(s.retailer, step(s, s.retailer, "8006", "receiving"))
    assert custodian_of(item(s, "8006")) == "shenzhen-maker"
    s.capture(s.carrier, step(s, s.carrier, "8006", "shipping",
                              to=[("possessing_party", pgln(s.retailer))]))
    assert "custody_to" not in item(s, "8006")
    s.capture(s.retailer, step(s, s.retailer, "8006", "receiving"))
    assert custodian_of(item(s, "8006")) == "shenzhen-maker"
    assert rejected_codes(destroy(s, s.retailer, "8006")) == ["not_custodian"]
    # an unregistered destination hands nothing over
    s.capture(s.maker, step(s, s.maker, "8006", "shipping",
                            to=[("possessing_party", "urn:epc:id:pgln:9999999.00001")]))
    assert "custody_to" not in item(s, "8006")


def test_a_refused_decommissioning_is_refused_alone(s: Scenario) -> None:
    """In proceed mode only the stranger's decommissioning is refused, with its stable
    code and fixed reason; its other events are recorded."""
    commission(s, "8007")
    result = s.capture(s.carrier, step(s, s.carrier, "8007", "shipping", action="OBSERVE"),
                       step(s, s.carrier, "8007", "decommissioning"),
                       error_behaviour="proceed")
    assert not result.rejected
    refused = [dict(e.attributes) for e in result.events
               if e.type == "trace.capture.rejected"]
    assert refused == [{"position": 1, "code": "not_custodian",
                        "reason": REJECTION_REASONS["not_custodian"],
                        "org": "rail-carrier"}]
    assert item(s, "8007")["state"] == "in_transit"


def test_a_late_decommissioning_by_a_stranger_is_refused_too(s: Scenario) -> None:
    """A decommissioning dated before the item's last event changes nothing, but a
    stranger's is still refused, not recorded as history of the item."""
    commission(s, "8008")
    early = s.chain.time - 60_000
    refused = s.capture(s.carrier, step(s, s.carrier, "8008", "decommissioning", at=early))
    assert rejected_codes(refused) == ["not_custodian"]


def test_items_recorded_before_custody_are_their_brand_owners() -> None:
    assert custodian_of({"brand_owner": "maker"}) == "maker"
    assert custodian_of({"brand_owner": "maker", "custodian": "shop"}) == "shop"
