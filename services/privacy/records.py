"""Vault records on chain: what a record is, never what it holds.

``privacy.create_record`` is sent by the record's *subject* (the person it is about),
whose client encrypted the value beforehand: the chain gets the category, a salted
commitment to the value (SHA-256 over a random salt, the category and the value; the
salt is inside the ciphertext only), the hash of the ciphertext the vault will hold,
the subject's jurisdiction, and the parties the data key was wrapped for (each with an
active encryption key; the subject always), each with the SHA-256 of its wrapped copy
(``wrap_hashes``: the vault stores a holder's wrap only if it hashes to that, so no
one — the subject included — can swap a holder's copy without a new version on
chain). The record's id is its transaction's hash. ``privacy.rectify`` makes a new
version and sends the old one to erasure.

This module never does I/O.
"""

from __future__ import annotations

from typing import Any

from services.ledger.core.contract import TxContext
from services.privacy import erasure
from services.privacy.keys import encryption_key
from services.privacy.vocabulary import (
    CATEGORIES,
    COUNTRY_RE,
    CROSS_BORDER_REGIONS,
    HEX64_RE,
    HOLDERS_MAX,
    RECORDS_PER_SUBJECT_MAX,
    VAULT,
    parse_party,
    self_party,
)

__all__ = ["consent_of", "cross_border", "create_record", "live_record", "record_of",
           "rectify"]


def record_of(read: Any, record_id: str) -> dict[str, Any] | None:
    value = read(f"privacy/record/{record_id}")
    return value if isinstance(value, dict) else None


def live_record(record: dict[str, Any] | None) -> bool:
    """Readable: neither erased, being erased, nor superseded."""
    return record is not None and record["status"] == "active"


def cross_border(jurisdiction: str, country: str | None) -> bool:
    """Sharing a record of a subject in ``jurisdiction`` with a party in ``country`` is a
    cross-border transfer needing the subject's consent (PIPL). A party that never
    declared a country (None) is not known to be inside: it counts as outside."""
    return jurisdiction in CROSS_BORDER_REGIONS and country not in CROSS_BORDER_REGIONS


def consent_of(ctx: TxContext) -> bool:
    """The subject's ``cross_border_consent`` (absent: no consent). Anything but a
    boolean is refused, never read as "no": it would be committed in the payload."""
    value = ctx.payload.get("cross_border_consent", False)
    if not isinstance(value, bool):
        ctx.fail("bad_payload", "cross_border_consent is true or false")
    return value


def _hex64(ctx: TxContext, field: str) -> str:
    value = ctx.payload.get(field)
    if not isinstance(value, str) or not HEX64_RE.fullmatch(value):
        ctx.fail("bad_payload", f"{field} is 64 lowercase hex digits")
    return value


def _holders(ctx: TxContext, subject: str, jurisdiction: str) -> dict[str, str]:
    """party -> the key id its wrapped copy was made for."""
    raw = ctx.payload.get("holders")
    if not isinstance(raw, list) or not 0 < len(raw) <= HOLDERS_MAX:
        ctx.fail("bad_payload", f"holders is a list of 1..{HOLDERS_MAX} parties")
    consent = consent_of(ctx)
    out: dict[str, str] = {}
    for item in raw:
        party = parse_party(item)
        if party is None or party == VAULT or party in out:
            ctx.fail("bad_payload", f"holder {str(item)[:80]!r} is not a party "
                     "(org:<id> or key:<key id>, once each)")
        key = encryption_key(ctx.read, party)
        if key is None:
            ctx.fail("no_encryption_key", f"{party} has no active encryption key")
        if party != subject and cross_border(jurisdiction, key["country"]) and not consent:
            ctx.fail("cross_border_consent_required",
                     f"{party} is in {key['country']}: sharing a record of a subject in "
                     f"{jurisdiction} needs the subject's cross_border_consent (PIPL)")
        out[party] = key["key_id"]
    if subject not in out:
        ctx.fail("bad_payload", "the subject holds a copy of its own record (export)")
    return out


def _wrap_hashes(ctx: TxContext, holders: dict[str, str]) -> dict[str, str]:
    """holder -> the SHA-256 of the data key wrapped for it (what the vault may store)."""
    raw = ctx.payload.get("wrap_hashes")
    if not isinstance(raw, dict) or set(raw) != set(holders) \
            or not all(isinstance(v, str) and HEX64_RE.fullmatch(v) for v in raw.values()):
        ctx.fail("bad_payload", "wrap_hashes maps each holder, and only the holders, to the "
                 "SHA-256 of the data key wrapped for it (64 lowercase hex digits)")
    return {party: raw[party] for party in sorted(raw)}


def _new_record(ctx: TxContext, category: str, jurisdiction: str,
                supersedes: str | None) -> dict[str, Any]:
    subject = self_party(ctx.sender)
    holders = _holders(ctx, subject, jurisdiction)
    wrap_hashes = _wrap_hashes(ctx, holders)
    record_id = ctx.tx.hash.hex()
    live = ctx.get(f"subject/{ctx.sender}") or []  # records not erased yet
    if len(live) >= RECORDS_PER_SUBJECT_MAX:
        ctx.fail("too_many_records", f"a subject holds at most {RECORDS_PER_SUBJECT_MAX} "
                 "records not yet erased (erase some: a record frees its place once "
                 "every holder acknowledged its erasure)")
    record = {"record_id": record_id, "subject": ctx.sender, "category": category,
              "jurisdiction": jurisdiction,
              "commitment": _hex64(ctx, "commitment"),
              "ciphertext_hash": _hex64(ctx, "ciphertext_hash"),
              "holders": holders, "wrap_hashes": wrap_hashes, "created": ctx.time,
              "status": "active", "supersedes": supersedes, "superseded_by": None,
              "cross_border_consent": consent_of(ctx)}
    ctx.put(f"record/{record_id}", record)
    ctx.put(f"subject/{ctx.sender}", [*live, record_id])
    return record


def create_record(ctx: TxContext) -> None:
    category = ctx.payload.get("category")
    if not isinstance(category, str) or category not in CATEGORIES:
        ctx.fail("bad_payload", f"category is one of {sorted(CATEGORIES)}")
    jurisdiction = ctx.payload.get("jurisdiction")
    if not isinstance(jurisdiction, str) or not COUNTRY_RE.fullmatch(jurisdiction):
        ctx.fail("bad_payload", "jurisdiction is the subject's country (ISO 3166-1 alpha-2)")
    if encryption_key(ctx.read, self_party(ctx.sender)) is None:
        ctx.fail("no_encryption_key", "register your own encryption key first (scope self)")
    record = _new_record(ctx, str(category), jurisdiction, None)
    ctx.emit("privacy.record.created", _summary(record))


def rectify(ctx: TxContext) -> None:
    old_id = _hex64(ctx, "record_id")
    old = ctx.get(f"record/{old_id}")
    if not isinstance(old, dict):
        ctx.fail("record_not_found", f"no record {old_id}")
    if old["subject"] != ctx.sender:
        ctx.fail("forbidden", "only the record's subject rectifies it")
    if old["status"] != "active":
        ctx.fail("record_not_active", f"record {old_id} is {old['status']}")
    record = _new_record(ctx, old["category"], old["jurisdiction"], old_id)
    old.update(status="superseded", superseded_by=record["record_id"])
    ctx.put(f"record/{old_id}", old)
    ctx.emit("privacy.record.rectified", {**_summary(record), "supersedes": old_id})
    erasure.start(ctx, old, reason="rectified")


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {"record_id": record["record_id"], "subject": record["subject"],
            "category": record["category"], "jurisdiction": record["jurisdiction"],
            "commitment": record["commitment"], "holders": sorted(record["holders"])}
