"""The privacy domain's MongoDB views, projected from the privacy contract's events.

====================  ==========  ==================================================
collection            ``_id``     from
====================  ==========  ==================================================
``privacy_access``    event id    ``privacy.access.granted`` / ``.refused``: who read
                                  (or was refused) which record, why, when
``privacy_records``   event id    ``privacy.record.created`` / ``.rectified`` and
                                  ``privacy.erasure.*``: each record's status history
====================  ==========  ==================================================

One document per event, so a history is a range read on ``(record_id, pos)`` or
``(subject, pos)`` and projection stays a pure ``$set`` of fields. There is no personal
data to project (there is none on chain); the vault's ciphertexts are not a view
(``services.privacy.edge.vault``: never dropped by a rebuild). Like every view these
are rebuildable from the chain, which stays the truth.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from services.gateway.views.schema import BlockContext, ViewSpec, Write, event_id, pos_of
from services.ledger.core.contract import Event

__all__ = ["ACCESS", "ACCESS_VIEW", "PRIVACY_VIEWS", "RECORDS", "RECORDS_VIEW",
           "project_access", "project_records"]

ACCESS = "privacy_access"
RECORDS = "privacy_records"

_ACCESS_EVENTS = {"privacy.access.granted": "granted", "privacy.access.refused": "refused"}
#: record events -> the record's status after them
_RECORD_STATUS = {
    "privacy.record.created": "active",
    "privacy.record.rectified": "active",
    "privacy.erasure.requested": "erasing",
    "privacy.erasure.acknowledged": "erasing",
    "privacy.erasure.overdue": "erasing",
    "privacy.erasure.completed": "erased",
}
#: attributes that are about the change itself (beside record, subject, status)
_DETAIL_FIELDS = ("category", "jurisdiction", "commitment", "holders", "supersedes",
                  "pending", "deadline", "reason", "party", "by", "late", "missing")


def _placed(ctx: BlockContext, event: Event) -> dict[str, Any]:
    return {"pos": pos_of(ctx.height, event.index), "height": ctx.height,
            "index": event.index, "time": ctx.time,
            "tx_hash": None if event.tx_index is None else ctx.tx_hashes[event.tx_index]}


def project_access(ctx: BlockContext) -> list[Write]:
    out = []
    for event in ctx.events:
        outcome = _ACCESS_EVENTS.get(event.type)
        if outcome is None:
            continue
        a = event.attributes
        out.append(Write(ACCESS, event_id(ctx, event), {
            **_placed(ctx, event), "record_id": a["record_id"], "subject": a["subject"],
            "party": a["party"], "purpose": a["purpose"], "basis": a["basis"],
            "outcome": outcome, "reason": a.get("reason"), "by": a["by"]}))
    return out


def project_records(ctx: BlockContext) -> list[Write]:
    out = []
    for event in ctx.events:
        status = _RECORD_STATUS.get(event.type)
        if status is None:
            continue
        a = event.attributes
        detail = {k: a[k] for k in _DETAIL_FIELDS if k in a}
        out.append(Write(RECORDS, event_id(ctx, event), {
            **_placed(ctx, event), "record_id": a["record_id"],
            # an acknowledgement names the party, not the subject: found by record_id
            "subject": a.get("subject"), "event": event.type.removeprefix("privacy."),
            "status": status, "detail": detail}))
    return out


ACCESS_VIEW = ViewSpec(ACCESS, (
    IndexModel([("subject", ASCENDING), ("pos", DESCENDING)]),
    IndexModel([("record_id", ASCENDING), ("pos", DESCENDING)]),
), project_access)
RECORDS_VIEW = ViewSpec(RECORDS, (
    IndexModel([("subject", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("record_id", ASCENDING), ("pos", ASCENDING)]),
), project_records)

#: the privacy domain's views, handed to the gateway by the composition
PRIVACY_VIEWS = (ACCESS_VIEW, RECORDS_VIEW)
