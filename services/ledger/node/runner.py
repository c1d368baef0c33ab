"""Running a replica on asyncio: real clock, real timers, a real store.

The runner is the thin, boring layer the style guide asks for: it wires a
:class:`~services.ledger.node.host.Host` to ``loop.call_later`` timers and a
monotonic-safe wall clock, guards every callback so that a broken invariant
stops the replica instead of being logged and ignored by the event loop, and
closes the store on stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from services.ledger.core import crypto
from services.ledger.core.errors import InvariantViolation, UpgradeRequired
from services.ledger.core.execution import Application
from services.ledger.core.genesis import Genesis
from services.ledger.core.replica import ReplicaConfig
from services.ledger.node.host import Host, Transport
from services.ledger.node.store import Store

log = logging.getLogger("ecosphere.node")


class Clock:
    """Wall-clock milliseconds that never go backwards (NTP steps happen)."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        self._last = max(self._last, time.time_ns() // 1_000_000)
        return self._last


class AsyncTimers:
    def __init__(self, loop: asyncio.AbstractEventLoop, guard: Callable[[Callable[[], None]],
                                                                         None]) -> None:
        self._loop = loop
        self._guard = guard
        self._handles: set[asyncio.TimerHandle] = set()

    def schedule(self, delay_ms: int, callback: Callable[[], None]) -> None:
        def fire() -> None:
            self._handles.discard(handle)
            self._guard(callback)
        handle = self._loop.call_later(delay_ms / 1000, fire)
        self._handles.add(handle)

    def cancel_all(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()


class NodeRunner:
    """One replica inside an asyncio loop."""

    def __init__(self, *, name: str, genesis: Genesis, app: Application,
                 key: crypto.PrivateKey | None, store: Store, transport: Transport,
                 config: ReplicaConfig | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.name = name
        self.loop = loop or asyncio.get_running_loop()
        self.timers = AsyncTimers(self.loop, self.guard)
        self.clock = Clock()
        self.failed: BaseException | None = None
        self.stopped = asyncio.Event()
        self.host = Host.boot(genesis=genesis, app=app, key=key, store=store,
                              transport=transport, timers=self.timers, clock=self.clock,
                              config=config)
        # a halt met outside the guard (a client's submit) stops the runner all the same
        self.host.listeners.halted.append(self._halted_outside)

    def start(self) -> None:
        self.guard(self.host.start)

    def deliver(self, data: bytes) -> bool:
        """Deliver bytes from the network; False if the replica refused them."""
        accepted = [True]

        def run() -> None:
            accepted[0] = self.host.deliver(data)

        self.guard(run)
        return accepted[0]

    def publish_failed(self, kind: str) -> None:
        """The transport's report of a message it could not publish."""
        self.guard(lambda: self.host.publish_failed(kind))

    def transport_connected(self, connected: bool) -> None:
        """The transport's report that it lost or regained the broker."""
        self.guard(lambda: self.host.transport_connected(connected))

    def guard(self, fn: Callable[[], Any]) -> None:
        """Run ``fn``; a broken invariant stops this replica (corrupt state must not spread)."""
        if self.host.stopped:
            return
        try:
            fn()
        except InvariantViolation as exc:
            log.critical("replica %s stops: invariant violated: %s", self.name, exc)
            self.failed = exc
            self.stop()
        except UpgradeRequired as exc:
            self.halt(exc)
        except Exception as exc:
            log.critical("replica %s stops: unexpected %r", self.name, exc, exc_info=True)
            self.failed = exc
            self.stop()

    def _halted_outside(self, exc: UpgradeRequired) -> None:
        self.loop.call_soon(self.halt, exc)

    def halt(self, exc: UpgradeRequired) -> None:
        """The chain moved to a composition this code lacks: stop, saying what to do
        (``failed`` tells the process to exit with EXIT_UPGRADE_REQUIRED)."""
        if self.failed is None:
            log.critical("replica %s halts: %s", self.name, exc)
            self.failed = exc
        self.stop()

    def stop(self) -> None:
        if self.host.stopped and self.stopped.is_set():
            return
        self.host.stopped = True
        self.timers.cancel_all()
        self.host.store.close()
        self.stopped.set()
