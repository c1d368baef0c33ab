"""The one loop every follower of the chain runs.

A *follower* turns committed blocks into something outside the chain — MongoDB
views, partner CloudEvents, EPCIS webhook deliveries — from a checkpoint of its
own, so that an outage of what it writes to delays it and loses nothing. Each
implements one :meth:`Follower.step` (do the next batch from its checkpoint;
say how much it did); :class:`FollowerLoop` does the rest, the same way for
all of them:

* after each step that did something, step again at once (yielding to the loop);
* caught up, sleep until :meth:`FollowerLoop.notify` (the gateway calls it on
  every commit) or ``poll_interval_s``;
* a step that raises is logged (the first failure of a run of failures, then
  every ``log_every``-th), counted, and retried after a backoff doubling from
  ``retry_backoff_s`` to ``retry_backoff_max_s`` with "equal jitter" (half fixed,
  half random, so gateways retrying one MongoDB spread out yet none spins);
  :meth:`FollowerLoop.retry_now` ends a backoff early (a connection came back);
* ``stop`` ends it; the follower's :meth:`Follower.close` runs last, whatever
  happened.

Each follower runs its own loop (one task each): a MongoDB outage stalls the
views, not the partner events. What they share is this code.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("ecosphere.follower")

__all__ = ["Follower", "FollowerLimits", "FollowerLoop"]


class Follower(Protocol):
    name: str

    async def step(self) -> int:
        """Do the next batch from the checkpoint; how much it did (0, or False: caught up,
        nothing waiting)."""
        ...

    def on_failure(self, exc: BaseException, failures: int) -> None:
        """A step raised (``failures`` in a row): update what health reports."""
        ...

    async def close(self) -> None:
        """Settle what is in flight and release connections (the loop is ending)."""
        ...


@dataclass(frozen=True, slots=True)
class FollowerLimits:
    poll_interval_s: float = 1.0  # caught up: look again this often without a notify
    retry_backoff_s: float = 0.25  # first wait after a failed step
    retry_backoff_max_s: float = 15.0  # the longest wait between two failed steps
    log_every: int = 20  # log one failure of every this many in a row

    def __post_init__(self) -> None:
        if min(self.poll_interval_s, self.retry_backoff_s, self.retry_backoff_max_s) <= 0:
            raise ValueError("follower intervals must be positive")
        if self.log_every < 1:
            raise ValueError("log_every must be at least 1")


class FollowerLoop:
    def __init__(self, follower: Follower, limits: FollowerLimits | None = None, *,
                 rng: random.Random | None = None) -> None:
        self.follower = follower
        self.limits = limits or FollowerLimits()
        self._rng = rng or random.Random()
        self.failures_total = 0
        self.failing = 0  # failures in a row (0: healthy)
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._retry = asyncio.Event()
        self._halt = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def notify(self) -> None:
        """A block was committed: step without waiting for the next poll."""
        self._wake.set()

    def retry_now(self) -> None:
        """End a backoff at once (what failed is likely back)."""
        self._retry.set()

    async def halt(self) -> None:
        """End a running loop from outside its ``stop`` (a follower taken down on its own,
        as a restart would); returns once it has ended. ``run`` may be called again."""
        self._halt.set()
        await self._idle.wait()

    def backoff_s(self, failures: int) -> float:
        limits = self.limits
        ceiling = min(limits.retry_backoff_max_s,
                      limits.retry_backoff_s * (1 << min(max(failures - 1, 0), 30)))
        return float(ceiling * (0.5 + 0.5 * self._rng.random()))

    async def run(self, stop: asyncio.Event) -> None:
        """Step until ``stop`` is set. Never raises except on cancellation."""
        name = self.follower.name
        self._halt.clear()
        self._idle.clear()
        try:
            while not stop.is_set() and not self._halt.is_set():
                self._wake.clear()  # a commit from now on wakes the next pass
                try:
                    more = await self.follower.step()
                except Exception as exc:
                    self.failing += 1
                    self.failures_total += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    delay = self.backoff_s(self.failing)
                    if self.failing == 1 or self.failing % self.limits.log_every == 0:
                        log.warning("%s: step failed (%d in a row), retrying in %.2fs: %s",
                                    name, self.failing, delay, self.last_error)
                    self.follower.on_failure(exc, self.failing)
                    self._retry.clear()
                    await _sleep(delay, stop, self._halt, self._retry)
                    continue
                if self.failing:
                    log.info("%s: resumed after %d failed steps", name, self.failing)
                    self.failing = 0
                if more:
                    await asyncio.sleep(0)
                else:
                    await _sleep(self.limits.poll_interval_s, stop, self._halt, self._wake)
        finally:
            try:
                await self.follower.close()
            finally:
                self._idle.set()


async def _sleep(seconds: float, *events: asyncio.Event) -> None:
    """Sleep until ``seconds`` passed or one of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
