"""The host: performs a replica's actions against a store, a transport and timers.

It is deliberately synchronous and small: the same host runs inside the
deterministic simulator (simulated clock, in-memory network, memory store) and
inside the asyncio runner (real clock, AMQP or in-memory transport, SQLite).
It owns the ordering guarantees the replica relies on:

* actions run in the order given; ``PersistWal`` and ``Commit`` return only
  once durable, so nothing signed leaves before it is on disk, and no vote of
  height h+1 leaves before block h is stored;
* a crash (the process dying) can happen between any two actions; the store's
  atomic commit and the write-ahead record make every such point safe;
* a replica asked to run a composition version its code lacks
  (:class:`UpgradeRequired`) halts: the host stops, tells its ``halted``
  listeners and re-raises, before any action of that height is performed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.ledger.core import crypto
from services.ledger.core.blocks import Block
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.consensus.messages import PersistWal
from services.ledger.core.errors import Unavailable, UpgradeRequired
from services.ledger.core.execution import Application
from services.ledger.core.genesis import Genesis
from services.ledger.core.replica import (
    Action,
    Broadcast,
    Commit,
    Halt,
    Replica,
    ReplicaConfig,
    Send,
    ServeSync,
    SetTimer,
    TxRejected,
)
from services.ledger.core.transactions import Transaction
from services.ledger.node.store import Store, load_tip


class Transport(Protocol):
    """Carries bytes between replicas; never trusted, may lose or repeat anything."""

    def send(self, peer: str, data: bytes) -> None: ...

    def broadcast(self, data: bytes, kind: str) -> None: ...


class Timers(Protocol):
    def schedule(self, delay_ms: int, callback: Callable[[], None]) -> None: ...


@dataclass
class HostListeners:
    """Callbacks for what happened (metrics, waiting clients, the simulator's checks)."""

    committed: list[Callable[[Commit], None]] = field(default_factory=list)
    rejected: list[Callable[[TxRejected], None]] = field(default_factory=list)
    halted: list[Callable[[UpgradeRequired], None]] = field(default_factory=list)


class Host:
    def __init__(self, *, replica: Replica, store: Store, transport: Transport, timers: Timers,
                 clock: Callable[[], int]) -> None:
        self.replica = replica
        self.store = store
        self.transport = transport
        self.timers = timers
        self.clock = clock
        self.listeners = HostListeners()
        self.stopped = False
        self.halted: UpgradeRequired | None = None
        self.actions_done = 0
        self.crash_after: int | None = None  # simulator: die after this many more actions

    @classmethod
    def boot(cls, *, genesis: Genesis, app: Application, key: crypto.PrivateKey | None,
             store: Store, transport: Transport, timers: Timers, clock: Callable[[], int],
             config: ReplicaConfig | None = None) -> Host:
        tip = load_tip(store, genesis, app)
        replica = Replica(genesis=genesis, app=app, key=key, tip=tip, config=config)
        return cls(replica=replica, store=store, transport=transport, timers=timers,
                   clock=clock)

    def start(self) -> None:
        with self._halting():
            self.run(self.replica.start(self.clock(), self.store.wal()))

    @contextlib.contextmanager
    def _halting(self) -> Iterator[None]:
        try:
            yield
        except UpgradeRequired as exc:
            self.stopped = True
            self.halted = exc
            for listener in self.listeners.halted:
                listener(exc)
            raise

    # --- inputs -----------------------------------------------------------------------

    def deliver(self, data: bytes) -> bool:
        """Handle bytes from the network; False if the replica refused them."""
        if self.stopped:
            return True
        with self._halting():
            self.run(self.replica.on_message(data, self.clock()))
        return self.replica.last_rejection is None

    def submit(self, tx: Transaction) -> None:
        """Raises :class:`~services.ledger.core.errors.Rejected` for a refused transaction,
        and never accepts one silently once stopped (:class:`UpgradeRequired` if it
        halted, :class:`Unavailable` otherwise)."""
        if self.stopped:
            if self.halted is not None:
                raise self.halted
            raise Unavailable("this replica has stopped")
        with self._halting():
            self.run(self.replica.submit(tx, self.clock()))

    def publish_failed(self, kind: str) -> None:
        """The transport could not publish a message of ``kind`` (see Replica.publish_failed)."""
        if not self.stopped:
            self.replica.publish_failed(kind)

    def transport_connected(self, connected: bool) -> None:
        """The transport lost or regained its broker (see Replica.transport_connected)."""
        if not self.stopped:
            self.replica.transport_connected(connected)

    def _timer(self, payload: Any) -> None:
        if not self.stopped:
            with self._halting():
                self.run(self.replica.on_timer(payload, self.clock()))

    # --- actions ----------------------------------------------------------------------

    def run(self, actions: list[Action]) -> None:
        for action in actions:
            if self.stopped:
                return
            if self.crash_after is not None:
                if self.crash_after <= 0:
                    self.stopped = True
                    return
                self.crash_after -= 1
            self._perform(action)
            self.actions_done += 1

    def _perform(self, action: Action) -> None:
        if isinstance(action, PersistWal):
            self.store.save_wal(action.record)
        elif isinstance(action, Commit):
            self.store.commit_block(action.block, action.certificate, action.execution.writes,
                                    action.validators, action.execution.events)
            for listener in self.listeners.committed:
                listener(action)
        elif isinstance(action, Broadcast):
            self.transport.broadcast(action.data, action.kind)
        elif isinstance(action, Send):
            self.transport.send(action.peer, action.data)
        elif isinstance(action, SetTimer):
            payload = action.payload
            self.timers.schedule(action.delay_ms, lambda: self._timer(payload))
        elif isinstance(action, ServeSync):
            self._serve_sync(action)
        elif isinstance(action, TxRejected):
            for rejected in self.listeners.rejected:
                rejected(action)
        elif isinstance(action, Halt):
            raise action.error  # every action before it is done; _halting stops the host

    def _serve_sync(self, action: ServeSync) -> None:
        if self.replica.key is None:
            return
        blocks: list[tuple[Block, CommitCertificate]] = []
        # Stay well inside the receiver's message limit (envelope, hex and escaping
        # overhead): the first block always goes, so a sync always progresses.
        budget = self.replica.config.message_bytes_max // 2
        size = 0
        for height in range(action.from_height, action.to_height + 1):
            raw = self.store.block_bytes(height)
            if raw is None:
                break
            size += len(raw[0]) + len(raw[1])
            if blocks and size > budget:
                break
            stored = self.store.block(height)
            if stored is None:
                break
            blocks.append((stored.block, stored.certificate))
        if blocks:
            self.transport.send(action.peer, self.replica.sync_response(blocks))
