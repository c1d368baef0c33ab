"""Reads the privacy endpoints make of the chain's store and of the views: the access
transaction an envelope is asked against, a subject's access log, a subject's export.

The access transaction is found through the views (``transactions``) and, for one
committed so recently that the projector has not written it yet, in the store's last
unprojected blocks (at most ``lookup_blocks_max``): a client that asks for its envelope
right after its access committed is not told it does not exist. Its events are read
from the store, never from the views: what opens the vault is what the chain says.

The export is paged by records, in record id order (a record id is the cursor), each
page bounded in records and, roughly, in bytes: a subject's every ciphertext is never
built into one answer. Every query is bounded (``limit``), none scans unboundedly.

Errors: :class:`ViewsError` when MongoDB fails or the views disagree with the store
(the API answers 503); ``ValueError`` for a cursor that is not one of ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import PyMongoError

from services.gateway.views import queries
from services.gateway.views.schema import POS_STRIDE, pos_of
from services.ledger.core.contract import Event
from services.privacy.edge.models import b64url
from services.privacy.edge.vault import Vault, VaultEntry
from services.privacy.edge.views import ACCESS, RECORDS
from services.privacy.grants import grant_of
from services.privacy.records import record_of
from services.privacy.vocabulary import self_party

__all__ = ["ACCESS_EVENTS", "ExportPage", "FoundAccess", "ViewsError", "access_log",
           "export", "find_access"]

ACCESS_EVENTS = frozenset({"privacy.access.granted", "privacy.access.refused"})
Document = dict[str, Any]
#: what a record adds to an export page beside its bytes (metadata, history, grants),
#: and what an access-log entry adds: estimates, for the page's byte bound
RECORD_OVERHEAD_BYTES = 4_096
ACCESS_ENTRY_BYTES = 512
#: vault documents read at once while a page is filled
VAULT_BATCH = 64


class ViewsError(Exception):
    """MongoDB failed, or the views disagree with the chain's store."""


@dataclass(frozen=True)
class FoundAccess:
    height: int
    time: int  # the block's time, ms
    #: the transaction's access event for the record (granted or refused); None: it
    #: asked for no access to this record
    event: Event | None


def _unprojected(chain: Any, tx_hash: str, checkpoint: int,
                 lookup_blocks_max: int) -> tuple[int, int] | None:
    """(height, index) of ``tx_hash`` in a committed block the views do not have yet."""
    tip = chain.store.height()
    for height in range(tip, max(checkpoint, tip - lookup_blocks_max), -1):
        stored = chain.store.block(height)
        if stored is None:
            continue
        for index, tx in enumerate(stored.block.txs):
            if tx.hash.hex() == tx_hash:
                return height, index
    return None


async def find_access(chain: Any, db: Any, tx_hash: str, record_id: str,
                      lookup_blocks_max: int) -> FoundAccess | None:
    """The committed transaction ``tx_hash`` and its access event for ``record_id``;
    None if no committed transaction has that hash."""
    try:
        doc = await queries.get_transaction(db, tx_hash)
        checkpoint = 0 if doc is not None else await queries.views_height(db)
    except PyMongoError as exc:
        raise ViewsError(f"MongoDB: {type(exc).__name__}") from exc
    if doc is not None:
        height, index = int(doc["height"]), int(doc["index"])
    else:
        located = _unprojected(chain, tx_hash, checkpoint, lookup_blocks_max)
        if located is None:
            return None
        height, index = located
    stored = chain.store.block(height)
    if stored is None or index >= len(stored.block.txs) \
            or stored.block.txs[index].hash.hex() != tx_hash:
        raise ViewsError("the views disagree with the chain's store")
    events = chain.store.events(height) or []
    event = next((e for e in events if e.tx_index == index and e.type in ACCESS_EVENTS
                  and e.attributes.get("record_id") == record_id), None)
    return FoundAccess(height, stored.block.header.time, event)


def _access_out(doc: Document) -> Document:
    return {"id": doc["_id"], **{k: v for k, v in doc.items()
                                 if k not in ("_id", "pos", "index", "subject")}}


async def access_log(db: Any, subject: str, *, cursor: str | None,
                     limit: int) -> Document:
    """One page of the accesses to ``subject``'s records, newest first."""
    limit = queries.clamp_limit(limit)
    try:
        high = (await queries.views_height(db) + 1) * POS_STRIDE
        if cursor is not None:
            height, index = queries.decode_cursor(cursor, ACCESS, 2)
            high = min(high, pos_of(height, index))
        docs = await db[ACCESS].find({"subject": subject, "pos": {"$lt": high}}) \
            .sort("pos", DESCENDING).limit(limit + 1).to_list()
    except PyMongoError as exc:
        raise ViewsError(f"MongoDB: {type(exc).__name__}") from exc
    more = len(docs) > limit
    docs = docs[:limit]
    next_cursor = queries.encode_cursor(ACCESS, docs[-1]["height"], docs[-1]["index"]) \
        if more else None
    return {"items": [_access_out(d) for d in docs], "next_cursor": next_cursor}


def _grants(view: Any, records: Sequence[Mapping[str, Any]]) -> list[Any]:
    out = []
    for record in records:
        for party, purposes in sorted(record.get("grantees", {}).items()):
            for purpose in purposes:
                found = grant_of(view.get, record["record_id"], party, purpose)
                if found is not None:
                    out.append(found)
    return out


@dataclass(frozen=True)
class ExportPage:
    body: Document
    size: int  # an estimate of the body's JSON size, bytes


def _b64_chars(data: bytes | None) -> int:
    return 0 if data is None else (len(data) * 4 + 2) // 3


async def _export_ids(view: Any, db: Any, subject: str, after: str | None,
                      count: int) -> list[str]:
    """The first ``count`` of ``subject``'s record ids after ``after``, in id order: those
    not yet erased from the state's index, the erased ones from the views' history (their
    completion names the subject), at most ``count`` read of either."""
    live = {str(i) for i in view.get(f"privacy/subject/{subject}") or []}
    query: Document = {"subject": subject, "status": "erased"}
    if after is not None:
        query["record_id"] = {"$gt": after}
    try:
        docs = await db[RECORDS].find(query, {"record_id": 1}) \
            .sort("record_id", ASCENDING).limit(count).to_list()
    except PyMongoError as exc:
        raise ViewsError(f"MongoDB: {type(exc).__name__}") from exc
    ids = live | {str(d["record_id"]) for d in docs}
    return sorted(i for i in ids if after is None or i > after)[:count]


async def _export_records(view: Any, vault: Vault, subject: str, ids: Sequence[str], *,
                          bytes_max: int) -> tuple[list[tuple[Document, VaultEntry | None]],
                                                   str | None, int]:
    """(the records of ids that fit ``bytes_max``, with their vault entries; the last id
    looked at if some did not fit, else None; their estimated size). At least one record
    is taken, so that paging always moves on."""
    own = self_party(subject)
    taken: list[tuple[Document, VaultEntry | None]] = []
    size = 0
    last: str | None = None
    for start in range(0, len(ids), VAULT_BATCH):
        chunk = ids[start:start + VAULT_BATCH]
        entries = await vault.get_many(chunk)
        for record_id in chunk:
            record = record_of(view.get, record_id)
            entry = entries.get(record_id)
            cost = RECORD_OVERHEAD_BYTES + (0 if entry is None else (
                _b64_chars(entry.ciphertext) + _b64_chars(entry.wraps.get(own))))
            if taken and size + cost > bytes_max:
                return taken, last, size
            last = record_id
            if record is not None:
                taken.append((record, entry))
                size += cost
    return taken, None, size


async def export(chain: Any, db: Any, vault: Vault, subject: str, *, after: str | None,
                 records_max: int, accesses_max: int, bytes_max: int) -> ExportPage:
    """One page of everything about ``subject``: its records after ``after`` (metadata,
    ciphertext, its own wrap, status history), their grants and erasures; on the first
    page its key and every access (at most ``accesses_max``, newest first)."""
    view = chain.view()
    height = chain.tip.height
    ids = await _export_ids(view, db, subject, after, records_max + 1)
    taken, stopped_at, size = await _export_records(view, vault, subject, ids[:records_max],
                                                    bytes_max=bytes_max)
    next_cursor = stopped_at if stopped_at is not None else (
        ids[records_max - 1] if len(ids) > records_max else None)
    records = [record for record, _ in taken]
    page_ids = [r["record_id"] for r in records]
    try:
        history = await db[RECORDS].find({"record_id": {"$in": page_ids}}) \
            .sort("pos", ASCENDING).limit(accesses_max).to_list() if page_ids else []
        accesses = await db[ACCESS].find({"subject": subject}) \
            .sort("pos", DESCENDING).limit(accesses_max + 1).to_list() \
            if after is None else []
    except PyMongoError as exc:
        raise ViewsError(f"MongoDB: {type(exc).__name__}") from exc
    accesses_cut = len(accesses) > accesses_max
    accesses = accesses[:accesses_max]
    by_record: dict[str, list[Document]] = {}
    for doc in history:
        by_record.setdefault(doc["record_id"], []).append(
            {k: v for k, v in doc.items() if k not in ("_id", "pos", "index")})
    own = self_party(subject)
    out_records = []
    for record, entry in taken:
        wrap = None if entry is None else entry.wraps.get(own)
        out_records.append({
            **record, "ciphertext": None if entry is None else b64url(entry.ciphertext),
            "wrapped_key": None if wrap is None else b64url(wrap),
            "history": by_record.get(record["record_id"], [])})
    body = {
        "subject": subject, "exported_at": vault.now_ms(), "height": height,
        "encryption_key": view.get(f"privacy/enckey/{own}"),
        "records": out_records, "grants": _grants(view, records),
        "access_log": [_access_out(d) for d in accesses],
        "erasures": [{"record_id": r["record_id"], "status": r["status"], **r["erasure"]}
                     for r in records if r.get("erasure")],
        "next_cursor": next_cursor, "access_log_truncated": accesses_cut,
        "truncated": next_cursor is not None or accesses_cut,
    }
    return ExportPage(body, size + len(accesses) * ACCESS_ENTRY_BYTES)
