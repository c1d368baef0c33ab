"""The vault: the records' ciphertexts and wrapped data keys, off chain, in MongoDB.

A database of its own on the views' server (``PrivacySettings.vault_db_name``, so
gateways sharing one server share one vault), collection ``privacy_vault``::

    {_id: record id, subject: key id, ciphertext: bytes,
     wraps: [{party, wrapped_key: bytes}], created: ms, rev: int}
    {_id: record id, erased: true, at: ms}          a tombstone

``wraps`` is a list, not a ``{party: bytes}`` object, because an organisation's id may
hold a ``.``, which MongoDB reads as a path in a field name. ``rev`` counts changes to
the wraps: each change is a compare-and-set on it, so two requests adding wraps at
once cannot lose one. The vault custodian's checkpoint (``privacy_custodian``, one
document per chain) lives beside it.

It is not a view: a rebuild of the views never drops it. It holds bytes only — sealed
by the client (ChaCha20-Poly1305 under a random data key, wrapped per party with HPKE);
the gateway can read none of it. Erasure replaces a record's document (ciphertext and
every wrap) by a *tombstone* (:meth:`Vault.shred`): crypto-shredding, with the subject's
and holders' own copies of the data key destroyed by them and acknowledged on chain.
A tombstone is never replaced by a ciphertext again: a write racing the erasure (its
status check passed before the erasure committed), or one from a gateway sharing the
vault whose chain lags, fails on it instead of storing bytes nobody would delete.
:meth:`Vault.shred` upserts, so an erasure handled before the write it races still
wins. Readers (:meth:`Vault.get`, :meth:`Vault.get_many`) see a tombstone as nothing.

Errors: :class:`VaultUnavailable` when MongoDB is not open or does not answer (the API
answers 503 ``vault_unavailable``; the custodian backs off and retries).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

__all__ = ["CHECKPOINTS", "VAULT", "Tombstone", "Vault", "VaultEntry", "VaultUnavailable"]

VAULT = "privacy_vault"
CHECKPOINTS = "privacy_custodian"

Document = dict[str, Any]


class VaultUnavailable(Exception):
    """MongoDB is not open, or did not answer: try again later."""


@dataclass(frozen=True)
class VaultEntry:
    record_id: str
    subject: str
    ciphertext: bytes
    wraps: Mapping[str, bytes]
    created: int
    rev: int = 0

    def to_document(self) -> Document:
        return {"_id": self.record_id, "subject": self.subject,
                "ciphertext": self.ciphertext, "wraps": _wraps_out(self.wraps),
                "created": self.created, "rev": self.rev}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> VaultEntry:
        return cls(record_id=str(doc["_id"]), subject=str(doc["subject"]),
                   ciphertext=bytes(doc["ciphertext"]),
                   wraps={str(w["party"]): bytes(w["wrapped_key"])
                          for w in doc.get("wraps", [])},
                   created=int(doc["created"]), rev=int(doc.get("rev", 0)))


@dataclass(frozen=True)
class Tombstone:
    """What is left of an erased record's document: its id and when it was shredded."""

    record_id: str
    at: int


def _entry_or_tombstone(doc: Mapping[str, Any]) -> VaultEntry | Tombstone:
    if doc.get("erased") is True:
        return Tombstone(str(doc["_id"]), int(doc.get("at", 0)))
    return VaultEntry.from_document(doc)


def _wraps_out(wraps: Mapping[str, bytes]) -> list[Document]:
    return [{"party": party, "wrapped_key": wraps[party]} for party in sorted(wraps)]


class Vault:
    """The vault's collections, reached through the views' client (``views``: the
    gateway's ``ViewsAccess``; absent until the views database is opened)."""

    def __init__(self, views: Any, db_name: str) -> None:
        self.views = views
        self.db_name = db_name

    @property
    def is_open(self) -> bool:
        """The views' MongoDB client exists (whether it answers is another matter)."""
        return getattr(self.views, "database", None) is not None

    def _database(self) -> Any:
        database = getattr(self.views, "database", None)
        if database is None:
            raise VaultUnavailable("the vault's MongoDB is not open")
        return database.client[self.db_name]

    def _collection(self, name: str = VAULT) -> AsyncCollection[Document]:
        collection: AsyncCollection[Document] = self._database()[name]
        return collection

    @staticmethod
    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    async def lookup(self, record_id: str) -> VaultEntry | Tombstone | None:
        """The record's document: its bytes, its tombstone (erased), or None."""
        try:
            doc = await self._collection().find_one({"_id": record_id})
        except PyMongoError as exc:
            raise VaultUnavailable(f"MongoDB: {type(exc).__name__}") from exc
        return None if doc is None else _entry_or_tombstone(doc)

    async def get(self, record_id: str) -> VaultEntry | None:
        """The record's bytes (None: never stored, or erased)."""
        found = await self.lookup(record_id)
        return found if isinstance(found, VaultEntry) else None

    async def get_many(self, record_ids: Sequence[str]) -> dict[str, VaultEntry]:
        if not record_ids:
            return {}
        try:
            docs = await self._collection().find({"_id": {"$in": list(record_ids)}}) \
                .to_list()
        except PyMongoError as exc:
            raise VaultUnavailable(f"MongoDB: {type(exc).__name__}") from exc
        return {str(d["_id"]): VaultEntry.from_document(d) for d in docs
                if d.get("erased") is not True}

    async def insert(self, entry: VaultEntry) -> bool:
        """Store a new record's document; False if one exists already (its bytes, or its
        tombstone: :meth:`lookup` tells which)."""
        try:
            await self._collection().insert_one(entry.to_document())
        except DuplicateKeyError:
            return False
        except PyMongoError as exc:
            raise VaultUnavailable(f"MongoDB: {type(exc).__name__}") from exc
        return True

    async def replace_wraps(self, entry: VaultEntry, wraps: Mapping[str, bytes]) -> bool:
        """Set ``entry``'s wraps if nobody changed them since it was read (its ``rev``);
        False if somebody did (read again) or the document is gone (a tombstone has no
        ``rev``: it never matches)."""
        try:
            result = await self._collection().update_one(
                {"_id": entry.record_id, "rev": entry.rev},
                {"$set": {"wraps": _wraps_out(wraps), "rev": entry.rev + 1}})
        except PyMongoError as exc:
            raise VaultUnavailable(f"MongoDB: {type(exc).__name__}") from exc
        return bool(result.matched_count)

    async def shred(self, record_id: str) -> bool:
        """Replace the record's document (ciphertext and every wrap) by its tombstone,
        creating the tombstone if nothing was stored yet; True if bytes were destroyed,
        False if there were none (never stored, or a tombstone already)."""
        try:
            result = await self._collection().replace_one(
                {"_id": record_id, "erased": {"$ne": True}},
                {"erased": True, "at": self.now_ms()}, upsert=True)
        except DuplicateKeyError:
            return False  # the filter missed a tombstone, the upsert hit its id: done
        except PyMongoError as exc:
            raise VaultUnavailable(f"MongoDB: {type(exc).__name__}") from exc
        return bool(result.matched_count)

    async def stored_after(self, record_id: str, count: int) -> list[str]:
        """The ids of up to ``count`` documents holding bytes (not tombstones) after
        ``record_id`` in id order: a bounded page of the sweep."""
        try:
            docs = await self._collection().find(
                {"_id": {"$gt": record_id}, "erased": {"$ne": True}}, {"_id": 1}) \
                .sort("_id", ASCENDING).limit(count).to_list()
        except PyMongoError as exc:
            raise VaultUnavailable(f"MongoDB: {type(exc).__name__}") from exc
        return [str(d["_id"]) for d in docs]

    # --- the custodian's checkpoint ------------------------------------------------------

    async def checkpoint(self, chain: str) -> tuple[int, str | None]:
        """(height, block hash) the custodian of ``chain`` (its genesis hash) has done."""
        try:
            doc = await self._collection(CHECKPOINTS).find_one({"_id": chain})
        except PyMongoError as exc:
            raise VaultUnavailable(f"MongoDB: {type(exc).__name__}") from exc
        if doc is None:
            return 0, None
        return int(doc["height"]), str(doc["hash"])

    async def set_checkpoint(self, chain: str, height: int, block_hash: str) -> None:
        """Advance the checkpoint to ``height`` (never back: another gateway sharing the
        vault may be ahead, and then its document stays)."""
        try:
            await self._collection(CHECKPOINTS).update_one(
                {"_id": chain, "height": {"$lt": height}},
                {"$set": {"height": height, "hash": block_hash, "at": self.now_ms()}},
                upsert=True)
        except DuplicateKeyError:
            return  # it exists at ``height`` or beyond: somebody did this work already
        except PyMongoError as exc:
            raise VaultUnavailable(f"MongoDB: {type(exc).__name__}") from exc
