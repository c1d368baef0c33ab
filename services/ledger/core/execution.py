"""The state machine: applying a block's transactions to state.

``Application.execute`` is the chain's ``state_transition`` (execution-specs):
begin-block hooks (deadlines on BFT time), then every transaction — dynamic
checks, then its contract — then end-block hooks, then the new state root.

Dynamic checks, in order (each failure has a stable code):

1. ``unknown_sender``/``key_inactive``/``org_suspended``: the sender key is
   registered, active, allows sending (``member`` or ``admin``), and its
   organisation is active;
2. ``bad_nonce``: the nonce is exactly the sender's next one — a replayed
   transaction always fails here;
3. ``expired``/``too_early``: ``created_at`` lies within
   ``[time - tx_ttl_ms, time + tx_future_ms]`` of the block's BFT time;
4. ``unknown_kind``: a contract owns the kind;
5. the contract's own rules.

A proposer *builds* a block with ``skip_failed=True`` (failing transactions
are left out and reported); a replica *validates* one with
``skip_failed=False`` (any failing transaction makes the block invalid).

**Versions.** An application holds one or more *compositions* (the ordered
contracts of ``services.composition``), numbered from 1. Block ``h`` runs the
version :func:`consortium.composition_version` reads from its parent state
(governance schedules the next one at a height). A version this code does not
hold raises :class:`UpgradeRequired`: the replica stops rather than fork.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from services.ledger.core import consortium
from services.ledger.core.contract import BlockContext, Contract, Event, TxContext
from services.ledger.core.errors import (
    InvalidBlock,
    InvalidTransaction,
    InvariantViolation,
    Rejected,
    TransactionFailed,
    UpgradeRequired,
)
from services.ledger.core.genesis import ChainParams, Genesis
from services.ledger.core.state import StateView, tree_from_items
from services.ledger.core.statetree import StateTree
from services.ledger.core.transactions import Transaction, check_static
from services.ledger.core.validators import ValidatorSet

NONCE_NS = "nonce"
RESERVED_NAMESPACES = frozenset({NONCE_NS, "deadline"})


@dataclass(frozen=True, slots=True)
class Rejection:
    tx: Transaction
    code: str
    message: str


@dataclass(frozen=True)
class BlockExecution:
    state: StateTree
    events: tuple[Event, ...]
    included: tuple[Transaction, ...]
    rejected: tuple[Rejection, ...]
    validators_next: ValidatorSet
    params: ChainParams
    writes: Mapping[bytes, bytes | None]


_SenderInfo = tuple[str, frozenset[str], frozenset[str]]

# A contract that trips over a malformed payload must not stop every replica (they
# would all trip identically): any exception a contract raises rejects the
# transaction ("contract_error"), like a panic recovered into a failed transaction,
# except InvariantViolation (this replica's own state is corrupt: stop). Contracts
# keep such errors deterministic by bounding their inputs (sizes, nesting depth)
# before they could exhaust a replica-dependent resource such as the stack.
_CONTRACT_BUGS = (Exception,)


def _as_failure(exc: Exception) -> TransactionFailed:
    if isinstance(exc, TransactionFailed):
        return exc
    if isinstance(exc, Rejected):
        return TransactionFailed(exc.message, code=exc.code)
    return TransactionFailed(f"contract error: {type(exc).__name__}: {exc}",
                             code="contract_error")


@dataclass(frozen=True)
class _Composition:
    contracts: tuple[Contract, ...]  # the consortium contract first
    by_name: Mapping[str, Contract]


def _composition(contracts: Sequence[Contract]) -> _Composition:
    names = [c.name for c in contracts]
    if consortium.NAME in names:
        raise ValueError("the consortium contract is built in")
    if len(set(names)) != len(names) or RESERVED_NAMESPACES & set(names):
        raise ValueError(f"contract names must be unique and not reserved: {names}")
    every = (consortium.ConsortiumContract(), *contracts)
    return _Composition(every, {c.name: c for c in every})


class Application:
    """All contracts assembled into one deterministic state machine (one version, or
    several: see :meth:`versioned`)."""

    def __init__(self, contracts: Sequence[Contract]) -> None:
        self._init({1: contracts})

    @classmethod
    def versioned(cls, versions: Mapping[int, Sequence[Contract]]) -> Application:
        """The compositions this code knows, by version (1, 2, ... without gaps)."""
        app = cls.__new__(cls)
        app._init(versions)
        return app

    def _init(self, versions: Mapping[int, Sequence[Contract]]) -> None:
        numbers = sorted(versions)
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"composition versions must be 1..n without gaps: {numbers}")
        self._versions = {v: _composition(versions[v]) for v in numbers}
        self.versions: tuple[int, ...] = tuple(numbers)
        latest = self._versions[numbers[-1]]
        #: the latest composition's contracts (the consortium contract first)
        self.contracts: tuple[Contract, ...] = latest.contracts
        self._precheck_state: StateTree | None = None
        self._precheck_senders: dict[str, _SenderInfo] = {}

    def composition(self, view: StateView, height: int) -> _Composition:
        """The contracts block ``height`` runs on top of ``view`` (raises UpgradeRequired)."""
        version = consortium.composition_version(view, height)
        found = self._versions.get(version)
        if found is None:
            raise UpgradeRequired(version, height, self.versions)
        return found

    # --- static -----------------------------------------------------------------

    def check_static(self, tx: Transaction, *, chain_id: str, params: ChainParams,
                     composition: _Composition, verify_signature: bool = True) -> None:
        """Checks needing no state but the composition the transaction's block runs
        (:meth:`composition`): a contract's static rules may change between versions,
        and replicas running different code must judge a block alike."""
        check_static(tx, chain_id=chain_id, limits=params.tx_limits,
                     verify_signature=verify_signature)
        contract = composition.by_name.get(tx.contract)
        if contract is None:
            raise InvalidTransaction(f"no contract owns {tx.kind!r}", code="unknown_kind")
        try:
            contract.check_static(tx)
        except (Rejected, InvariantViolation):
            raise
        except _CONTRACT_BUGS as exc:  # a payload the contract's checks tripped over
            raise InvalidTransaction(f"malformed payload: {type(exc).__name__}: {exc}",
                                     code="bad_payload") from exc

    # --- state at genesis ----------------------------------------------------------

    def genesis_state(self, genesis: Genesis) -> StateTree:
        return tree_from_items(consortium.genesis_writes(genesis))

    # --- dynamic ------------------------------------------------------------------

    @staticmethod
    def next_nonce(view: StateView, key_id: str) -> int:
        value = view.get(f"{NONCE_NS}/{key_id}")
        return value if isinstance(value, int) else 0

    def precheck(self, state: StateTree, tx: Transaction) -> int:
        """Mempool admission against committed state; returns the sender's next nonce."""
        view = StateView(state)
        if self._precheck_state is not state:
            self._precheck_state, self._precheck_senders = state, {}
        self._sender(view, tx, self._precheck_senders)
        expected = self.next_nonce(view, tx.sender)
        if tx.nonce < expected:
            raise TransactionFailed(f"nonce {tx.nonce} already used (next is {expected})",
                                    code="bad_nonce")
        return expected

    def _sender(self, view: StateView, tx: Transaction, cache: dict[str, _SenderInfo]
                ) -> _SenderInfo:
        """The sender's organisation, key permissions and organisation roles.

        ``cache`` holds answers for one unchanged view of consortium state: callers
        clear it whenever the consortium contract may have written.
        """
        known = cache.get(tx.sender)
        if known is not None:
            return known
        key = consortium.key_record(view, tx.sender)
        if key is None:
            raise TransactionFailed(f"sender {tx.sender} is not a registered key",
                                    code="unknown_sender")
        if key["status"] != "active":
            raise TransactionFailed(f"sender key is {key['status']}", code="key_inactive")
        permissions = frozenset(key["permissions"])
        if not permissions & {"member", "admin"}:
            raise TransactionFailed("sender key may not send transactions",
                                    code="key_inactive")
        org = consortium.org_record(view, key["org"])
        if org is None or org["status"] != "active":
            raise TransactionFailed(f"organisation {key['org']} is not active",
                                    code="org_suspended")
        info = (key["org"], permissions, frozenset(org["roles"]))
        cache[tx.sender] = info
        return info

    def _apply_tx(self, view: StateView, events: list[Event], index: int, height: int,
                  time: int, params: ChainParams, tx: Transaction,
                  senders: dict[str, _SenderInfo], composition: _Composition,
                  seed: bytes) -> None:
        org, permissions, roles = self._sender(view, tx, senders)
        expected = self.next_nonce(view, tx.sender)
        if tx.nonce != expected:
            raise TransactionFailed(f"nonce {tx.nonce} is not the next one ({expected})",
                                    code="bad_nonce")
        if tx.created_at < time - params.tx_ttl_ms:
            raise TransactionFailed("transaction expired", code="expired")
        if tx.created_at > time + params.tx_future_ms:
            raise TransactionFailed("transaction created too far in the future",
                                    code="too_early")
        contract = composition.by_name.get(tx.contract)
        if contract is None:
            raise TransactionFailed(f"no contract owns {tx.kind!r}", code="unknown_kind")
        view.put(f"{NONCE_NS}/{tx.sender}", expected + 1)
        contract.apply(TxContext(view, contract.name, events, index, height, time, tx,
                                 org, permissions, roles, seed=seed))

    def dry_run(self, state: StateTree, tx: Transaction, *, height: int, time: int,
                assume_next_nonce: bool = False) -> Rejection | None:
        """Execute ``tx`` alone as block ``height`` at ``time`` on ``state``; its rejection,
        or None if the block would take it.

        ``assume_next_nonce``: judge it as if it were its sender's next transaction (its
        predecessors still waiting are not executed, so a rule depending on them may
        refuse it here and accept it later). Never writes anything."""
        if assume_next_nonce:
            view = StateView(state)
            view.put(f"{NONCE_NS}/{tx.sender}", tx.nonce)
            state = view.fold()
        ex = self.execute(state, height=height, time=time, txs=[tx], skip_failed=True)
        return ex.rejected[0] if ex.rejected else None

    def execute(self, state: StateTree, *, height: int, time: int,
                txs: Iterable[Transaction], skip_failed: bool,
                txs_max: int | None = None, bytes_max: int | None = None) -> BlockExecution:
        view = StateView(state)
        seed = state.root
        composition = self.composition(view, height)
        params = consortium.chain_params(view)
        txs_max = params.block_txs_max if txs_max is None else txs_max
        bytes_max = params.block_bytes_max if bytes_max is None else bytes_max
        events: list[Event] = []
        senders: dict[str, _SenderInfo] = {}
        for c in composition.contracts:
            c.begin_block(BlockContext(view, c.name, events, None, height, time, seed=seed))
        included: list[Transaction] = []
        rejected: list[Rejection] = []
        size = 0
        for tx in txs:
            if len(included) >= txs_max or size + len(tx.wire_bytes) > bytes_max:
                if not skip_failed:
                    raise InvalidBlock("block exceeds its transaction or byte limit")
                break
            checkpoint, n_events = view.checkpoint(), len(events)
            try:
                self._apply_tx(view, events, len(included), height, time, params, tx,
                               senders, composition, seed)
            except InvariantViolation:
                raise
            except (TransactionFailed, *_CONTRACT_BUGS) as raised:
                senders.clear()
                exc = _as_failure(raised)
                view.rollback(checkpoint)
                del events[n_events:]
                if not skip_failed:
                    raise InvalidBlock(f"transaction {tx.hash.hex()} failed: {exc}",
                                       code="tx_failed") from exc
                rejected.append(Rejection(tx, exc.code, exc.message))
                continue
            if tx.contract == consortium.NAME:
                senders.clear()  # it may have changed keys or organisations
            included.append(tx)
            size += len(tx.wire_bytes)
        for c in composition.contracts:
            c.end_block(BlockContext(view, c.name, events, None, height, time, seed=seed))
        return BlockExecution(
            state=view.fold(),
            events=tuple(events),
            included=tuple(included),
            rejected=tuple(rejected),
            validators_next=consortium.validator_set(view),
            params=params,
            writes=dict(view.writes()),
        )
