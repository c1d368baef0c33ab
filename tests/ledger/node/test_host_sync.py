"""A host answers a sync request within the receiver's message limit."""

from __future__ import annotations

import dataclasses
import json

from services.ledger.core.replica import ChainTip, Replica, ServeSync
from services.ledger.node.host import Host
from services.ledger.sim.simulator import SimConfig, Simulation


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def send(self, peer: str, data: bytes) -> None:
        self.messages.append((peer, data))

    def broadcast(self, data: bytes, kind: str) -> None:
        pass


def test_sync_replies_stop_at_the_byte_budget_but_always_carry_a_block() -> None:
    sim = Simulation(5, SimConfig(faults=False, byzantine=0, txs=40))
    assert sim.run().violation is None
    source = sim.honest[0].store
    height = source.height()
    assert height >= 4
    sizes = [sum(map(len, source.block_bytes(h) or (b"",))) for h in range(1, height + 1)]
    net = sim.testnet

    def serve(limit: int) -> int:
        replica = Replica(genesis=net.genesis, app=sim.app, key=net.validator_keys[0],
                          tip=ChainTip.genesis(net.genesis, sim.app))
        replica.config = dataclasses.replace(replica.config, message_bytes_max=limit)
        sent = Sent()
        host = Host(replica=replica, store=source, transport=sent,
                    timers=None, clock=lambda: 0)  # type: ignore[arg-type]
        host._serve_sync(ServeSync("peer", 1, height))
        assert len(sent.messages) == 1
        envelope = json.loads(sent.messages[0][1])
        return len(envelope["body"]["blocks"])

    assert serve(64 * 1024 * 1024) == height
    two = sizes[0] + sizes[1]
    assert serve(2 * two) == 2  # budget is half the message limit
    assert serve(1024) == 1  # a block bigger than the budget still goes alone
