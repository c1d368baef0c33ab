"""Consumer scans on their way to the chain: a budget, a queue, one batch per interval.

``GET /v1/trace/verify`` needs no credentials, so the scans it records are
anonymous and anyone can make as many as they like. Each used to be a
transaction of the relay key, the key that also relays EPCIS captures: one
client's 209 scans/s queued captures behind them. Now (docs/adr/0005):

* a token bucket (``scan_rate_per_s``, ``scan_burst``) limits how many anonymous
  scans are recorded at all; beyond it the verify call still answers, saying the
  scan was not recorded and why. Scans with a fresh tag code (possession-proven)
  do not draw on it: a tag makes one code per tap, and the gateway refuses to
  queue a code twice (:meth:`ScanRecorder.counter_seen`);
* but each item's valid codes draw on a token bucket of that item
  (``scan_item_rate_per_s``, ``scan_item_burst``; ``scan_items_max`` items
  remembered, least recently scanned forgotten): codes harvested from one tag,
  tap after tap, cannot fill the queue everyone shares. Beyond it the verify call
  is refused (429 problem with ``Retry-After``): the code was not used, so the
  consumer may present it again later;
* accepted scans wait in a bounded queue (``scan_queue_max``); identical ones
  (item, country, code) are merged;
* a flusher sends at most ``scan_batch_max`` of them as ONE ``trace.record_scans``
  transaction per ``scan_batch_interval_ms``, so a capture on the relay key
  waits behind at most one scan transaction per interval.

A scan accepted here is recorded when its batch commits; a batch the ledger
refuses (mempool full) is dropped and counted, never retried: the consumer had
the answer already, and a scan is a statistic, not a promise.

The flusher is an asyncio task started on first use on the running loop;
:meth:`ScanRecorder.close` stops it and sends what is queued. This module never
judges a scan: that is ``services.trace.scans.judge_scan``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.gateway.policies import TokenBuckets
from services.gateway.problems import Problem
from services.ledger.core.errors import LedgerError
from services.trace.edge.settings import TraceSettings
from services.trace.scans import SCANS_PER_BATCH_MAX, Scan

__all__ = ["BUDGET_EXHAUSTED", "CLOSED", "QUEUE_FULL", "ScanCounters", "ScanLimits",
           "ScanRecorder"]
log = logging.getLogger("ecosphere.gateway.scans")

#: why a scan was not recorded (the verify answer's ``scan.not_recorded_reason``)
BUDGET_EXHAUSTED = "budget_exhausted"
QUEUE_FULL = "queue_full"
CLOSED = "closing"
KIND = "trace.record_scans"


@dataclass(frozen=True, slots=True)
class ScanLimits:
    rate_per_s: float = 50.0  # anonymous scans recorded per second, all clients together
    burst: float = 200.0
    batch_max: int = SCANS_PER_BATCH_MAX  # scans in one trace.record_scans
    batch_interval_ms: int = 1_000  # at most one scan transaction per interval
    queue_max: int = 5_000
    #: items whose last queued tag counter the gateway remembers
    counters_max: int = 100_000
    #: scans with a valid tag code recorded per item (a token bucket each)
    item_rate_per_s: float = 0.1
    item_burst: float = 10.0
    #: items whose bucket is remembered (the least recently scanned forgotten first)
    items_max: int = 20_000

    def __post_init__(self) -> None:
        if not 0 < self.batch_max <= SCANS_PER_BATCH_MAX:
            raise ValueError(f"batch_max must be 1..{SCANS_PER_BATCH_MAX} (the contract's "
                             "limit of trace.record_scans)")
        if self.rate_per_s <= 0 or self.burst < 1 or self.batch_interval_ms <= 0 \
                or self.queue_max < 1 or self.counters_max < 1 \
                or self.item_rate_per_s <= 0 or self.item_burst < 1 or self.items_max < 1:
            raise ValueError("scan limits must be positive")

    @classmethod
    def from_settings(cls, options: TraceSettings) -> ScanLimits:
        return cls(rate_per_s=options.scan_rate_per_s, burst=options.scan_burst,
                   batch_max=options.scan_batch_max,
                   batch_interval_ms=options.scan_batch_interval_ms,
                   queue_max=options.scan_queue_max,
                   item_rate_per_s=options.scan_item_rate_per_s,
                   item_burst=options.scan_item_burst, items_max=options.scan_items_max)


@dataclass
class ScanCounters:
    queued: int = 0
    merged: int = 0  # identical to a queued scan
    over_budget: int = 0
    item_rate_limited: int = 0  # valid codes beyond their item's bucket (429)
    queue_full: int = 0
    batches: int = 0
    batch_scans: int = 0
    dropped: int = 0  # scans of batches the ledger refused


Key = tuple[str, str, int | None, bytes | None]


class ScanRecorder:
    """The gateway's anonymous scan budget, queue and flusher (one per gateway)."""

    def __init__(self, relay: Callable[[], Any], limits: ScanLimits, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``relay``: the gateway's current relay (``services.gateway.relay.Relay``) or
        None; ``clock``: seconds, monotonic (injected by tests)."""
        self.relay = relay
        self.limits = limits
        self.clock = clock
        self.counters = ScanCounters()
        self._bucket = TokenBuckets(limits.rate_per_s, limits.burst, 1)
        self._items = TokenBuckets(limits.item_rate_per_s, limits.item_burst,
                                   limits.items_max)
        self._queue: dict[Key, Scan] = {}  # insertion-ordered: the oldest leave first
        self._seen: OrderedDict[str, int] = OrderedDict()  # epc -> highest queued counter
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    def counter_seen(self, epc: str) -> int:
        """The highest tag counter queued here for ``epc`` (0: none): a code at or below
        it is a replay even before its batch commits."""
        return self._seen.get(epc, 0)

    def offer(self, scan: Scan, *, proven: bool) -> str | None:
        """Queue ``scan`` for the next batch: None when queued (or merged with the same
        scan already queued), else why it will not be recorded. ``proven``: its tag
        code was judged valid (it skips the anonymous budget, not its item's budget
        nor the queue). Raises a 429 :class:`Problem` (with ``Retry-After``) when the
        item's valid codes come faster than its bucket allows: the code is not used."""
        if self._closed:
            return CLOSED
        code = scan.code
        key: Key = (scan.epc, scan.country, None if code is None else code.counter,
                    None if code is None else code.signature)
        if key in self._queue:
            self.counters.merged += 1
            return None
        if len(self._queue) >= self.limits.queue_max:
            self.counters.queue_full += 1
            return QUEUE_FULL
        if proven:
            wait_s = self._items.take(scan.epc, self.clock())
            if wait_s > 0:
                self.counters.item_rate_limited += 1
                raise Problem(429, "item_scan_rate", "this item's tag was tapped too often "
                              "in a short time; try again later",
                              retry_after_s=max(1, math.ceil(wait_s)))
        elif self._bucket.take("anonymous", self.clock()) > 0:
            self.counters.over_budget += 1
            return BUDGET_EXHAUSTED
        self._queue[key] = scan
        self.counters.queued += 1
        if proven and code is not None:
            self._remember(scan.epc, code.counter)
        self._ensure_started()
        return None

    def _remember(self, epc: str, counter: int) -> None:
        self._seen[epc] = max(counter, self._seen.pop(epc, 0))
        while len(self._seen) > self.limits.counters_max:
            self._seen.popitem(last=False)

    def flush(self) -> int:
        """Send the oldest queued scans (at most one batch) as one transaction; how many
        left the queue."""
        if not self._queue:
            return 0
        keys = list(self._queue)[:self.limits.batch_max]
        batch = [self._queue.pop(k) for k in keys]
        relay = self.relay()
        try:
            if relay is None:
                raise LedgerError("the gateway has no relay key", code="no_relay")
            relay.send(KIND, {"scans": [scan.to_payload() for scan in batch]})
        except LedgerError as exc:
            self.counters.dropped += len(batch)
            log.warning("dropped a batch of %d scans: %s", len(batch), exc)
            return len(batch)
        self.counters.batches += 1
        self.counters.batch_scans += len(batch)
        return len(batch)

    def _ensure_started(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): whoever queues flushes by hand
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        interval_s = self.limits.batch_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.flush()
            except Exception:  # a bug must not end the flushing for good
                log.exception("scan flush failed")

    async def close(self) -> None:
        """Stop the flusher and send what is queued (one last batch: the rest of a full
        queue is dropped and counted)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.flush()
        self.counters.dropped += len(self._queue)
        self._queue.clear()
