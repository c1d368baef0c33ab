"""Agreements: preset rules between two organisations (a merchant and a carrier), then a
penalty paid automatically from the responsible party's deposit.

Moved from the trace domain (docs/adr/0009-trade.md), where deposits and penalties were
records without money; here a penalty moves money (:func:`accounts.pay_penalty`).

``trade.propose_agreement {counterparty, rules, until}`` by either party names the
rules; the agreement's id is the proposing transaction's hash. A rule is one of::

    {"type": "late_arrival",  "penalty": money, "responsible"?: org}
    {"type": "late_shipment", "penalty": money, "responsible"?: org}
    {"type": "temperature",   "penalty": money, "responsible"?: org,
     "min": decimal, "max": decimal, "uom"?: "CEL" | "FAH" | "KEL"}

``late_arrival``: a leg of a shipment under the agreement did not arrive by its planned
arrival plus ``LEG_GRACE_MS``; ``late_shipment``: its first leg did not depart by its
planned departure plus ``LEG_GRACE_MS``; ``temperature``: a tracking event of the
shipment carries a Temperature reading outside [min, max] (compared exactly across
Celsius, Fahrenheit and kelvin, never with floats; a reading without a unit proves
nothing and counts as a breach). Each rule is charged at most once per shipment
(logistics.py applies them). ``responsible`` defaults to the party of role ``carrier``
(late_arrival, temperature) or ``merchant`` (late_shipment); it must be named when
the roles do not decide.

``trade.accept_agreement {agreement}`` by the counterparty, before ``until``: each
responsible party's deposit (``deposit/<org>/<CUR>``, accounts.py) must cover the sum
of its rules' penalties on top of what its other active agreements already require;
the requirement is then kept in ``deposit_required/<org>/<CUR>`` (withdraw_deposit
never goes below it). ``trade.end_agreement {agreement}`` by either party: a proposal
is withdrawn (proposer) or declined (counterparty) at any time; an active agreement
ends only once its term (``until``) is over, which releases its requirement. There is
no early termination: a term is what both accepted. Shipments created under an active
agreement stay bound by its rules until delivered, even past its end (their penalty
then takes what the deposit still holds; the rest is debt).

:func:`penalise` (called by logistics.py) pays a rule's penalty from the responsible
party's deposit to the other party: what the deposit lacks becomes the payer's debt
(``debt/<org>/<CUR>``); event ``trade.penalty.applied``.

State (under ``trade/``)::

    agreement/<id>                {id, proposer, counterparty, rules, until, status
                                  (proposed | active | ended | withdrawn | declined),
                                  proposed_at, accepted_at, ended_at, required
                                  [{org, money}], penalties}
    agreements_of/<org>           [ids of its open (proposed or active) agreements]
    deposit_required/<org>/<CUR>  int: what its active agreements require deposited

Refusal codes: ``bad_payload``, ``bad_rule``, ``not_found``, ``forbidden``,
``agreement_closed``, ``agreement_expired``, ``agreement_running``,
``insufficient_deposit``, ``too_many_agreements``.

This module never does I/O, reads a clock or uses floats.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Final

from services.ledger.core.contract import TxContext, _Scope
from services.ledger.core.errors import InvariantViolation
from services.trace import epcis
from services.trade import accounts
from services.trade.money import Money, money
from services.trade.vocabulary import (
    AGREEMENT_RULES_MAX,
    AGREEMENT_TERM_MS_MAX,
    AGREEMENTS_PER_ORG_MAX,
    CARRIER_ROLES,
    HEX64_RE,
    MERCHANT_ROLES,
    ORG_RE,
    TEMPERATURE_UNITS,
    ActionSpec,
    BlockHandler,
    DeadlineHandler,
    as_list,
    integer,
    text_id,
)

__all__ = ["ACTIONS", "RULE_TYPES", "agreement_of", "beneficiary", "penalise", "required_of",
           "rules_of_type", "temperature_breach", "usable_for"]

RULE_TYPES: Final = frozenset({"late_arrival", "late_shipment", "temperature"})
_RULE_FIELDS: Final = {
    "late_arrival": frozenset({"type", "penalty", "responsible"}),
    "late_shipment": frozenset({"type", "penalty", "responsible"}),
    "temperature": frozenset({"type", "penalty", "responsible", "min", "max", "uom"}),
}
#: who answers for a rule when the proposal does not say (by the parties' roles)
_DEFAULT_ROLES: Final = {"late_arrival": CARRIER_ROLES, "temperature": CARRIER_ROLES,
                         "late_shipment": MERCHANT_ROLES}
_DECIMAL_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
# Exact arithmetic, independent of the thread's decimal context (bounds are at most 32
# characters, readings at most 64, so 200 digits never round).
_EXACT: Final = Context(prec=200)


# --- reading ---------------------------------------------------------------------------------

def agreement_of(ctx: _Scope, agreement: str) -> dict[str, Any] | None:
    value = ctx.get(f"agreement/{agreement}")
    return value if isinstance(value, dict) else None


def required_of(ctx: _Scope, org: str, currency: str) -> int:
    """What ``org``'s active agreements require it to keep deposited in ``currency``."""
    value = ctx.get(f"deposit_required/{org}/{currency}")
    return value if isinstance(value, int) else 0


def rules_of_type(record: Mapping[str, Any], kind: str) -> list[int]:
    """The indexes of ``record``'s rules of type ``kind``, in order."""
    return [i for i, rule in enumerate(record["rules"]) if rule["type"] == kind]


def beneficiary(record: Mapping[str, Any], rule: int) -> str:
    """Who rule ``rule``'s penalty is paid to: the party not responsible for it."""
    payer = record["rules"][rule]["responsible"]
    return str(record["counterparty"] if payer == record["proposer"] else record["proposer"])


def usable_for(ctx: TxContext, agreement: str, merchant: str, carrier: str
               ) -> dict[str, Any]:
    """The active agreement ``agreement`` between ``merchant`` and ``carrier``, in its
    term, for a new shipment (refusals ``not_found``, ``agreement_closed``,
    ``agreement_expired``, ``forbidden``)."""
    record = agreement_of(ctx, agreement)
    if record is None:
        ctx.fail("not_found", f"no agreement {agreement}")
    if record["status"] != "active":
        ctx.fail("agreement_closed", f"agreement {agreement} is {record['status']}")
    if ctx.time >= record["until"]:
        ctx.fail("agreement_expired", f"agreement {agreement}'s term is over")
    if {record["proposer"], record["counterparty"]} != {merchant, carrier}:
        ctx.fail("forbidden", f"agreement {agreement} is not between {merchant} and "
                              f"{carrier}")
    return record


# --- rules -------------------------------------------------------------------------------------

def _roles(ctx: TxContext, org: str) -> frozenset[str]:
    record = ctx.read(f"consortium/org/{org}")
    return frozenset(record.get("roles", ())) if isinstance(record, dict) else frozenset()


def _responsible(ctx: TxContext, rule: Mapping[str, Any], kind: str,
                 parties: tuple[str, str]) -> str:
    named = rule.get("responsible")
    if named is not None:
        if named not in parties:
            ctx.fail("bad_rule", "a rule's responsible party is one of the two parties")
        return str(named)
    candidates = [p for p in parties if _roles(ctx, p) & _DEFAULT_ROLES[kind]]
    if len(candidates) != 1:
        ctx.fail("bad_rule", f"name the responsible party of the {kind} rule (the "
                             "parties' roles do not decide it)")
    return candidates[0]


def _bound(ctx: TxContext, value: object, field: str) -> str:
    """A temperature bound as exact decimal text: an integer or a decimal string such as
    "2.5" (never a float, NaN, an exponent or more than 32 characters)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 32 or not _DECIMAL_RE.fullmatch(value):
        ctx.fail("bad_rule", f"{field} must be an integer or a decimal string such as "
                             "\"2.5\" (at most 32 characters)")
    return value


def parse_rule(ctx: TxContext, rule: object, parties: tuple[str, str]) -> dict[str, Any]:
    """A proposed rule in the form the agreement stores (refusal ``bad_rule``)."""
    if not isinstance(rule, dict):
        ctx.fail("bad_rule", "each rule is an object")
    kind = rule.get("type")
    if not isinstance(kind, str) or kind not in RULE_TYPES:
        ctx.fail("bad_rule", f"a rule's type is one of {sorted(RULE_TYPES)}")
    extra = sorted(set(rule) - _RULE_FIELDS[kind])
    if extra:
        ctx.fail("bad_rule", f"a {kind} rule has no fields {extra}")
    penalty = money(ctx, rule.get("penalty"), "rule.penalty", positive=True)
    stored: dict[str, Any] = {"type": kind,
                              "responsible": _responsible(ctx, rule, kind, parties),
                              "penalty": penalty.to_wire()}
    if kind == "temperature":
        low, high = _bound(ctx, rule.get("min"), "min"), _bound(ctx, rule.get("max"), "max")
        uom = rule.get("uom", "CEL")
        if uom not in TEMPERATURE_UNITS:
            ctx.fail("bad_rule", f"uom must be one of {sorted(TEMPERATURE_UNITS)} "
                                 "(UN/ECE Rec 20: CEL, FAH, KEL)")
        if Decimal(low) > Decimal(high):
            ctx.fail("bad_rule", "a temperature rule needs min <= max")
        stored.update(min=low, max=high, uom=uom)
    return stored


def _ninefold_kelvin(value: str, uom: str) -> Decimal | None:
    """9 x the temperature in kelvin, exactly: the one scale where Celsius, Fahrenheit
    and kelvin readings compare without rounding (K = C + 273.15 = (F + 459.67) x 5/9)."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if uom == "KEL":
        return _EXACT.multiply(number, Decimal(9))
    if uom == "CEL":
        return _EXACT.multiply(_EXACT.add(number, Decimal("273.15")), Decimal(9))
    if uom == "FAH":
        return _EXACT.multiply(_EXACT.add(number, Decimal("459.67")), Decimal(5))
    return None


def temperature_breach(rule: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
    """Why the (validated) EPCIS ``event``'s Temperature readings breach the temperature
    ``rule``, or None. A reading without a comparable unit counts as a breach: a unit
    chosen to evade the rule must not do so."""
    low = _ninefold_kelvin(rule["min"], rule["uom"])
    high = _ninefold_kelvin(rule["max"], rule["uom"])
    if low is None or high is None:
        return None  # a rule of a unit this version cannot compare (none is accepted)
    for kind, value, uom, _ in epcis.sensor_readings(event):
        if kind != "Temperature":
            continue
        reading = None if uom is None else _ninefold_kelvin(value, uom)
        if reading is None:
            return f"temperature {value[:64]} in unit {str(uom)[:8]!r}, not comparable"
        if not low <= reading <= high:
            return (f"temperature {value[:64]} {uom} outside {rule['min']}..{rule['max']} "
                    f"{rule['uom']}")
    return None


def _requirements(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per responsible party and currency, the sum of its penalties (sorted)."""
    sums: dict[tuple[str, str], int] = {}
    for rule in rules:
        key = (rule["responsible"], rule["penalty"]["currency"])
        sums[key] = sums.get(key, 0) + rule["penalty"]["amount"]
    return [{"org": org, "money": {"amount": amount, "currency": currency}}
            for (org, currency), amount in sorted(sums.items())]


# --- penalties (for logistics) ---------------------------------------------------------------

def penalise(ctx: _Scope, agreement: str, rule: int, reason: str,
             evidence: Mapping[str, Any], *, order: str | None = None) -> dict[str, Any]:
    """Pay rule ``rule`` of ``agreement``'s penalty from its responsible party's deposit
    to the other party, as far as the deposit holds (the rest: the payer's debt). Never
    refuses: a penalty is a consequence. ``evidence``: {shipment, leg, event_hash,
    detail}.
    Returns the event's attributes."""
    record = agreement_of(ctx, agreement)
    if record is None:
        raise InvariantViolation(f"no agreement {agreement} to penalise")  # caller's bug
    terms = record["rules"][rule]
    payer, payee = terms["responsible"], beneficiary(record, rule)
    amount = Money(terms["penalty"]["amount"], terms["penalty"]["currency"])
    paid, shortfall = accounts.pay_penalty(ctx, payer, payee, amount)
    record["penalties"] = record.get("penalties", 0) + 1
    ctx.put(f"agreement/{agreement}", record)
    attributes = {"reason": reason, "agreement": agreement, "rule": rule, "order": order,
                  "payer": payer, "payee": payee, "money": amount.to_wire(),
                  "paid": paid, "shortfall": shortfall, "evidence": dict(evidence)}
    ctx.emit("trade.penalty.applied", attributes)
    return attributes


# --- actions -----------------------------------------------------------------------------------

def _index(ctx: TxContext, org: str, agreement: str, *, add: bool) -> None:
    ids = [i for i in ctx.get(f"agreements_of/{org}") or [] if i != agreement]
    if add:
        if len(ids) >= AGREEMENTS_PER_ORG_MAX:
            ctx.fail("too_many_agreements", f"{org} has {len(ids)} open agreements, the "
                                            "most it may")
        ids.append(agreement)
    if ids:
        ctx.put(f"agreements_of/{org}", ids)
    else:
        ctx.delete(f"agreements_of/{org}")


def propose_agreement(ctx: TxContext) -> None:
    counterparty = text_id(ctx, ctx.payload.get("counterparty"), "counterparty", ORG_RE)
    if counterparty == ctx.sender_org:
        ctx.fail("bad_payload", "an agreement needs two organisations")
    org = ctx.read(f"consortium/org/{counterparty}")
    if not isinstance(org, dict) or org.get("status") != "active":
        ctx.fail("not_found", f"organisation {counterparty!r} is not an active member")
    until = integer(ctx, ctx.payload.get("until"), "until", ctx.time + 1,
                    ctx.time + AGREEMENT_TERM_MS_MAX)
    raw = as_list(ctx, ctx.payload.get("rules"), "rules", AGREEMENT_RULES_MAX)
    if not raw:
        ctx.fail("bad_payload", "an agreement has at least one rule")
    parties = (ctx.sender_org, counterparty)
    rules = [parse_rule(ctx, rule, parties) for rule in raw]
    agreement = ctx.tx.hash.hex()
    record = {"id": agreement, "proposer": ctx.sender_org, "counterparty": counterparty,
              "rules": rules, "until": until, "status": "proposed",
              "proposed_at": ctx.time, "accepted_at": None, "ended_at": None,
              "required": _requirements(rules), "penalties": 0}
    ctx.put(f"agreement/{agreement}", record)
    for party in parties:
        _index(ctx, party, agreement, add=True)
    ctx.emit("trade.agreement.proposed", {
        "agreement": agreement, "proposer": ctx.sender_org, "counterparty": counterparty,
        "until": until, "rules": rules, "required": record["required"]})


def _agreement_payload(ctx: TxContext) -> dict[str, Any]:
    agreement = text_id(ctx, ctx.payload.get("agreement"), "agreement", HEX64_RE)
    record = agreement_of(ctx, agreement)
    if record is None:
        ctx.fail("not_found", f"no agreement {agreement}")
    return record


def accept_agreement(ctx: TxContext) -> None:
    record = _agreement_payload(ctx)
    if ctx.sender_org != record["counterparty"]:
        ctx.fail("forbidden", "only the counterparty accepts an agreement")
    if record["status"] != "proposed":
        ctx.fail("agreement_closed", f"agreement {record['id']} is {record['status']}")
    if ctx.time >= record["until"]:
        ctx.fail("agreement_expired", f"agreement {record['id']}'s term is over")
    for need in record["required"]:
        org, currency = need["org"], need["money"]["currency"]
        wanted = required_of(ctx, org, currency) + need["money"]["amount"]
        held = accounts.deposit_of(ctx, org, currency)
        if held < wanted:
            ctx.fail("insufficient_deposit", f"{org}'s deposit holds {held} minor units "
                                             f"of {currency}; its agreements with this "
                                             f"one need {wanted}")
        ctx.put(f"deposit_required/{org}/{currency}", wanted)
    record.update(status="active", accepted_at=ctx.time)
    ctx.put(f"agreement/{record['id']}", record)
    ctx.emit("trade.agreement.accepted", {
        "agreement": record["id"], "proposer": record["proposer"],
        "counterparty": record["counterparty"], "until": record["until"],
        "required": record["required"]})


def end_agreement(ctx: TxContext) -> None:
    record = _agreement_payload(ctx)
    parties = (record["proposer"], record["counterparty"])
    if ctx.sender_org not in parties:
        ctx.fail("forbidden", "only a party ends an agreement")
    if record["status"] == "proposed":
        status = "withdrawn" if ctx.sender_org == record["proposer"] else "declined"
    elif record["status"] == "active":
        if ctx.time < record["until"]:
            ctx.fail("agreement_running", f"agreement {record['id']} runs until "
                                          f"{record['until']} (block time)")
        status = "ended"
        for need in record["required"]:
            org, currency = need["org"], need["money"]["currency"]
            left = max(0, required_of(ctx, org, currency) - need["money"]["amount"])
            if left:
                ctx.put(f"deposit_required/{org}/{currency}", left)
            else:
                ctx.delete(f"deposit_required/{org}/{currency}")
    else:
        ctx.fail("agreement_closed", f"agreement {record['id']} is {record['status']}")
    record.update(status=status, ended_at=ctx.time)
    ctx.put(f"agreement/{record['id']}", record)
    for party in parties:
        _index(ctx, party, record["id"], add=False)
    ctx.emit("trade.agreement.ended", {
        "agreement": record["id"], "by": ctx.sender_org, "status": status,
        "released": record["required"] if status == "ended" else []})


#: action -> (handler, required payload fields, optional payload fields)
ACTIONS: dict[str, ActionSpec] = {
    "propose_agreement": (propose_agreement, frozenset({"counterparty", "rules", "until"}),
                          frozenset()),
    "accept_agreement": (accept_agreement, frozenset({"agreement"}), frozenset()),
    "end_agreement": (end_agreement, frozenset({"agreement"}), frozenset()),
}
DEADLINES: dict[str, DeadlineHandler] = {}
ON_BLOCK: tuple[BlockHandler, ...] = ()
