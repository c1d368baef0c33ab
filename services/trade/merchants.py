"""Merchants: the trader information the EU Digital Services Act requires (Art. 30),
held in the privacy vault, verified by a platform before the merchant may list.

State (under ``trade/``)::

    merchant/<org>  {org, status: applied|verified|rejected|suspended, platform,
                     applicant (key id), records {category: record id}, applied,
                     decided, reason}

``trade.apply_merchant {platform, records}`` by a merchant organisation's admin names
one privacy record per category of :data:`TRADER_CATEGORIES`: each live, of the
applicant's own key (its subject), of that category, granted to ``org:<platform>``
for ``merchant_verification`` (privacy's :func:`judge_access`, PIPL consent
included). ``trade.verify_merchant {org, outcome}`` by that platform's admin: to verify,
the platform must have read every record since the application (privacy records each
granted access: "best efforts to verify"); to reject it need not.
``trade.suspend_merchant {org, reason}`` by the same platform: the merchant no longer
lists or sells (it may apply again, to the platform that suspended it only). The
chain never sees the information itself.

Refusals: ``forbidden``, ``bad_payload``, ``not_found``, ``already_verified``,
``record_not_found``, ``record_not_active``, ``not_your_record``, ``wrong_category``,
``record_not_granted``, ``not_applied``, ``records_not_accessed``, ``not_verified``,
``merchant_not_verified``.

Events: ``trade.merchant.applied {org, platform, applicant, records}``,
``trade.merchant.verified {org, platform}``, ``trade.merchant.rejected {org,
platform}``, ``trade.merchant.suspended {org, platform, reason}``.

This module never does I/O.
"""

from __future__ import annotations

from typing import Any, Final

from services.ledger.core.contract import TxContext, _Scope
from services.privacy.grants import judge_access
from services.privacy.records import live_record, record_of
from services.privacy.vocabulary import org_party
from services.trade.vocabulary import (
    HEX64_RE,
    MERCHANT_ROLES,
    ORG_RE,
    PLATFORM_ROLES,
    ActionSpec,
    BlockHandler,
    DeadlineHandler,
    text_id,
)

__all__ = ["ACTIONS", "PURPOSE", "SUSPENSION_REASONS", "TRADER_CATEGORIES", "is_verified",
           "merchant_of", "require_verified"]

#: the trader information of DSA Art. 30(1) as privacy record categories
TRADER_CATEGORIES: Final = frozenset({
    "name", "address", "phone", "email", "id_document", "payment_account",
    "trade_register", "self_certification"})
#: the privacy purpose a platform reads trader information for
PURPOSE: Final = "merchant_verification"
#: why a platform suspends a merchant (codes: no free text on chain)
SUSPENSION_REASONS: Final = frozenset({
    "inaccurate_information", "incomplete_information", "illegal_products",
    "consumer_harm", "fraud", "authority_order"})
OUTCOMES: Final = frozenset({"verified", "rejected"})


# --- for the other modules ---------------------------------------------------------------------

def merchant_of(ctx: _Scope, org: str) -> dict[str, Any] | None:
    value = ctx.get(f"merchant/{org}")
    return value if isinstance(value, dict) else None


def is_verified(ctx: _Scope, org: str) -> bool:
    merchant = merchant_of(ctx, org)
    return merchant is not None and merchant["status"] == "verified"


def require_verified(ctx: TxContext, org: str) -> dict[str, Any]:
    """``org``'s merchant record if a platform verified it and has not suspended it,
    else the ``merchant_not_verified`` refusal."""
    merchant = merchant_of(ctx, org)
    if merchant is None or merchant["status"] != "verified":
        status = "not a merchant" if merchant is None else merchant["status"]
        ctx.fail("merchant_not_verified", f"{org} is not a verified merchant ({status})")
    return merchant


def _accessed_at(ctx: _Scope, record_id: str, party: str) -> int | None:
    """When ``party`` last read ``record_id`` for merchant verification (privacy records
    every granted access under this key: docs/adr/0008, services/privacy/contract.py)."""
    value = ctx.read(f"privacy/accessed/{record_id}/{party}/{PURPOSE}")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- actions -------------------------------------------------------------------------------------

def _platform(ctx: TxContext, org_id: object) -> str:
    platform = text_id(ctx, org_id, "platform", ORG_RE)
    org = ctx.read(f"consortium/org/{platform}")
    if not isinstance(org, dict) or org.get("status") != "active" \
            or not PLATFORM_ROLES & set(org.get("roles", ())):
        ctx.fail("not_found", f"{platform!r} is not an active platform organisation")
    return platform


def _records(ctx: TxContext, platform: str) -> dict[str, str]:
    raw = ctx.payload.get("records")
    if not isinstance(raw, dict) or set(raw) != TRADER_CATEGORIES:
        ctx.fail("bad_payload", f"records maps exactly {sorted(TRADER_CATEGORIES)} to "
                                "privacy record ids")
    party = org_party(platform)
    out: dict[str, str] = {}
    for category in sorted(raw):
        record_id = text_id(ctx, raw[category], f"records.{category}", HEX64_RE)
        record = record_of(ctx.read, record_id)
        if record is None:
            ctx.fail("record_not_found", f"no privacy record {record_id}")
        if not live_record(record):
            ctx.fail("record_not_active", f"record {record_id} is {record['status']}")
        if record["subject"] != ctx.sender:
            ctx.fail("not_your_record", f"record {record_id} is not of the sending key")
        if record["category"] != category:
            ctx.fail("wrong_category", f"record {record_id} is a {record['category']}, "
                                       f"not a {category}")
        judgement = judge_access(ctx.read, record, party, PURPOSE, "grant", frozenset(),
                                 ctx.time)
        if not judgement.granted:
            ctx.fail("record_not_granted", f"{party} may not read record {record_id} for "
                                           f"{PURPOSE} ({judgement.reason})")
        out[category] = record_id
    return out


def apply_merchant(ctx: TxContext) -> None:
    ctx.require_org_role(*MERCHANT_ROLES)
    ctx.require_admin()
    old = merchant_of(ctx, ctx.sender_org)
    if old is not None and old["status"] == "verified":
        ctx.fail("already_verified", f"{ctx.sender_org} is a verified merchant")
    platform = _platform(ctx, ctx.payload.get("platform"))
    if old is not None and old["status"] == "suspended" and old["platform"] != platform:
        ctx.fail("forbidden", f"{ctx.sender_org} was suspended by {old['platform']}: it "
                              "applies there again, not elsewhere")
    records = _records(ctx, platform)
    ctx.put(f"merchant/{ctx.sender_org}", {
        "org": ctx.sender_org, "status": "applied", "platform": platform,
        "applicant": ctx.sender, "records": records, "applied": ctx.time,
        "decided": None, "reason": None})
    ctx.emit("trade.merchant.applied", {"org": ctx.sender_org, "platform": platform,
                                        "applicant": ctx.sender, "records": records})


def _platforms_merchant(ctx: TxContext) -> dict[str, Any]:
    """The merchant named by ``org``, if the sender is an admin of its platform."""
    ctx.require_org_role(*PLATFORM_ROLES)
    ctx.require_admin()
    org = text_id(ctx, ctx.payload.get("org"), "org", ORG_RE)
    merchant = merchant_of(ctx, org)
    if merchant is None:
        ctx.fail("not_found", f"{org} never applied as a merchant")
    if merchant["platform"] != ctx.sender_org:
        ctx.fail("forbidden", f"{org} applied to {merchant['platform']}")
    return merchant


def _check_read(ctx: TxContext, merchant: dict[str, Any]) -> None:
    """Every record still live, still granted, and read by the platform since the
    application."""
    party = org_party(ctx.sender_org)
    for category, record_id in sorted(merchant["records"].items()):
        record = record_of(ctx.read, record_id)
        if not live_record(record):
            ctx.fail("record_not_active", f"the {category} record is no longer live")
        judgement = judge_access(ctx.read, record, party, PURPOSE, "grant", frozenset(),
                                 ctx.time)
        if not judgement.granted:
            ctx.fail("record_not_granted", f"the {category} record: {judgement.reason}")
        accessed = _accessed_at(ctx, record_id, party)
        if accessed is None or accessed < merchant["applied"]:
            ctx.fail("records_not_accessed", f"{ctx.sender_org} has not read the "
                                             f"{category} record since the application")


def verify_merchant(ctx: TxContext) -> None:
    merchant = _platforms_merchant(ctx)
    outcome = ctx.payload.get("outcome")
    if not isinstance(outcome, str) or outcome not in OUTCOMES:
        ctx.fail("bad_payload", f"outcome is one of {sorted(OUTCOMES)}")
    if merchant["status"] != "applied":
        ctx.fail("not_applied", f"{merchant['org']} is {merchant['status']}, not applied")
    if outcome == "verified":
        _check_read(ctx, merchant)
    merchant.update(status=outcome, decided=ctx.time)
    ctx.put(f"merchant/{merchant['org']}", merchant)
    ctx.emit(f"trade.merchant.{outcome}", {"org": merchant["org"],
                                           "platform": ctx.sender_org})


def suspend_merchant(ctx: TxContext) -> None:
    merchant = _platforms_merchant(ctx)
    reason = ctx.payload.get("reason")
    if not isinstance(reason, str) or reason not in SUSPENSION_REASONS:
        ctx.fail("bad_payload", f"reason is one of {sorted(SUSPENSION_REASONS)}")
    if merchant["status"] != "verified":
        ctx.fail("not_verified", f"{merchant['org']} is {merchant['status']}")
    merchant.update(status="suspended", decided=ctx.time, reason=reason)
    ctx.put(f"merchant/{merchant['org']}", merchant)
    ctx.emit("trade.merchant.suspended", {"org": merchant["org"],
                                          "platform": ctx.sender_org, "reason": reason})


#: action -> (handler, required payload fields, optional payload fields)
ACTIONS: dict[str, ActionSpec] = {
    "apply_merchant": (apply_merchant, frozenset({"platform", "records"}), frozenset()),
    "verify_merchant": (verify_merchant, frozenset({"org", "outcome"}), frozenset()),
    "suspend_merchant": (suspend_merchant, frozenset({"org", "reason"}), frozenset()),
}
DEADLINES: dict[str, DeadlineHandler] = {}
ON_BLOCK: tuple[BlockHandler, ...] = ()
