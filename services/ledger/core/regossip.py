"""Re-gossip of the transactions a replica accepted from its own clients.

A replica that accepted a client's transaction is responsible for it until it
commits or the mempool drops it: gossip is fire-and-forget over a broker that
may lose anything (a connection drop between accept and publish, a batch a
peer refused while its mempool was full). Without a second send such a
transaction waits in this replica's mempool where no validator sees it, and
every later nonce of its sender waits behind it.

So every locally submitted transaction is scheduled for a re-send
``resend_after_ms`` after it was accepted; each re-send doubles the wait, up to
``resend_max_ms``. A transaction that left the mempool (committed, expired,
refused by a proposer) is forgotten when its turn comes. When the transport
reports that a batch of transactions could not be published, every pending
transaction becomes due at once (at most once per ``resend_after_ms``: a broker
that stays away must not turn every tick into a full re-send), each keeping its
backoff. While the transport reports itself disconnected nothing is re-sent (it
would only fill the transport's outbox); on reconnection everything pending is
due at once.

Peers drop what they already hold by hash before checking any signature, so a
re-send to a replica that has the transaction costs it a dictionary lookup.

This module never does I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from services.ledger.core.transactions import Transaction


@dataclass(frozen=True, slots=True)
class RegossipLimits:
    resend_after_ms: int = 2_000  # first re-send of a transaction not yet committed
    resend_max_ms: int = 16_000  # the longest wait between two re-sends (backoff cap)
    per_tick_max: int = 5_000  # transactions re-sent per gossip tick at most
    tracked_max: int = 200_000  # transactions tracked at most (beyond: the oldest go)

    def __post_init__(self) -> None:
        if not 0 < self.resend_after_ms <= self.resend_max_ms:
            raise ValueError("need 0 < resend_after_ms <= resend_max_ms")
        if self.per_tick_max < 1 or self.tracked_max < 1:
            raise ValueError("per_tick_max and tracked_max must be positive")


class Regossip:
    """The schedule of re-sends (a heap of due times; pure, driven by the replica)."""

    def __init__(self, limits: RegossipLimits | None = None) -> None:
        self.limits = limits or RegossipLimits()
        self._heap: list[tuple[int, int, bytes]] = []  # (due ms, sequence, tx hash)
        self._interval: dict[bytes, int] = {}  # tx hash -> current wait
        self._seq = 0
        self._urgent = False
        self._last_urgent = -(2**62)
        self._paused = False
        self.resent = 0  # transactions re-sent, in all

    def __len__(self) -> int:
        return len(self._interval)

    def track(self, tx_hash: bytes, now: int) -> None:
        """``tx_hash`` was accepted from a client at ``now``: re-send it if it lingers."""
        if tx_hash in self._interval:
            return
        if len(self._interval) >= self.limits.tracked_max:
            self._compact(keep=self.limits.tracked_max // 2)
        self._interval[tx_hash] = self.limits.resend_after_ms
        self._push(now + self.limits.resend_after_ms, tx_hash)

    def publish_failed(self) -> None:
        """The transport could not publish a batch of transactions: re-send everything
        pending at the next tick."""
        self._urgent = True

    def connection(self, connected: bool) -> None:
        """The transport lost (False) or regained (True) its broker."""
        if connected and self._paused:
            self._urgent = True
            self._last_urgent = -(2**62)  # the broker is back: everything goes, now
        self._paused = not connected

    @property
    def paused(self) -> bool:
        return self._paused

    def due(self, now: int, pending: Callable[[bytes], Transaction | None]
            ) -> list[Transaction]:
        """Transactions to send again now; ``pending`` answers the mempool's copy (None:
        no longer waiting, so forgotten)."""
        limits = self.limits
        if self._paused:
            return []
        if self._urgent and now - self._last_urgent >= limits.resend_after_ms:
            self._urgent = False
            self._last_urgent = now
            self._heap = [(now, i, h) for i, h in enumerate(self._interval)]
            self._seq = len(self._heap)
        out: list[Transaction] = []
        while self._heap and self._heap[0][0] <= now and len(out) < limits.per_tick_max:
            _, _, tx_hash = heapq.heappop(self._heap)
            interval = self._interval.get(tx_hash)
            if interval is None:
                continue  # a stale heap entry (rescheduled since)
            tx = pending(tx_hash)
            if tx is None:
                del self._interval[tx_hash]
                continue
            out.append(tx)
            interval = min(2 * interval, limits.resend_max_ms)
            self._interval[tx_hash] = interval
            self._push(now + interval, tx_hash)
        self.resent += len(out)
        return out

    def _push(self, due: int, tx_hash: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, tx_hash))
        if len(self._heap) > 4 * self.limits.tracked_max:
            self._compact(keep=len(self._interval))

    def _compact(self, keep: int) -> None:
        """Keep the ``keep`` soonest-due tracked transactions and one heap entry each."""
        latest: dict[bytes, tuple[int, int]] = {}
        for due, seq, tx_hash in self._heap:
            if tx_hash in self._interval and latest.get(tx_hash, (-1, -1))[1] < seq:
                latest[tx_hash] = (due, seq)
        entries = sorted((due, seq, h) for h, (due, seq) in latest.items())[:keep]
        self._interval = {h: self._interval[h] for _, _, h in entries}
        self._heap = entries
        heapq.heapify(self._heap)
