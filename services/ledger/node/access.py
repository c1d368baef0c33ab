"""A running replica seen from outside: the narrow interface its gateway uses.

:class:`ReplicaChain` wraps a :class:`~services.ledger.node.runner.NodeRunner`
and offers what ``services.gateway.chain.Chain`` describes — the tip and its
state, the store, submission, the one dry run, nonces, health and commit
subscriptions — so that nothing outside the node reaches into the host, the
mempool or consensus. It imports nothing of the gateway (the protocol is
matched structurally).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.ledger.core.execution import Rejection
from services.ledger.core.genesis import Genesis
from services.ledger.core.replica import ChainTip, Commit, TxRejected
from services.ledger.core.state import StateView
from services.ledger.core.transactions import Transaction
from services.ledger.node.runner import NodeRunner
from services.ledger.node.store import Store

__all__ = ["Nonces", "PeerHealth", "ReplicaChain"]


@dataclass(frozen=True, slots=True)
class Nonces:
    """A key's nonces: ``committed`` is the next one a block takes; ``usable`` the next one
    a client should sign (past the unbroken run waiting in this replica's mempool)."""

    committed: int
    usable: int
    pending: int


@dataclass(frozen=True, slots=True)
class PeerHealth:
    mempool_txs: int
    peers_seen: int
    peer_last_seen_ms: Mapping[str, int]
    deciding_height: int


class ReplicaChain:
    def __init__(self, runner: NodeRunner) -> None:
        self._runner = runner

    @property
    def chain_id(self) -> str:
        return self._runner.host.replica.chain_id

    @property
    def genesis(self) -> Genesis:
        return self._runner.host.replica.genesis

    @property
    def tip(self) -> ChainTip:
        return self._runner.host.replica.tip

    @property
    def store(self) -> Store:
        return self._runner.host.store

    def view(self) -> StateView:
        return StateView(self._runner.host.replica.tip.state)

    def submit(self, tx: Transaction) -> None:
        self._runner.host.submit(tx)

    def dry_run(self, tx: Transaction, now_ms: int, *,
                assume_next_nonce: bool = False) -> Rejection | None:
        return self._runner.host.replica.dry_run(tx, now_ms,
                                                 assume_next_nonce=assume_next_nonce)

    def nonces(self, key_id: str) -> Nonces:
        replica = self._runner.host.replica
        committed = replica.app.next_nonce(StateView(replica.tip.state), key_id)
        waiting = replica.mempool.pending_nonces(key_id)
        usable = committed
        while usable in waiting:
            usable += 1
        return Nonces(committed, usable, len(waiting))

    def pending(self, tx_hash: bytes) -> Transaction | None:
        return self._runner.host.replica.mempool.get(tx_hash)

    def health(self) -> PeerHealth:
        replica = self._runner.host.replica
        return PeerHealth(len(replica.mempool), len(replica.peers_seen),
                          dict(replica.peer_last_seen), replica.height)

    def on_commit(self, listener: Callable[[Commit], None]) -> Callable[[], None]:
        listeners = self._runner.host.listeners.committed
        listeners.append(listener)
        return lambda: listeners.remove(listener) if listener in listeners else None

    def on_rejected(self, listener: Callable[[TxRejected], None]) -> Callable[[], None]:
        listeners = self._runner.host.listeners.rejected
        listeners.append(listener)
        return lambda: listeners.remove(listener) if listener in listeners else None
