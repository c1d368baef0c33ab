"""Regressions found by review of the consensus machine (each fixed)."""

from __future__ import annotations

from services.ledger.core.certificate import PRECOMMIT
from services.ledger.core.consensus.messages import PROPOSE_READY
from tests.ledger.core.consensus.harness import (
    IDS,
    Node,
    broadcasts,
    decides,
    make_block,
    proposal,
    proposer_index,
    vote,
    votes_of,
)


def test_proposal_for_another_chain_is_ignored() -> None:
    """It was stored and prevoted, and the genuine proposal then looked like a double."""
    me = (proposer_index(1, 0) + 1) % 4
    node = Node(me)
    node.start()
    foreign = make_block("foreign", chain_id="ecosphere-other")
    assert node.on_proposal(proposal(0, foreign, chain_id="ecosphere-other")) == []
    genuine = make_block("genuine")
    out = node.on_proposal(proposal(0, genuine))
    assert [v.block_hash for v in votes_of(out)] == [genuine.hash]


def test_propose_ready_timeout_does_not_make_a_non_proposer_propose() -> None:
    me = (proposer_index(1, 0) + 1) % 4
    node = Node(me)
    node.start()
    assert broadcasts(node.on_timeout(0, PROPOSE_READY)) == []


def test_a_decided_twin_block_is_committed_without_catch_up() -> None:
    """An equivocating proposer shows us block A; the others decide its twin B.

    B's proposal reaches us after A's, as a conflicting proposal; we must keep B
    so that the quorum of precommits for B decides it here too."""
    proposer = proposer_index(1, 0)
    me = (proposer + 1) % 4
    node = Node(me)
    node.start()
    a, b = make_block("twin-a"), make_block("twin-b", proposer=IDS[proposer])
    node.on_proposal(proposal(0, a))
    node.on_proposal(proposal(0, b))
    others = [i for i in range(4) if i != me]
    out = node.on_votes(vote(i, PRECOMMIT, 0, b) for i in others)
    assert [d.block.hash for d in decides(out)] == [b.hash]
