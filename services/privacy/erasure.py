"""Erasure by crypto-shredding, on chain.

The subject asks (``privacy.request_erasure``; rectification asks for the old
version). From that block the record is unreadable (every access is refused), and
every party that held a copy — each holder of a wrapped data key, each grantee, and
the vault custodian holding the ciphertext — must acknowledge, on chain, that it
destroyed its copy (``privacy.ack_erasure``) within ``ERASURE_ACK_MS``. When the last
one has, the record is ``erased``: the data key exists nowhere, so the ciphertext (if
a copy survived) is noise, and the commitment on chain — a salted hash whose salt was
inside the ciphertext — names nothing. Every block, certificate and proof stays
valid: nothing on chain changes but this record's status. Parties that miss the
deadline are named by ``privacy.erasure.overdue`` (acknowledging late still counts).

This module never does I/O.
"""

from __future__ import annotations

from typing import Any

from services.ledger.core import deadlines
from services.ledger.core.contract import BlockContext, TxContext
from services.privacy.vocabulary import (
    ERASURE_ACK_MS,
    HEX64_RE,
    VAULT,
    VAULT_ROLES,
    org_party,
    self_party,
)

__all__ = ["ack_erasure", "overdue", "request_erasure", "start"]


def start(ctx: TxContext, record: dict[str, Any], *, reason: str) -> None:
    """Begin erasing ``record`` (the caller checked the sender may)."""
    subject = self_party(record["subject"])
    holders = set(record["holders"]) | set(record.get("grantees", {})) | {VAULT}
    holders.discard(subject)  # the subject asked (or rectified): its own copy goes now
    deadline = ctx.time + ERASURE_ACK_MS
    bucket = deadlines.schedule(ctx, deadline, record["record_id"])
    record.update(status="erasing", erasure={
        "requested": ctx.time, "deadline": deadline, "bucket": bucket, "reason": reason,
        "pending": sorted(holders), "acknowledged": [subject], "overdue": False})
    ctx.put(f"record/{record['record_id']}", record)
    ctx.emit("privacy.erasure.requested", {"record_id": record["record_id"],
                                           "subject": record["subject"],
                                           "pending": sorted(holders),
                                           "deadline": deadline, "reason": reason})


def request_erasure(ctx: TxContext) -> None:
    record_id = ctx.payload.get("record_id")
    if not isinstance(record_id, str) or not HEX64_RE.fullmatch(record_id):
        ctx.fail("bad_payload", "record_id is 64 lowercase hex digits")
    record = ctx.get(f"record/{record_id}")
    if not isinstance(record, dict):
        ctx.fail("record_not_found", f"no record {record_id}")
    if record["subject"] != ctx.sender:
        ctx.fail("forbidden", "only the record's subject asks for its erasure")
    if record["status"] != "active":
        ctx.fail("record_not_active", f"record {record_id} is {record['status']}")
    start(ctx, record, reason="requested")


def ack_erasure(ctx: TxContext) -> None:
    record_id = ctx.payload.get("record_id")
    if not isinstance(record_id, str) or not HEX64_RE.fullmatch(record_id):
        ctx.fail("bad_payload", "record_id is 64 lowercase hex digits")
    acting = ctx.payload.get("as", "org")
    if acting == "vault":
        if not ctx.org_roles & VAULT_ROLES:
            ctx.fail("forbidden", "only the platform acknowledges for the vault")
        party = VAULT
    elif acting == "org":
        party = org_party(ctx.sender_org)
    elif acting == "self":
        party = self_party(ctx.sender)
    else:
        ctx.fail("bad_payload", "as is org, self or vault")
    record = ctx.get(f"record/{record_id}")
    if not isinstance(record, dict) or record["status"] != "erasing":
        ctx.fail("not_erasing", f"record {record_id} is not being erased")
    erasure = record["erasure"]
    if party not in erasure["pending"]:
        ctx.fail("not_pending", f"{party} has no copy of {record_id} left to delete")
    erasure["pending"] = [p for p in erasure["pending"] if p != party]
    erasure["acknowledged"] = sorted({*erasure["acknowledged"], party})
    late = ctx.time > erasure["deadline"]
    ctx.emit("privacy.erasure.acknowledged", {"record_id": record_id, "party": party,
                                              "by": ctx.sender, "late": late})
    if not erasure["pending"]:
        deadlines.cancel(ctx, erasure["bucket"], record_id)
        record["status"] = "erased"
        erasure["completed"] = ctx.time
        # it leaves its subject's index of live records (the bound on them); its own
        # record stays, and the views keep its history
        index = ctx.get(f"subject/{record['subject']}") or []
        ctx.put(f"subject/{record['subject']}", [r for r in index if r != record_id])
        ctx.emit("privacy.erasure.completed", {"record_id": record_id,
                                               "subject": record["subject"],
                                               "late": late or erasure["overdue"]})
    ctx.put(f"record/{record_id}", record)


def overdue(ctx: BlockContext) -> None:
    """Name the parties that let an erasure deadline pass (block hook)."""
    for _, record_id, _ in deadlines.due(ctx, ctx.time):
        record = ctx.get(f"record/{record_id}")
        if not isinstance(record, dict) or record["status"] != "erasing":
            continue
        record["erasure"]["overdue"] = True
        ctx.put(f"record/{record_id}", record)
        ctx.emit("privacy.erasure.overdue", {"record_id": record_id,
                                             "subject": record["subject"],
                                             "missing": list(record["erasure"]["pending"])})
