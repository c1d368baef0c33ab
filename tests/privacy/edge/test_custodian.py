"""The vault custodian over a real MongoDB-wire server and a scripted chain: it deletes
on erasure, acknowledges as the vault only while the chain still waits for it, never
twice while its acknowledgement is in the mempool, checks its checkpoint against the
chain, and without a relay key leaves the acknowledgement to the operator."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.ledger.core.contract import Event
from services.privacy.edge.custodian import (
    CustodianCollector,
    CustodianDiverged,
    CustodianLimits,
    VaultCustodian,
)
from services.privacy.edge.vault import Vault, VaultEntry
from services.privacy.vocabulary import VAULT

RECORD = "ab" * 32
SUBJECT = "cd" * 16


@dataclass
class ScriptedChain:
    """What the custodian reads of a chain: blocks' events, the tip's state, the mempool."""

    salt: str = "chain-a"
    blocks: list[list[Event]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    mempool: set[bytes] = field(default_factory=set)
    refusal: Any = None
    genesis: Any = field(default_factory=lambda: SimpleNamespace(hash=b"\x01" * 32))

    @property
    def store(self) -> ScriptedChain:
        return self

    @property
    def tip(self) -> Any:
        return SimpleNamespace(height=len(self.blocks))

    def height(self) -> int:
        return len(self.blocks)

    def block(self, height: int) -> Any:
        if not 1 <= height <= len(self.blocks):
            return None
        digest = hashlib.sha256(f"{self.salt}/{height}".encode()).digest()
        return SimpleNamespace(block=SimpleNamespace(hash=digest))

    def events(self, height: int) -> list[Event] | None:
        return self.blocks[height - 1] if 1 <= height <= len(self.blocks) else None

    def view(self) -> Any:
        return SimpleNamespace(get=self.state.get)

    def pending(self, tx_hash: bytes) -> Any:
        return True if tx_hash in self.mempool else None

    def dry_run(self, tx: Any, now_ms: int, *, assume_next_nonce: bool = False) -> Any:
        return self.refusal

    def commit(self, *events: tuple[str, dict[str, Any]]) -> None:
        self.blocks.append([Event(kind, attrs, 0, i) for i, (kind, attrs) in
                            enumerate(events)])


@dataclass
class ScriptedRelay:
    chain: ScriptedChain
    sent: list[Any] = field(default_factory=list)

    def sign(self, kind: str, payload: dict[str, Any]) -> Any:
        return SimpleNamespace(hash=os.urandom(32), kind=kind, payload=payload)

    def submit(self, tx: Any) -> Any:
        self.sent.append(tx)
        self.chain.mempool.add(tx.hash)
        return tx


def erasing(pending: list[str]) -> dict[str, Any]:
    return {"record_id": RECORD, "subject": SUBJECT, "status": "erasing",
            "erasure": {"pending": pending, "acknowledged": [f"key:{SUBJECT}"]}}


def requested(pending: list[str]) -> tuple[str, dict[str, Any]]:
    return ("privacy.erasure.requested", {"record_id": RECORD, "subject": SUBJECT,
                                          "pending": pending, "deadline": 1,
                                          "reason": "requested"})


def make(db: AsyncDatabase[dict[str, Any]], chain: ScriptedChain, *,
         relay: bool = True) -> tuple[VaultCustodian, Vault, ScriptedRelay]:
    vault = Vault(SimpleNamespace(database=SimpleNamespace(client=db.client)), db.name)
    scripted = ScriptedRelay(chain)
    host = SimpleNamespace(chain=chain, relay=scripted if relay else None)
    return VaultCustodian(host, vault), vault, scripted


async def store(vault: Vault) -> None:
    assert await vault.insert(VaultEntry(RECORD, SUBJECT, b"sealed", {
        f"key:{SUBJECT}": b"w1", "org:carrier": b"w2"}, 1))


@pytest.mark.asyncio
async def test_erasure_deletes_then_acknowledges_once(
        mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    chain = ScriptedChain()
    custodian, vault, relay = make(mongo_db, chain)
    await store(vault)
    chain.commit(("privacy.record.created", {"record_id": RECORD}))
    chain.commit(requested(["org:carrier", VAULT]))
    chain.state[f"privacy/record/{RECORD}"] = erasing(["org:carrier", VAULT])
    assert await custodian.step() == 2
    assert await vault.get(RECORD) is None
    assert [(t.kind, t.payload) for t in relay.sent] == [
        ("privacy.ack_erasure", {"record_id": RECORD, "as": VAULT})]
    assert custodian.checkpoint == 2 and await custodian.step() == 0

    # the same events again (another gateway's, or a retried step): ours still waits
    await custodian.shred(RECORD)
    assert len(relay.sent) == 1
    # committed: the vault is no longer pending, nothing more is sent; an overdue
    # naming others only changes nothing for the vault
    chain.mempool.clear()
    chain.state[f"privacy/record/{RECORD}"] = erasing(["org:carrier"])
    chain.commit(("privacy.erasure.overdue", {"record_id": RECORD, "subject": SUBJECT,
                                              "missing": ["org:carrier"]}))
    assert await custodian.step() == 1
    await custodian.shred(RECORD)
    assert len(relay.sent) == 1
    assert (custodian.stats.deletions, custodian.stats.acknowledgements) == (1, 1)
    names = {m.name for m in CustodianCollector(custodian).collect()}
    assert {"ecosphere_privacy_vault_deletions", "ecosphere_privacy_vault_acknowledgements",
            "ecosphere_privacy_vault_custodian_failures"} <= names


@pytest.mark.asyncio
async def test_a_lost_acknowledgement_is_sent_when_the_deadline_names_the_vault(
        mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    chain = ScriptedChain()
    custodian, _vault, relay = make(mongo_db, chain)
    chain.commit(requested([VAULT]))
    chain.state[f"privacy/record/{RECORD}"] = erasing([VAULT])
    chain.refusal = SimpleNamespace(code="bad_nonce", message="scripted refusal")
    await custodian.step()
    assert relay.sent == [] and custodian.stats.refused == 1
    chain.refusal = None
    chain.commit(("privacy.erasure.overdue", {"record_id": RECORD, "subject": SUBJECT,
                                              "missing": [VAULT]}))
    await custodian.step()
    assert [t.payload["record_id"] for t in relay.sent] == [RECORD]


@pytest.mark.asyncio
async def test_without_a_relay_key_it_deletes_and_leaves_the_ack_to_the_operator(
        mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    chain = ScriptedChain()
    custodian, vault, _ = make(mongo_db, chain, relay=False)
    await store(vault)
    chain.commit(requested([VAULT]))
    chain.state[f"privacy/record/{RECORD}"] = erasing([VAULT])
    assert await custodian.step() == 1
    assert await vault.get(RECORD) is None
    assert (custodian.stats.deletions, custodian.stats.unsent) == (1, 1)


@pytest.mark.asyncio
async def test_a_checkpoint_of_another_chain_stops_it(
        mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    chain = ScriptedChain()
    custodian, vault, _ = make(mongo_db, chain)
    chain.commit()
    chain.commit()
    assert await custodian.step() == 2
    other = ScriptedChain(salt="chain-b")  # same genesis hash, other blocks
    for _ in range(3):
        other.commit()
    stranger, _, _ = make(mongo_db, other)
    with pytest.raises(CustodianDiverged):
        await stranger.step()
    # the checkpoint never moves back: a gateway behind leaves it where it is
    await vault.set_checkpoint(custodian.chain_key, 1, "00")
    assert await vault.checkpoint(custodian.chain_key) == (2, chain.block(2).block.hash.hex())


@pytest.mark.asyncio
async def test_a_vault_that_is_not_open_is_idle() -> None:
    chain = ScriptedChain()
    chain.commit(requested([VAULT]))
    custodian = VaultCustodian(SimpleNamespace(chain=chain, relay=None),
                               Vault(SimpleNamespace(database=None), "v"))
    assert await custodian.step() == 0


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_the_sweep_shreds_what_was_stored_after_the_erasure_was_handled(
        mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    """Bytes that reached the vault after the custodian passed their erasure (before
    tombstones; or a vault it shares with a gateway that wrote them late) are found by
    the sweep, a bounded pass at a time, and shredded; a record still active, or one
    this chain does not know yet (a gateway ahead stored it), is left alone."""
    chain = ScriptedChain()
    clock = Clock()
    vault = Vault(SimpleNamespace(database=SimpleNamespace(client=mongo_db.client)),
                  mongo_db.name)
    custodian = VaultCustodian(SimpleNamespace(chain=chain, relay=None), vault,
                               CustodianLimits(sweep_batch_max=2, sweep_interval_s=60),
                               clock=clock)
    erased, erasing, active, unknown = (f"{n:02x}" * 32 for n in (1, 2, 3, 4))
    for rid, status in ((erased, "erased"), (erasing, "erasing"), (active, "active")):
        chain.state[f"privacy/record/{rid}"] = {"record_id": rid, "status": status}
    for rid in (erased, erasing, active, unknown):
        assert await vault.insert(VaultEntry(rid, SUBJECT, b"sealed", {"k": b"w"}, 1))
    chain.commit()  # the erasures' blocks are long behind the checkpoint
    assert await custodian.step() == 1
    assert await custodian.step() == 0  # caught up: the first pass (two documents)
    assert await vault.get(erased) is None and await vault.get(erasing) is None
    assert await vault.get(active) is not None
    assert custodian.stats.swept == 2
    assert await custodian.step() == 0  # the second pass: the rest of the vault
    assert await vault.get(active) is not None and await vault.get(unknown) is not None
    chain.state[f"privacy/record/{active}"]["status"] = "superseded"
    assert await custodian.step() == 0  # round the vault: nothing until the interval
    assert await vault.get(active) is not None
    clock.now += 61
    assert await custodian.step() == 0
    assert await vault.get(active) is None
    assert custodian.stats.swept == 3 and custodian.stats.deletions == 3
    assert "ecosphere_privacy_vault_swept" in {
        m.name for m in CustodianCollector(custodian).collect()}
