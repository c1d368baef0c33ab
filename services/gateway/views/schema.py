"""The views: what each MongoDB collection holds, how a block becomes writes, which indexes.

A *view* is one collection per entity, declared by a :class:`ViewSpec`: its
name (the collection), its indexes (created at start-up by
:func:`ensure_indexes`) and a pure function from one committed block
(:class:`BlockContext`: block, certificate, events) to :class:`Write` s. A write
is "set these fields of the document with this ``_id``, creating it if
needed" (``UpdateOne({"_id": id}, {"$set": document}, upsert=True)``). Because
every ``_id`` is derived from the chain (a height, a transaction hash, an
event's position), projecting a block twice gives the same documents: the
views are idempotent and can always be rebuilt from the chain, which stays
the only source of truth.

Platform views (:data:`PLATFORM_VIEWS`; each domain declares its own in its
edge, and the composition hands them to the gateway with these):

================  ============================  ==========================================
collection        ``_id``                       fields
================  ============================  ==========================================
``blocks``        height                        hash, time (ms), proposer, tx_count,
                                                round (of the certificate), events_count
``transactions``  tx hash (hex)                 pos, height, index, sender, kind,
                                                contract, nonce, created_at, time (block),
                                                payload, public_key
``events``        ``<tx hash>:<index>``, or     pos, type, domain, height, tx_hash,
                  ``<block hash>:<index>`` for  tx_index, index, time, attributes
                  block-level events
================  ============================  ==========================================

Two details differ from a naive schema, both measured or forced:

* ``pos = height * POS_STRIDE + index`` is one integer carrying the chain
  order of a transaction (index in its block) or an event (index among its
  block's events). Lists are ordered and paginated by ``pos`` alone, so a
  page's cursor is one range bound (``pos < p``) instead of the compound
  ``$or`` that ``(height, index)`` keyset pagination needs, and every index is
  ``(filter field, pos)``. An ``$or`` cursor is also what keeps MongoDB-wire
  servers with simpler planners (the embedded SecantusDB) from using an index
  at all; the single range is served from the index on both.
* Payloads and event attributes are canonical JSON, whose object keys may be
  any ASCII string, including ``$where``, ``a.b`` or ``""``, which MongoDB
  refuses (or interprets) in stored documents. Such a value is stored as its
  canonical JSON text under ``<field>_json`` with ``<field>`` null; the
  queries restore it. Without this one hostile payload would stall the
  projector at its block forever.

This module does no I/O except :func:`ensure_indexes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.ledger.core.blocks import Block
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.contract import Event
from services.ledger.core.encoding import encode_unchecked

#: ``pos = height * POS_STRIDE + index``: room for 2**32 transactions or events per
#: block while ``pos`` stays a signed 64-bit integer up to height 2**31 - 1.
POS_STRIDE = 1 << 32

BLOCKS = "blocks"
TRANSACTIONS = "transactions"
EVENTS = "events"


def pos_of(height: int, index: int) -> int:
    return height * POS_STRIDE + index


@dataclass(frozen=True)
class BlockContext:
    """What a view sees of one committed block."""

    block: Block
    certificate: CommitCertificate
    events: Sequence[Event]

    @property
    def height(self) -> int:
        return self.block.height

    @property
    def time(self) -> int:
        """The block's BFT time, ms since the epoch."""
        return self.block.header.time

    @cached_property
    def block_hash(self) -> str:
        return self.block.hash.hex()

    @cached_property
    def tx_hashes(self) -> tuple[str, ...]:
        return tuple(tx.hash.hex() for tx in self.block.txs)


@dataclass(frozen=True, slots=True)
class Write:
    """Set ``document``'s fields on the document ``_id = id`` of ``collection`` (upsert).

    ``document``'s keys are top-level field names (no ``.``, no leading ``$``),
    so that two writes to one ``_id`` in a batch can be merged into one
    (later fields win), which is what applying them in order would give.
    """

    collection: str
    id: Any
    document: Mapping[str, Any]

    def to_update(self) -> UpdateOne:
        return UpdateOne({"_id": self.id}, {"$set": dict(self.document)}, upsert=True)


@dataclass(frozen=True)
class ViewSpec:
    name: str
    indexes: tuple[IndexModel, ...]
    project: Callable[[BlockContext], list[Write]]


class Registry:
    """Views by name, in registration order (which is also projection order)."""

    def __init__(self, specs: Iterable[ViewSpec] = ()) -> None:
        self._specs: dict[str, ViewSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ViewSpec) -> ViewSpec:
        if not spec.name or spec.name.startswith(("_", "system.")) or "$" in spec.name:
            raise ValueError(f"view name {spec.name!r} is reserved or invalid")
        known = self._specs.get(spec.name)
        if known is not None and known is not spec:
            raise ValueError(f"view {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def specs(self) -> tuple[ViewSpec, ...]:
        return tuple(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs


def storable(value: Any) -> bool:
    """True when MongoDB stores ``value`` as is (every object key is an ordinary name)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not key or key[0] == "$" or "." in key or "\x00" in key:
                return False
            if isinstance(item, (Mapping, list, tuple)) and not storable(item):
                return False
        return True
    if isinstance(value, (list, tuple)):
        return all(storable(v) for v in value if isinstance(v, (Mapping, list, tuple)))
    return True


def put_json_value(doc: dict[str, Any], field: str, value: Mapping[str, Any]) -> None:
    """``doc[field] = value``, or its canonical JSON under ``field_json`` if unstorable."""
    if storable(value):
        doc[field] = value
    else:
        doc[field] = None
        doc[field + "_json"] = encode_unchecked(value).decode()


def project_blocks(ctx: BlockContext) -> list[Write]:
    header = ctx.block.header
    return [Write(BLOCKS, header.height, {
        "hash": ctx.block_hash,
        "time": header.time,
        "proposer": header.proposer,
        "tx_count": header.tx_count,
        "round": ctx.certificate.round,
        "events_count": len(ctx.events),
    })]


def project_transactions(ctx: BlockContext) -> list[Write]:
    height, time = ctx.height, ctx.time
    out = []
    for index, (tx, tx_hash) in enumerate(zip(ctx.block.txs, ctx.tx_hashes, strict=True)):
        doc: dict[str, Any] = {
            "pos": pos_of(height, index),
            "height": height,
            "index": index,
            "sender": tx.sender,
            "kind": tx.kind,
            "contract": tx.contract,
            "nonce": tx.nonce,
            "created_at": tx.created_at,
            "time": time,
        }
        put_json_value(doc, "payload", tx.payload)
        doc["public_key"] = tx.public_key.hex()
        out.append(Write(TRANSACTIONS, tx_hash, doc))
    return out


def event_id(ctx: BlockContext, event: Event) -> str:
    """``<tx hash>:<index>`` (the partner event id), ``<block hash>:<index>`` for hooks."""
    owner = ctx.block_hash if event.tx_index is None else ctx.tx_hashes[event.tx_index]
    return f"{owner}:{event.index}"


def project_events(ctx: BlockContext) -> list[Write]:
    height, time = ctx.height, ctx.time
    out = []
    for event in ctx.events:
        doc: dict[str, Any] = {
            "pos": pos_of(height, event.index),
            "type": event.type,
            "domain": event.type.split(".", 1)[0],
            "height": height,
            "tx_hash": None if event.tx_index is None else ctx.tx_hashes[event.tx_index],
            "tx_index": event.tx_index,
            "index": event.index,
            "time": time,
        }
        put_json_value(doc, "attributes", event.attributes)
        out.append(Write(EVENTS, event_id(ctx, event), doc))
    return out


BLOCKS_VIEW = ViewSpec(BLOCKS, (IndexModel([("hash", ASCENDING)], unique=True),),
                       project_blocks)
TRANSACTIONS_VIEW = ViewSpec(TRANSACTIONS, (
    IndexModel([("pos", DESCENDING)]),
    IndexModel([("sender", ASCENDING), ("pos", DESCENDING)]),
    IndexModel([("kind", ASCENDING), ("pos", DESCENDING)]),
    IndexModel([("contract", ASCENDING), ("pos", DESCENDING)]),
), project_transactions)
EVENTS_VIEW = ViewSpec(EVENTS, (
    IndexModel([("pos", ASCENDING)]),
    IndexModel([("type", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("domain", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("tx_hash", ASCENDING), ("pos", ASCENDING)]),
), project_events)

#: The platform's own views (every chain has them); the composition adds each domain's
#: (``services.composition.view_specs``): nothing registers itself by being imported.
PLATFORM_VIEWS: tuple[ViewSpec, ...] = (BLOCKS_VIEW, TRANSACTIONS_VIEW, EVENTS_VIEW)


def compose(*groups: Sequence[ViewSpec]) -> tuple[ViewSpec, ...]:
    """The views of ``groups`` in order (projection order), names checked unique."""
    return Registry(spec for group in groups for spec in group).specs()


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]],
                         specs: Sequence[ViewSpec]) -> None:
    """Create every declared index (a no-op for those that already exist)."""
    for spec in specs:
        if spec.indexes:
            await db[spec.name].create_indexes(list(spec.indexes))
