"""Tests for the Tendermint state machine (services/ledger/core/consensus/tendermint.py).

The rules are those of Buchman, Kwon and Milosevic, *The latest gossip on BFT
consensus* (arXiv:1807.04938), Algorithm 1; tests name them by the paper's
line numbers. The machine runs with four validators of power 1 (n = 4, f = 1,
quorum 3). Unless a test says otherwise "we" are validator 0, which does not
propose in rounds 0-2 of height 1 (proposers: round 0 -> 1, 1 -> 2, 2 -> 3,
3 -> 0).

Every action list any test receives goes through ``Node.check`` (harness.py),
which asserts that a ``PersistWal`` holding a message precedes its first
``Broadcast`` and that we never sign two different messages for one step (I1).
"""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ledger.core.certificate import Vote
from services.ledger.core.consensus.messages import (
    PROPOSE_READY,
    Broadcast,
    PersistWal,
    Proposal,
    ScheduleTimeout,
    Timeout,
    WalRecord,
)
from services.ledger.core.consensus.tendermint import ROUNDS_AHEAD_MAX, TimeoutParams
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import InvalidBlock
from tests.ledger.core.consensus.harness import (
    BLOCK_TIME,
    CHAIN_ID,
    IDS,
    KEYS,
    OBSERVER,
    OUTSIDER,
    PRECOMMIT,
    PRECOMMIT_STEP,
    PREVOTE,
    PREVOTE_STEP,
    PROPOSE,
    TIMEOUTS,
    VSET,
    FakeApp,
    Network,
    Node,
    assert_wal_before_broadcast,
    broadcasts,
    decides,
    make_block,
    misbehaviours,
    proposal,
    proposer_index,
    schedules,
    vote,
    votes_of,
)

A = make_block("A", proposer=IDS[1])
B = make_block("B", proposer=IDS[2])
X = make_block("X-never-proposed")


def timeout_action(round_: int, step: int, height: int = 1) -> ScheduleTimeout:
    delay = TIMEOUTS.propose(round_) if step == PROPOSE else TIMEOUTS.vote(round_)
    return ScheduleTimeout(Timeout(height, round_, step), delay)


def lock_on_a_in_round_0(node: Node) -> None:
    """Round 0: A is proposed, we prevote it, see a polka, lock on it and precommit it."""
    node.start()
    node.on_proposal(proposal(0, A))
    actions = node.on_votes([vote(1, PREVOTE, 0, A), vote(2, PREVOTE, 0, A)])
    [precommit] = votes_of(actions, PRECOMMIT)
    assert precommit.block_hash == A.hash
    assert (node.machine.locked_round, node.machine.locked_block) == (0, A)


def end_round(node: Node, round_: int, others: tuple[int, ...]) -> None:
    """Nil precommits of ``others`` complete 2f+1 precommits; the timeout ends the round."""
    actions = node.on_votes([vote(i, PRECOMMIT, round_, None) for i in others])
    assert timeout_action(round_, PRECOMMIT_STEP) in actions  # line 47
    node.on_timeout(round_, PRECOMMIT_STEP)  # line 65
    assert node.machine.round == round_ + 1
    if node.key is None or VSET.proposer(1, round_ + 1).key_id != node.key.key_id:
        assert node.machine.step == PROPOSE


def tally_snapshot(node: Node) -> object:
    m = node.machine
    return (
        {key: (dict(t.power), t.total, dict(t.by_validator)) for key, t in m.tallies.items()},
        {r: dict(s) for r, s in m.round_senders.items()},
        dict(m.proposals),
        m.round,
        m.step,
        m.locked_round,
        m.valid_round,
    )


# --- fixtures and the write-ahead check ----------------------------------------------


def test_fixture_assumptions() -> None:
    """What the scenarios below rely on: n = 4, f = 1, quorum 3, and the rotation."""
    assert (len(VSET.validators), VSET.fault_power, VSET.quorum_power) == (4, 1, 3)
    assert [proposer_index(1, r) for r in range(6)] == [1, 2, 3, 0, 1, 2]
    assert A.hash != B.hash != X.hash


def test_wal_check_rejects_a_broadcast_before_its_persist() -> None:
    node = Node(0)
    node.start()
    [prevote] = votes_of(node.on_proposal(proposal(0, A)))
    record = node.machine.wal_record()
    assert prevote in record.votes
    assert_wal_before_broadcast([PersistWal(record), Broadcast(prevote)], set())
    with pytest.raises(AssertionError):
        assert_wal_before_broadcast([Broadcast(prevote), PersistWal(record)], set())
    with pytest.raises(AssertionError):
        assert_wal_before_broadcast([Broadcast(prevote)], set())


def test_timeouts_grow_with_the_round() -> None:
    t = TimeoutParams(
        propose_ms=1_000,
        propose_delta_ms=300,
        vote_ms=400,
        vote_delta_ms=200,
        empty_block_interval_ms=700,
    )
    # round 0 also waits out an idle proposer's empty-block interval
    assert [t.propose(r) for r in range(3)] == [1_700, 1_300, 1_600]
    assert [t.vote(r) for r in range(3)] == [400, 600, 800]
    assert TIMEOUTS.propose(0) > TIMEOUTS.empty_block_interval_ms


# --- 1. the happy path ------------------------------------------------------------------


def test_happy_path_as_non_proposer() -> None:
    node = Node(0)
    actions = node.start()
    assert node.state() == (0, PROPOSE)
    assert broadcasts(actions) == []
    assert schedules(actions) == [timeout_action(0, PROPOSE)]

    actions = node.on_proposal(proposal(0, A))  # line 22
    [prevote] = votes_of(actions)
    assert (prevote.type, prevote.height, prevote.round, prevote.block_hash) == (
        PREVOTE,
        1,
        0,
        A.hash,
    )
    assert prevote.validator == IDS[0] and prevote.verify(VSET)
    assert node.state() == (0, PREVOTE_STEP)

    actions = node.on_vote(vote(1, PREVOTE, 0, A))
    assert broadcasts(actions) == []
    assert node.machine.locked_round == -1

    actions = node.on_vote(vote(2, PREVOTE, 0, A))  # lines 34 and 36
    assert timeout_action(0, PREVOTE_STEP) in actions
    [precommit] = votes_of(actions)
    assert (precommit.type, precommit.round, precommit.block_hash) == (PRECOMMIT, 0, A.hash)
    assert precommit.time > A.header.time
    m = node.machine
    assert (m.locked_round, m.locked_block, m.valid_round, m.valid_block) == (0, A, 0, A)
    assert node.state() == (0, PRECOMMIT_STEP)

    actions = node.on_vote(vote(1, PRECOMMIT, 0, A))
    assert decides(actions) == []
    assert not node.machine.decided

    actions = node.on_vote(vote(2, PRECOMMIT, 0, A))  # line 49
    [decide] = decides(actions)
    assert decide.block == A
    cert = decide.certificate
    cert.verify(CHAIN_ID, VSET, block_time=A.header.time)
    assert (cert.height, cert.round, cert.block_hash) == (1, 0, A.hash)
    assert {s.validator for s in cert.votes} == {IDS[0], IDS[1], IDS[2]}
    assert all(s.time > A.header.time for s in cert.votes)
    assert m.decided

    # the height is closed
    assert node.on_vote(vote(3, PRECOMMIT, 0, A)) == []
    assert node.on_timeout(0, PRECOMMIT_STEP) == []
    assert node.on_proposal(proposal(1, B)) == []


def test_precommit_time_is_later_than_the_block_even_with_a_slow_clock() -> None:
    node = Node(0)
    node.now = BLOCK_TIME - 5_000  # our clock lags behind the block's BFT time
    node.start()
    node.on_proposal(proposal(0, A))
    actions = node.on_votes([vote(1, PREVOTE, 0, A), vote(2, PREVOTE, 0, A)])
    [precommit] = votes_of(actions, PRECOMMIT)
    assert precommit.time == A.header.time + 1
    [decide] = decides(node.on_votes([vote(1, PRECOMMIT, 0, A), vote(2, PRECOMMIT, 0, A)]))
    decide.certificate.verify(CHAIN_ID, VSET, block_time=A.header.time)


# (3. PersistWal before Broadcast is asserted by Node.check on every action list.)


# --- 2. the proposer ----------------------------------------------------------------------


def test_proposer_with_pending_txs_proposes_at_once() -> None:
    node = Node(proposer_index(1, 0), app=FakeApp(proposer=IDS[1], pending=True))
    actions = node.start()
    assert len(node.app.built) == 1
    prop, prevote = broadcasts(actions)
    assert isinstance(prop, Proposal)
    assert (prop.height, prop.round, prop.pol_round, prop.block) == (1, 0, -1, node.app.built[0])
    assert prop.proposer == IDS[1] and prop.verify(VSET)
    assert isinstance(prevote, Vote) and votes_of(actions) == [prevote]
    assert (prevote.round, prevote.block_hash) == (0, prop.block.hash)
    assert schedules(actions) == [timeout_action(0, PROPOSE)]  # no PROPOSE_READY
    assert node.machine.proposals[0] == prop


def test_idle_proposer_proposes_when_propose_ready_fires() -> None:
    node = Node(proposer_index(1, 0))
    actions = node.start()
    assert broadcasts(actions) == [] and node.app.built == []
    assert set(schedules(actions)) == {
        ScheduleTimeout(Timeout(1, 0, PROPOSE_READY), TIMEOUTS.empty_block_interval_ms),
        timeout_action(0, PROPOSE),
    }
    assert node.on_timeout(0, PROPOSE_READY, height=2) == []  # another height
    assert node.app.built == []

    actions = node.on_timeout(0, PROPOSE_READY)
    assert len(node.app.built) == 1
    prop, prevote = broadcasts(actions)
    assert isinstance(prop, Proposal) and prop.block == node.app.built[0]
    assert prevote.block_hash == prop.block.hash  # type: ignore[union-attr]

    # transactions arriving afterwards do not make a second proposal
    node.app.pending = True
    assert broadcasts(node.on_txs_available()) == []
    assert broadcasts(node.on_timeout(0, PROPOSE_READY)) == []
    assert len(node.app.built) == 1


def test_idle_proposer_proposes_when_txs_arrive() -> None:
    node = Node(proposer_index(1, 0))
    node.start()
    node.app.pending = True
    actions = node.on_txs_available()
    assert len(node.app.built) == 1
    prop, _ = broadcasts(actions)
    assert isinstance(prop, Proposal) and prop.round == 0
    assert broadcasts(node.on_timeout(0, PROPOSE_READY)) == []
    assert broadcasts(node.on_txs_available()) == []
    assert len(node.app.built) == 1


def test_non_proposer_does_not_propose_on_txs() -> None:
    node = Node(0, app=FakeApp(proposer=IDS[0], pending=True))
    node.start()
    assert node.on_txs_available() == []
    assert node.app.built == []


def test_proposer_of_a_later_round_proposes_even_when_idle() -> None:
    us = proposer_index(1, 1)
    node = Node(us)
    node.start()
    end_round(node, 0, others=tuple(i for i in range(4) if i != us))
    prop = broadcasts(node.log[-1])[0]
    assert isinstance(prop, Proposal)
    assert (prop.round, prop.pol_round, prop.proposer) == (1, -1, IDS[us])
    assert len(node.app.built) == 1


# --- 4. nil votes, timeouts and the next round -------------------------------------------


def test_invalid_proposal_gets_a_nil_prevote() -> None:
    node = Node(0)
    node.app.invalid.add(A.hash)
    node.start()
    [prevote] = votes_of(node.on_proposal(proposal(0, A)))
    assert prevote.block_hash is None
    assert A.hash in node.app.checked
    # a polka for an invalid block neither locks nor makes us precommit it (line 36)
    actions = node.on_votes([vote(i, PREVOTE, 0, A) for i in (1, 2, 3)])
    assert votes_of(actions, PRECOMMIT) == []
    assert node.machine.locked_round == -1 and node.machine.valid_round == -1


def test_nil_polka_walks_the_round_to_its_end() -> None:
    node = Node(0)
    node.start()
    assert node.on_timeout(1, PROPOSE) == []  # not our round
    assert node.on_timeout(0, PROPOSE, height=2) == []  # not our height

    [prevote] = votes_of(node.on_timeout(0, PROPOSE))  # line 57
    assert (prevote.type, prevote.round, prevote.block_hash) == (PREVOTE, 0, None)
    assert node.state() == (0, PREVOTE_STEP)
    assert votes_of(node.on_timeout(0, PROPOSE)) == []  # a second timeout: no second vote

    assert votes_of(node.on_vote(vote(1, PREVOTE, 0, None))) == []
    actions = node.on_vote(vote(2, PREVOTE, 0, None))  # lines 34 and 44
    assert timeout_action(0, PREVOTE_STEP) in actions
    [precommit] = votes_of(actions)
    assert (precommit.type, precommit.round, precommit.block_hash) == (PRECOMMIT, 0, None)
    assert node.state() == (0, PRECOMMIT_STEP)
    assert votes_of(node.on_timeout(0, PREVOTE_STEP)) == []

    # 2f+1 precommits of anything schedule the precommit timeout, once (line 47)
    assert schedules(node.on_vote(vote(1, PRECOMMIT, 0, None))) == []
    actions = node.on_vote(vote(2, PRECOMMIT, 0, X.hash))
    assert schedules(actions) == [timeout_action(0, PRECOMMIT_STEP)]
    assert schedules(node.on_vote(vote(3, PRECOMMIT, 0, None))) == []
    assert node.state() == (0, PRECOMMIT_STEP)

    actions = node.on_timeout(0, PRECOMMIT_STEP)  # line 65
    assert node.state() == (1, PROPOSE)
    assert schedules(actions) == [timeout_action(1, PROPOSE)]
    assert broadcasts(actions) == []
    assert VSET.proposer(1, 1).key_id != VSET.proposer(1, 0).key_id
    # the new round's proposer is accepted, the old one is not
    assert votes_of(node.on_proposal(proposal(1, A, key=KEYS[proposer_index(1, 0)]))) == []
    [prevote] = votes_of(node.on_proposal(proposal(1, B)))
    assert (prevote.round, prevote.block_hash) == (1, B.hash)


def test_prevote_timeout_gives_a_nil_precommit() -> None:
    node = Node(0)
    node.start()
    node.on_timeout(0, PROPOSE)
    assert votes_of(node.on_timeout(0, PREVOTE_STEP, height=2)) == []
    actions = node.on_votes([vote(1, PREVOTE, 0, X.hash), vote(2, PREVOTE, 0, None)])
    assert timeout_action(0, PREVOTE_STEP) in actions  # 2f+1 prevotes, no polka
    assert votes_of(actions) == []
    assert node.state() == (0, PREVOTE_STEP)
    [precommit] = votes_of(node.on_timeout(0, PREVOTE_STEP))  # line 61
    assert (precommit.type, precommit.round, precommit.block_hash) == (PRECOMMIT, 0, None)
    assert node.state() == (0, PRECOMMIT_STEP)


def test_prevote_timeout_is_scheduled_only_after_2f_plus_1_prevotes() -> None:
    node = Node(0)
    node.start()
    actions = node.on_timeout(0, PROPOSE)
    actions += node.on_vote(vote(1, PREVOTE, 0, None))
    assert Timeout(1, 0, PREVOTE_STEP) not in [s.timeout for s in schedules(actions)]
    actions = node.on_vote(vote(2, PREVOTE, 0, X.hash))
    assert schedules(actions) == [timeout_action(0, PREVOTE_STEP)]
    assert schedules(node.on_vote(vote(3, PREVOTE, 0, None))) == []  # once


def test_prevote_timeout_is_not_scheduled_before_we_prevote() -> None:
    """Line 34 holds only "while step = prevote": 2f+1 prevotes seen in the propose
    step schedule nothing until we prevote."""
    node = Node(0)
    node.start()
    actions = node.on_votes(
        [vote(1, PREVOTE, 0, X.hash), vote(2, PREVOTE, 0, None), vote(3, PREVOTE, 0, B)]
    )
    assert schedules(actions) == []
    assert node.state() == (0, PROPOSE)
    actions = node.on_timeout(0, PROPOSE)
    assert schedules(actions) == [timeout_action(0, PREVOTE_STEP)]
    assert votes_of(actions, PRECOMMIT) == []


# --- 5. locking (lines 22-33) ------------------------------------------------------------


def test_locked_validator_prevotes_nil_for_a_fresh_other_block() -> None:
    node = Node(0)
    lock_on_a_in_round_0(node)
    end_round(node, 0, others=(2, 3))
    [prevote] = votes_of(node.on_proposal(proposal(1, B)))  # line 22, locked on A
    assert (prevote.round, prevote.block_hash) == (1, None)
    assert (node.machine.locked_round, node.machine.locked_block) == (0, A)


def test_locked_validator_prevotes_its_locked_block_proposed_fresh() -> None:
    node = Node(0)
    lock_on_a_in_round_0(node)
    end_round(node, 0, others=(2, 3))
    [prevote] = votes_of(node.on_proposal(proposal(1, A)))  # lockedValue = v
    assert (prevote.round, prevote.block_hash) == (1, A.hash)


def test_locked_validator_prevotes_a_reproposal_of_its_block() -> None:
    node = Node(0)
    lock_on_a_in_round_0(node)
    end_round(node, 0, others=(2, 3))
    [prevote] = votes_of(node.on_proposal(proposal(1, A, pol_round=0)))  # line 28
    assert (prevote.round, prevote.block_hash) == (1, A.hash)


def test_reproposal_waits_for_its_polka() -> None:
    node = Node(0)
    node.start()
    end_round(node, 0, others=(1, 2, 3))
    # B claims a polka in round 0 that we have not seen: no vote until it arrives
    assert votes_of(node.on_proposal(proposal(1, B, pol_round=0))) == []
    assert votes_of(node.on_votes([vote(1, PREVOTE, 0, B), vote(2, PREVOTE, 0, B)])) == []
    [prevote] = votes_of(node.on_vote(vote(3, PREVOTE, 0, B)))
    assert (prevote.round, prevote.block_hash) == (1, B.hash)
    assert node.machine.valid_round == -1 and node.machine.locked_round == -1
    # re-sending repeats the proposal with the prevotes that justify it
    resent = node.machine.resend()
    assert resent[0] == proposal(1, B, pol_round=0)
    assert {vote(i, PREVOTE, 0, B) for i in (1, 2, 3)} <= set(resent)


def test_reproposal_without_its_polka_gets_nil_at_the_propose_timeout() -> None:
    node = Node(0)
    node.start()
    end_round(node, 0, others=(1, 2, 3))
    node.on_proposal(proposal(1, B, pol_round=0))
    node.on_votes([vote(1, PREVOTE, 0, B), vote(2, PREVOTE, 0, B)])
    [prevote] = votes_of(node.on_timeout(1, PROPOSE))
    assert (prevote.round, prevote.block_hash) == (1, None)


def test_polka_from_a_round_at_or_after_the_lock_releases_it() -> None:
    node = Node(0)
    lock_on_a_in_round_0(node)
    end_round(node, 0, others=(2, 3))
    # round 1: no proposal reaches us; two prevotes for B do
    node.on_timeout(1, PROPOSE)
    actions = node.on_votes([vote(1, PREVOTE, 1, B), vote(3, PREVOTE, 1, B)])
    assert timeout_action(1, PREVOTE_STEP) in actions
    [nil] = votes_of(node.on_timeout(1, PREVOTE_STEP))
    assert (nil.type, nil.block_hash) == (PRECOMMIT, None)
    end_round(node, 1, others=(1, 3))
    # round 2: B again with pol_round 1; its polka completes afterwards
    assert votes_of(node.on_proposal(proposal(2, B, pol_round=1))) == []
    [prevote] = votes_of(node.on_vote(vote(2, PREVOTE, 1, B)))  # line 28: 0 <= 1
    assert (prevote.round, prevote.block_hash) == (2, B.hash)
    assert (node.machine.locked_round, node.machine.locked_block) == (0, A)
    # a polka in round 2 moves the lock to B
    [precommit] = votes_of(node.on_votes([vote(1, PREVOTE, 2, B), vote(3, PREVOTE, 2, B)]))
    assert (precommit.type, precommit.round, precommit.block_hash) == (PRECOMMIT, 2, B.hash)
    assert (node.machine.locked_round, node.machine.locked_block) == (2, B)


def test_polka_from_before_the_lock_does_not_release_it() -> None:
    node = Node(0)
    node.start()
    # round 0: we prevote nil; B gets two prevotes in time, a third one late
    node.on_timeout(0, PROPOSE)
    node.on_votes([vote(1, PREVOTE, 0, B), vote(2, PREVOTE, 0, B)])
    node.on_timeout(0, PREVOTE_STEP)
    end_round(node, 0, others=(1, 2))
    node.on_vote(vote(3, PREVOTE, 0, B))  # polka for B in round 0, seen in round 1
    assert node.machine.locked_round == -1
    # round 1: we lock on A
    node.on_proposal(proposal(1, A))
    [precommit] = votes_of(node.on_votes([vote(1, PREVOTE, 1, A), vote(2, PREVOTE, 1, A)]))
    assert precommit.block_hash == A.hash
    assert (node.machine.locked_round, node.machine.locked_block) == (1, A)
    end_round(node, 1, others=(1, 3))
    # round 2: B with pol_round 0 < lockedRound 1
    [prevote] = votes_of(node.on_proposal(proposal(2, B, pol_round=0)))  # line 28
    assert (prevote.round, prevote.block_hash) == (2, None)
    assert (node.machine.locked_round, node.machine.locked_block) == (1, A)


def test_polka_from_the_lock_round_itself_releases_it() -> None:
    """lockedRound <= vr, with equality: a polka for B in the very round we locked A
    (possible only with equivocators; here validators 1 and 2) lets B through."""
    node = Node(0)
    lock_on_a_in_round_0(node)
    end_round(node, 0, others=(2, 3))
    assert votes_of(node.on_proposal(proposal(1, B, pol_round=0))) == []
    actions = node.on_votes([vote(i, PREVOTE, 0, B) for i in (1, 2)])
    assert len(misbehaviours(actions)) == 2
    assert votes_of(actions) == []
    [prevote] = votes_of(node.on_vote(vote(3, PREVOTE, 0, B)))  # line 28: 0 <= 0
    assert (prevote.round, prevote.block_hash) == (1, B.hash)


def test_unlocked_validator_prevotes_a_reproposal_with_a_polka() -> None:
    """The control for the test above: without the lock the same messages give B."""
    node = Node(0)
    node.start()
    node.on_timeout(0, PROPOSE)
    node.on_votes([vote(1, PREVOTE, 0, B), vote(2, PREVOTE, 0, B)])
    node.on_timeout(0, PREVOTE_STEP)
    end_round(node, 0, others=(1, 2))
    node.on_vote(vote(3, PREVOTE, 0, B))
    node.on_timeout(1, PROPOSE)
    node.on_votes([vote(1, PREVOTE, 1, None), vote(2, PREVOTE, 1, None)])
    end_round(node, 1, others=(1, 3))
    [prevote] = votes_of(node.on_proposal(proposal(2, B, pol_round=0)))
    assert (prevote.round, prevote.block_hash) == (2, B.hash)


def test_proposer_reproposes_its_valid_block_with_its_round() -> None:
    us = proposer_index(1, 1)  # validator 2
    node = Node(us)
    node.start()
    node.on_proposal(proposal(0, A))
    others = [i for i in range(4) if i != us]
    node.on_votes([vote(i, PREVOTE, 0, A) for i in others[:2]])
    assert (node.machine.valid_round, node.machine.valid_block) == (0, A)
    actions = node.on_votes([vote(i, PRECOMMIT, 0, None) for i in others[:2]])
    assert timeout_action(0, PRECOMMIT_STEP) in actions
    actions = node.on_timeout(0, PRECOMMIT_STEP)  # lines 14-19
    prop, prevote = broadcasts(actions)
    assert isinstance(prop, Proposal)
    assert (prop.round, prop.pol_round, prop.block) == (1, 0, A)
    assert node.app.built == []
    assert prevote.block_hash == A.hash  # type: ignore[union-attr]
    assert prop in node.machine.resend()
    polka = {
        v.validator
        for v in node.machine.resend()
        if isinstance(v, Vote) and (v.type, v.round, v.block_hash) == (PREVOTE, 0, A.hash)
    }
    assert {IDS[us], *(IDS[i] for i in others[:2])} <= polka


# --- 6. I1 across a crash --------------------------------------------------------------


def test_restore_resends_the_same_prevote_and_signs_no_other() -> None:
    first = Node(0)
    first.start()
    [prevote] = votes_of(first.on_proposal(proposal(0, A)))
    record = first.wal
    assert record is not None and record.votes == (prevote,) and record.step == PREVOTE_STEP

    node = Node(0)
    actions = node.start(wal=record)
    assert votes_of(actions) == [prevote]  # same signature
    assert node.state() == (0, PREVOTE_STEP)
    assert timeout_action(0, PREVOTE_STEP) in actions
    assert votes_of(node.on_proposal(proposal(0, A)), PREVOTE) == []
    assert votes_of(node.on_timeout(0, PROPOSE), PREVOTE) == []
    assert node.machine.signed_votes[(0, PREVOTE)] == prevote


def test_restore_after_precommit_resends_both_votes_and_nothing_else() -> None:
    first = Node(0)
    lock_on_a_in_round_0(first)
    record = first.wal
    assert record is not None and record.step == PRECOMMIT_STEP
    prevote, precommit = (first.machine.signed_votes[(0, t)] for t in (PREVOTE, PRECOMMIT))

    node = Node(0)
    actions = node.start(wal=record)
    assert sorted(votes_of(actions), key=lambda v: v.type) == [precommit, prevote]
    assert (node.machine.locked_round, node.machine.locked_block) == (0, A)
    # messages that would otherwise make it vote change nothing
    later = node.on_proposal(proposal(0, A))
    later += node.on_timeout(0, PROPOSE)
    later += node.on_timeout(0, PREVOTE_STEP)
    later += node.on_votes([vote(i, PREVOTE, 0, None) for i in (1, 2, 3)])
    assert votes_of(later) == []
    # and it still decides
    [decide] = decides(node.on_votes([vote(1, PRECOMMIT, 0, A), vote(2, PRECOMMIT, 0, A)]))
    decide.certificate.verify(CHAIN_ID, VSET, block_time=A.header.time)
    assert precommit.signature in {s.signature for s in decide.certificate.votes}


def test_restored_prevote_is_repeated_instead_of_a_different_one() -> None:
    """A record in PROPOSE step already holding a nil prevote (we crashed in between):
    neither a valid proposal nor its polka makes us sign a prevote for it."""
    nil = vote(0, PREVOTE, 0, None)
    record = WalRecord(
        height=1,
        round=0,
        step=PROPOSE,
        locked_round=-1,
        locked_block=None,
        valid_round=-1,
        valid_block=None,
        votes=(nil,),
        proposals=(),
    )
    node = Node(0)
    assert votes_of(node.start(wal=record)) == [nil]
    actions = node.on_proposal(proposal(0, A))
    assert votes_of(actions) == [nil]  # repeated, not replaced
    actions = node.on_votes([vote(i, PREVOTE, 0, A) for i in (1, 2, 3)])
    assert votes_of(actions, PREVOTE) == []
    assert node.machine.signed_votes[(0, PREVOTE)] == nil


def test_restored_precommit_is_repeated_instead_of_a_different_one() -> None:
    """A record in PREVOTE step already holding a nil precommit: a polka for A
    (line 36) must not produce a precommit for A."""
    prevote = vote(0, PREVOTE, 0, A)
    nil = vote(0, PRECOMMIT, 0, None)
    record = WalRecord(
        height=1,
        round=0,
        step=PREVOTE_STEP,
        locked_round=-1,
        locked_block=None,
        valid_round=-1,
        valid_block=None,
        votes=(nil, prevote),
        proposals=(),
    )
    node = Node(0)
    node.start(wal=record)
    node.on_proposal(proposal(0, A))
    actions = node.on_votes([vote(1, PREVOTE, 0, A), vote(2, PREVOTE, 0, A)])
    assert votes_of(actions) == [nil]  # repeated, not replaced
    assert node.machine.signed_votes[(0, PRECOMMIT)] == nil


def test_proposer_restored_in_propose_step_rebroadcasts_its_proposal() -> None:
    us = proposer_index(1, 0)
    first = Node(us)
    first.start()
    prop, _ = broadcasts(first.on_txs_available())
    assert isinstance(prop, Proposal) and first.wal is not None
    # the record as it was after signing the proposal, before the prevote
    record = dataclasses.replace(first.wal, step=PROPOSE, votes=())

    node = Node(us, app=FakeApp(proposer=IDS[us], pending=True, salt="restarted"))
    actions = node.start(wal=record)
    assert node.app.built == []
    assert [m for m in broadcasts(actions) if isinstance(m, Proposal)] == [prop]
    [prevote] = votes_of(actions)
    assert prevote.block_hash == prop.block.hash
    assert broadcasts(node.on_txs_available()) == []
    assert broadcasts(node.on_timeout(0, PROPOSE_READY)) == []
    assert node.app.built == []
    assert node.machine.proposals[0] == prop


def test_proposer_restored_after_prevoting_resends_proposal_and_prevote() -> None:
    us = proposer_index(1, 0)
    first = Node(us, app=FakeApp(proposer=IDS[us], pending=True))
    sent = broadcasts(first.start())
    assert first.wal is not None
    node = Node(us, app=FakeApp(proposer=IDS[us], pending=True, salt="restarted"))
    actions = node.start(wal=first.wal)
    assert sorted(broadcasts(actions), key=repr) == sorted(sent, key=repr)
    assert node.app.built == []


def test_proposer_restored_without_a_signed_proposal_builds_one() -> None:
    """The control for the two tests above: nothing signed, so it proposes."""
    us = proposer_index(1, 0)
    first = Node(us)
    first.start()
    assert first.wal is not None and first.wal.proposals == ()
    node = Node(us, app=FakeApp(proposer=IDS[us], pending=True))
    actions = node.start(wal=first.wal)
    assert len(node.app.built) == 1
    [prop] = [m for m in broadcasts(actions) if isinstance(m, Proposal)]
    assert prop.block == node.app.built[0]


def test_record_of_another_height_is_not_restored() -> None:
    first = Node(0)
    lock_on_a_in_round_0(first)
    assert first.wal is not None and first.wal.height == 1
    node = Node(0)
    actions = node.start(height=2, wal=first.wal)
    assert votes_of(actions) == []
    m = node.machine
    assert (m.height, m.round, m.step, m.locked_round, m.locked_block) == (2, 0, PROPOSE, -1, None)
    assert m.signed_votes == {}


# --- 7. the write-ahead record ----------------------------------------------------------


def test_wal_record_round_trips_and_restores_lock_and_polka() -> None:
    first = Node(0)
    lock_on_a_in_round_0(first)
    end_round(first, 0, others=(2, 3))
    record = first.wal
    assert record is not None
    assert (record.height, record.round, record.step) == (1, 1, PROPOSE)
    assert (record.locked_round, record.locked_block) == (0, A)
    assert (record.valid_round, record.valid_block) == (0, A)
    assert {v.validator for v in record.polka} == {IDS[0], IDS[1], IDS[2]}
    assert all((v.type, v.round, v.block_hash) == (PREVOTE, 0, A.hash) for v in record.polka)

    data = json.dumps(record.to_wire()).encode()
    back = WalRecord.from_wire(json.loads(data))
    assert back == record

    node = Node(0)
    actions = node.start(wal=back)
    assert schedules(actions) == [timeout_action(1, PROPOSE)]
    assert broadcasts(actions) == []  # nothing signed in round 1 yet
    m = node.machine
    assert (m.round, m.step) == (1, PROPOSE)
    assert (m.locked_round, m.locked_block, m.valid_round, m.valid_block) == (0, A, 0, A)
    assert set(record.polka) <= set(m.resend())
    assert m.wal_record() == record
    # the lock survived: a fresh B gets nil
    [prevote] = votes_of(node.on_proposal(proposal(1, B)))
    assert prevote.block_hash is None


def test_restored_polka_justifies_a_reproposal() -> None:
    first = Node(0)
    lock_on_a_in_round_0(first)
    end_round(first, 0, others=(2, 3))
    assert first.wal is not None
    back = WalRecord.from_wire(json.loads(json.dumps(first.wal.to_wire())))

    node = Node(0)
    node.start(wal=back)
    reproposal = proposal(1, A, pol_round=0)
    [prevote] = votes_of(node.on_proposal(reproposal))  # line 28 needs the polka
    assert (prevote.round, prevote.block_hash) == (1, A.hash)
    resent = node.machine.resend()
    assert resent[0] == reproposal
    assert set(back.polka) <= set(resent)

    # without the polka in the record the same proposal gets no vote
    bare = Node(0)
    bare.start(wal=dataclasses.replace(back, polka=()))
    assert votes_of(bare.on_proposal(reproposal)) == []


# --- 8. round skipping (line 55) ---------------------------------------------------------


def test_f_plus_1_messages_of_a_higher_round_skip_to_it() -> None:
    node = Node(0)
    node.start()
    node.on_vote(vote(1, PREVOTE, 2, None))
    assert node.state() == (0, PROPOSE)
    node.on_vote(vote(1, PRECOMMIT, 2, None))  # same sender again: still f
    assert node.state() == (0, PROPOSE)
    actions = node.on_vote(vote(2, PREVOTE, 2, X.hash))
    assert node.state() == (2, PROPOSE)
    assert timeout_action(2, PROPOSE) in actions


def test_f_messages_of_a_higher_round_do_not_skip() -> None:
    node = Node(0)
    node.start()
    node.on_timeout(0, PROPOSE)
    for r in (1, 2, 5):
        node.on_vote(vote(3, PREVOTE, r, None))
    node.on_vote(vote(3, PRECOMMIT, 5, None))
    assert node.state() == (0, PREVOTE_STEP)


def test_a_proposal_counts_toward_a_round_skip() -> None:
    node = Node(0)
    node.start()
    node.on_proposal(proposal(5, B))  # proposer of round 5 is validator 2
    assert node.machine.round == 0
    actions = node.on_vote(vote(3, PREVOTE, 5, None))
    assert node.machine.round == 5
    [prevote] = votes_of(actions)  # the known proposal is prevoted at once
    assert (prevote.round, prevote.block_hash) == (5, B.hash)


def test_round_skip_to_our_round_makes_us_propose() -> None:
    node = Node(0)  # proposer of round 3
    node.start()
    actions = node.on_votes([vote(1, PREVOTE, 3, None), vote(2, PREVOTE, 3, None)])
    assert node.machine.round == 3
    props = [m for m in broadcasts(actions) if isinstance(m, Proposal)]
    assert [(p.round, p.proposer) for p in props] == [(3, IDS[0])]


def test_messages_of_lower_rounds_do_not_move_the_round() -> None:
    node = Node(0)
    node.start()
    end_round(node, 0, others=(1, 2, 3))
    end_round(node, 1, others=(1, 2, 3))
    node.on_votes([vote(i, PREVOTE, 0, None) for i in (1, 2, 3)])
    node.on_votes([vote(i, PREVOTE, 1, None) for i in (1, 2, 3)])
    assert node.state() == (2, PROPOSE)


# --- 9. equivocation -------------------------------------------------------------------


def test_double_prevote_is_reported_and_counts_for_the_block() -> None:
    node = Node(0)
    node.start()
    node.on_proposal(proposal(0, A))
    nil = vote(3, PREVOTE, 0, None)
    for_a = vote(3, PREVOTE, 0, A)
    assert misbehaviours(node.on_vote(nil)) == []
    actions = node.on_vote(for_a)
    [evidence] = misbehaviours(actions)
    assert (evidence.kind, evidence.validator, evidence.height, evidence.round) == (
        "double_vote",
        IDS[3],
        1,
        0,
    )
    assert (evidence.first, evidence.second) == (nil, for_a)
    assert misbehaviours(node.on_vote(for_a)) == []  # the same vote again is not new evidence
    # us + validator 3 + validator 1 form a polka for A
    [precommit] = votes_of(node.on_vote(vote(1, PREVOTE, 0, A)))
    assert (precommit.type, precommit.block_hash) == (PRECOMMIT, A.hash)


def test_double_prevote_counts_for_nil_too() -> None:
    node = Node(0)
    node.start()
    node.on_proposal(proposal(0, A))  # we prevote A
    node.on_vote(vote(3, PREVOTE, 0, A))
    assert len(misbehaviours(node.on_vote(vote(3, PREVOTE, 0, None)))) == 1
    assert votes_of(node.on_vote(vote(1, PREVOTE, 0, None))) == []
    [precommit] = votes_of(node.on_vote(vote(2, PREVOTE, 0, None)))  # line 44
    assert (precommit.type, precommit.block_hash) == (PRECOMMIT, None)


def test_double_precommit_counts_toward_a_decision() -> None:
    node = Node(0)
    lock_on_a_in_round_0(node)
    node.on_vote(vote(3, PRECOMMIT, 0, None))
    actions = node.on_vote(vote(3, PRECOMMIT, 0, A))
    assert [m.kind for m in misbehaviours(actions)] == ["double_vote"]
    [decide] = decides(node.on_vote(vote(1, PRECOMMIT, 0, A)))
    decide.certificate.verify(CHAIN_ID, VSET, block_time=A.header.time)
    assert {s.validator for s in decide.certificate.votes} == {IDS[0], IDS[1], IDS[3]}


def test_conflicting_vote_for_an_unknown_block_is_ignored() -> None:
    node = Node(0)
    node.start()
    node.on_proposal(proposal(0, A))
    node.on_vote(vote(3, PREVOTE, 0, A))
    before = tally_snapshot(node)
    assert node.on_vote(vote(3, PREVOTE, 0, X)) == []
    assert tally_snapshot(node) == before
    assert X.hash not in node.machine.tallies[(0, PREVOTE)].power


def test_double_proposal_is_reported_and_the_first_is_kept() -> None:
    node = Node(0)
    node.start()
    first, second = proposal(0, A), proposal(0, B)
    [prevote] = votes_of(node.on_proposal(first))
    assert prevote.block_hash == A.hash
    actions = node.on_proposal(second)
    [evidence] = misbehaviours(actions)
    assert (evidence.kind, evidence.validator, evidence.height, evidence.round) == (
        "double_proposal",
        IDS[1],
        1,
        0,
    )
    assert (evidence.first, evidence.second) == (first, second)
    assert broadcasts(actions) == []
    assert node.machine.proposals[0] == first
    assert misbehaviours(node.on_proposal(first)) == []
    # the polka for the first block still locks it
    [precommit] = votes_of(node.on_votes([vote(1, PREVOTE, 0, A), vote(2, PREVOTE, 0, A)]))
    assert precommit.block_hash == A.hash


def test_same_block_with_another_pol_round_is_a_double_proposal() -> None:
    node = Node(0)
    node.start()
    end_round(node, 0, others=(1, 2, 3))
    fresh, claimed = proposal(1, A), proposal(1, A, pol_round=0)
    node.on_proposal(fresh)
    [evidence] = misbehaviours(node.on_proposal(claimed))
    assert (evidence.kind, evidence.first, evidence.second) == ("double_proposal", fresh, claimed)


def test_double_proposal_before_prevoting_keeps_the_first() -> None:
    node = Node(0)
    node.start()
    node.on_timeout(0, PROPOSE)  # prevote nil first, so neither proposal gets a vote
    node.on_proposal(proposal(0, B, key=KEYS[1]))
    [evidence] = misbehaviours(node.on_proposal(proposal(0, A)))
    assert evidence.first.block == B  # type: ignore[union-attr]
    assert node.machine.proposals[0].block == B


# --- 10. messages that must be ignored -------------------------------------------------


def _flip(signature: bytes) -> bytes:
    return bytes([signature[0] ^ 1]) + signature[1:]


BAD_VOTES = {
    "bad signature": lambda: dataclasses.replace(
        vote(2, PREVOTE, 0, A), signature=_flip(vote(2, PREVOTE, 0, A).signature)
    ),
    "signature of another validator": lambda: dataclasses.replace(
        vote(2, PREVOTE, 0, A), validator=IDS[3]
    ),
    "non-validator": lambda: vote(OUTSIDER, PREVOTE, 0, A),
    "other chain": lambda: vote(2, PREVOTE, 0, A, chain_id="another-chain"),
    "other height": lambda: vote(2, PREVOTE, 0, A, height=2),
    "previous height": lambda: vote(2, PREVOTE, 0, A, height=0),
    "too far ahead": lambda: vote(2, PREVOTE, ROUNDS_AHEAD_MAX + 1, A),
}


@pytest.mark.parametrize("kind", sorted(BAD_VOTES))
def test_invalid_vote_is_ignored(kind: str) -> None:
    node = Node(0)
    node.start()
    node.on_proposal(proposal(0, A))
    node.on_vote(vote(1, PREVOTE, 0, A))  # one more prevote for A would lock it
    before = tally_snapshot(node)
    assert node.on_vote(BAD_VOTES[kind]()) == []
    assert tally_snapshot(node) == before
    assert node.machine.locked_round == -1


def test_votes_too_far_ahead_do_not_skip_rounds() -> None:
    node = Node(0)
    node.start()
    far = ROUNDS_AHEAD_MAX + 1
    assert node.on_votes([vote(i, PREVOTE, far, None) for i in (1, 2, 3)]) == []
    assert node.state() == (0, PROPOSE)
    assert (far, PREVOTE) not in node.machine.tallies
    # the bound itself is accepted
    node.on_votes([vote(i, PREVOTE, ROUNDS_AHEAD_MAX, None) for i in (1, 2)])
    assert node.machine.round == ROUNDS_AHEAD_MAX


BAD_PROPOSALS = {
    "bad signature": lambda: dataclasses.replace(
        proposal(0, A), signature=_flip(proposal(0, A).signature)
    ),
    "not the proposer": lambda: proposal(0, A, key=KEYS[2]),
    "outsider": lambda: proposal(0, A, key=OUTSIDER),
    "other height": lambda: proposal(0, make_block("H2", height=2), height=2),
    "block of another height": lambda: proposal(0, make_block("H2", height=2)),
    "pol_round not below round": lambda: proposal(0, A, pol_round=0),
    "too far ahead": lambda: proposal(ROUNDS_AHEAD_MAX + 1, A),
}


@pytest.mark.parametrize("kind", sorted(BAD_PROPOSALS))
def test_invalid_proposal_is_ignored(kind: str) -> None:
    node = Node(0)
    node.start()
    before = tally_snapshot(node)
    assert node.on_proposal(BAD_PROPOSALS[kind]()) == []
    assert tally_snapshot(node) == before
    assert node.machine.proposals == {}
    # the genuine proposal is still accepted afterwards
    [prevote] = votes_of(node.on_proposal(proposal(0, A)))
    assert prevote.block_hash == A.hash


# --- 11. decisions -----------------------------------------------------------------------


def _to_round_1_with_a_late_proposal(node: Node, *, deliver_proposal: bool) -> None:
    node.start()
    node.on_timeout(0, PROPOSE)  # our prevote: nil
    node.on_votes([vote(1, PREVOTE, 1, None), vote(2, PREVOTE, 1, None)])  # line 55
    assert node.machine.round == 1
    if deliver_proposal:
        assert votes_of(node.on_proposal(proposal(0, A))) == []  # an old round: no vote


def test_decides_on_a_quorum_of_an_earlier_round() -> None:
    node = Node(0)
    _to_round_1_with_a_late_proposal(node, deliver_proposal=True)
    actions = node.on_votes([vote(i, PRECOMMIT, 0, A) for i in (1, 2)])
    assert decides(actions) == []
    [decide] = decides(node.on_vote(vote(3, PRECOMMIT, 0, A)))
    assert node.machine.round == 1
    assert decide.block == A and decide.certificate.round == 0
    decide.certificate.verify(CHAIN_ID, VSET, block_time=A.header.time)


def test_decision_waits_for_the_block() -> None:
    node = Node(0)
    _to_round_1_with_a_late_proposal(node, deliver_proposal=False)
    assert decides(node.on_votes([vote(i, PRECOMMIT, 0, A) for i in (1, 2, 3)])) == []
    assert not node.machine.decided
    [decide] = decides(node.on_proposal(proposal(0, A)))
    assert decide.block == A
    decide.certificate.verify(CHAIN_ID, VSET, block_time=A.header.time)


def test_decision_refuses_an_invalid_block() -> None:
    node = Node(0)
    node.app.invalid.add(A.hash)
    node.start()
    node.on_proposal(proposal(0, A))
    assert decides(node.on_votes([vote(i, PRECOMMIT, 0, A) for i in (1, 2, 3)])) == []
    assert not node.machine.decided


def test_precommits_not_later_than_the_block_are_not_counted() -> None:
    node = Node(0)
    lock_on_a_in_round_0(node)  # our precommit for A is valid
    # 2f+1 precommits for A, but one of them is not later than A: no certificate yet
    early = vote(1, PRECOMMIT, 0, A, time=A.header.time)
    assert decides(node.on_votes([early, vote(2, PRECOMMIT, 0, A, time=A.header.time + 1)])) == []
    assert not node.machine.decided
    [decide] = decides(node.on_vote(vote(3, PRECOMMIT, 0, A, time=A.header.time + 2)))
    cert = decide.certificate
    cert.verify(CHAIN_ID, VSET, block_time=A.header.time)
    assert {s.validator for s in cert.votes} == {IDS[0], IDS[2], IDS[3]}


def test_precommits_at_or_before_the_block_time_never_decide() -> None:
    node = Node(0)
    node.start()
    node.on_timeout(0, PROPOSE)  # no precommit of ours for A
    node.on_proposal(proposal(0, A))
    votes = [
        vote(1, PRECOMMIT, 0, A, time=A.header.time - 1),
        vote(2, PRECOMMIT, 0, A, time=A.header.time),
        vote(3, PRECOMMIT, 0, A, time=A.header.time + 1),
    ]
    assert decides(node.on_votes(votes)) == []
    assert not node.machine.decided


def test_certificate_check_rejects_early_votes() -> None:
    """The certificate check the decision relies on refuses a vote at the block's time."""
    node = Node(0)
    lock_on_a_in_round_0(node)
    [decide] = decides(node.on_votes([vote(1, PRECOMMIT, 0, A), vote(2, PRECOMMIT, 0, A)]))
    with pytest.raises(InvalidBlock):
        decide.certificate.verify(
            CHAIN_ID, VSET, block_time=max(s.time for s in decide.certificate.votes)
        )


# --- 12. observers ---------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, OUTSIDER], ids=["keyless", "not-in-set"])
def test_observer_decides_without_sending(key: PrivateKey | None) -> None:
    node = Node(None, key=key)
    node.app.pending = True
    node.start()  # Node.check asserts: no Broadcast, no PersistWal, in every list
    assert not node.machine.is_validator
    node.on_txs_available()
    node.on_proposal(proposal(0, A))
    node.on_votes([vote(i, PREVOTE, 0, A) for i in (1, 2, 3)])
    node.on_timeout(0, PROPOSE)
    node.on_timeout(0, PREVOTE_STEP)
    assert decides(node.on_votes([vote(i, PRECOMMIT, 0, A) for i in (1, 2)])) == []
    [decide] = decides(node.on_vote(vote(3, PRECOMMIT, 0, A)))
    decide.certificate.verify(CHAIN_ID, VSET, block_time=A.header.time)
    assert node.app.built == []
    assert not [a for actions in node.log for a in actions if isinstance(a, Broadcast | PersistWal)]


@pytest.mark.parametrize("key", [None, OUTSIDER], ids=["keyless", "not-in-set"])
def test_observer_follows_rounds_without_sending(key: PrivateKey | None) -> None:
    node = Node(None, key=key)
    node.start()
    node.on_timeout(0, PROPOSE)
    node.on_votes([vote(i, PREVOTE, 0, None) for i in (1, 2, 3)])
    node.on_timeout(0, PREVOTE_STEP)
    node.on_votes([vote(i, PRECOMMIT, 0, None) for i in (1, 2, 3)])
    node.on_timeout(0, PRECOMMIT_STEP)
    assert node.machine.round == 1
    node.on_votes([vote(i, PREVOTE, 4, None) for i in (1, 2)])  # round skip
    assert node.machine.round == 4
    assert node.machine.resend() == []


# --- 13. random interleavings ------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    crashes=st.booleans(),
    invalid=st.sampled_from([None, 0, 1, 2, 3]),
)
def test_random_interleavings_decide_once_and_agree(
    seed: int, crashes: bool, invalid: int | None
) -> None:
    """Four honest validators and an observer under random delivery, duplicates,
    timers, re-sending and (optionally) crash-restarts from the write-ahead record:
    at most one decision per height per node, every certificate verifies, all nodes
    agree, no validator ever signs two messages for one step, and once the network
    turns synchronous every node decides both heights."""
    net = Network(
        random.Random(seed),
        heights=2,
        crashes=crashes,
        invalid_proposers=frozenset() if invalid is None else frozenset({IDS[invalid]}),
    )
    net.run_asynchronous(300)
    assert net.run_synchronous(6_000), "no decision after GST"
    net.check_agreement()
    assert net.synced == 0  # the machines' own decisions sufficed everywhere
    for k in range(5):
        assert sorted(net.decisions[k]) == [1, 2]
    observed = net.decisions[OBSERVER]
    for height, decide in observed.items():
        decide.certificate.verify(CHAIN_ID, VSET, block_time=decide.block.header.time)
        assert decide.block.height == height


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32 - 1), byzantine=st.integers(0, 3), crashes=st.booleans())
def test_random_interleavings_with_an_equivocating_validator(
    seed: int, byzantine: int, crashes: bool
) -> None:
    """One validator (f = 1) equivocates on every vote and proposal: the honest
    nodes still never decide twice or differently, and decide after GST."""
    net = Network(random.Random(seed), heights=2, crashes=crashes, byzantine=byzantine)
    net.run_asynchronous(300)
    assert net.run_synchronous(6_000), "no progress after GST"
    net.check_agreement()
    assert net.equivocations > 0
    for k in net.honest:
        assert sorted(net.committed[k]) == [1, 2]


def test_observer_sees_only_honest_messages_in_random_order() -> None:
    """One machine fed every message of a recorded honest run, shuffled per seed."""
    net = Network(random.Random(7), heights=1)
    net.run_asynchronous(200)
    assert net.run_synchronous(6_000)
    messages: list[Proposal | Vote] = []
    for node in net.nodes[:4]:
        for actions in node.log:
            messages += broadcasts(actions)
    decided = net.decisions[OBSERVER][1].block
    for seed in range(20):
        rng = random.Random(seed)
        order = messages[:]
        rng.shuffle(order)
        observer = Node(None, app=FakeApp())
        observer.start()
        found = []
        for msg in order:
            if isinstance(msg, Proposal):
                found += decides(observer.on_proposal(msg))
            else:
                found += decides(observer.on_vote(msg))
        assert len(found) == 1
        assert found[0].block == decided
        found[0].certificate.verify(CHAIN_ID, VSET, block_time=decided.header.time)
