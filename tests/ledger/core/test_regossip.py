"""Re-gossip: a transaction a replica accepted reaches the validators, even when the
batch that carried it was lost (issue 10: a broker drop wedged senders for an hour)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.composition import build_application
from services.ledger.core.regossip import Regossip, RegossipLimits
from services.ledger.core.replica import (
    GOSSIP,
    Action,
    Broadcast,
    ChainTip,
    Replica,
    ReplicaConfig,
)
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.core.wire import open_envelope
from services.ledger.sim.testnet import GENESIS_TIME, make_testnet

NOW = GENESIS_TIME


def tx_batches(actions: Sequence[Action], chain_id: str) -> list[list[str]]:
    """The transaction hashes of every ``txs`` broadcast among ``actions``."""
    out = []
    for action in actions:
        if isinstance(action, Broadcast) and action.kind == "txs":
            env = open_envelope(action.data, chain_id=chain_id, size_max=1 << 26)
            out.append([Transaction.from_wire(t).hash.hex() for t in env.body["txs"]])
    return out


def gateway_replica() -> tuple[Replica, list[Transaction]]:
    net = make_testnet(observers=1)
    app = build_application()
    replica = Replica(genesis=net.genesis, app=app, key=net.observer_keys[0],
                      tip=ChainTip.genesis(net.genesis, app))
    txs = [sign_transaction(net.client_keys[0], chain_id=net.genesis.chain_id,
                            kind="notary.anchor", nonce=n,
                            payload={"digest": f"{n + 1:064x}"}, created_at=NOW)
           for n in range(3)]
    return replica, txs


class _Pool:
    def __init__(self, txs: Sequence[Transaction]) -> None:
        self.txs = {t.hash: t for t in txs}

    def get(self, tx_hash: bytes) -> Transaction | None:
        return self.txs.get(tx_hash)


def _tx(n: int) -> Transaction:
    net = make_testnet()
    return sign_transaction(net.client_keys[0], chain_id=net.genesis.chain_id,
                            kind="notary.anchor", nonce=n, payload={"digest": f"{n + 1:064x}"},
                            created_at=NOW)


def test_a_pending_transaction_is_resent_with_doubling_waits_up_to_the_cap() -> None:
    limits = RegossipLimits(resend_after_ms=1_000, resend_max_ms=4_000)
    schedule = Regossip(limits)
    tx = _tx(0)
    pool = _Pool([tx])
    schedule.track(tx.hash, 0)
    resent_at = [t for t in range(0, 20_001, 100) if schedule.due(t, pool.get)]
    assert resent_at == [1_000, 3_000, 7_000, 11_000, 15_000, 19_000]


def test_a_committed_transaction_is_forgotten_and_never_resent() -> None:
    schedule = Regossip(RegossipLimits(resend_after_ms=1_000, resend_max_ms=1_000))
    tx = _tx(0)
    pool = _Pool([tx])
    schedule.track(tx.hash, 0)
    del pool.txs[tx.hash]  # committed: it left the mempool
    assert schedule.due(5_000, pool.get) == []
    assert len(schedule) == 0


def test_a_failed_publish_makes_everything_due_at_once_but_not_every_tick() -> None:
    limits = RegossipLimits(resend_after_ms=2_000, resend_max_ms=16_000)
    schedule = Regossip(limits)
    txs = [_tx(n) for n in range(3)]
    pool = _Pool(txs)
    for tx in txs:
        schedule.track(tx.hash, 0)
    schedule.publish_failed()
    assert {t.hash for t in schedule.due(100, pool.get)} == {t.hash for t in txs}
    schedule.publish_failed()  # the broker is still away: the failures keep coming
    assert schedule.due(600, pool.get) == []  # not again before resend_after_ms
    assert {t.hash for t in schedule.due(2_100, pool.get)} == {t.hash for t in txs}


def test_a_failed_publish_keeps_each_transactions_backoff() -> None:
    """A broker failing for a long time must not reset every wait to the shortest."""
    schedule = Regossip(RegossipLimits(resend_after_ms=1_000, resend_max_ms=8_000))
    tx = _tx(0)
    pool = _Pool([tx])
    schedule.track(tx.hash, 0)
    for t in (1_000, 3_000, 7_000):  # waits 1 s, 2 s, 4 s: the next is 8 s
        assert schedule.due(t, pool.get) == [tx]
    schedule.publish_failed()
    assert schedule.due(7_100, pool.get) == [tx]  # due at once...
    assert schedule._interval[tx.hash] == 8_000  # ...with its backoff kept


def test_nothing_is_resent_while_the_broker_is_away_and_everything_once_it_is_back() -> None:
    schedule = Regossip(RegossipLimits(resend_after_ms=1_000, resend_max_ms=1_000))
    txs = [_tx(n) for n in range(3)]
    pool = _Pool(txs)
    for tx in txs:
        schedule.track(tx.hash, 0)
    schedule.connection(False)
    assert schedule.paused
    assert all(schedule.due(t, pool.get) == [] for t in range(1_000, 60_000, 1_000))
    schedule.publish_failed()  # failures while away change nothing
    assert schedule.due(60_000, pool.get) == []
    schedule.connection(True)
    assert {t.hash for t in schedule.due(60_001, pool.get)} == {t.hash for t in txs}
    assert schedule.due(60_002, pool.get) == []


def test_resends_per_tick_are_bounded_and_the_rest_follow() -> None:
    schedule = Regossip(RegossipLimits(resend_after_ms=10, resend_max_ms=10,
                                       per_tick_max=2))
    txs = [_tx(n) for n in range(5)]
    pool = _Pool(txs)
    for tx in txs:
        schedule.track(tx.hash, 0)
    assert [len(schedule.due(t, pool.get)) for t in (10, 10, 10)] == [2, 2, 1]


def test_tracking_is_bounded() -> None:
    schedule = Regossip(RegossipLimits(tracked_max=4))
    txs = [_tx(n) for n in range(10)]
    for i, tx in enumerate(txs):
        schedule.track(tx.hash, i)
    assert len(schedule) <= 4
    # the most recent ones are still tracked (the oldest gave way)
    assert txs[-1].hash in schedule._interval


@pytest.mark.parametrize("bad", [dict(resend_after_ms=0), dict(resend_after_ms=5,
                                                                resend_max_ms=4),
                                 dict(per_tick_max=0), dict(tracked_max=0)])
def test_limits_are_checked(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RegossipLimits(**bad)


def test_a_batch_lost_on_the_way_is_gossiped_again_until_it_commits() -> None:
    """The regression: the gateway's replica accepts, its batch is lost, and no later
    tick ever sent it again (the sender stayed wedged behind the gap)."""
    replica, txs = gateway_replica()
    chain_id = replica.chain_id
    for tx in txs:
        replica.submit(tx, NOW)  # the batch these produce is "lost": we drop the actions
    after = replica.config.regossip.resend_after_ms
    out = replica.on_timer(GOSSIP, NOW + after)
    assert tx_batches(out, chain_id) == [[t.hash.hex() for t in txs]]
    # still not committed: sent again later, with a longer wait
    assert tx_batches(replica.on_timer(GOSSIP, NOW + after + 1), chain_id) == []
    assert tx_batches(replica.on_timer(GOSSIP, NOW + 3 * after), chain_id)
    assert replica.regossip.resent == 6


def test_a_failed_publish_of_transactions_resends_them_at_the_next_tick() -> None:
    replica, txs = gateway_replica()
    for tx in txs:
        replica.submit(tx, NOW)
    replica.publish_failed("txs")
    out = replica.on_timer(GOSSIP, NOW + 1)
    assert [len(b) for b in tx_batches(out, replica.chain_id)] == [3]
    replica.publish_failed("vote")  # consensus re-sends its own messages
    assert tx_batches(replica.on_timer(GOSSIP, NOW + 600), replica.chain_id) == []


def test_resent_batches_respect_the_batch_limit() -> None:
    replica, txs = gateway_replica()
    replica.config = ReplicaConfig(tx_batch_txs_max=2)
    for tx in txs:
        replica.submit(tx, NOW)
    replica.publish_failed("txs")
    batches = tx_batches(replica.on_timer(GOSSIP, NOW + 1), replica.chain_id)
    assert [len(b) for b in batches] == [2, 1]
