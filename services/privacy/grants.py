"""Grants, and the judgement of every access.

A grant lets one party read one record for one purpose until a block time; the
subject makes it (their signature is the consent), and wraps the record's data key
for the grantee (``wrap_hash`` binds the copy the vault will hand out). A record of a
subject in China goes to a party outside it only with ``cross_border_consent`` (PIPL):
checked when the grant is made, and again at every access against the country the
party declares *then* (a party that moves abroad by rotating its key takes nothing
granted inside China with it). A record version has at most
``GRANTEES_PER_RECORD_MAX`` grantees, revoked ones included: each may hold a copy,
and each must acknowledge its erasure.

Every access is asked on chain (``privacy.access``) and judged here — granted, or
refused with a stable reason — and both outcomes are recorded (an event each; the
last granted access per party and purpose in state, for matching), so a subject can
list who accessed what, when and why. The vault releases a wrapped key only against a
granted access of the asking party (the gateway checks the committed transaction).

This module never does I/O.
"""

from __future__ import annotations

from typing import Any

from services.ledger.core.contract import TxContext
from services.privacy.keys import declared_country, encryption_key
from services.privacy.records import consent_of, cross_border, live_record
from services.privacy.vocabulary import (
    ACCESS_BASES,
    GRANT_MS_MAX,
    GRANTEES_PER_RECORD_MAX,
    HEX64_RE,
    LEGAL_BASES,
    PURPOSES,
    VAULT,
    org_party,
    parse_party,
    self_party,
)

__all__ = ["AccessJudgement", "access", "grant", "grant_of", "judge_access", "revoke_grant"]


class AccessJudgement:
    __slots__ = ("granted", "reason")

    def __init__(self, granted: bool, reason: str) -> None:
        self.granted, self.reason = granted, reason


def grant_of(read: Any, record_id: str, grantee: str, purpose: str) -> dict[str, Any] | None:
    value = read(f"privacy/grant/{record_id}/{grantee}/{purpose}")
    return value if isinstance(value, dict) else None


def judge_access(read: Any, record: dict[str, Any] | None, party: str, purpose: str,
                 basis: str, org_roles: frozenset[str], now: int) -> AccessJudgement:
    """Whether ``party`` may read ``record`` for ``purpose`` on ``basis`` at block time
    ``now`` (``org_roles``: the asking key's organisation's roles; ``read``: a state
    reader taking full keys, for the grant and the party's declared country)."""
    if record is None:
        return AccessJudgement(False, "record_not_found")
    if not live_record(record):
        return AccessJudgement(False, f"record_{record['status']}")
    if basis == "subject":
        ok = party == self_party(record["subject"])
        return AccessJudgement(ok, "subject" if ok else "not_the_subject")
    if basis == "legal_basis":
        legal = LEGAL_BASES.get(purpose)
        if legal is None or not org_roles & legal.roles:
            return AccessJudgement(False, "no_legal_basis")
        if record["category"] not in legal.categories:
            return AccessJudgement(False, "category_outside_legal_basis")
        return _within_consent(read, record, party, None, "legal_basis")
    found = grant_of(read, record["record_id"], party, purpose)
    if found is None:
        return AccessJudgement(False, "no_grant")
    if found["status"] != "active":
        return AccessJudgement(False, "grant_revoked")
    if now >= found["until"]:
        return AccessJudgement(False, "grant_expired")
    return _within_consent(read, record, party, found, "grant")


def _within_consent(read: Any, record: dict[str, Any], party: str,
                    found: dict[str, Any] | None, reason: str) -> AccessJudgement:
    """PIPL, judged at the access on the country ``party`` declares now: a transfer out
    of the record's jurisdiction needs the subject's consent, recorded on the grant
    (``found``) or on the record."""
    if not cross_border(record["jurisdiction"], declared_country(read, party)):
        return AccessJudgement(True, reason)
    if record.get("cross_border_consent") is True \
            or (found is not None and found.get("cross_border_consent") is True):
        return AccessJudgement(True, reason)
    return AccessJudgement(False, "cross_border_consent_required")


def _subjects_record(ctx: TxContext) -> dict[str, Any]:
    record_id = ctx.payload.get("record_id")
    if not isinstance(record_id, str) or not HEX64_RE.fullmatch(record_id):
        ctx.fail("bad_payload", "record_id is 64 lowercase hex digits")
    record = ctx.get(f"record/{record_id}")
    if not isinstance(record, dict):
        ctx.fail("record_not_found", f"no record {record_id}")
    if record["subject"] != ctx.sender:
        ctx.fail("forbidden", "only the record's subject grants or revokes access to it")
    return record


def _purpose(ctx: TxContext) -> str:
    purpose = ctx.payload.get("purpose")
    if not isinstance(purpose, str) or purpose not in PURPOSES:
        ctx.fail("bad_payload", f"purpose is one of {sorted(PURPOSES)}")
    return str(purpose)


def grant(ctx: TxContext) -> None:
    record = _subjects_record(ctx)
    if not live_record(record):
        ctx.fail("record_not_active", f"record {record['record_id']} is {record['status']}")
    grantee = parse_party(ctx.payload.get("grantee"))
    if grantee is None or grantee == VAULT or grantee == self_party(ctx.sender):
        ctx.fail("bad_payload", "grantee is another party (org:<id> or key:<key id>)")
    purpose = _purpose(ctx)
    until = ctx.payload.get("until")
    if not isinstance(until, int) or isinstance(until, bool) \
            or not ctx.time < until <= ctx.time + GRANT_MS_MAX:
        ctx.fail("bad_payload", "until is a block time (ms) after now and at most a year on")
    wrap_hash = ctx.payload.get("wrap_hash")
    if not isinstance(wrap_hash, str) or not HEX64_RE.fullmatch(wrap_hash):
        ctx.fail("bad_payload", "wrap_hash is the SHA-256 of the data key wrapped for the "
                                "grantee (64 lowercase hex digits)")
    key = encryption_key(ctx.read, grantee)
    if key is None:
        ctx.fail("no_encryption_key", f"{grantee} has no active encryption key")
    consent = consent_of(ctx)
    if cross_border(record["jurisdiction"], key["country"]) and not consent:
        ctx.fail("cross_border_consent_required",
                 f"{grantee} is in {key['country']}: sharing a record of a subject in "
                 f"{record['jurisdiction']} needs cross_border_consent (PIPL)")
    grantees = dict(record.get("grantees", {}))
    if grantee not in grantees and len(grantees) >= GRANTEES_PER_RECORD_MAX:
        ctx.fail("too_many_grantees", f"a record has at most {GRANTEES_PER_RECORD_MAX} "
                 "grantees, revoked ones included (each must acknowledge its erasure): "
                 "rectify it to start a version with none")
    ctx.put(f"grant/{record['record_id']}/{grantee}/{purpose}", {
        "record_id": record["record_id"], "grantee": grantee, "purpose": purpose,
        "until": until, "granted": ctx.time, "status": "active", "wrap_hash": wrap_hash,
        "key_id": key["key_id"], "cross_border_consent": consent, "by": ctx.sender})
    grantees[grantee] = sorted({*grantees.get(grantee, []), purpose})
    record["grantees"] = grantees
    ctx.put(f"record/{record['record_id']}", record)
    ctx.emit("privacy.grant.created", {"record_id": record["record_id"],
                                       "subject": ctx.sender, "grantee": grantee,
                                       "purpose": purpose, "until": until,
                                       "cross_border_consent": consent})


def revoke_grant(ctx: TxContext) -> None:
    record = _subjects_record(ctx)
    grantee = parse_party(ctx.payload.get("grantee"))
    if grantee is None:
        ctx.fail("bad_payload", "grantee is a party (org:<id> or key:<key id>)")
    purpose = _purpose(ctx)
    key = f"grant/{record['record_id']}/{grantee}/{purpose}"
    found = ctx.get(key)
    if not isinstance(found, dict) or found["status"] != "active":
        ctx.fail("grant_not_found", f"no active grant to {grantee} for {purpose}")
    found.update(status="revoked", revoked=ctx.time)
    ctx.put(key, found)
    ctx.emit("privacy.grant.revoked", {"record_id": record["record_id"],
                                       "subject": ctx.sender, "grantee": grantee,
                                       "purpose": purpose})


def access(ctx: TxContext) -> None:
    """Ask to read a record: judged and recorded either way (a refusal is an outcome,
    not a failed transaction, so that it is on the chain)."""
    record_id = ctx.payload.get("record_id")
    if not isinstance(record_id, str) or not HEX64_RE.fullmatch(record_id):
        ctx.fail("bad_payload", "record_id is 64 lowercase hex digits")
    purpose = _purpose(ctx)
    basis = ctx.payload.get("basis")
    if not isinstance(basis, str) or basis not in ACCESS_BASES:
        ctx.fail("bad_payload", f"basis is one of {sorted(ACCESS_BASES)}")
    acting = ctx.payload.get("as", "org")
    if acting not in ("org", "self"):
        ctx.fail("bad_payload", "as is org (for the key's organisation) or self")
    party = org_party(ctx.sender_org) if acting == "org" else self_party(ctx.sender)
    record = ctx.get(f"record/{record_id}")
    record = record if isinstance(record, dict) else None
    roles = ctx.org_roles if acting == "org" else frozenset()
    judgement = judge_access(ctx.read, record, party, purpose, str(basis), roles, ctx.time)
    attributes = {"record_id": record_id,
                  "subject": None if record is None else record["subject"],
                  "party": party, "purpose": purpose, "basis": basis, "by": ctx.sender}
    if judgement.granted:
        ctx.put(f"accessed/{record_id}/{party}/{purpose}", ctx.time)
        ctx.emit("privacy.access.granted", attributes)
    else:
        ctx.emit("privacy.access.refused", {**attributes, "reason": judgement.reason})
