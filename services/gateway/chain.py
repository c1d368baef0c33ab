"""What the gateway and its domain plugins may ask of the replica they front.

The gateway is an observer replica; its HTTP side never reaches into the
replica's internals (host, mempool, consensus). It holds a :class:`Chain`: the
committed tip and its state, the store of certified blocks, submission, *the*
dry run, nonces, and commit/rejection subscriptions. The implementation over a
running replica is :class:`services.ledger.node.access.ReplicaChain`; tests may
give any object with this shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from services.ledger.core.contract import Event
from services.ledger.core.execution import Rejection
from services.ledger.core.genesis import Genesis
from services.ledger.core.replica import ChainTip, Commit, TxRejected
from services.ledger.core.state import StateView
from services.ledger.core.transactions import Transaction
from services.ledger.core.validators import ValidatorSet
from services.ledger.node.access import Nonces, PeerHealth
from services.ledger.node.store import StoredBlock

__all__ = ["BlockStore", "Chain", "Nonces", "PeerHealth"]


class BlockStore(Protocol):
    """Certified blocks as the replica stored them (read only)."""

    def height(self) -> int: ...

    def block(self, height: int) -> StoredBlock | None: ...

    def block_bytes(self, height: int) -> tuple[bytes, bytes] | None: ...

    def events(self, height: int) -> list[Event] | None: ...

    def validator_set(self, validators_hash: bytes) -> tuple[int, ValidatorSet] | None: ...


class Chain(Protocol):
    @property
    def chain_id(self) -> str: ...

    @property
    def genesis(self) -> Genesis: ...

    @property
    def tip(self) -> ChainTip: ...

    @property
    def store(self) -> BlockStore: ...

    def view(self) -> StateView:
        """The committed state at the tip (read only by convention)."""
        ...

    def submit(self, tx: Transaction) -> None:
        """Admit and gossip ``tx``; raises the ledger's ``Rejected`` when refused."""
        ...

    def dry_run(self, tx: Transaction, now_ms: int, *,
                assume_next_nonce: bool = False) -> Rejection | None:
        """The one dry run (``Replica.dry_run``): what the next block would say of ``tx``."""
        ...

    def nonces(self, key_id: str) -> Nonces: ...

    def pending(self, tx_hash: bytes) -> Transaction | None:
        """``tx_hash`` while it waits in this replica's mempool."""
        ...

    def health(self) -> PeerHealth: ...

    def on_commit(self, listener: Callable[[Commit], None]) -> Callable[[], None]:
        """Call ``listener`` after every commit; returns the unsubscribe function."""
        ...

    def on_rejected(self, listener: Callable[[TxRejected], None]) -> Callable[[], None]:
        """Call ``listener`` when a waiting transaction is dropped by a proposer."""
        ...
