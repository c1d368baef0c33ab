"""The trace contract's agreements: two organisations agree on rules for goods (by EPC or
GTIN) with a deposit; a breach of a rule applies a penalty against the responsible party
from the deposit. Rules: temperature ranges (sensor readings of the responsible party's
own events, compared exactly across CEL/FAH/KEL), deadlines for a bizStep (fired on BFT
block time by :func:`settle_deadlines`) and certificates required at a bizStep.

These belong to the trade domain: this module moves there (with its state keys
``agreement/<id>``, ``agreements_of/<subject>`` and ``penalty/<id>``, see
:mod:`services.trace.contract`) when that domain arrives.

Money is integer minor units with a currency; deposits and penalties are records, not
token transfers. Runs in every replica: it must never do I/O, read the clock (block time
is ``ctx.time``), draw randomness or use floats (decimals are exact), and any change of
behaviour forks the chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from services.ledger.core import deadlines
from services.ledger.core.contract import BlockContext, TxContext, payload_str
from services.trace import epcis, epcis_values, identifiers
from services.trace.certificates import CERT_TYPES, has_valid_certificate
from services.trace.items import sgtin_of

__all__ = [
    "CURRENCIES",
    "EPCS_PER_AGREEMENT_MAX",
    "RULES_MAX",
    "TEMPERATURE_UNITS",
    "accept_agreement",
    "check_rule",
    "check_rules",
    "propose_agreement",
    "rules_of",
    "settle_deadlines",
]

EPCS_PER_AGREEMENT_MAX = 1_000
RULES_MAX = 16
CURRENCIES = frozenset({"EUR", "CNY", "USD", "GBP", "PLN", "CZK", "HUF"})
#: temperature units a rule and a reading may use (UN/ECE Recommendation 20 codes)
TEMPERATURE_UNITS = frozenset({"CEL", "FAH", "KEL"})
# Exact arithmetic, independent of the thread's decimal context (inputs are at most
# 64 characters, so 200 digits never round).
_EXACT = Context(prec=200)


def _money(ctx: TxContext, value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        ctx.fail("bad_payload", f"{field} must be {{amount, currency}}")
    amount, currency = value.get("amount"), value.get("currency")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= 10**15:
        ctx.fail("bad_payload", f"{field}.amount must be integer minor units")
    if currency not in CURRENCIES:
        ctx.fail("bad_payload", f"{field}.currency must be one of {sorted(CURRENCIES)}")
    return {"amount": amount, "currency": currency}


def propose_agreement(ctx: TxContext) -> None:
    agreement_id = payload_str(ctx, "id", size_max=64)
    if ctx.has(f"agreement/{agreement_id}"):
        ctx.fail("conflict", f"agreement {agreement_id} exists")
    counterparty = payload_str(ctx, "counterparty", size_max=64)
    responsible = payload_str(ctx, "responsible", size_max=64)
    if counterparty == ctx.sender_org:
        ctx.fail("bad_payload", "an agreement needs two organisations")
    if ctx.read(f"consortium/org/{counterparty}") is None:
        ctx.fail("not_found", f"organisation {counterparty!r} does not exist")
    if responsible not in (ctx.sender_org, counterparty):
        ctx.fail("bad_payload", "the responsible party must be one of the two")
    rules = ctx.payload["rules"]
    if not isinstance(rules, list) or not 0 < len(rules) <= RULES_MAX:
        ctx.fail("bad_payload", f"rules must be 1..{RULES_MAX} rules")
    checked = [check_rule(ctx, rule) for rule in rules]
    epcs = ctx.payload.get("epcs", [])
    gtins = ctx.payload.get("gtins", [])
    if not isinstance(epcs, list) or not isinstance(gtins, list) \
            or len(epcs) + len(gtins) == 0 or len(epcs) > EPCS_PER_AGREEMENT_MAX:
        ctx.fail("bad_payload", "name the goods: epcs and/or gtins")
    canonical = []
    for epc in epcs:
        try:
            canonical.append(identifiers.parse_identifier(str(epc)).to_digital_link())
        except identifiers.IdentifierError as exc:
            ctx.fail(exc.code, f"agreement epcs: {exc}")
    epcs = canonical
    try:
        gtins = [identifiers.normalize_gtin(str(g)) for g in gtins]
    except identifiers.IdentifierError as exc:
        ctx.fail(exc.code, f"agreement gtins: {exc}")
    deposit = _money(ctx, ctx.payload["deposit"], "deposit")
    if any(rule["penalty"]["currency"] != deposit["currency"] for rule in checked):
        ctx.fail("bad_rule", "penalties are paid from the deposit: give them in the "
                             "deposit's currency")
    record = {"id": agreement_id, "proposer": ctx.sender_org, "counterparty": counterparty,
              "responsible": responsible, "epcs": sorted(set(map(str, epcs))),
              "gtins": sorted(set(map(str, gtins))), "rules": checked,
              "deposit": deposit, "remaining": deposit["amount"], "status": "proposed",
              "proposed_at": ctx.time, "penalties": 0}
    ctx.put(f"agreement/{agreement_id}", record)
    ctx.emit("trace.agreement.proposed", {"id": agreement_id, "proposer": ctx.sender_org,
                                          "counterparty": counterparty,
                                          "responsible": responsible,
                                          "deposit": deposit})


def accept_agreement(ctx: TxContext) -> None:
    agreement_id = payload_str(ctx, "id", size_max=64)
    record = ctx.get(f"agreement/{agreement_id}")
    if record is None:
        ctx.fail("not_found", f"no agreement {agreement_id}")
    if record["status"] != "proposed":
        ctx.fail("conflict", f"agreement {agreement_id} is {record['status']}")
    if ctx.sender_org != record["counterparty"]:
        ctx.fail("forbidden", "only the counterparty accepts")
    record.update(status="active", accepted_at=ctx.time)
    for index, rule in enumerate(record["rules"]):
        if rule["type"] == "deadline":
            due = ctx.time + rule["within_ms"]
            rule["due"] = due
            rule["bucket"] = deadlines.schedule(ctx, due, f"{agreement_id}#{index}")
    ctx.put(f"agreement/{agreement_id}", record)
    for epc in record["epcs"]:
        _index_agreement(ctx, f"epc:{epc}", agreement_id)
    for gtin in record["gtins"]:
        _index_agreement(ctx, f"gtin:{gtin}", agreement_id)
    ctx.emit("trace.agreement.accepted", {"id": agreement_id, "by": ctx.sender_org,
                                          "deposit": record["deposit"]})


def _index_agreement(ctx: TxContext, subject: str, agreement_id: str) -> None:
    key = f"agreements_of/{subject}"
    ids = ctx.get(key) or []
    if agreement_id not in ids:
        ctx.put(key, [*ids, agreement_id][-32:])


def _agreements_for(ctx: TxContext, event: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    for epc in sorted(epcis.epcs_of(event)):
        sgtin = sgtin_of(epc)
        for subject in (f"epc:{epc}", *((f"gtin:{sgtin.gtin}",) if sgtin else ())):
            for agreement_id in ctx.get(f"agreements_of/{subject}") or []:
                if agreement_id not in ids:
                    ids.append(agreement_id)
    return ids


def check_rules(ctx: TxContext, event: dict[str, Any], event_time: int, org: str) -> None:
    """Rules on every relevant event: temperature ranges, required certificates, and
    deadlines met (a deadline rule is satisfied by its bizStep in time, whoever
    records it). A breach counts only on an event the responsible party captured
    itself (its own sensors, its own shipping): the other party, who would gain
    the penalty, cannot cause one with readings of its own."""
    for agreement_id in _agreements_for(ctx, event):
        record = ctx.get(f"agreement/{agreement_id}")
        if record is None or record["status"] != "active":
            continue
        changed = False
        for index, rule in enumerate(record["rules"]):
            if rule.get("settled"):
                continue
            breach = _breach(ctx, rule, event) if org == record["responsible"] else None
            if breach is not None:
                _penalise(ctx, record, index, rule, breach, event_time)
                changed = True
            elif rule["type"] == "deadline" and event.get("bizStep") == rule["biz_step"]:
                deadlines.cancel(ctx, rule["bucket"], f"{agreement_id}#{index}")
                rule["settled"] = "met"
                changed = True
        if changed:
            ctx.put(f"agreement/{agreement_id}", record)


def settle_deadlines(ctx: BlockContext) -> None:
    """Penalise the deadlines that fell due by this block's BFT time."""
    for due, item_id, _ in deadlines.due(ctx, ctx.time):
        agreement_id, _, index_text = item_id.rpartition("#")
        record = ctx.get(f"agreement/{agreement_id}")
        if record is None or record["status"] != "active":
            continue
        index = int(index_text)
        rule = record["rules"][index]
        if rule.get("settled"):
            continue
        _penalise(ctx, record, index, rule,
                  f"no {rule['biz_step']} event before the deadline", due)
        ctx.put(f"agreement/{agreement_id}", record)


def check_rule(ctx: TxContext, rule: object) -> dict[str, Any]:
    """A proposed rule in the form the agreement stores; fails ``bad_rule``."""
    if not isinstance(rule, dict):
        ctx.fail("bad_rule", "each rule is an object")
    kind = rule.get("type")
    penalty = _money(ctx, rule.get("penalty"), "rule.penalty")
    if kind == "temperature_range":
        try:
            bounds = [epcis_values.decimal_string(rule[k], f"rule.{k}", code="bad_rule")
                      for k in ("min", "max")]
        except KeyError:
            ctx.fail("bad_rule", "temperature_range needs min and max as decimal strings")
        except epcis_values.EpcisError as exc:
            ctx.fail("bad_rule", f"temperature_range min and max: {exc}")
        low, high = (Decimal(b) for b in bounds)
        if low > high:
            ctx.fail("bad_rule", "temperature_range needs min <= max, as decimal strings")
        uom = rule.get("uom", "CEL")
        if uom not in TEMPERATURE_UNITS:
            ctx.fail("bad_rule", f"uom must be one of {sorted(TEMPERATURE_UNITS)} "
                                 "(UN/ECE Rec 20: CEL, FAH, KEL)")
        return {"type": kind, "min": str(bounds[0]), "max": str(bounds[1]), "uom": uom,
                "penalty": penalty}
    if kind == "deadline":
        biz_step = rule.get("biz_step")
        within = rule.get("within_ms")
        if biz_step not in epcis_values.BIZ_STEPS:
            ctx.fail("bad_rule", "deadline needs a CBV biz_step")
        if not isinstance(within, int) or isinstance(within, bool) or not 0 < within <= \
                365 * 24 * 3_600_000:
            ctx.fail("bad_rule", "within_ms must be a positive integer (ms), at most a year")
        return {"type": kind, "biz_step": biz_step, "within_ms": within, "penalty": penalty}
    if kind == "required_certificate":
        cert_type = rule.get("cert_type")
        if cert_type not in CERT_TYPES:
            ctx.fail("bad_rule", f"cert_type must be one of {sorted(CERT_TYPES)}")
        at_step = rule.get("at_biz_step", "shipping")
        if at_step not in epcis_values.BIZ_STEPS:
            ctx.fail("bad_rule", "at_biz_step must be a CBV biz_step (a typo would make the "
                                 "rule never apply)")
        return {"type": kind, "cert_type": cert_type, "at_biz_step": at_step,
                "penalty": penalty}
    ctx.fail("bad_rule", "rule type must be temperature_range, deadline or "
             "required_certificate")


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


def _breach(ctx: TxContext, rule: Mapping[str, Any], event: dict[str, Any]) -> str | None:
    if rule["type"] == "temperature_range":
        low = _ninefold_kelvin(rule["min"], rule["uom"])
        high = _ninefold_kelvin(rule["max"], rule["uom"])
        if low is None or high is None:
            return None  # a rule of a unit this version cannot compare (none accepted)
        for kind, value, uom, _ in epcis.sensor_readings(event):
            if kind != "Temperature":
                continue
            # A reading without a temperature unit proves nothing about the range: it
            # counts as a breach, or a unit chosen to evade the rule would do so.
            reading = None if uom is None else _ninefold_kelvin(value, uom)
            if reading is None:
                return f"temperature {value} in unit {uom!r}, not comparable with the rule"
            if not low <= reading <= high:
                return (f"temperature {value} {uom} outside "
                        f"{rule['min']}..{rule['max']} {rule['uom']}")
        return None
    if rule["type"] == "required_certificate" and event.get("bizStep") == rule["at_biz_step"]:
        for epc in sorted(epcis.epcs_of(event)):
            sgtin = sgtin_of(epc)
            if sgtin is None:
                continue
            gtin = sgtin.gtin
            if not has_valid_certificate(ctx, gtin, rule["cert_type"]):
                return f"{gtin} shipped without a valid {rule['cert_type']} certificate"
    return None


def _penalise(ctx: TxContext | BlockContext, record: dict[str, Any], index: int,
              rule: dict[str, Any], reason: str, at: int) -> None:
    amount = min(rule["penalty"]["amount"], record["remaining"])
    record["remaining"] -= amount
    record["penalties"] = record.get("penalties", 0) + 1
    rule["settled"] = "breached"
    penalty_id = f"{record['id']}#{index}"
    penalty = {"id": penalty_id, "agreement": record["id"], "responsible": record["responsible"],
               "beneficiary": record["proposer"] if record["responsible"] != record[
                   "proposer"] else record["counterparty"],
               "amount": amount, "currency": rule["penalty"]["currency"],
               "rule": rule["type"], "reason": reason[:256], "time": at}
    ctx.put(f"penalty/{penalty_id}", penalty)
    ctx.emit("trace.penalty.applied", penalty)


def rules_of(record: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """The rules of an agreement record."""
    return list(record.get("rules", ()))
