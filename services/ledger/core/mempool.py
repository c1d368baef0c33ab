"""The mempool: transactions waiting for a block.

* **Bounded**: at most ``txs_max`` transactions and ``bytes_max`` bytes in all,
  ``per_sender_max`` per sender, and nonces at most ``nonce_gap_max`` ahead of
  the sender's next nonce (:class:`MempoolLimits`).
* **Deduplicated** by transaction hash; a second, different transaction for a
  (sender, nonce) already waiting is refused (``nonce_taken``) — there are no
  fees here, hence no replacement by price.
* **Ordered** per sender by nonce; :meth:`Mempool.reap` takes, for every
  sender, the run of consecutive nonces starting at its next nonce, and
  interleaves senders round-robin in order of first arrival, so one busy
  sender cannot starve the others.
* **Eviction policy**: a valid waiting transaction is never evicted to make
  room — when full, new transactions are refused (``mempool_full``) and the
  client backs off. After each block, the mempool drops what the block
  included, every transaction whose nonce is now used, everything older than
  the chain's transaction time-to-live (or dated beyond what could be included
  within it), and whatever the proposer found failing. Replicas admit only
  transactions whose ``created_at`` a block could accept soon.

Everything in the mempool has passed static validation, including its
signature, so :meth:`Mempool.verified` lets block validation skip a second
signature check for the very same bytes.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.ledger.core.errors import MempoolRejected
from services.ledger.core.transactions import Transaction


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    txs_max: int = 100_000
    bytes_max: int = 128 * 1024 * 1024
    per_sender_max: int = 10_000
    nonce_gap_max: int = 10_000


class Mempool:
    def __init__(self, limits: MempoolLimits | None = None) -> None:
        self.limits = limits or MempoolLimits()
        self._by_hash: dict[bytes, Transaction] = {}
        self._by_leaf: dict[bytes, Transaction] = {}
        self._by_sender: dict[str, dict[int, Transaction]] = {}
        self._arrival: dict[str, int] = {}  # sender -> sequence of its oldest waiting tx
        self._seq = 0
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: bytes) -> Transaction | None:
        return self._by_hash.get(tx_hash)

    def by_leaf(self, leaf: bytes) -> Transaction | None:
        """The waiting transaction with exactly these bytes (RFC 6962 leaf hash)."""
        return self._by_leaf.get(leaf)

    def pending_nonces(self, sender: str) -> frozenset[int]:
        return frozenset(self._by_sender.get(sender, ()))

    def verified(self, tx: Transaction) -> bool:
        """True if these exact bytes (signature included) were admitted."""
        return self._by_leaf.get(tx.leaf) is not None

    def add(self, tx: Transaction, next_nonce: int) -> None:
        """Admit a statically valid transaction; ``next_nonce`` is the sender's, committed."""
        queue = self.check_room(tx, next_nonce)
        if queue is None:
            queue = self._by_sender[tx.sender] = {}
            self._seq += 1
            self._arrival[tx.sender] = self._seq
        queue[tx.nonce] = tx
        self._by_hash[tx.hash] = tx
        self._by_leaf[tx.leaf] = tx
        self._bytes += len(tx.wire_bytes)

    def check_room(self, tx: Transaction, next_nonce: int) -> dict[int, Transaction] | None:
        """Raise :class:`MempoolRejected` if :meth:`add` would refuse ``tx``; its sender's
        queue otherwise. Cheap, so a replica asks before it pays for the signature."""
        if tx.hash in self._by_hash:
            raise MempoolRejected("transaction already waiting", code="duplicate")
        if tx.nonce < next_nonce:
            raise MempoolRejected(f"nonce {tx.nonce} already used (next is {next_nonce})",
                                  code="bad_nonce")
        if tx.nonce - next_nonce > self.limits.nonce_gap_max:
            raise MempoolRejected(f"nonce {tx.nonce} too far ahead of {next_nonce}",
                                  code="nonce_too_far")
        queue = self._by_sender.get(tx.sender)
        if queue is not None:
            if tx.nonce in queue:
                raise MempoolRejected(f"another transaction waits with nonce {tx.nonce}",
                                      code="nonce_taken")
            if len(queue) >= self.limits.per_sender_max:
                raise MempoolRejected("too many waiting transactions from this sender",
                                      code="sender_full")
        size = len(tx.wire_bytes)
        if len(self._by_hash) >= self.limits.txs_max \
                or self._bytes + size > self.limits.bytes_max:
            raise MempoolRejected("mempool is full", code="mempool_full")
        return queue

    def reap(self, next_nonce: Callable[[str], int], txs_max: int,
             bytes_max: int) -> list[Transaction]:
        """Candidates for a block: per sender consecutive nonces, senders round-robin."""
        runs: list[list[Transaction]] = []
        for sender in sorted(self._by_sender, key=self._arrival.__getitem__):
            queue = self._by_sender[sender]
            nonce = next_nonce(sender)
            run = []
            while nonce in queue:
                run.append(queue[nonce])
                nonce += 1
            if run:
                runs.append(run)
        out: list[Transaction] = []
        size = 0
        depth = 0
        while runs and len(out) < txs_max:
            still = []
            for run in runs:
                if depth >= len(run):
                    continue
                tx = run[depth]
                if len(out) >= txs_max or size + len(tx.wire_bytes) > bytes_max:
                    return out
                out.append(tx)
                size += len(tx.wire_bytes)
                still.append(run)
            runs = still
            depth += 1
        return out

    def remove(self, txs: Iterable[Transaction]) -> None:
        for tx in txs:
            self._drop(tx.hash)

    def _drop(self, tx_hash: bytes) -> None:
        tx = self._by_hash.pop(tx_hash, None)
        if tx is None:
            return
        self._by_leaf.pop(tx.leaf, None)
        self._bytes -= len(tx.wire_bytes)
        queue = self._by_sender[tx.sender]
        del queue[tx.nonce]
        if not queue:
            del self._by_sender[tx.sender]
            del self._arrival[tx.sender]

    def after_block(self, included: Iterable[Transaction], next_nonce: Callable[[str], int],
                    oldest_allowed: int, newest_allowed: int | None = None) -> int:
        """Drop what a committed block made useless; returns how many were dropped.

        ``oldest_allowed``/``newest_allowed`` bound ``created_at``: older ones have
        expired; newer ones (admitted by a replica whose clock runs far ahead) could
        not be included for longer than a transaction may live."""
        before = len(self._by_hash)
        senders = set()
        for tx in included:
            senders.add(tx.sender)
            self._drop(tx.hash)
        for sender in senders:
            queue = self._by_sender.get(sender)
            if queue is None:
                continue
            used = next_nonce(sender)
            for nonce in [n for n in queue if n < used]:
                self._drop(queue[nonce].hash)
        newest = newest_allowed if newest_allowed is not None else 2**63
        stale = [h for h, tx in self._by_hash.items()
                 if not oldest_allowed <= tx.created_at <= newest]
        for tx_hash in stale:
            self._drop(tx_hash)
        return before - len(self._by_hash)
