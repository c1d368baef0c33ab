"""Helpers of the views tests: chains to project, and full dumps of the views."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.gateway.views.projector import CHECKPOINT_COLLECTION
from services.gateway.views.schema import PLATFORM_VIEWS
from services.ledger.core.blocks import Block, BlockHeader
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.contract import Event
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.node.store import MemoryStore, StoredBlock
from services.ledger.sim.simulator import SimConfig, Simulation

CHAIN_SEED = 11
CHAIN_TXS = 60
#: the load arrives within this many simulated ms, so blocks hold 1 to 6 transactions
CHAIN_LOAD_MS = 1_000
GENESIS_MS = 1_767_225_600_000


@functools.cache
def notary_chain(seed: int = CHAIN_SEED, txs: int = CHAIN_TXS, clients: int = 3,
                 load_ms: int = CHAIN_LOAD_MS) -> MemoryStore:
    """A committed chain from the deterministic simulator: ``notary.anchor``
    transactions, one ``notary.document.anchored`` event each. Read-only."""
    sim = Simulation(seed, SimConfig(faults=False, byzantine=0, txs=txs, clients=clients,
                                     chaos_ms=load_ms))
    sim.run()
    store = sim.honest[0].store
    assert isinstance(store, MemoryStore)
    return store


def chain_txs(store: Any) -> list[tuple[int, int, Transaction]]:
    """(height, index, tx) of every transaction, in chain order."""
    return [(h, i, tx) for h in range(1, store.height() + 1)
            for i, tx in enumerate(store.block(h).block.txs)]


def chain_events(store: Any) -> list[tuple[int, Event]]:
    return [(h, e) for h in range(1, store.height() + 1) for e in store.events(h)]


class Upto:
    """A store seen only up to ``limit`` (a chain that grows when ``limit`` does)."""

    def __init__(self, store: Any, limit: int) -> None:
        self.store = store
        self.limit = limit

    def height(self) -> int:
        return min(self.limit, int(self.store.height()))

    def block(self, height: int) -> StoredBlock | None:
        return self.store.block(height) if height <= self.height() else None

    def events(self, height: int) -> list[Event] | None:
        return self.store.events(height) if height <= self.height() else None


class ListStore:
    """A hand-made chain: whatever blocks and events a test needs, no consensus."""

    def __init__(self) -> None:
        self.blocks: list[StoredBlock] = []
        self.block_events: list[list[Event]] = []

    def height(self) -> int:
        return len(self.blocks)

    def block(self, height: int) -> StoredBlock | None:
        return self.blocks[height - 1] if 1 <= height <= len(self.blocks) else None

    def events(self, height: int) -> list[Event] | None:
        return self.block_events[height - 1] if 1 <= height <= len(self.blocks) else None

    def append(self, txs: Sequence[Transaction] = (), events: Sequence[Event] = (), *,
               salt: str = "") -> StoredBlock:
        height = len(self.blocks) + 1
        prev = self.blocks[-1].block.hash if self.blocks else bytes(32)
        header = BlockHeader(
            chain_id="views-test" + salt, height=height, prev_hash=prev,
            time=GENESIS_MS + 1_000 * height, proposer="ab" * 16, tx_root=bytes(32),
            tx_count=len(txs), state_root=bytes(32), validators_hash=bytes(32),
            next_validators_hash=bytes(32), events_root=bytes(32),
            last_commit_hash=bytes(32))
        stored = StoredBlock(Block(header, tuple(txs), None),
                             CommitCertificate(height, height % 3, header.hash, ()))
        self.blocks.append(stored)
        self.block_events.append(list(events))
        return stored


def signed(label: str, nonce: int, payload: dict[str, Any],
           kind: str = "notary.anchor") -> Transaction:
    return sign_transaction(PrivateKey.derive(f"views-test/{label}"), chain_id="views-test",
                            kind=kind, nonce=nonce, payload=payload,
                            created_at=GENESIS_MS + nonce)


async def dump(db: AsyncDatabase[dict[str, Any]],
               names: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every document of the views (and the checkpoint), sorted by ``_id``."""
    if names is None:
        names = [*(s.name for s in PLATFORM_VIEWS), CHECKPOINT_COLLECTION]
    out = {}
    for name in names:
        docs = await db[name].find({}).to_list()
        out[name] = sorted(docs, key=lambda d: repr(d["_id"]))
    return out
