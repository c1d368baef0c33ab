"""Regression (found by review, now fixed): unequal powers could keep a round's proposer."""

import pytest

from tests.ledger.core.test_validators import make_set


@pytest.mark.parametrize("powers", [[2, 1], [1, 1, 1, 10], [5, 1, 1]])
def test_new_round_always_moves_to_another_proposer(powers):
    # validators.py docstring: "a new round always moves to another proposer (when there
    # is more than one validator)"
    vs = make_set(powers)
    for h in range(1, 3 * vs.total_power):
        for r in range(3):
            assert vs.proposer(h, r + 1) != vs.proposer(h, r), (h, r)
