"""Tendermint consensus, as a pure state machine.

Protocol: E. Buchman, J. Kwon, Z. Milosevic, *The latest gossip on BFT
consensus*, arXiv:1807.04938 (2018), Algorithm 1 — a partially synchronous
BFT protocol for n = 3f+1 with rounds of propose / prevote / precommit,
locking, and decisions by 2f+1 precommits. The rules below carry the paper's
line numbers. Its safety argument rests on three invariants, checked here
with explicit raises (never ``assert``):

* **I1 — one vote per step**: a correct validator signs at most one prevote
  and one precommit per (height, round), and at most one proposal per
  (height, round) as proposer. Enforced by :meth:`_sign_vote` /
  :meth:`_propose`, which re-send what was already signed (the write-ahead
  record keeps it across crashes) and refuse to sign anything else.
* **I2 — locking**: after precommitting ``v`` in round ``r`` (``lockedRound = r``)
  a correct validator prevotes only ``v``, or a value with a proof-of-lock
  (2f+1 prevotes) from a round ``≥ lockedRound`` (lines 22–33).
* **I3 — quorum intersection**: a decision needs precommits of more than two
  thirds of the power for the same block in the same round; two such quorums
  share a correct validator, which by I1/I2 makes conflicting decisions at one
  height impossible. :meth:`_decide` re-checks the quorum before deciding.

Liveness after GST comes from growing timeouts (``+ round * delta``), round
skipping on f+1 messages of a higher round (line 55), and the host re-sending
what this validator signed in its current round (the paper assumes gossip
delivers every message; over a lossy network a replica must repeat itself).

The machine takes events (``on_proposal``, ``on_vote``, ``on_timeout``,
``on_txs_available``) with the host's current time and returns a list of
actions; it never reads a clock, never sleeps, never does I/O. The host must
perform ``PersistWal`` (with fsync) before any later action of the same list.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from services.ledger.core import crypto
from services.ledger.core.blocks import Block
from services.ledger.core.certificate import PRECOMMIT as PRECOMMIT_VOTE
from services.ledger.core.certificate import PREVOTE as PREVOTE_VOTE
from services.ledger.core.certificate import CommitCertificate, Vote
from services.ledger.core.consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    PROPOSE,
    PROPOSE_READY,
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
from services.ledger.core.errors import InvariantViolation
from services.ledger.core.validators import ValidatorSet

ROUNDS_AHEAD_MAX = 64  # votes for rounds further ahead are ignored (memory bound)
ALTERNATIVE_BLOCKS_MAX = 2  # conflicting proposals of one round whose blocks are kept


@dataclass(frozen=True, slots=True)
class TimeoutParams:
    """Local timing (each replica may tune its own); milliseconds."""

    propose_ms: int = 1_000
    propose_delta_ms: int = 500
    vote_ms: int = 500
    vote_delta_ms: int = 500
    empty_block_interval_ms: int = 1_000  # an idle proposer waits this long for txs

    def propose(self, round_: int) -> int:
        extra = self.empty_block_interval_ms if round_ == 0 else 0
        return self.propose_ms + round_ * self.propose_delta_ms + extra

    def vote(self, round_: int) -> int:
        return self.vote_ms + round_ * self.vote_delta_ms


class ConsensusApp(Protocol):
    """What consensus needs from the replica around it (all pure)."""

    def build_proposal_block(self, height: int, round_: int, now: int) -> Block: ...

    def block_is_valid(self, block: Block) -> bool: ...

    def has_pending_txs(self) -> bool: ...


@dataclass
class _Tally:
    """Votes of one (round, type).

    ``by_validator`` holds each validator's first vote and ``total`` counts each
    validator once (for the "2f+1 of anything" rules). ``by_value`` counts a
    validator toward *every* value it signed: an equivocating validator must be
    counted wherever it voted, or its double vote could split what honest
    replicas see and stall them forever (Tendermint's VoteSet does the same
    once a peer claims a majority). This is safe: honest validators sign one
    value per step, so two quorums for different values still need f+1
    equivocators. Memory stays bounded because a second value is only kept
    when it is nil or a block this height actually proposed.
    """

    by_validator: dict[str, Vote] = field(default_factory=dict)
    by_value: dict[bytes | None, dict[str, Vote]] = field(default_factory=dict)
    power: dict[bytes | None, int] = field(default_factory=dict)
    total: int = 0

    def add(self, vote: Vote, power: int) -> bool:
        """Count ``vote``; False if this validator already voted for this value."""
        supporters = self.by_value.setdefault(vote.block_hash, {})
        if vote.validator in supporters:
            return False
        supporters[vote.validator] = vote
        self.power[vote.block_hash] = self.power.get(vote.block_hash, 0) + power
        if vote.validator not in self.by_validator:
            self.by_validator[vote.validator] = vote
            self.total += power
        return True


class Tendermint:
    """One height at a time; the replica calls :meth:`start_height` after each commit."""

    def __init__(self, *, chain_id: str, key: crypto.PrivateKey | None,
                 app: ConsensusApp, timeouts: TimeoutParams) -> None:
        self.chain_id = chain_id
        self.key = key
        self.app = app
        self.timeouts = timeouts
        self.height = 0
        self.round = 0
        self.step = PROPOSE
        self.validators: ValidatorSet | None = None
        self.decided = False
        self._reset()

    def _reset(self) -> None:
        self.locked_round = -1
        self.locked_block: Block | None = None
        self.valid_round = -1
        self.valid_block: Block | None = None
        self.proposals: dict[int, Proposal] = {}
        self.blocks: dict[bytes, Block] = {}
        self.tallies: dict[tuple[int, str], _Tally] = {}
        self.signed_votes: dict[tuple[int, str], Vote] = {}
        self.signed_proposals: dict[int, Proposal] = {}
        self.round_senders: dict[int, dict[str, int]] = {}
        self.fired: set[tuple[str, int]] = set()  # "for the first time" rules
        self._alternatives: dict[int, int] = {}  # round -> conflicting blocks kept
        self.validity: dict[bytes, bool] = {}
        self._actions: list[ConsensusAction] = []
        self._wal_dirty = False

    # --- public events ---------------------------------------------------------------

    @property
    def is_validator(self) -> bool:
        return (self.key is not None and self.validators is not None
                and self.key.key_id in self.validators.by_id)

    def start_height(self, height: int, validators: ValidatorSet, now: int,
                     wal: WalRecord | None = None) -> list[ConsensusAction]:
        self.height = height
        self.validators = validators
        self.decided = False
        self._reset()
        if wal is not None and wal.height == height:
            return self._restore(wal, now)
        self._start_round(0, now)
        return self._finish(now)

    def on_proposal(self, proposal: Proposal, now: int) -> list[ConsensusAction]:
        """A proposal for this height whose signature the caller has NOT checked."""
        if not self._accepts(proposal.height, proposal.round) or self.validators is None:
            return []
        if proposal.chain_id != self.chain_id or not proposal.verify(self.validators):
            return []
        known = self.proposals.get(proposal.round)
        if known is not None:
            if known.block.hash != proposal.block.hash or known.pol_round != proposal.pol_round:
                self._actions.append(Misbehaviour("double_proposal", proposal.proposer,
                                                  proposal.height, proposal.round,
                                                  known, proposal))
                # Keep the twin's block (a few per round): if a quorum decides it,
                # this replica can then commit it without waiting for catch-up.
                alternatives = self._alternatives.setdefault(proposal.round, 0)
                if alternatives < ALTERNATIVE_BLOCKS_MAX \
                        and proposal.block.hash not in self.blocks:
                    self._alternatives[proposal.round] = alternatives + 1
                    self.blocks[proposal.block.hash] = proposal.block
            return self._finish(now)
        self.proposals[proposal.round] = proposal
        self.blocks[proposal.block.hash] = proposal.block
        self._count_sender(proposal.round, proposal.proposer)
        return self._finish(now)

    def on_vote(self, vote: Vote, now: int) -> list[ConsensusAction]:
        """A vote for this height whose signature the caller has NOT checked."""
        if not self._accepts(vote.height, vote.round) or self.validators is None:
            return []
        if vote.chain_id != self.chain_id or not vote.verify(self.validators):
            return []
        tally = self.tallies.setdefault((vote.round, vote.type), _Tally())
        first = tally.by_validator.get(vote.validator)
        if first is not None and first.block_hash != vote.block_hash:
            if vote.block_hash is not None and vote.block_hash not in self.blocks:
                return []  # a conflicting vote for no known block: nothing it could decide
            if vote.validator not in tally.by_value.get(vote.block_hash, {}):
                self._actions.append(Misbehaviour("double_vote", vote.validator, vote.height,
                                                  vote.round, first, vote))
        if tally.add(vote, self.validators.power_of(vote.validator)):
            self._count_sender(vote.round, vote.validator)
        return self._finish(now)

    def on_timeout(self, timeout: Timeout, now: int) -> list[ConsensusAction]:
        if timeout.height != self.height or self.decided:
            return []
        if timeout.round == self.round:
            if timeout.step == PROPOSE_READY and self.step == PROPOSE:
                self._propose(now)  # idle proposer: propose even an empty block
            elif timeout.step == PROPOSE and self.step == PROPOSE:
                self._prevote(None, now)  # line 57
            elif timeout.step == PREVOTE and self.step == PREVOTE:
                self._precommit(None, now)  # line 61
            elif timeout.step == PRECOMMIT:
                self._start_round(self.round + 1, now)  # line 65
        return self._finish(now)

    def on_txs_available(self, now: int) -> list[ConsensusAction]:
        """The mempool has transactions: an idle proposer proposes now."""
        if (not self.decided and self.step == PROPOSE and self.round not in self.proposals
                and self._am_proposer(self.round)):
            self._propose(now)
        return self._finish(now)

    def resend(self) -> list[Proposal | Vote]:
        """What to repeat when the network may have lost it: the current round's
        proposal (ours, or the one we received: anyone may relay it) with the
        prevotes that justify its ``pol_round``, the prevotes behind our own
        locked and valid blocks, and every vote we signed in this round and the
        previous one. Without the justifying prevotes, a replica that missed a
        polka can never accept a re-proposed block, and replicas locked on it
        would block progress forever."""
        out: list[Proposal | Vote] = []
        proposal = self.proposals.get(self.round)
        if proposal is not None:
            out.append(proposal)
            if proposal.pol_round >= 0:
                out.extend(self._polka_votes(proposal.pol_round, proposal.block.hash))
        out.extend(v for v in self._held_polkas() if v not in out)
        for (round_, _), vote in sorted(self.signed_votes.items()):
            if round_ >= self.round - 1 and vote not in out:
                out.append(vote)
        return out

    def _polka_votes(self, round_: int, block_hash: bytes) -> list[Vote]:
        tally = self.tallies.get((round_, PREVOTE_VOTE))
        if tally is None:
            return []
        return [v for _, v in sorted(tally.by_value.get(block_hash, {}).items())]

    def _held_polkas(self) -> list[Vote]:
        out: list[Vote] = []
        for round_, block in ((self.locked_round, self.locked_block),
                              (self.valid_round, self.valid_block)):
            if block is not None and round_ >= 0:
                out.extend(v for v in self._polka_votes(round_, block.hash) if v not in out)
        return out

    # --- rounds --------------------------------------------------------------------

    def _accepts(self, height: int, round_: int) -> bool:
        return (height == self.height and not self.decided
                and round_ <= self.round + ROUNDS_AHEAD_MAX)

    def _am_proposer(self, round_: int) -> bool:
        return (self.is_validator and self.validators is not None and self.key is not None
                and self.validators.proposer(self.height, round_).key_id == self.key.key_id)

    def _start_round(self, round_: int, now: int) -> None:  # line 11
        self.round = round_
        self.step = PROPOSE
        self._wal_dirty = True
        if self._am_proposer(round_):
            if round_ in self.signed_proposals or self.valid_block is not None \
                    or round_ > 0 or self.app.has_pending_txs():
                self._propose(now)
            else:
                self._schedule(PROPOSE_READY, self.timeouts.empty_block_interval_ms)
        self._schedule(PROPOSE, self.timeouts.propose(round_))

    def _propose(self, now: int) -> None:  # lines 14-19, I1 for proposals
        if self.key is None or self.step != PROPOSE or not self._am_proposer(self.round):
            return
        proposal = self.signed_proposals.get(self.round)
        if proposal is None:
            if self.valid_block is not None:
                block, pol = self.valid_block, self.valid_round
            else:
                block, pol = self.app.build_proposal_block(self.height, self.round, now), -1
            proposal = Proposal.sign(self.key, self.chain_id, self.height, self.round, pol,
                                     block)
            self.signed_proposals[self.round] = proposal
            self._wal_dirty = True
        self._actions.append(Broadcast(proposal))
        self.on_proposal_local(proposal)

    def on_proposal_local(self, proposal: Proposal) -> None:
        self.proposals.setdefault(proposal.round, proposal)
        self.blocks[proposal.block.hash] = proposal.block
        if self.key is not None:
            self._count_sender(proposal.round, self.key.key_id)

    def _valid(self, block: Block) -> bool:
        verdict = self.validity.get(block.hash)
        if verdict is None:
            verdict = self.app.block_is_valid(block)
            self.validity[block.hash] = verdict
        return verdict

    # --- voting (I1) ---------------------------------------------------------------

    def _sign_vote(self, vote_type: str, block_hash: bytes | None, now: int) -> None:
        if not self.is_validator or self.key is None:
            return
        slot = (self.round, vote_type)
        vote = self.signed_votes.get(slot)
        if vote is None:
            time = now
            if vote_type == PRECOMMIT_VOTE and block_hash is not None:
                block = self.blocks[block_hash]
                time = max(now, block.header.time + 1)  # BFT time must strictly increase
            vote = Vote.sign(self.key, vote_type, self.chain_id, self.height, self.round,
                             block_hash, time)
            self.signed_votes[slot] = vote
            self._wal_dirty = True
        # else: I1 — we already signed for this (height, round, type), possibly
        # before a crash; repeat that vote, never sign a different one.
        self._actions.append(Broadcast(vote))
        self.on_vote_local(vote)

    def on_vote_local(self, vote: Vote) -> None:
        if self.validators is None:
            return
        tally = self.tallies.setdefault((vote.round, vote.type), _Tally())
        if tally.add(vote, self.validators.power_of(vote.validator)):
            self._count_sender(vote.round, vote.validator)

    def _prevote(self, block_hash: bytes | None, now: int) -> None:
        self._sign_vote(PREVOTE_VOTE, block_hash, now)
        self.step = PREVOTE
        self._wal_dirty = True

    def _precommit(self, block_hash: bytes | None, now: int) -> None:
        self._sign_vote(PRECOMMIT_VOTE, block_hash, now)
        self.step = PRECOMMIT
        self._wal_dirty = True

    # --- the rules -----------------------------------------------------------------

    def _power(self, round_: int, vote_type: str, value: bytes | None) -> int:
        tally = self.tallies.get((round_, vote_type))
        return 0 if tally is None else tally.power.get(value, 0)

    def _total(self, round_: int, vote_type: str) -> int:
        tally = self.tallies.get((round_, vote_type))
        return 0 if tally is None else tally.total

    def _finish(self, now: int) -> list[ConsensusAction]:
        """Apply every rule until none fires, then hand the actions over."""
        if self.validators is not None and self.height > 0:
            progressed = True
            while progressed and not self.decided:
                progressed = self._apply_rules(now)
        actions = self._actions
        self._actions = []
        if self._wal_dirty and self.is_validator:
            self._wal_dirty = False
            actions.insert(0, PersistWal(self.wal_record()))
        self._wal_dirty = False
        return actions

    def _apply_rules(self, now: int) -> bool:
        if self.validators is None:
            raise InvariantViolation("consensus ran a height without its validator set")
        quorum = self.validators.quorum_power
        r = self.round
        # line 49: a decision in any round
        for (round_, vote_type), tally in list(self.tallies.items()):
            if vote_type != PRECOMMIT_VOTE:
                continue
            for value, power in tally.power.items():
                if value is not None and power >= quorum and value in self.blocks \
                        and self._decide(round_, value):
                    return False
        proposal = self.proposals.get(r)
        if proposal is not None and self.step == PROPOSE:
            v = proposal.block
            if proposal.pol_round == -1:  # line 22
                ok = self._valid(v) and (self.locked_round == -1 or self._is_locked_on(v))
                self._prevote(v.hash if ok else None, now)
                return True
            vr = proposal.pol_round
            if vr < r and self._power(vr, PREVOTE_VOTE, v.hash) >= quorum:  # line 28
                ok = self._valid(v) and (self.locked_round <= vr or self._is_locked_on(v))
                self._prevote(v.hash if ok else None, now)
                return True
        if self.step == PREVOTE and self._total(r, PREVOTE_VOTE) >= quorum \
                and self._once("prevote_timeout", r):  # line 34
            self._schedule(PREVOTE, self.timeouts.vote(r))
        if proposal is not None and self.step >= PREVOTE:  # line 36
            v = proposal.block
            if self._power(r, PREVOTE_VOTE, v.hash) >= quorum and self._valid(v) \
                    and self._once("polka", r):
                if self.step == PREVOTE:
                    self.locked_round, self.locked_block = r, v
                    self._precommit(v.hash, now)
                self.valid_round, self.valid_block = r, v
                self._wal_dirty = True
                return True
        if self.step == PREVOTE and self._power(r, PREVOTE_VOTE, None) >= quorum:  # line 44
            self._precommit(None, now)
            return True
        if self._total(r, PRECOMMIT_VOTE) >= quorum and self._once("precommit_timeout", r):
            self._schedule(PRECOMMIT, self.timeouts.vote(r))  # line 47
        skip = self.validators.fault_power + 1
        for round_ in sorted(self.round_senders):  # line 55
            if round_ > r and sum(self.round_senders[round_].values()) >= skip:
                self._start_round(round_, now)
                return True
        return False

    def _is_locked_on(self, block: Block) -> bool:
        return self.locked_block is not None and self.locked_block.hash == block.hash

    def _once(self, rule: str, round_: int) -> bool:
        if (rule, round_) in self.fired:
            return False
        self.fired.add((rule, round_))
        return True

    def _count_sender(self, round_: int, validator: str) -> None:
        if self.validators is None:
            return
        senders = self.round_senders.setdefault(round_, {})
        senders.setdefault(validator, self.validators.power_of(validator))

    def _decide(self, round_: int, block_hash: bytes) -> bool:
        """Decide if a quorum of precommits for ``block_hash`` can form a certificate (I3)."""
        if self.validators is None:
            raise InvariantViolation("consensus ran a height without its validator set")
        block = self.blocks[block_hash]
        if not self._valid(block):
            return False
        tally = self.tallies[(round_, PRECOMMIT_VOTE)]
        votes = {vid: v for vid, v in tally.by_value.get(block_hash, {}).items()
                 if v.time > block.header.time}
        power = sum(self.validators.power_of(vid) for vid in votes)
        if power < self.validators.quorum_power:
            return False  # some votes carry an invalid time: wait for more
        certificate = CommitCertificate.from_votes(votes)
        if certificate.height != self.height or certificate.block_hash != block_hash:
            raise InvariantViolation("commit certificate does not match the decided block")
        self.decided = True
        self._actions.append(Decide(block, certificate))
        return True

    def _schedule(self, step: int, delay_ms: int) -> None:
        self._actions.append(ScheduleTimeout(Timeout(self.height, self.round, step), delay_ms))

    # --- write-ahead ------------------------------------------------------------------

    def wal_record(self) -> WalRecord:
        return WalRecord(
            height=self.height, round=self.round, step=self.step,
            locked_round=self.locked_round, locked_block=self.locked_block,
            valid_round=self.valid_round, valid_block=self.valid_block,
            votes=tuple(v for _, v in sorted(self.signed_votes.items())),
            proposals=tuple(p for _, p in sorted(self.signed_proposals.items())),
            polka=tuple(self._held_polkas()),
        )

    def _restore(self, wal: WalRecord, now: int) -> list[ConsensusAction]:
        """Resume a height after a crash: never sign differently from what we signed."""
        self.round, self.step = wal.round, wal.step
        self.locked_round, self.locked_block = wal.locked_round, wal.locked_block
        self.valid_round, self.valid_block = wal.valid_round, wal.valid_block
        for block in (wal.locked_block, wal.valid_block):
            if block is not None:
                self.blocks[block.hash] = block
        for vote in wal.polka:
            self.on_vote_local(vote)  # verified when first received; our disk is trusted
        for vote in wal.votes:
            self.signed_votes[(vote.round, vote.type)] = vote
            self.on_vote_local(vote)
            if vote.round == self.round:
                self._actions.append(Broadcast(vote))
        for proposal in wal.proposals:
            self.signed_proposals[proposal.round] = proposal
            self.on_proposal_local(proposal)
            if proposal.round == self.round:
                self._actions.append(Broadcast(proposal))
        if self.step == PROPOSE:
            if self._am_proposer(self.round) and self.round not in self.signed_proposals:
                self._propose(now)
            self._schedule(PROPOSE, self.timeouts.propose(self.round))
        elif self.step == PREVOTE:
            self._schedule(PREVOTE, self.timeouts.vote(self.round))
        # In PRECOMMIT the paper's line 47 schedules the timeout once 2f+1
        # precommits are seen; the host's re-sending brings them back.
        return self._finish(now)


def votes_in(actions: Iterable[ConsensusAction]) -> list[Vote]:
    return [a.message for a in actions if isinstance(a, Broadcast)
            and isinstance(a.message, Vote)]
