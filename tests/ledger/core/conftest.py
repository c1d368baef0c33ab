"""Shared fixtures for the ledger core's tests: a deterministic chain driven by hand.

:class:`Chain` runs blocks through ``Application.execute`` on the genesis state of
``make_testnet()`` (4 validator organisations, the first with role ``platform``,
their admin keys, 4 merchant client keys and the validator keys), so a test reads as
"these transactions in a block at this time" and then inspects the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from services.composition import build_application
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.execution import Application, BlockExecution
from services.ledger.core.genesis import ChainParams, Genesis
from services.ledger.core.state import StateView
from services.ledger.core.statetree import StateTree
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.sim import testnet as sim_testnet
from services.ledger.sim.testnet import make_testnet

BLOCK_INTERVAL_MS = 1_000


class Chain:
    """A chain of executed blocks on top of a genesis, committed one by one."""

    def __init__(self, genesis: Genesis, app: Application | None = None) -> None:
        self.genesis = genesis
        self.app = app or build_application()
        self.state: StateTree = self.app.genesis_state(genesis)
        self.height = 0
        self.time = genesis.genesis_time  # time of the last block (genesis time at 0)
        self._built: dict[str, int] = {}  # key id -> txs signed since the last block

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    @property
    def next_time(self) -> int:
        return self.genesis.genesis_time if self.height == 0 else self.time + BLOCK_INTERVAL_MS

    def view(self) -> StateView:
        return StateView(self.state)

    def get(self, key: str) -> Any:
        return self.view().get(key)

    def check_static(self, tx: Transaction) -> None:
        """The static checks the next block would apply to ``tx``."""
        self.app.check_static(tx, chain_id=self.chain_id, params=self.genesis.params,
                              composition=self.app.composition(self.view(), self.height + 1))

    def next_nonce(self, key_id: str) -> int:
        return Application.next_nonce(self.view(), key_id)

    def tx(
        self,
        key: PrivateKey,
        kind: str,
        payload: Mapping[str, Any],
        *,
        nonce: int | None = None,
        created_at: int | None = None,
        chain_id: str | None = None,
    ) -> Transaction:
        """Sign a transaction; by default with the sender's next unused nonce."""
        if nonce is None:
            built = self._built.get(key.key_id, 0)
            nonce = self.next_nonce(key.key_id) + built
            self._built[key.key_id] = built + 1
        return sign_transaction(
            key,
            chain_id=self.chain_id if chain_id is None else chain_id,
            kind=kind,
            nonce=nonce,
            payload=payload,
            created_at=self.next_time if created_at is None else created_at,
        )

    def execute(
        self,
        txs: Iterable[Transaction],
        *,
        time: int | None = None,
        skip_failed: bool = True,
        **limits: Any,
    ) -> BlockExecution:
        """Execute the next block without committing it."""
        return self.app.execute(
            self.state,
            height=self.height + 1,
            time=self.next_time if time is None else time,
            txs=list(txs),
            skip_failed=skip_failed,
            **limits,
        )

    def block(
        self, txs: Iterable[Transaction] = (), *, time: int | None = None, **limits: Any
    ) -> BlockExecution:
        """Execute the next block (skipping failing transactions) and commit it."""
        at = self.next_time if time is None else time
        result = self.execute(txs, time=at, **limits)
        self.state = result.state
        self.height += 1
        self.time = at
        self._built.clear()
        return result


def event_types(result: BlockExecution) -> list[str]:
    return [e.type for e in result.events]


def rejected_codes(result: BlockExecution) -> list[str]:
    return [r.code for r in result.rejected]


@pytest.fixture
def testnet() -> sim_testnet.Testnet:
    return make_testnet()


@pytest.fixture
def chain(testnet: sim_testnet.Testnet) -> Chain:
    return Chain(testnet.genesis)


@pytest.fixture
def short_ttl_testnet() -> sim_testnet.Testnet:
    """Proposals live two minutes, so expiry needs no walk over days of buckets."""
    return make_testnet(params=ChainParams(proposal_ttl_ms=120_000))
