"""A stopped host never swallows a transaction: a client must hear that it was not taken."""

from __future__ import annotations

import pytest

from services.ledger.core.errors import Unavailable, UpgradeRequired
from services.ledger.sim.simulator import SimConfig, Simulation


def test_a_stopped_host_refuses_submissions_and_says_why() -> None:
    sim = Simulation(1, SimConfig(replicas=4, byzantine=0, faults=False, txs=0))
    node = sim.nodes[0]
    node.boot()
    assert node.host is not None
    tx = sim._make_tx()
    node.host.submit(tx)  # running: taken
    node.host.stopped = True
    with pytest.raises(Unavailable) as stopped:
        node.host.submit(sim._make_tx())
    assert stopped.value.code == "replica_stopped"
    halt = UpgradeRequired(2, 10, (1,))
    node.host.halted = halt
    with pytest.raises(UpgradeRequired) as halted:
        node.host.submit(sim._make_tx())
    assert halted.value is halt
