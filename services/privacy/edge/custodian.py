"""The vault custodian: crypto-shredding in the vault as erasures commit.

A follower of the chain (run on the gateway's follower loop, notified on every commit)
reading committed blocks' events from the replica's store, from a checkpoint of its own
(``privacy_custodian`` in the vault's database: height and block hash, keyed by the
chain's genesis hash, checked against the store before it is extended — a vault left by
another chain stops it, like the projector):

* ``privacy.erasure.requested``: replace the record's vault document (its ciphertext and
  every wrapped key) by a tombstone (:meth:`.vault.Vault.shred`: no write racing the
  erasure can store it again), then acknowledge on chain as the vault —
  ``privacy.ack_erasure {record_id, as: "vault"}`` through the gateway's relay (the
  platform operator's key, role ``platform``);
* ``privacy.erasure.overdue`` naming ``vault``: the same again (a lost acknowledgement
  is sent late rather than never).

Besides the blocks, a *sweep* (at most ``sweep_batch_max`` documents a pass, a pass
every ``poll_interval_s`` until it has gone round the vault, then once every
``sweep_interval_s``) shreds any stored document whose record the chain no longer
holds active: bytes a write left behind before tombstones existed, or that reached a
vault whose custodian had already passed the erasure, are not kept forever. A record
this gateway's chain does not know yet (another gateway, ahead of it, stored it) is
left alone.

Idempotent: shredding is shredding; an acknowledgement is sent only while the committed
state still lists ``vault`` in the record's ``erasure.pending``, after the one dry run
says it would pass, and not again while one of ours waits in the mempool. Several
gateways sharing one vault share the checkpoint (it only moves forward). Blocks are
handled only up to the replica's tip, so the state read is never older than the block.
Without a relay key it deletes, and logs that the operator must acknowledge.

A step that fails (MongoDB away, the relay refused) is retried by the loop with backoff
from the same checkpoint; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.gateway.follower import FollowerLimits, FollowerLoop
from services.ledger.core.contract import Event
from services.privacy.edge.vault import Vault
from services.privacy.records import record_of
from services.privacy.vocabulary import VAULT

log = logging.getLogger("ecosphere.gateway.privacy")

__all__ = ["CustodianCollector", "CustodianDiverged", "CustodianLimits", "VaultCustodian"]

ACK_KIND = "privacy.ack_erasure"
#: acknowledgements remembered while they wait in the mempool (not sent twice)
SENT_MAX = 10_000


class CustodianDiverged(Exception):
    """The checkpoint names a block the store does not have: another chain's vault."""


@dataclass(frozen=True)
class CustodianLimits:
    batch_blocks_max: int = 256
    poll_interval_s: float = 1.0
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 30.0
    #: vault documents the sweep looks at per pass (one pass per step)
    sweep_batch_max: int = 500
    #: the pause between two sweeps of the whole vault
    sweep_interval_s: float = 600.0


@dataclass
class CustodianStats:
    deletions: int = 0  # vault documents shredded (ciphertext and wraps destroyed)
    swept: int = 0  # of which the sweep found (their record no longer active)
    acknowledgements: int = 0  # ack_erasure transactions submitted
    unsent: int = 0  # acknowledgements left to the operator (no relay key)
    refused: int = 0  # acknowledgements the dry run or the mempool refused
    failures: int = 0  # failed steps (retried)


class VaultCustodian:
    """Deletes erased records from the vault and acknowledges (``host``: the gateway's
    API object: ``chain``, ``relay``)."""

    name = "privacy vault custodian"

    def __init__(self, host: Any, vault: Vault, limits: CustodianLimits | None = None,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.vault = vault
        self.limits = limits or CustodianLimits()
        self.stats = CustodianStats()
        self.checkpoint = 0
        self.loop = FollowerLoop(self, FollowerLimits(
            poll_interval_s=self.limits.poll_interval_s,
            retry_backoff_s=self.limits.retry_backoff_s,
            retry_backoff_max_s=self.limits.retry_backoff_max_s))
        self._sent: dict[str, bytes] = {}  # record id -> our waiting ack's tx hash
        self._clock = clock
        self._sweep_after = ""  # the sweep's position: the last record id it looked at
        self._sweep_due = 0.0  # the clock's time of its next pass (0: at once)

    @property
    def chain_key(self) -> str:
        return str(self.host.chain.genesis.hash.hex())

    def notify(self) -> None:
        self.loop.notify()

    async def run(self, stop: asyncio.Event) -> None:
        await self.loop.run(stop)

    def on_failure(self, exc: BaseException, failures: int) -> None:
        self.stats.failures += 1

    async def close(self) -> None:
        """Nothing in flight outlives a step."""

    async def step(self) -> int:
        """Handle the next blocks after the checkpoint; how many (0: caught up)."""
        chain = self.host.chain
        if not self.vault.is_open:
            return 0  # no views database configured (or not yet open): nothing to guard
        height, block_hash = await self.vault.checkpoint(self.chain_key)
        self.checkpoint = height
        tip = int(min(chain.store.height(), chain.tip.height))
        if height >= tip:
            await self.sweep()
            return 0
        self._verify(height, block_hash)
        last = min(tip, height + self.limits.batch_blocks_max)
        for h in range(height + 1, last + 1):
            events = chain.store.events(h)
            if events is None:
                raise LookupError(f"the store lacks the events of block {h} (tip {tip})")
            for event in events:
                record_id = self._shredding(event)
                if record_id is not None:
                    await self.shred(record_id)
        # once per batch: a step that fails midway does the batch again (idempotent)
        stored = chain.store.block(last)
        if stored is None:
            raise LookupError(f"the store lacks block {last} below its tip {tip}")
        await self.vault.set_checkpoint(self.chain_key, last, stored.block.hash.hex())
        self.checkpoint = last
        return last - height

    def _verify(self, height: int, block_hash: str | None) -> None:
        if height == 0:
            return
        stored = self.host.chain.store.block(height)
        if stored is None or stored.block.hash.hex() != block_hash:
            raise CustodianDiverged(f"the vault's custodian checkpoint names block {height} "
                                    f"{str(block_hash)[:16]}, which this chain lacks: is "
                                    "the vault another chain's? (privacy.vault_db_name)")

    @staticmethod
    def _shredding(event: Event) -> str | None:
        """The record an event tells the vault to destroy, if any."""
        a = event.attributes
        if event.type == "privacy.erasure.requested" and VAULT in a.get("pending", ()):
            return str(a["record_id"])
        if event.type == "privacy.erasure.overdue" and VAULT in a.get("missing", ()):
            return str(a["record_id"])
        return None

    async def sweep(self) -> int:
        """One pass of the sweep, if one is due: shred the stored documents of records no
        longer active among the next ``sweep_batch_max``; how many it shredded."""
        if self._clock() < self._sweep_due:
            return 0
        batch = self.limits.sweep_batch_max
        ids = await self.vault.stored_after(self._sweep_after, batch)
        read = self.host.chain.view().get
        shredded = 0
        for record_id in ids:
            record = record_of(read, record_id)
            # None: a record this chain does not hold yet (a gateway ahead stored it)
            if record is not None and record["status"] != "active" \
                    and await self.vault.shred(record_id):
                shredded += 1
                self.stats.deletions += 1
                self.stats.swept += 1
                log.warning("vault: swept record %s (%s), stored after its erasure",
                            record_id, record["status"])
        if len(ids) < batch:  # round the whole vault: rest until the next sweep
            self._sweep_after = ""
            self._sweep_due = self._clock() + self.limits.sweep_interval_s
        else:
            self._sweep_after = ids[-1]
        return shredded

    async def shred(self, record_id: str) -> None:
        """Shred the record's vault document (a tombstone replaces it), then acknowledge
        if still pending."""
        if await self.vault.shred(record_id):
            self.stats.deletions += 1
            log.info("vault: shredded record %s (erasure)", record_id)
        record = record_of(self.host.chain.view().get, record_id)
        if record is None or record["status"] != "erasing" \
                or VAULT not in record["erasure"]["pending"]:
            self._sent.pop(record_id, None)
            return
        self._acknowledge(record_id)

    def _acknowledge(self, record_id: str) -> None:
        chain, relay = self.host.chain, self.host.relay
        waiting = self._sent.get(record_id)
        if waiting is not None and chain.pending(waiting) is not None:
            return  # ours is in the mempool already
        if relay is None:
            self.stats.unsent += 1
            log.warning("vault: record %s deleted; this gateway has no relay key, so the "
                        "operator must send %s {record_id: %s, as: vault}", record_id,
                        ACK_KIND, record_id)
            return
        tx = relay.sign(ACK_KIND, {"record_id": record_id, "as": VAULT})
        refused = chain.dry_run(tx, time.time_ns() // 1_000_000, assume_next_nonce=True)
        if refused is not None:
            self.stats.refused += 1
            log.warning("vault: acknowledging the erasure of %s was refused: %s %s",
                        record_id, refused.code, refused.message)
            return
        relay.submit(tx)  # a refusal raises: the step is retried
        self.stats.acknowledgements += 1
        if len(self._sent) >= SENT_MAX:
            self._sent.pop(next(iter(self._sent)))
        self._sent[record_id] = tx.hash


class CustodianCollector(Collector):
    """``/metrics``: ecosphere_privacy_vault_* (deletions, acknowledgements, failures)."""

    def __init__(self, custodian: VaultCustodian) -> None:
        self.custodian = custodian

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        c = self.custodian
        s = c.stats
        for name, doc, value in (
            ("deletions", "Vault documents shredded on erasure (crypto-shredding)",
             s.deletions),
            ("swept", "Vault documents the sweep shredded (stored after their erasure)",
             s.swept),
            ("acknowledgements", "privacy.ack_erasure transactions sent as the vault",
             s.acknowledgements),
            ("acknowledgements_unsent", "Acknowledgements left to the operator (no relay "
                                        "key)", s.unsent),
            ("acknowledgements_refused", "Acknowledgements refused by the dry run",
             s.refused),
            ("custodian_failures", "Failed custodian steps (retried)", s.failures),
        ):
            yield CounterMetricFamily(f"ecosphere_privacy_vault_{name}", doc, value=value)
        yield GaugeMetricFamily("ecosphere_privacy_vault_custodian_height",
                                "The last height the vault custodian has handled",
                                value=c.checkpoint)
        yield GaugeMetricFamily("ecosphere_privacy_vault_custodian_failing",
                                "Custodian steps failed in a row (0: healthy)",
                                value=c.loop.failing)
