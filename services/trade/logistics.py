"""Logistics: shipments under a carrier's waybill, their legs, tracking events captured
in trace, and the proof of delivery.

``trade.create_shipment {shipment, order | return_of, carrier, waybill, legs,
agreement?}``: the merchant ships a paid order (``order``), or the buyer sends an
authorised return back (``return_of`` names the order; returns.py authorised it). The
waybill is the transport document number the ``carrier`` issued (a CIM/SMGS rail
consignment note, a bill of lading, an air waybill), unique per carrier. ``legs`` =
``[{mode, carrier, from, to, departs, arrives}]``: the route (UN/LOCODEs, each leg
starting where the previous one ended, no earlier than it arrived; planned block times
in ms). ``agreement`` (forward shipments only) names an active agreement between the
merchant and ``carrier``: its rules then apply to this shipment (agreements.py). The
contracting ``carrier`` answers for its legs' subcontracted carriers (as under CIM and
CMR).

**Tracking** (end of every block): a ``trace.event.captured`` event whose EPCIS event
names the waybill in its bizTransactionList advances the shipment. The reference is
strict: the value ``urn:epcglobal:cbv:bt:<carrier>:<waybill>`` (the CBV business
transaction URN, naming the issuing carrier by its organisation id); the type is read
liberally (absent, CBV ``bol``, or a private type whose last word is a transport
document such as ``cmr`` or ``awb``: ``TRANSPORT_DOCUMENTS``). Only the carrier in
charge may report: the current leg's carrier, or the next leg's once the current leg
arrived. Its ``departing`` starts the next planned leg, ``arriving`` ends the leg in
transit, ``holding`` marks a hold (also when captured by customs:
``CUSTOMS_ROLES``); any of its events with a Temperature reading outside a temperature
rule of the shipment's agreement charges the rule (once per shipment). Everything else
— another organisation's event, an unknown waybill, a step out of order, a shipment
delivered — is ignored: trace recorded the event, trade draws nothing from it.

**Deadlines**: ``leg:<shipment>:<index>`` at each leg's ``arrives + LEG_GRACE_MS``: not
arrived by then, the leg is late (``trade.leg.late``) and the agreement's
``late_arrival`` rules are charged (once per shipment); ``depart:<shipment>`` at the
first leg's ``departs + LEG_GRACE_MS``: not departed, ``trade.leg.late`` (missed
departure) and the ``late_shipment`` rules. Late is judged on block time, which no
party can backdate (an EPCIS eventTime can be).

**Proof of delivery**: ``trade.confirm_delivery {shipment, proof_digest}`` by the last
leg's carrier once that leg departed (the digest of the signed delivery receipt, kept
off chain) ends the shipment: a forward shipment's order is delivered
(orders.mark_delivered), a return's order refunded (returns.returned).
``trade.countersign_delivery {shipment, proof_digest}``: the consignee (the buyer; the
merchant for a return) may add its own receipt, once.

State (under ``trade/``)::

    shipment/<id>               {id, kind (forward | return), order, merchant, buyer,
                                sender, carrier, waybill, agreement, legs, current,
                                status (created | in_transit | delivered), held, late,
                                created, delivered_at, proof, countersigned, penalised
                                [rule indexes], tracked, last_event}; a leg: {mode,
                                carrier, from, to, departs, arrives, status (planned |
                                departed | arrived), departed_at, arrived_at, late,
                                late_departure, holds, bucket}
    waybill/<carrier>/<waybill> the shipment id (a waybill names one shipment, for good)
    return_shipment/<order>     the id of the order's return shipment (one per order)

Refusal codes: ``bad_payload``, ``bad_route``, ``not_found``, ``forbidden``,
``shipment_exists``, ``waybill_used``, ``not_a_carrier``, ``order_not_paid``,
``return_not_authorised``, ``return_shipped``, ``agreement_closed``,
``agreement_expired``, ``already_delivered``, ``not_in_last_leg``, ``not_delivered``,
``already_countersigned``.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from services.ledger.core import deadlines
from services.ledger.core.contract import BlockContext, TxContext, _Scope
from services.trade import agreements, orders, returns
from services.trade.vocabulary import (
    CARRIER_ROLES,
    CUSTOMS_ROLES,
    HEX64_RE,
    ID_RE,
    LEG_GRACE_MS,
    LEGS_MAX,
    LOCODE_RE,
    MODES,
    ORG_RE,
    PLAN_HORIZON_MS,
    TRANSPORT_DOCUMENTS,
    WAYBILL_RE,
    ActionSpec,
    BlockHandler,
    DeadlineHandler,
    as_list,
    digest,
    integer,
    text_id,
)

__all__ = ["ACTIONS", "DEADLINES", "ON_BLOCK", "WAYBILL_URN", "shipment_of",
           "waybill_reference", "waybills_of"]

#: the CBV business transaction URN a tracking event names a waybill by
WAYBILL_URN: Final = "urn:epcglobal:cbv:bt:"
_LEG_FIELDS: Final = frozenset({"mode", "carrier", "from", "to", "departs", "arrives"})


# --- reading ---------------------------------------------------------------------------------

def shipment_of(ctx: _Scope, shipment: str) -> dict[str, Any] | None:
    value = ctx.get(f"shipment/{shipment}")
    return value if isinstance(value, dict) else None


def _save(ctx: _Scope, shipment: dict[str, Any]) -> None:
    ctx.put(f"shipment/{shipment['id']}", shipment)


def waybill_reference(value: object) -> tuple[str, str] | None:
    """(carrier, waybill) of a bizTransaction value
    ``urn:epcglobal:cbv:bt:<carrier>:<waybill>``, or None."""
    if not isinstance(value, str) or not value.isascii() or not value.startswith(WAYBILL_URN):
        return None
    carrier, sep, waybill = value[len(WAYBILL_URN):].partition(":")
    if not sep or not ORG_RE.fullmatch(carrier) or not WAYBILL_RE.fullmatch(waybill):
        return None
    return carrier, waybill


def _transport_document(kind: object) -> bool:
    """A bizTransaction type that may name a waybill: absent, or a CBV word or private
    URI whose last word (ASCII, any case) is a transport document."""
    if kind is None:
        return True
    if not isinstance(kind, str) or not kind.isascii():
        return False
    word = kind.replace("#", "/").replace(":", "/").rsplit("/", 1)[-1].lower()
    return word.removeprefix("btt-") in TRANSPORT_DOCUMENTS


def waybills_of(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The waybills a (validated) EPCIS event names, in order, each once."""
    found: list[tuple[str, str]] = []
    for item in event.get("bizTransactionList") or ():
        if not isinstance(item, Mapping) or not _transport_document(item.get("type")):
            continue
        reference = waybill_reference(item.get("bizTransaction"))
        if reference is not None and reference not in found:
            found.append(reference)
    return found


def _roles(ctx: _Scope, org: str) -> frozenset[str]:
    record = ctx.read(f"consortium/org/{org}")
    if not isinstance(record, dict) or record.get("status") != "active":
        return frozenset()
    return frozenset(record.get("roles", ()))


# --- creating a shipment ---------------------------------------------------------------------

def _carrier(ctx: TxContext, value: object, field: str) -> str:
    org = text_id(ctx, value, field, ORG_RE)
    if not _roles(ctx, org) & CARRIER_ROLES:
        ctx.fail("not_a_carrier", f"{field} {org!r} is not an active carrier")
    return org


def _order_for(ctx: TxContext) -> tuple[dict[str, Any], str]:
    """The order shipped and the shipment's kind (forward or return)."""
    forward, back = ctx.payload.get("order"), ctx.payload.get("return_of")
    if (forward is None) == (back is None):
        ctx.fail("bad_payload", "name exactly one of order (a shipment to the buyer) or "
                                "return_of (a return to the merchant)")
    field = "order" if back is None else "return_of"
    order_id = text_id(ctx, forward if back is None else back, field, HEX64_RE)
    order = orders.order_of(ctx, order_id)
    if order is None:
        ctx.fail("not_found", f"no order {order_id}")
    if back is None:
        if ctx.sender_org != order["merchant"]:
            ctx.fail("forbidden", "only the order's merchant ships it")
        if order["status"] != "paid":
            ctx.fail("order_not_paid", f"order {order_id} is {order['status']}")
        return order, "forward"
    if ctx.sender_org != order["buyer"]:
        ctx.fail("forbidden", "only the order's buyer sends its return")
    authorised = returns.return_of(ctx, order_id)
    if authorised is None or authorised["status"] != "authorised" \
            or order["status"] != "returning":
        ctx.fail("return_not_authorised", f"order {order_id} has no authorised return")
    if ctx.has(f"return_shipment/{order_id}"):
        ctx.fail("return_shipped", f"order {order_id}'s return is shipped already")
    return order, "return"


def _leg(ctx: TxContext, raw: object, i: int, previous: Mapping[str, Any] | None
         ) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) != _LEG_FIELDS:
        ctx.fail("bad_payload", f"legs[{i}] must be {{{', '.join(sorted(_LEG_FIELDS))}}}")
    mode = raw["mode"]
    if not isinstance(mode, str) or mode not in MODES:
        ctx.fail("bad_payload", f"legs[{i}].mode must be one of {sorted(MODES)}")
    carrier = _carrier(ctx, raw["carrier"], f"legs[{i}].carrier")
    origin = text_id(ctx, raw["from"], f"legs[{i}].from", LOCODE_RE)
    destination = text_id(ctx, raw["to"], f"legs[{i}].to", LOCODE_RE)
    horizon = ctx.time + PLAN_HORIZON_MS
    departs = integer(ctx, raw["departs"], f"legs[{i}].departs", ctx.time, horizon)
    arrives = integer(ctx, raw["arrives"], f"legs[{i}].arrives", ctx.time, horizon)
    if origin == destination or arrives <= departs:
        ctx.fail("bad_route", f"legs[{i}] must go somewhere, arriving after it departs")
    if previous is not None and (origin != previous["to"]
                                 or departs < previous["arrives"]):
        ctx.fail("bad_route", f"legs[{i}] must start where legs[{i - 1}] ends, no earlier "
                              "than it arrives")
    return {"mode": mode, "carrier": carrier, "from": origin, "to": destination,
            "departs": departs, "arrives": arrives, "status": "planned",
            "departed_at": None, "arrived_at": None, "late": False,
            "late_departure": False, "holds": 0, "bucket": None}


def _legs(ctx: TxContext) -> list[dict[str, Any]]:
    raw = as_list(ctx, ctx.payload.get("legs"), "legs", LEGS_MAX)
    if not raw:
        ctx.fail("bad_payload", "a shipment has at least one leg")
    legs: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        legs.append(_leg(ctx, item, i, legs[-1] if legs else None))
    return legs


def _public(leg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: leg[k] for k in ("mode", "carrier", "from", "to", "departs", "arrives")}


def create_shipment(ctx: TxContext) -> None:
    shipment_id = text_id(ctx, ctx.payload.get("shipment"), "shipment", ID_RE)
    if ctx.has(f"shipment/{shipment_id}"):
        ctx.fail("shipment_exists", f"shipment {shipment_id} exists")
    order, kind = _order_for(ctx)
    carrier = _carrier(ctx, ctx.payload.get("carrier"), "carrier")
    waybill = text_id(ctx, ctx.payload.get("waybill"), "waybill", WAYBILL_RE)
    if ctx.has(f"waybill/{carrier}/{waybill}"):
        ctx.fail("waybill_used", f"{carrier}'s waybill {waybill} names another shipment")
    legs = _legs(ctx)
    agreement = ctx.payload.get("agreement")
    if agreement is not None:
        if kind == "return":
            ctx.fail("bad_payload", "a return shipment carries no agreement (the buyer is "
                                    "no party to the merchant's)")
        agreement = text_id(ctx, agreement, "agreement", HEX64_RE)
        agreements.usable_for(ctx, agreement, order["merchant"], carrier)
    for i, leg in enumerate(legs):
        leg["bucket"] = deadlines.schedule(ctx, leg["arrives"] + LEG_GRACE_MS,
                                           f"leg:{shipment_id}:{i}")
    shipment = {"id": shipment_id, "kind": kind, "order": order["id"],
                "merchant": order["merchant"], "buyer": order["buyer"],
                "sender": ctx.sender_org, "carrier": carrier, "waybill": waybill,
                "agreement": agreement, "legs": legs, "current": 0, "status": "created",
                "held": False, "late": False, "created": ctx.time, "delivered_at": None,
                "proof": None, "countersigned": None, "penalised": [], "tracked": 0,
                "last_event": None,
                "depart_bucket": deadlines.schedule(
                    ctx, legs[0]["departs"] + LEG_GRACE_MS, f"depart:{shipment_id}")}
    _save(ctx, shipment)
    ctx.put(f"waybill/{carrier}/{waybill}", shipment_id)
    if kind == "forward":
        orders.mark_shipped(ctx, order["id"], shipment_id)
    else:
        ctx.put(f"return_shipment/{order['id']}", shipment_id)
    ctx.emit("trade.shipment.created", {
        "shipment": shipment_id, "kind": kind, "order": order["id"],
        "merchant": order["merchant"], "buyer": order["buyer"], "carrier": carrier,
        "waybill": waybill, "agreement": agreement,
        "legs": [_public(leg) for leg in legs]})


# --- tracking (end of block: trace's captures) -----------------------------------------------

def _reporters(shipment: Mapping[str, Any]) -> Iterator[int]:
    """The legs whose carrier may report now: the current one, and the next once the
    current one arrived."""
    current, legs = shipment["current"], shipment["legs"]
    yield current
    if legs[current]["status"] == "arrived" and current + 1 < len(legs):
        yield current + 1


def _depart(ctx: _Scope, shipment: dict[str, Any], i: int, ehash: str | None) -> None:
    leg = shipment["legs"][i]
    leg.update(status="departed", departed_at=ctx.time)
    shipment.update(current=i, status="in_transit", held=False)
    if i == 0 and shipment.get("depart_bucket") is not None:
        deadlines.cancel(ctx, shipment["depart_bucket"], f"depart:{shipment['id']}")
        shipment["depart_bucket"] = None
    ctx.emit("trade.shipment.departed", {
        "shipment": shipment["id"], "order": shipment["order"], "leg": i,
        "carrier": leg["carrier"], "from": leg["from"], "to": leg["to"],
        "event_hash": ehash})


def _arrive(ctx: _Scope, shipment: dict[str, Any], i: int, ehash: str | None) -> None:
    leg = shipment["legs"][i]
    leg.update(status="arrived", arrived_at=ctx.time)
    shipment["held"] = False
    if leg["bucket"] is not None:
        deadlines.cancel(ctx, leg["bucket"], f"leg:{shipment['id']}:{i}")
        leg["bucket"] = None
    ctx.emit("trade.shipment.arrived", {
        "shipment": shipment["id"], "order": shipment["order"], "leg": i,
        "carrier": leg["carrier"], "to": leg["to"], "late": leg["late"],
        "event_hash": ehash})


def _hold(ctx: _Scope, shipment: dict[str, Any], by: str, ehash: str) -> None:
    i = shipment["current"]
    shipment["legs"][i]["holds"] += 1
    shipment["held"] = True
    ctx.emit("trade.shipment.held", {"shipment": shipment["id"],
                                     "order": shipment["order"], "leg": i, "by": by,
                                     "event_hash": ehash})


def _charge(ctx: _Scope, shipment: dict[str, Any], kind: str, leg: int,
            ehash: str | None, detail: str, *, event: Mapping[str, Any] | None = None,
            reporter: str | None = None) -> None:
    """Charge the shipment's agreement's rules of ``kind`` not charged yet for it. A
    temperature rule is judged on ``event``, reported by ``reporter``: never on the
    evidence of the party its penalty would be paid to."""
    if shipment["agreement"] is None:
        return
    record = agreements.agreement_of(ctx, shipment["agreement"])
    if record is None:
        return
    for index in agreements.rules_of_type(record, kind):
        if index in shipment["penalised"]:
            continue
        why: str | None = detail
        if event is not None:
            why = None if reporter == agreements.beneficiary(record, index) else \
                agreements.temperature_breach(record["rules"][index], event)
        if why is None:
            continue
        agreements.penalise(ctx, record["id"], index, kind, {
            "shipment": shipment["id"], "leg": leg, "event_hash": ehash, "detail": why},
            order=shipment["order"])
        shipment["penalised"].append(index)


def _track(ctx: BlockContext, shipment: dict[str, Any], event: Mapping[str, Any],
           org: str, ehash: str) -> None:
    step = event.get("bizStep")
    reporting = [i for i in _reporters(shipment) if shipment["legs"][i]["carrier"] == org]
    if not reporting:
        if step == "holding" and _roles(ctx, org) & CUSTOMS_ROLES:
            _hold(ctx, shipment, org, ehash)
            _save(ctx, shipment)
        return
    current, legs = shipment["current"], shipment["legs"]
    shipment["tracked"] += 1
    shipment["last_event"] = ehash
    _charge(ctx, shipment, "temperature", current, ehash, "", event=event, reporter=org)
    if step == "departing":
        nxt = current if legs[current]["status"] == "planned" else current + 1
        if nxt in reporting and legs[nxt]["status"] == "planned":
            _depart(ctx, shipment, nxt, ehash)
    elif step == "arriving":
        if current in reporting and legs[current]["status"] == "departed":
            _arrive(ctx, shipment, current, ehash)
    elif step == "holding":
        _hold(ctx, shipment, org, ehash)
    _save(ctx, shipment)


def track(ctx: BlockContext) -> None:
    """The block's tracking events: every ``trace.event.captured`` naming a waybill of a
    shipment, in block order (trace runs before trade: the same in every replica)."""
    for captured in ctx.events_so_far:
        if captured.type != "trace.event.captured":
            continue
        attributes = captured.attributes
        event, org = attributes.get("event"), attributes.get("org")
        ehash = attributes.get("event_hash")
        if not isinstance(event, Mapping) or not isinstance(org, str) \
                or not isinstance(ehash, str):
            continue
        seen: set[str] = set()
        for carrier, waybill in waybills_of(event):
            shipment_id = ctx.get(f"waybill/{carrier}/{waybill}")
            if not isinstance(shipment_id, str) or shipment_id in seen:
                continue
            seen.add(shipment_id)
            shipment = shipment_of(ctx, shipment_id)
            if shipment is not None and shipment["status"] != "delivered":
                _track(ctx, shipment, event, org, ehash)


# --- deadlines ---------------------------------------------------------------------------------

def _late(ctx: BlockContext, shipment: dict[str, Any], i: int, missed: str, due: int
          ) -> None:
    ctx.emit("trade.leg.late", {"shipment": shipment["id"], "order": shipment["order"],
                                "leg": i, "carrier": shipment["legs"][i]["carrier"],
                                "missed": missed, "due": due})


def _on_leg(ctx: BlockContext, item_id: str, data: Any) -> None:
    """A leg not arrived ``LEG_GRACE_MS`` after its planned arrival is late."""
    _, shipment_id, index = item_id.split(":", 2)
    shipment = shipment_of(ctx, shipment_id)
    if shipment is None or shipment["status"] == "delivered":
        return
    i = int(index)
    leg = shipment["legs"][i]
    if leg["status"] == "arrived":
        return
    due = leg["arrives"] + LEG_GRACE_MS
    leg.update(late=True, bucket=None)
    shipment["late"] = True
    _late(ctx, shipment, i, "arrival", due)
    _charge(ctx, shipment, "late_arrival", i, None, f"leg {i} not arrived by {due}")
    _save(ctx, shipment)


def _on_depart(ctx: BlockContext, item_id: str, data: Any) -> None:
    """The first leg not departed ``LEG_GRACE_MS`` after its planned departure."""
    shipment = shipment_of(ctx, item_id.split(":", 1)[1])
    if shipment is None or shipment["status"] != "created":
        return
    leg = shipment["legs"][0]
    due = leg["departs"] + LEG_GRACE_MS
    leg["late_departure"] = True
    shipment.update(late=True, depart_bucket=None)
    _late(ctx, shipment, 0, "departure", due)
    _charge(ctx, shipment, "late_shipment", 0, None, f"not departed by {due}")
    _save(ctx, shipment)


# --- proof of delivery ---------------------------------------------------------------------------

def _shipment_payload(ctx: TxContext) -> dict[str, Any]:
    shipment_id = text_id(ctx, ctx.payload.get("shipment"), "shipment", ID_RE)
    shipment = shipment_of(ctx, shipment_id)
    if shipment is None:
        ctx.fail("not_found", f"no shipment {shipment_id}")
    return shipment


def _hand_over(ctx: TxContext, shipment: Mapping[str, Any]) -> None:
    """The delivered parcel's consequence for its order: delivered (forward), refunded
    (return). An order a dispute closed meanwhile keeps its outcome."""
    order_id = shipment["order"]
    if shipment["kind"] == "forward":
        order = orders.order_of(ctx, order_id)
        if order is not None and (order["status"] == "shipped" or (
                order["status"] == "disputed" and order["delivered_at"] is None)):
            orders.mark_delivered(ctx, order_id)
        return
    authorised = returns.return_of(ctx, order_id)
    if authorised is not None and authorised["status"] in ("authorised", "lapsed"):
        returns.returned(ctx, order_id)


def confirm_delivery(ctx: TxContext) -> None:
    """The last leg's carrier proves delivery (its signed receipt's digest)."""
    shipment = _shipment_payload(ctx)
    last = len(shipment["legs"]) - 1
    leg = shipment["legs"][last]
    if ctx.sender_org != leg["carrier"]:
        ctx.fail("forbidden", "only the last leg's carrier confirms delivery")
    if shipment["status"] == "delivered":
        ctx.fail("already_delivered", f"shipment {shipment['id']} was delivered")
    if shipment["current"] != last or leg["status"] == "planned":
        ctx.fail("not_in_last_leg", f"shipment {shipment['id']} has not departed on its "
                                    "last leg")
    proof = digest(ctx, ctx.payload.get("proof_digest"), "proof_digest")
    if leg["status"] == "departed":
        _arrive(ctx, shipment, last, None)
    shipment.update(status="delivered", delivered_at=ctx.time, held=False,
                    proof={"digest": proof, "by": ctx.sender_org})
    _save(ctx, shipment)
    ctx.emit("trade.shipment.delivered", {
        "shipment": shipment["id"], "kind": shipment["kind"], "order": shipment["order"],
        "carrier": ctx.sender_org, "proof_digest": proof, "late": shipment["late"]})
    _hand_over(ctx, shipment)


def countersign_delivery(ctx: TxContext) -> None:
    """The consignee adds its own receipt to a delivered shipment, once."""
    shipment = _shipment_payload(ctx)
    consignee = shipment["buyer"] if shipment["kind"] == "forward" else shipment["merchant"]
    if ctx.sender_org != consignee:
        ctx.fail("forbidden", "only the consignee countersigns the delivery")
    if shipment["status"] != "delivered":
        ctx.fail("not_delivered", f"shipment {shipment['id']} is {shipment['status']}")
    if shipment["countersigned"] is not None:
        ctx.fail("already_countersigned", f"shipment {shipment['id']} is countersigned")
    proof = digest(ctx, ctx.payload.get("proof_digest"), "proof_digest")
    shipment["countersigned"] = {"digest": proof, "by": ctx.sender_org, "at": ctx.time}
    _save(ctx, shipment)
    ctx.emit("trade.shipment.countersigned", {
        "shipment": shipment["id"], "order": shipment["order"], "by": ctx.sender_org,
        "proof_digest": proof})


#: action -> (handler, required payload fields, optional payload fields)
ACTIONS: dict[str, ActionSpec] = {
    "create_shipment": (create_shipment,
                        frozenset({"shipment", "carrier", "waybill", "legs"}),
                        frozenset({"order", "return_of", "agreement"})),
    "confirm_delivery": (confirm_delivery, frozenset({"shipment", "proof_digest"}),
                         frozenset()),
    "countersign_delivery": (countersign_delivery, frozenset({"shipment", "proof_digest"}),
                             frozenset()),
}
DEADLINES: dict[str, DeadlineHandler] = {"leg": _on_leg, "depart": _on_depart}
ON_BLOCK: tuple[BlockHandler, ...] = (track,)
