"""Shared fixtures for the Tendermint state-machine tests.

A four-validator testnet (power 1 each: quorum 3, f = 1), a fake
:class:`ConsensusApp`, message builders for the other validators, and
:class:`Node`, which drives one :class:`Tendermint` and checks two invariants on
*every* action list it returns:

* write-ahead: a ``Broadcast`` of a message we signed comes after a
  ``PersistWal`` whose record holds it (in the same list, or an earlier one);
* I1: we never broadcast two different signed messages for one
  (height, round, type) — votes — or one (height, round) — proposals.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import random
from collections.abc import Callable, Iterable, Sequence

from services.ledger.core.blocks import ZERO_HASH, Block, BlockHeader, tx_root
from services.ledger.core.certificate import PRECOMMIT, PREVOTE, Vote
from services.ledger.core.consensus.messages import (
    PRECOMMIT as PRECOMMIT_STEP,
)
from services.ledger.core.consensus.messages import (
    PREVOTE as PREVOTE_STEP,
)
from services.ledger.core.consensus.messages import (
    PROPOSE,
    Broadcast,
    ConsensusAction,
    Decide,
    Misbehaviour,
    PersistWal,
    Proposal,
    ScheduleTimeout,
    Timeout,
    WalRecord,
)
from services.ledger.core.consensus.tendermint import Tendermint, TimeoutParams
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import sha256
from services.ledger.sim.testnet import GENESIS_TIME, make_testnet

NET = make_testnet(validators=4)
CHAIN_ID = NET.genesis.chain_id
VSET = NET.genesis.validators
_KEY_BY_ID = {k.key_id: k for k in NET.validator_keys}
# KEYS[i] signs for VSET.validators[i] (the set is sorted by key id).
KEYS: tuple[PrivateKey, ...] = tuple(_KEY_BY_ID[v.key_id] for v in VSET.validators)
IDS: tuple[str, ...] = tuple(v.key_id for v in VSET.validators)
OUTSIDER = PrivateKey.derive("not-a-validator")
TIMEOUTS = TimeoutParams()
BLOCK_TIME = GENESIS_TIME  # the time in every test block's header
NOW = BLOCK_TIME + 10_000  # the hosts' clock at the start of every test
QUORUM = VSET.quorum_power

__all__ = [
    "BLOCK_TIME",
    "CHAIN_ID",
    "IDS",
    "KEYS",
    "NOW",
    "OUTSIDER",
    "PRECOMMIT",
    "PRECOMMIT_STEP",
    "PREVOTE",
    "PREVOTE_STEP",
    "PROPOSE",
    "QUORUM",
    "TIMEOUTS",
    "VSET",
    "FakeApp",
    "Node",
    "assert_wal_before_broadcast",
    "broadcasts",
    "decides",
    "index_of",
    "make_block",
    "misbehaviours",
    "proposal",
    "proposer_index",
    "schedules",
    "vote",
    "votes_of",
    "Network",
    "OBSERVER",
]


def index_of(key_id: str) -> int:
    return IDS.index(key_id)


def proposer_index(height: int, round_: int) -> int:
    return index_of(VSET.proposer(height, round_).key_id)


def make_block(
    label: str,
    *,
    height: int = 1,
    proposer: str | None = None,
    time: int = BLOCK_TIME,
    chain_id: str = CHAIN_ID,
) -> Block:
    """A block whose roots are arbitrary (the fake app decides validity)."""
    header = BlockHeader(
        chain_id=chain_id,
        height=height,
        prev_hash=ZERO_HASH,
        time=time,
        proposer=proposer or IDS[proposer_index(height, 0)],
        tx_root=tx_root(()),
        tx_count=0,
        state_root=sha256(label.encode()),
        validators_hash=VSET.hash,
        next_validators_hash=VSET.hash,
        events_root=ZERO_HASH,
        last_commit_hash=ZERO_HASH,
    )
    return Block(header, (), None)


def proposal(
    round_: int,
    block: Block,
    pol_round: int = -1,
    *,
    height: int = 1,
    key: PrivateKey | None = None,
    chain_id: str = CHAIN_ID,
) -> Proposal:
    """A proposal signed by the round's proposer (or by ``key``)."""
    signer = key or KEYS[proposer_index(height, round_)]
    return Proposal.sign(signer, chain_id, height, round_, pol_round, block)


def vote(
    i: int | PrivateKey,
    vote_type: str,
    round_: int,
    value: Block | bytes | None,
    *,
    height: int = 1,
    time: int | None = None,
    chain_id: str = CHAIN_ID,
) -> Vote:
    """A vote of validator ``i`` (an index into ``KEYS``, or any key) for ``value``."""
    key = KEYS[i] if isinstance(i, int) else i
    block_hash = value.hash if isinstance(value, Block) else value
    return Vote.sign(
        key, vote_type, chain_id, height, round_, block_hash, NOW + 1 if time is None else time
    )


@dataclasses.dataclass
class FakeApp:
    """A ConsensusApp whose answers the test controls."""

    proposer: str = ""
    pending: bool = False
    salt: str = ""  # distinguishes the blocks of two incarnations of one proposer
    invalid: set[bytes] = dataclasses.field(default_factory=set)
    invalid_proposers: set[str] = dataclasses.field(default_factory=set)
    built: list[Block] = dataclasses.field(default_factory=list)
    checked: list[bytes] = dataclasses.field(default_factory=list)

    def build_proposal_block(self, height: int, round_: int, now: int) -> Block:
        block = make_block(
            f"{self.proposer}/{self.salt}/{height}/{round_}/{len(self.built)}",
            height=height,
            proposer=self.proposer,
        )
        self.built.append(block)
        return block

    def block_is_valid(self, block: Block) -> bool:
        self.checked.append(block.hash)
        return (
            block.hash not in self.invalid and block.header.proposer not in self.invalid_proposers
        )

    def has_pending_txs(self) -> bool:
        return self.pending


# --- action helpers ---------------------------------------------------------------------


def broadcasts(actions: Iterable[ConsensusAction]) -> list[Proposal | Vote]:
    return [a.message for a in actions if isinstance(a, Broadcast)]


def votes_of(actions: Iterable[ConsensusAction], vote_type: str | None = None) -> list[Vote]:
    return [
        m
        for m in broadcasts(actions)
        if isinstance(m, Vote) and (vote_type is None or m.type == vote_type)
    ]


def schedules(actions: Iterable[ConsensusAction]) -> list[ScheduleTimeout]:
    return [a for a in actions if isinstance(a, ScheduleTimeout)]


def decides(actions: Iterable[ConsensusAction]) -> list[Decide]:
    return [a for a in actions if isinstance(a, Decide)]


def misbehaviours(actions: Iterable[ConsensusAction]) -> list[Misbehaviour]:
    return [a for a in actions if isinstance(a, Misbehaviour)]


def record_signatures(record: WalRecord) -> set[bytes]:
    return {v.signature for v in record.votes} | {p.signature for p in record.proposals}


def assert_wal_before_broadcast(actions: Sequence[ConsensusAction], persisted: set[bytes]) -> None:
    """Every broadcast message must already be in a persisted record.

    ``persisted`` holds the signatures of the messages written by earlier
    ``PersistWal`` actions; it is updated in place.
    """
    for position, action in enumerate(actions):
        if isinstance(action, PersistWal):
            persisted |= record_signatures(action.record)
        elif isinstance(action, Broadcast):
            assert action.message.signature in persisted, (
                f"action {position} broadcasts {action.message!r} before any PersistWal "
                f"holding it: {actions!r}"
            )


class Node:
    """One Tendermint machine plus a host that checks every action list."""

    def __init__(
        self,
        index: int | None = 0,
        *,
        key: PrivateKey | None = None,
        app: FakeApp | None = None,
        timeouts: TimeoutParams = TIMEOUTS,
    ) -> None:
        self.key = KEYS[index] if index is not None else key
        self.app = app or FakeApp(proposer=self.key.key_id if self.key else IDS[0])
        self.machine = Tendermint(chain_id=CHAIN_ID, key=self.key, app=self.app, timeouts=timeouts)
        self.now = NOW
        self.persisted: set[bytes] = set()
        self.signed: dict[tuple[object, ...], Proposal | Vote] = {}
        self.log: list[list[ConsensusAction]] = []
        self.wal: WalRecord | None = None

    @property
    def is_validator(self) -> bool:
        return self.key is not None and self.key.key_id in VSET.by_id

    def check(self, actions: list[ConsensusAction]) -> list[ConsensusAction]:
        self.log.append(actions)
        if not self.is_validator:
            assert not [a for a in actions if isinstance(a, Broadcast | PersistWal)], actions
            return actions
        assert_wal_before_broadcast(actions, self.persisted)
        for action in actions:
            if isinstance(action, PersistWal):
                self.wal = action.record
            if isinstance(action, Broadcast):
                msg = action.message
                assert self.key is not None
                if isinstance(msg, Vote):
                    assert msg.validator == self.key.key_id
                    slot: tuple[object, ...] = ("vote", msg.height, msg.round, msg.type)
                else:
                    assert msg.proposer == self.key.key_id
                    slot = ("proposal", msg.height, msg.round)
                first = self.signed.setdefault(slot, msg)
                assert first == msg, f"I1: signed {first!r} and then {msg!r}"
        return actions

    def start(self, height: int = 1, wal: WalRecord | None = None) -> list[ConsensusAction]:
        if wal is not None:
            self.wal = wal  # still on disk until the next PersistWal replaces it
            self.persisted |= record_signatures(wal)
            for v in wal.votes:
                self.signed.setdefault(("vote", v.height, v.round, v.type), v)
            for p in wal.proposals:
                self.signed.setdefault(("proposal", p.height, p.round), p)
        return self.check(self.machine.start_height(height, VSET, self.now, wal))

    def on_proposal(self, p: Proposal) -> list[ConsensusAction]:
        return self.check(self.machine.on_proposal(p, self.now))

    def on_vote(self, v: Vote) -> list[ConsensusAction]:
        return self.check(self.machine.on_vote(v, self.now))

    def on_votes(self, votes: Iterable[Vote]) -> list[ConsensusAction]:
        out: list[ConsensusAction] = []
        for v in votes:
            out += self.on_vote(v)
        return out

    def on_timeout(self, round_: int, step: int, height: int = 1) -> list[ConsensusAction]:
        return self.check(self.machine.on_timeout(Timeout(height, round_, step), self.now))

    def on_txs_available(self) -> list[ConsensusAction]:
        return self.check(self.machine.on_txs_available(self.now))

    def state(self) -> tuple[int, int]:
        return self.machine.round, self.machine.step


# --- a small randomised network -----------------------------------------------------------

OBSERVER = 4  # index of the keyless observer in Network.nodes


class Network:
    """Four validators and a keyless observer, driven by a seeded scheduler.

    Messages are delivered in random order (and sometimes twice), timers fire in
    deadline order, validators sometimes repeat what :meth:`Tendermint.resend`
    gives and hand a lagging peer the proposal and precommits of a height they
    decided, and (when ``crashes`` is set) a validator sometimes crashes and
    restarts from its last write-ahead record, read back through JSON. Every
    action list goes through :meth:`Node.check`, whose I1 record survives
    crashes, and every decision is checked as it happens.

    ``byzantine``: that validator runs the same machine but signs a conflicting
    twin of everything it sends (another value, or another block) and shows each
    peer one of the two, or both. Its peers may then need the block itself
    (``synced``), as a replica's catch-up gives it.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        heights: int = 2,
        crashes: bool = False,
        invalid_proposers: frozenset[str] = frozenset(),
        byzantine: int | None = None,
    ) -> None:
        self.rng = rng
        self.byzantine = byzantine
        self.equivocations = 0
        self.heights = heights
        self.crashes = crashes
        self.invalid_proposers = set(invalid_proposers)
        self.clock = NOW
        self.seq = 0
        self.incarnation = [0, 0, 0, 0]
        self.queue: list[tuple[int, Proposal | Vote]] = []
        self.future: list[tuple[int, Proposal | Vote]] = []
        self.timers: list[tuple[int, int, int, Timeout]] = []
        self.decisions: list[dict[int, Decide]] = [{} for _ in range(5)]
        # what each node committed, by its own decision or by catching up (a replica's sync)
        self.committed: list[dict[int, bytes]] = [{} for _ in range(5)]
        self.fed: set[tuple[int, int]] = set()
        self.synced = 0
        self.proposals: dict[bytes, Proposal] = {}
        self.crashed = 0
        self.nodes: list[Node] = [Node(i, app=self._app(i)) for i in range(4)]
        self.nodes.append(Node(None, app=FakeApp(invalid_proposers=self.invalid_proposers)))
        for k in range(5):
            self._call(k, lambda node: node.start(1))

    def _app(self, i: int) -> FakeApp:
        return FakeApp(
            proposer=IDS[i],
            pending=self.rng.random() < 0.5,
            salt=str(self.incarnation[i]),
            invalid_proposers=self.invalid_proposers,
        )

    # --- plumbing ---------------------------------------------------------------------

    def _call(self, k: int, event: Callable[[Node], list[ConsensusAction]]) -> None:
        node = self.nodes[k]
        node.now = self.clock
        self._run(k, event(node))

    def _run(self, k: int, actions: list[ConsensusAction]) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                msg = action.message
                if isinstance(msg, Proposal):
                    self.proposals.setdefault(msg.block.hash, msg)
                if k == self.byzantine:
                    self._equivocate(k, msg)
                else:
                    self.queue.extend((j, msg) for j in range(5) if j != k)
            elif isinstance(action, ScheduleTimeout):
                self.seq += 1
                heapq.heappush(
                    self.timers, (self.clock + action.delay_ms, self.seq, k, action.timeout)
                )
            elif isinstance(action, Decide):
                self._decided(k, action)

    def _decided(self, k: int, decide: Decide) -> None:
        cert = decide.certificate
        height = decide.block.height
        assert height == self.nodes[k].machine.height
        assert height not in self.decisions[k], f"node {k} decided height {height} twice"
        assert cert.height == height and cert.block_hash == decide.block.hash
        cert.verify(CHAIN_ID, VSET, block_time=decide.block.header.time)
        assert decide.block.header.proposer not in self.invalid_proposers
        self.decisions[k][height] = decide
        self._commit(k, height, decide.block.hash)

    def _commit(self, k: int, height: int, block_hash: bytes) -> None:
        assert self.committed[k].setdefault(height, block_hash) == block_hash
        if height < self.heights and self.nodes[k].machine.height == height:
            self._call(k, lambda node: node.start(height + 1))
            mine = [item for item in self.future if item[0] == k]
            self.future = [item for item in self.future if item[0] != k]
            self.queue.extend(mine)

    def _equivocate(self, k: int, msg: Proposal | Vote) -> None:
        """The Byzantine validator signs a conflicting twin and splits its peers."""
        rng = self.rng
        twin: Proposal | Vote
        if isinstance(msg, Vote):
            unknown = sha256(f"unknown/{rng.random()}".encode())  # a hash nobody proposed
            values = [v for v in (None, unknown, *self.proposals) if v != msg.block_hash]
            twin = Vote.sign(
                KEYS[k], msg.type, CHAIN_ID, msg.height, msg.round, rng.choice(values), msg.time
            )
        else:
            block = make_block(
                f"twin/{self.seq}/{rng.random()}", height=msg.height, proposer=IDS[k]
            )
            twin = Proposal.sign(KEYS[k], CHAIN_ID, msg.height, msg.round, msg.pol_round, block)
            self.proposals.setdefault(block.hash, twin)
        self.equivocations += 1
        for j in range(5):
            if j != k:
                self.queue.append((j, msg if rng.random() < 0.5 else twin))
                if rng.random() < 0.3:
                    self.queue.append((j, twin))

    @property
    def honest(self) -> list[int]:
        return [k for k in range(5) if k != self.byzantine]

    def _done(self, k: int) -> bool:
        return self.heights in self.committed[k]

    # --- events -----------------------------------------------------------------------

    def deliver(self, position: int, *, keep: bool = False) -> None:
        if keep:
            k, msg = self.queue[position]
        else:
            self.queue[position], self.queue[-1] = self.queue[-1], self.queue[position]
            k, msg = self.queue.pop()
        height = self.nodes[k].machine.height
        if msg.height > height:
            self.future.append((k, msg))
        elif isinstance(msg, Vote):
            self._call(k, lambda node: node.on_vote(msg))
        else:
            self._call(k, lambda node: node.on_proposal(msg))

    def fire_timer(self) -> None:
        deadline, _, k, timeout = heapq.heappop(self.timers)
        self.clock = max(self.clock, deadline)
        self._call(k, lambda node: node.on_timeout(timeout.round, timeout.step, timeout.height))

    def gossip(self, k: int, *, may_sync: bool = False) -> None:
        """``k`` repeats what it signed, and hands a lagging peer a decision it knows."""
        for msg in self.nodes[k].machine.resend():
            self.queue.extend((j, msg) for j in range(5) if j != k)
        for j in range(5):
            height = self.nodes[j].machine.height
            known = self.decisions[k].get(height)
            if j == k or known is None or height in self.committed[j]:
                continue
            if not may_sync or (j, height) not in self.fed:
                # first the proposal and the certificate's precommits ...
                self.fed.add((j, height))
                self.queue.append((j, self.proposals[known.block.hash]))
                self.queue.extend((j, v) for v in known.certificate.precommits(CHAIN_ID))
            else:
                # ... which may not do: an equivocating proposer may have shown j a twin
                # of the decided block for that round, and the first proposal is kept.
                # A replica then fetches the certified block (sync); so do we.
                self.synced += 1
                self._commit(j, height, known.block.hash)

    def crash(self, k: int) -> None:
        height = max(self.committed[k], default=0) + 1
        if height > self.heights:
            return
        old = self.nodes[k]
        wal = old.wal if old.wal is not None and old.wal.height == height else None
        if wal is not None:
            wal = WalRecord.from_wire(json.loads(json.dumps(wal.to_wire())))
        self.crashed += 1
        self.incarnation[k] += 1
        new = Node(k, app=self._app(k))
        new.persisted, new.signed = old.persisted, old.signed  # I1 spans incarnations
        self.nodes[k] = new
        self.fed = {item for item in self.fed if item[0] != k}  # it forgot them
        self.timers = [t for t in self.timers if t[2] != k]
        heapq.heapify(self.timers)
        self._call(k, lambda node: node.start(height, wal))

    # --- schedules --------------------------------------------------------------------

    def run_asynchronous(self, events: int) -> None:
        """Arbitrary delays: random delivery, duplicates, early timers, crashes."""
        rng = self.rng
        for _ in range(events):
            self.clock += rng.randrange(0, 40)
            r = rng.random()
            if self.queue and r < 0.75:
                self.deliver(rng.randrange(len(self.queue)), keep=rng.random() < 0.05)
            elif self.timers and r < 0.88:
                self.fire_timer()
            elif r < 0.97 or not self.crashes:
                self.gossip(rng.randrange(4))
            else:
                self.crash(rng.randrange(4))

    def run_synchronous(self, events: int) -> bool:
        """After GST: every message arrives before any timer fires. True if all decided."""
        gossiped = False
        for _ in range(events):
            if all(self._done(k) for k in self.honest):
                return True
            if self.queue:
                self.deliver(self.rng.randrange(len(self.queue)))
            elif not gossiped:
                for k in range(4):
                    self.gossip(k, may_sync=True)
                gossiped = True
            elif self.timers:
                self.fire_timer()
                gossiped = False
            else:
                return False
        return all(self._done(k) for k in self.honest)

    def check_agreement(self) -> None:
        for height in range(1, self.heights + 1):
            blocks = {
                self.decisions[k][height].block.hash
                for k in self.honest
                if height in self.decisions[k]
            }
            assert len(blocks) <= 1, f"conflicting decisions at height {height}"
