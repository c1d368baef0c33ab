"""Shipments on the trade test World: a paid order shipped under a waybill, tracking
events captured in trace by the carriers, and a merchant–carrier agreement.

* ``paid_order(world, buyer="anna") -> order id``: a published listing (25.00 EUR,
  rail 5.00) and a paid order of it.
* ``route(world, *legs)``: legs payload, planned from the next block's time; default
  Xiamen → Łódź by rail (``rail-express``) then Łódź → Duisburg last mile
  (``last-mile``).
* ``ship_order(world, order, shipment="sh-1", waybill="CIM-1", **extra) -> shipment``:
  ``trade.create_shipment`` by the merchant (the waybill issued by ``rail-express``).
* ``capture(world, org, step, waybill="CIM-1", *, temperatures=(), uom="CEL",
  carrier="rail-express", btt="bol") -> BlockExecution``: ``org`` captures one EPCIS
  ObjectEvent naming the waybill (``urn:epcglobal:cbv:bt:<carrier>:<waybill>``); the
  supply invariant is checked after the block.
* ``agreement(world, rules, *, deposit=..., until_ms=...) -> id``: the merchant proposes,
  ``rail-express`` (funded, deposit locked) accepts.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any

from services.ledger.core.execution import BlockExecution
from services.trade.vocabulary import DAY_MS
from tests.ledger.core.conftest import rejected_codes
from tests.trade.conftest import World
from tests.trade.market_world import MERCHANT, publish_listing
from tests.trade.order_world import eur, place

CARRIER = "rail-express"
LAST_MILE = "last-mile"
HOUR_MS = 3_600_000
_serials = itertools.count(1)


def paid_order(world: World, buyer: str = "anna") -> str:
    listing = world.get(f"listing/{MERCHANT}/tea-1") or publish_listing(world)
    return place(world, buyer, listing)


def leg(mode: str, carrier: str, origin: str, destination: str, departs: int,
        arrives: int) -> dict[str, Any]:
    return {"mode": mode, "carrier": carrier, "from": origin, "to": destination,
            "departs": departs, "arrives": arrives}


def route(world: World, *legs: dict[str, Any]) -> list[dict[str, Any]]:
    if legs:
        return list(legs)
    now = world.chain.next_time
    return [leg("rail", CARRIER, "CNXMN", "PLLOD", now + HOUR_MS, now + 12 * DAY_MS),
            leg("last_mile", LAST_MILE, "PLLOD", "DEDUI", now + 12 * DAY_MS + HOUR_MS,
                now + 14 * DAY_MS)]


def shipment_payload(world: World, order: str, shipment: str = "sh-1",
                     waybill: str = "CIM-1", *, legs: Sequence[dict[str, Any]] = (),
                     carrier: str = CARRIER, **extra: Any) -> dict[str, Any]:
    return {"shipment": shipment, "order": order, "carrier": carrier, "waybill": waybill,
            "legs": route(world, *legs), **extra}


def ship_order(world: World, order: str, shipment: str = "sh-1", waybill: str = "CIM-1",
               **extra: Any) -> str:
    world.ok(MERCHANT, "create_shipment", shipment_payload(world, order, shipment,
                                                           waybill, **extra))
    return shipment


def _iso(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def tracking_event(world: World, step: str, waybill: str = "CIM-1", *,
                   temperatures: Sequence[str] = (), uom: str | None = "CEL",
                   carrier: str = CARRIER, btt: str | None = "bol",
                   reference: str | None = None) -> dict[str, Any]:
    transaction: dict[str, Any] = {
        "bizTransaction": reference or f"urn:epcglobal:cbv:bt:{carrier}:{waybill}"}
    if btt is not None:
        transaction["type"] = btt
    event: dict[str, Any] = {
        "type": "ObjectEvent", "eventTime": _iso(world.chain.next_time),
        "eventTimeZoneOffset": "+00:00", "action": "OBSERVE",
        "epcList": [f"urn:epc:id:sscc:0614141.{next(_serials):010d}"],
        "bizStep": step, "disposition": "in_transit",
        "bizTransactionList": [transaction]}
    if temperatures:
        reports = [{"type": "Temperature", "value": t} for t in temperatures]
        if uom is not None:
            for report in reports:
                report["uom"] = uom
        event["sensorElementList"] = [{"sensorMetadata": {"time": event["eventTime"]},
                                       "sensorReport": reports}]
    return event


def capture(world: World, org: str, step: str, waybill: str = "CIM-1", **kw: Any
            ) -> BlockExecution:
    """``org`` captures a tracking event in trace (its own transaction)."""
    tx = world.chain.tx(world.keys[org], "trace.capture",
                        {"events": [tracking_event(world, step, waybill, **kw)]})
    result = world.chain.block([tx])
    assert not result.rejected, rejected_codes(result)
    world.check_supply()
    return result


def agreement(world: World, rules: list[dict[str, Any]], *, deposit: int = 100_000,
              until_ms: int = 365 * DAY_MS, carrier: str = CARRIER) -> str:
    """An active agreement between the merchant and ``carrier`` (whose deposit holds
    ``deposit`` EUR cents more)."""
    if deposit:
        world.fund(carrier, deposit)
        world.ok(carrier, "deposit", {"money": eur(deposit)})
    result = world.ok(MERCHANT, "propose_agreement", {
        "counterparty": carrier, "rules": rules,
        "until": world.chain.next_time + until_ms})
    (proposed,) = world.events(result, "trade.agreement.proposed")
    world.ok(carrier, "accept_agreement", {"agreement": proposed["agreement"]})
    return str(proposed["agreement"])


def event_types(result: BlockExecution) -> list[str]:
    return [e.type for e in result.events]
