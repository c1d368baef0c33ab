"""The privacy views are pure projections of the contract's events: one document per
access (granted or refused) and one per status change of a record, ids from the chain."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from services.gateway.views.schema import POS_STRIDE, BlockContext
from services.ledger.core.contract import Event
from services.privacy.edge.views import (
    ACCESS,
    PRIVACY_VIEWS,
    RECORDS,
    project_access,
    project_records,
)

RECORD = "ab" * 32
SUBJECT = "cd" * 16
KEY = "ef" * 16
TX = "12" * 32
BLOCK = "34" * 32


def block(*events: tuple[str, dict[str, Any], int | None]) -> BlockContext:
    made = [Event(kind, attrs, tx_index, index)
            for index, (kind, attrs, tx_index) in enumerate(events)]
    return cast(BlockContext, SimpleNamespace(events=made, height=7, time=1_000,
                                              tx_hashes=(TX,), block_hash=BLOCK))


def test_each_access_is_one_document_granted_or_refused() -> None:
    access = {"record_id": RECORD, "subject": SUBJECT, "party": "org:carrier",
              "purpose": "delivery", "basis": "grant", "by": KEY}
    writes = project_access(block(
        ("privacy.access.granted", access, 0),
        ("privacy.access.refused", {**access, "reason": "grant_expired"}, 0),
        ("privacy.access.refused", {**access, "subject": None, "reason": "record_not_found"},
         0),
        ("privacy.grant.created", {"record_id": RECORD}, 0)))
    assert [(w.collection, w.id) for w in writes] == [(ACCESS, f"{TX}:0"), (ACCESS, f"{TX}:1"),
                                                      (ACCESS, f"{TX}:2")]
    granted, expired, unknown = (dict(w.document) for w in writes)
    assert granted == {"pos": 7 * POS_STRIDE, "height": 7, "index": 0, "time": 1_000,
                       "tx_hash": TX, "record_id": RECORD, "subject": SUBJECT,
                       "party": "org:carrier", "purpose": "delivery", "basis": "grant",
                       "outcome": "granted", "reason": None, "by": KEY}
    assert (expired["outcome"], expired["reason"]) == ("refused", "grant_expired")
    assert unknown["subject"] is None


def test_a_record_s_status_changes_are_its_history() -> None:
    writes = project_records(block(
        ("privacy.record.created", {"record_id": RECORD, "subject": SUBJECT,
                                    "category": "name", "jurisdiction": "FR",
                                    "commitment": "00" * 32, "holders": [f"key:{SUBJECT}"]},
         0),
        ("privacy.erasure.requested", {"record_id": RECORD, "subject": SUBJECT,
                                       "pending": ["vault"], "deadline": 9,
                                       "reason": "requested"}, 0),
        ("privacy.erasure.acknowledged", {"record_id": RECORD, "party": "vault", "by": KEY,
                                          "late": False}, 0),
        ("privacy.erasure.overdue", {"record_id": RECORD, "subject": SUBJECT,
                                     "missing": ["org:carrier"]}, None),
        ("privacy.erasure.completed", {"record_id": RECORD, "subject": SUBJECT,
                                       "late": True}, 0)))
    assert all(w.collection == RECORDS for w in writes)
    assert [(w.document["event"], w.document["status"]) for w in writes] == [
        ("record.created", "active"), ("erasure.requested", "erasing"),
        ("erasure.acknowledged", "erasing"), ("erasure.overdue", "erasing"),
        ("erasure.completed", "erased")]
    acknowledged, overdue = writes[2].document, writes[3].document
    assert acknowledged["subject"] is None and acknowledged["detail"]["party"] == "vault"
    assert overdue["tx_hash"] is None and writes[3].id == f"{BLOCK}:3"
    assert writes[0].document["detail"]["holders"] == [f"key:{SUBJECT}"]


def test_the_views_are_the_domain_s_own() -> None:
    assert [v.name for v in PRIVACY_VIEWS] == [ACCESS, RECORDS]
