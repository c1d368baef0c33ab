"""Logistics: shipments under a waybill, legs advanced by the carriers' EPCIS events
captured in trace, late legs on block time, customs holds, and the proof of delivery
that delivers the order (or refunds a return). Each rule with its negative; the supply
invariant after every block."""

from __future__ import annotations

from typing import Any

import pytest

from services.trade.vocabulary import DAY_MS, LEG_GRACE_MS, LEGS_MAX
from tests.trade.conftest import World, digest
from tests.trade.market_world import MERCHANT, add_org
from tests.trade.order_world import advance
from tests.trade.shipping_world import (
    CARRIER,
    HOUR_MS,
    LAST_MILE,
    agreement,
    capture,
    event_types,
    leg,
    paid_order,
    ship_order,
    shipment_payload,
    tracking_event,
)


def shipment(world: World, shipment_id: str = "sh-1") -> dict[str, Any]:
    value: dict[str, Any] = world.get(f"shipment/{shipment_id}")
    return value


def statuses(world: World, shipment_id: str = "sh-1") -> list[str]:
    return [leg["status"] for leg in shipment(world, shipment_id)["legs"]]


def deliver(world: World, shipment_id: str = "sh-1", carrier: str = LAST_MILE) -> Any:
    return world.ok(carrier, "confirm_delivery", {"shipment": shipment_id,
                                                  "proof_digest": digest("pod")})


# --- the journey -----------------------------------------------------------------------------


def test_a_shipment_travels_its_legs_and_its_proof_of_delivery_delivers_the_order(
        world: World) -> None:
    order = paid_order(world)
    result = world.ok(MERCHANT, "create_shipment", shipment_payload(world, order))
    (created,) = world.events(result, "trade.shipment.created")
    assert created["waybill"] == "CIM-1" and created["kind"] == "forward"
    assert [leg["to"] for leg in created["legs"]] == ["PLLOD", "DEDUI"]
    assert world.get(f"order/{order}")["status"] == "shipped"
    assert world.get(f"waybill/{CARRIER}/CIM-1") == "sh-1"

    departed = capture(world, CARRIER, "departing")
    (event,) = world.events(departed, "trade.shipment.departed")
    assert event["leg"] == 0 and event["event_hash"]
    assert statuses(world) == ["departed", "planned"]
    arrived = capture(world, CARRIER, "arriving")
    assert world.events(arrived, "trade.shipment.arrived")[0]["late"] is False
    capture(world, LAST_MILE, "departing")
    assert statuses(world) == ["arrived", "departed"]
    assert shipment(world)["current"] == 1

    delivered = deliver(world)
    types = event_types(delivered)
    assert "trade.shipment.delivered" in types and "trade.order.delivered" in types
    assert statuses(world) == ["arrived", "arrived"]
    assert world.get(f"order/{order}")["status"] == "delivered"
    assert shipment(world)["proof"] == {"digest": digest("pod"), "by": LAST_MILE}
    # the buyer countersigns once; nobody else may
    assert world.code(MERCHANT, "countersign_delivery", {
        "shipment": "sh-1", "proof_digest": digest("buyer")}) == "forbidden"
    world.ok("anna", "countersign_delivery", {"shipment": "sh-1",
                                              "proof_digest": digest("buyer")})
    assert world.code("anna", "countersign_delivery", {
        "shipment": "sh-1", "proof_digest": digest("buyer")}) == "already_countersigned"
    # delivered once: later events change nothing
    assert world.code(LAST_MILE, "confirm_delivery", {
        "shipment": "sh-1", "proof_digest": digest("pod")}) == "already_delivered"
    later = capture(world, LAST_MILE, "arriving")
    assert not [t for t in event_types(later) if t.startswith("trade.")]


def test_only_the_carrier_in_charge_advances_a_leg_and_only_in_order(world: World) -> None:
    ship_order(world, paid_order(world))
    add_org(world, "other-carrier", ["carrier"])

    def trade_events(result: Any) -> list[str]:
        return [t for t in event_types(result) if t.startswith("trade.")]

    # another carrier, the next leg's carrier too early, the merchant itself: ignored
    assert trade_events(capture(world, "other-carrier", "departing")) == []
    assert trade_events(capture(world, LAST_MILE, "departing")) == []
    assert trade_events(capture(world, MERCHANT, "departing")) == []
    # arriving before departing: ignored
    assert trade_events(capture(world, CARRIER, "arriving")) == []
    assert statuses(world) == ["planned", "planned"]
    capture(world, CARRIER, "departing")
    # departing twice, or the next leg departing while this one travels: ignored
    assert trade_events(capture(world, CARRIER, "departing")) == []
    assert trade_events(capture(world, LAST_MILE, "departing")) == []
    assert statuses(world) == ["departed", "planned"]
    # the previous leg's carrier cannot move the next leg
    capture(world, CARRIER, "arriving")
    assert trade_events(capture(world, CARRIER, "departing")) == []
    assert statuses(world) == ["arrived", "planned"]


def test_events_of_one_block_apply_in_their_order(world: World) -> None:
    ship_order(world, paid_order(world))
    tx = world.chain.tx(world.keys[CARRIER], "trace.capture", {"events": [
        tracking_event(world, "departing"), tracking_event(world, "arriving")]})
    result = world.chain.block([tx])
    assert [t for t in event_types(result) if t.startswith("trade.shipment.")] == \
        ["trade.shipment.departed", "trade.shipment.arrived"]
    assert statuses(world) == ["arrived", "planned"]
    world.check_supply()


def test_an_unknown_or_foreign_waybill_is_ignored(world: World) -> None:
    ship_order(world, paid_order(world))
    for kw in ({"waybill": "CIM-2"},  # not a waybill of the chain
               {"carrier": LAST_MILE},  # CIM-1 of another carrier
               {"reference": "urn:epcglobal:cbv:bt:rail-express:CIM-1:x"},
               {"reference": "https://carrier.example/waybill/CIM-1"},
               {"btt": "po"}):  # not a transport document
        result = capture(world, CARRIER, "departing", **kw)
        assert not [t for t in event_types(result) if t.startswith("trade.")], kw
    assert statuses(world) == ["planned", "planned"]


@pytest.mark.parametrize("btt", [None, "bol", "urn:epcglobal:cbv:btt:bol",
                                 "urn:example:btt:cmr", "https://ns.example.com/btt/AWB"])
def test_the_transport_documents_type_is_read_liberally(world: World, btt: str | None
                                                        ) -> None:
    ship_order(world, paid_order(world))
    result = capture(world, CARRIER, "departing", btt=btt)
    assert "trade.shipment.departed" in event_types(result)


def test_a_customs_hold_is_marked_and_cleared_by_the_next_move(world: World) -> None:
    ship_order(world, paid_order(world))
    add_org(world, "eu-customs", ["customs_eu"])
    add_org(world, "a-retailer", ["retailer"])
    capture(world, CARRIER, "departing")
    assert not [t for t in event_types(capture(world, "a-retailer", "holding"))
                if t.startswith("trade.")]
    held = capture(world, "eu-customs", "holding")
    (event,) = world.events(held, "trade.shipment.held")
    assert event["by"] == "eu-customs" and event["leg"] == 0
    assert shipment(world)["held"] is True
    capture(world, CARRIER, "arriving")
    assert shipment(world)["held"] is False
    assert shipment(world)["legs"][0]["holds"] == 1


# --- late legs -------------------------------------------------------------------------------


def test_a_leg_not_arrived_after_its_grace_is_late_and_charges_the_carrier_once(
        world: World) -> None:
    rules = [{"type": "late_arrival", "penalty": {"amount": 4_000, "currency": "EUR"}}]
    deal = agreement(world, rules, deposit=10_000)
    ship_order(world, paid_order(world), agreement=deal)
    capture(world, CARRIER, "departing")
    planned = shipment(world)["legs"][0]["arrives"]
    quiet = advance(world, planned + LEG_GRACE_MS - 1_000)
    assert "trade.leg.late" not in [e.type for e in quiet]
    late = advance(world, planned + LEG_GRACE_MS)
    (event,) = [dict(e.attributes) for e in late if e.type == "trade.leg.late"]
    assert event == {"shipment": "sh-1", "order": shipment(world)["order"], "leg": 0,
                     "carrier": CARRIER, "missed": "arrival",
                     "due": planned + LEG_GRACE_MS}
    (penalty,) = [dict(e.attributes) for e in late if e.type == "trade.penalty.applied"]
    assert (penalty["payer"], penalty["payee"], penalty["paid"]) == (CARRIER, MERCHANT,
                                                                     4_000)
    assert penalty["reason"] == "late_arrival" and penalty["agreement"] == deal
    assert world.balance(MERCHANT) == 4_000
    assert world.get(f"deposit/{CARRIER}/EUR") == 6_000
    arrived = capture(world, CARRIER, "arriving")
    assert world.events(arrived, "trade.shipment.arrived")[0]["late"] is True
    # the next leg late too: trade.leg.late again, the rule is not charged twice
    capture(world, LAST_MILE, "departing")
    later = advance(world, shipment(world)["legs"][1]["arrives"] + LEG_GRACE_MS)
    assert [e.type for e in later].count("trade.leg.late") == 1
    assert "trade.penalty.applied" not in [e.type for e in later]
    assert world.get(f"deposit/{CARRIER}/EUR") == 6_000


def test_an_arrival_in_time_cancels_the_deadline(world: World) -> None:
    deal = agreement(world, [{"type": "late_arrival",
                              "penalty": {"amount": 4_000, "currency": "EUR"}}])
    ship_order(world, paid_order(world), agreement=deal)
    capture(world, CARRIER, "departing")
    capture(world, CARRIER, "arriving")
    capture(world, LAST_MILE, "departing")
    deliver(world)
    events = advance(world, world.chain.time + 30 * DAY_MS)
    assert not {"trade.leg.late", "trade.penalty.applied"} & {e.type for e in events}


def test_a_first_leg_not_departed_in_time_charges_the_late_shipment_rule(
        world: World) -> None:
    world.fund(MERCHANT, 3_000)
    world.ok(MERCHANT, "deposit", {"money": {"amount": 3_000, "currency": "EUR"}})
    deal = agreement(world, [{"type": "late_shipment",
                              "penalty": {"amount": 3_000, "currency": "EUR"}}], deposit=0)
    ship_order(world, paid_order(world), agreement=deal)
    departs = shipment(world)["legs"][0]["departs"]
    events = advance(world, departs + LEG_GRACE_MS)
    (late,) = [dict(e.attributes) for e in events if e.type == "trade.leg.late"]
    assert late["missed"] == "departure"
    (penalty,) = [dict(e.attributes) for e in events if e.type == "trade.penalty.applied"]
    assert (penalty["payer"], penalty["payee"]) == (MERCHANT, CARRIER)
    assert world.balance(CARRIER) == 3_000


# --- proof of delivery -----------------------------------------------------------------------


def test_only_the_last_legs_carrier_confirms_delivery_once_it_departed(world: World) -> None:
    ship_order(world, paid_order(world))
    pod = {"shipment": "sh-1", "proof_digest": digest("pod")}
    assert world.code(CARRIER, "confirm_delivery", pod) == "forbidden"
    assert world.code(LAST_MILE, "confirm_delivery", pod) == "not_in_last_leg"
    capture(world, CARRIER, "departing")
    capture(world, CARRIER, "arriving")
    assert world.code(LAST_MILE, "confirm_delivery", pod) == "not_in_last_leg"
    capture(world, LAST_MILE, "departing")
    assert world.code(LAST_MILE, "confirm_delivery", {**pod, "proof_digest": "x"}) == \
        "bad_payload"
    assert world.code(LAST_MILE, "confirm_delivery", {**pod, "shipment": "sh-9"}) == \
        "not_found"
    assert world.code("anna", "countersign_delivery", pod) == "not_delivered"
    deliver(world)
    assert world.code(LAST_MILE, "confirm_delivery", pod) == "already_delivered"


# --- creating shipments: every refusal --------------------------------------------------------


def test_only_the_orders_merchant_ships_a_paid_order_once(world: World) -> None:
    order = paid_order(world)
    payload = shipment_payload(world, order)
    add_org(world, "other-merchant", ["merchant"])
    assert world.code("other-merchant", "create_shipment", payload) == "forbidden"
    assert world.code("anna", "create_shipment", payload) == "forbidden"
    assert world.code(MERCHANT, "create_shipment", {**payload, "order": "ab" * 32}) == \
        "not_found"
    assert world.code(MERCHANT, "create_shipment", {**payload, "return_of": order}) == \
        "bad_payload"
    assert world.code(MERCHANT, "create_shipment", {
        k: v for k, v in payload.items() if k != "order"}) == "bad_payload"
    world.ok(MERCHANT, "create_shipment", payload)
    assert world.code(MERCHANT, "create_shipment", payload) == "shipment_exists"
    again = shipment_payload(world, order, "sh-2", "CIM-2")
    assert world.code(MERCHANT, "create_shipment", again) == "order_not_paid"
    other = paid_order(world, "ben")
    assert world.code(MERCHANT, "create_shipment", shipment_payload(
        world, other, "sh-3", "CIM-1")) == "waybill_used"
    world.ok(MERCHANT, "create_shipment", shipment_payload(world, other, "sh-3",
                                                           "CIM-1", carrier=LAST_MILE,
                                                           legs=[leg("last_mile", LAST_MILE,
                                                                     "DEHAM", "DEDUI",
                                                                     world.chain.next_time,
                                                                     world.chain.next_time
                                                                     + DAY_MS)]))


def test_a_shipments_route_is_checked(world: World) -> None:
    order = paid_order(world)
    now = world.chain.next_time
    good = leg("rail", CARRIER, "CNXMN", "PLLOD", now + HOUR_MS, now + DAY_MS)

    def code(*legs: dict[str, Any], **extra: Any) -> str:
        return world.code(MERCHANT, "create_shipment",
                          {**shipment_payload(world, order, legs=legs), **extra})

    assert code({**good, "mode": "teleport"}) == "bad_payload"
    assert code({**good, "from": "Xiamen"}) == "bad_payload"
    assert code({**good, "carrier": "anna"}) == "not_a_carrier"
    assert code({**good, "carrier": "nobody"}) == "not_a_carrier"
    assert code({**good, "vessel": "x"}) == "bad_payload"
    assert code({**good, "departs": now - 1}) == "bad_payload"  # planned in the past
    assert code({**good, "arrives": now + 400 * DAY_MS}) == "bad_payload"  # beyond plans
    assert code({**good, "arrives": now + HOUR_MS}) == "bad_route"
    assert code({**good, "to": "CNXMN"}) == "bad_route"
    assert code(good, leg("road", LAST_MILE, "DEHAM", "DEDUI", now + DAY_MS,
                          now + 2 * DAY_MS)) == "bad_route"  # not where it ended
    assert code(good, leg("road", LAST_MILE, "PLLOD", "DEDUI", now + HOUR_MS,
                          now + 2 * DAY_MS)) == "bad_route"  # before it arrived
    assert code(*[good] * (LEGS_MAX + 1)) == "bad_payload"
    assert code(good, carrier="anna") == "not_a_carrier"
    assert code(good, waybill="CIM 1") == "bad_payload"
    assert code(good, shipment="Sh 1") == "bad_payload"
    assert world.code(MERCHANT, "create_shipment", {
        **shipment_payload(world, order), "legs": []}) == "bad_payload"


def test_a_shipment_names_only_an_agreement_of_its_merchant_and_carrier(
        world: World) -> None:
    rules = [{"type": "late_arrival", "penalty": {"amount": 100, "currency": "EUR"}}]
    deal = agreement(world, rules, until_ms=2 * DAY_MS)
    with_last_mile = agreement(world, rules, carrier=LAST_MILE)
    order = paid_order(world)
    payload = shipment_payload(world, order)
    assert world.code(MERCHANT, "create_shipment", {**payload, "agreement": with_last_mile}
                      ) == "forbidden"
    assert world.code(MERCHANT, "create_shipment", {**payload, "agreement": "cd" * 32}
                      ) == "not_found"
    advance(world, world.chain.time + 2 * DAY_MS)
    assert world.code(MERCHANT, "create_shipment", {
        **shipment_payload(world, order), "agreement": deal}) == "agreement_expired"


# --- returns ---------------------------------------------------------------------------------


def _delivered(world: World, buyer: str = "anna") -> str:
    order = paid_order(world, buyer)
    ship_order(world, order, f"sh-{order[:8]}", f"CIM-{order[:8]}")
    capture(world, CARRIER, "departing", f"CIM-{order[:8]}")
    capture(world, CARRIER, "arriving", f"CIM-{order[:8]}")
    capture(world, LAST_MILE, "departing", f"CIM-{order[:8]}")
    deliver(world, f"sh-{order[:8]}")
    return order


def _return_payload(world: World, order: str, **extra: Any) -> dict[str, Any]:
    now = world.chain.next_time
    return {"shipment": "ret-1", "return_of": order, "carrier": LAST_MILE,
            "waybill": "RET-1",
            "legs": [leg("last_mile", LAST_MILE, "DEDUI", "CNXMN", now + HOUR_MS,
                         now + 5 * DAY_MS)], **extra}


def test_an_authorised_return_ships_back_and_its_delivery_refunds_the_buyer(
        world: World) -> None:
    order = _delivered(world)
    assert world.code("anna", "create_shipment", _return_payload(world, order)) == \
        "return_not_authorised"
    world.ok("anna", "request_return", {"order": order, "reason": "withdrawal"})
    assert world.code(MERCHANT, "create_shipment", _return_payload(world, order)) == \
        "forbidden"
    deal = agreement(world, [{"type": "late_arrival",
                              "penalty": {"amount": 100, "currency": "EUR"}}],
                     carrier=LAST_MILE)
    assert world.code("anna", "create_shipment", _return_payload(
        world, order, agreement=deal)) == "bad_payload"
    created = world.ok("anna", "create_shipment", _return_payload(world, order))
    assert world.events(created, "trade.shipment.created")[0]["kind"] == "return"
    assert world.code("anna", "create_shipment", _return_payload(
        world, order, shipment="ret-2", waybill="RET-2")) == "return_shipped"
    before = world.balance("anna")
    capture(world, LAST_MILE, "departing", "RET-1", carrier=LAST_MILE)
    delivered = world.ok(LAST_MILE, "confirm_delivery", {"shipment": "ret-1",
                                                         "proof_digest": digest("r")})
    assert "trade.return.refunded" in event_types(delivered)
    assert world.get(f"order/{order}")["status"] == "refunded"
    assert world.balance("anna") == before + 3_000  # 25.00 + 5.00 shipping
    # the merchant, the consignee of a return, countersigns it
    assert world.code("anna", "countersign_delivery", {
        "shipment": "ret-1", "proof_digest": digest("m")}) == "forbidden"
    world.ok(MERCHANT, "countersign_delivery", {"shipment": "ret-1",
                                                "proof_digest": digest("m")})
