"""A replica under hostile messages and transactions (each case was found in review and
once crashed a replica, grew its memory, or wedged a height)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.composition import build_application
from services.ledger.core.consensus.messages import PREVOTE, Timeout
from services.ledger.core.encoding import INT_MAX, encode
from services.ledger.core.errors import MempoolRejected, Rejected
from services.ledger.core.execution import Application
from services.ledger.core.replica import Action, Broadcast, ChainTip, Replica
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.core.wire import open_envelope, seal
from services.ledger.sim.testnet import GENESIS_TIME, make_testnet
from services.ledger.sim.testnet import Testnet as Net

NOW = GENESIS_TIME


def network(observers: int = 1) -> tuple[Net, Application, list[Replica]]:
    net = make_testnet(observers=observers)
    app = build_application()
    return net, app, [Replica(genesis=net.genesis, app=app, key=k,
                              tip=ChainTip.genesis(net.genesis, app))
                      for k in net.validator_keys]


def anchor(net: Net, nonce: int = 0, created_at: int = NOW) -> Transaction:
    return sign_transaction(net.client_keys[0], chain_id=net.genesis.chain_id,
                            kind="notary.anchor", nonce=nonce,
                            payload={"digest": f"{nonce + 1:064x}"}, created_at=created_at)


def broadcasts(actions: Sequence[Action], kind: str) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, Broadcast) and a.kind == kind]


def test_a_sender_name_that_is_no_key_id_is_refused_and_not_remembered() -> None:
    net, _, replicas = network()
    replica = replicas[0]
    for sender in ("\u00e9", "x" * 32, *(f"junk{i}" for i in range(2_000))):
        message = {"body": {}, "chain_id": net.genesis.chain_id, "from": sender,
                   "signature": "00" * 64, "type": "vote"}
        assert replica.on_message(encode(message), NOW) == []  # never raises
        assert replica.last_rejection == "unknown_sender"
    assert len(replica._node_keys) == 0  # misses are not cached


def test_a_relayed_proposal_with_another_body_is_refused_and_the_real_one_decides() -> None:
    """The proposer signs the header; an observer pairs it with an empty body. The
    victim refuses that message without judging the block, then accepts the real one."""
    net, _, replicas = network()
    chain_id = net.genesis.chain_id
    proposer_id = net.genesis.validators.proposer(1, 0).key_id
    proposer = next(r for r in replicas if r.key is not None and r.key.key_id == proposer_id)
    victim = next(r for r in replicas if r is not proposer)
    for replica in replicas:
        replica.start(NOW)
    tx = anchor(net)
    victim.submit(tx, NOW)
    real = broadcasts(proposer.submit(tx, NOW), "proposal")[0]
    body = dict(open_envelope(real, chain_id=chain_id, size_max=10**8).body)
    assert len(body["tx_leaves"]) == 1
    forged = seal(net.observer_keys[0], chain_id, "compact_proposal", {**body, "tx_leaves": []})
    assert broadcasts(victim.on_message(forged, NOW + 1), "vote") == []
    assert victim.last_rejection == "body_mismatch"
    votes = broadcasts(victim.on_message(real, NOW + 2), "vote")
    assert votes and victim.rejections["body_mismatch"] == 1
    prevote = open_envelope(votes[0], chain_id=chain_id, size_max=10**8).body
    assert prevote["type"] == "prevote" and prevote["block_hash"] is not None


def test_a_payload_the_contract_trips_over_is_refused_with_a_code() -> None:
    net, _, replicas = network()
    replicas[0].start(NOW)
    tx = sign_transaction(net.admin_keys[0], chain_id=net.genesis.chain_id,
                          kind="consortium.propose", nonce=0,
                          payload={"action": {"type": []}}, created_at=NOW)
    with pytest.raises(Rejected) as refused:
        replicas[0].submit(tx, NOW)
    assert refused.value.code == "bad_payload"
    replicas[0].on_timer(Timeout(1, 0, PREVOTE), NOW + 5_000)  # nothing left half-done


def test_transactions_dated_beyond_what_a_block_accepts_never_enter_the_mempool() -> None:
    net, _, replicas = network()
    replica = replicas[0]
    replica.start(NOW)
    params = net.genesis.params
    for created_at, code in ((INT_MAX, "too_early"), (NOW + params.tx_future_ms + 1,
                                                      "too_early"),
                             (NOW - params.tx_ttl_ms - 1, "expired")):
        with pytest.raises(MempoolRejected) as refused:
            replica.submit(anchor(net, nonce=1, created_at=created_at), NOW)
        assert refused.value.code == code
    replica.submit(anchor(net, nonce=1, created_at=NOW + params.tx_future_ms), NOW)
    assert len(replica.mempool) == 1


def test_next_height_junk_is_bounded_per_sender() -> None:
    net, _, replicas = network()
    replica = replicas[0]
    replica.start(NOW)
    chain_id = net.genesis.chain_id
    author = net.validator_keys[1].key_id
    for i in range(5_000):
        body = {"type": "prevote", "chain_id": chain_id, "height": 2, "round": i % 1_000,
                "block_hash": None, "time": i, "validator": author, "signature": "00" * 64}
        replica.on_message(seal(net.observer_keys[0], chain_id, "vote", body), NOW)
    assert len(replica._future) == replica.config.future_per_sender_max
    assert replica.rejections["future_buffer_full"] == 5_000 - len(replica._future)


def test_a_peer_that_claims_to_be_far_ahead_and_answers_emptily_cannot_stall_catch_up(
        ) -> None:
    from services.ledger.core.certificate import PRECOMMIT, CommitCertificate, Vote
    from services.ledger.core.replica import GOSSIP, Send

    net, _, replicas = network()
    lagging, byzantine, honest, other = replicas
    chain_id = net.genesis.chain_id
    blocks = []
    for _ in range(5):  # honest and other commit five blocks without the lagging one
        block = honest.build_proposal_block(honest.height, 0, NOW)
        votes = {k.key_id: Vote.sign(k, PRECOMMIT, chain_id, block.height, 0, block.hash,
                                     block.header.time + 1 + i)
                 for i, k in enumerate(net.validator_keys)}
        certificate = CommitCertificate.from_votes(votes)
        for replica in (honest, other):
            replica.apply_certified(block, certificate, NOW)
        blocks.append((block, certificate))
    assert byzantine.key is not None and honest.key is not None
    lagging.start(NOW)

    def status(key: object, height: int) -> bytes:
        return seal(key, chain_id, "status", {"height": height, "round": 0})  # type: ignore[arg-type]

    actions = lagging.on_message(status(byzantine.key, 10**9), NOW)
    t = NOW
    for step in range(50):
        t += 100
        actions += lagging.on_message(status(honest.key, 5), t)
        if step % 5 == 0:
            actions += lagging.on_timer(GOSSIP, t)
        requests = [a for a in actions if isinstance(a, Send)
                    and open_envelope(a.data, chain_id=chain_id,
                                      size_max=10**8).type == "sync_request"]
        actions = []
        for request in requests:
            if request.peer == byzantine.key.key_id:  # at once, with nothing
                actions += lagging.on_message(
                    seal(byzantine.key, chain_id, "sync_response", {"blocks": []}), t)
                actions += lagging.on_message(status(byzantine.key, 10**9), t)
            elif request.peer == honest.key.key_id:
                actions += lagging.on_message(honest.sync_response(blocks), t)
        if lagging.tip.height == 5:
            break
    assert lagging.tip.height == 5


def test_a_full_mempool_refuses_before_paying_for_the_signature(monkeypatch) -> None:
    """Room is checked before the signature: a flood of forged transactions at a full
    mempool costs no verification."""
    from services.ledger.core import crypto
    from services.ledger.core.mempool import MempoolLimits
    from services.ledger.core.replica import ReplicaConfig

    net = make_testnet()
    app = build_application()
    replica = Replica(genesis=net.genesis, app=app, key=net.validator_keys[0],
                      tip=ChainTip.genesis(net.genesis, app),
                      config=ReplicaConfig(mempool=MempoolLimits(txs_max=1)))
    replica.submit(anchor(net, 0), NOW)
    calls = []
    real_verify = crypto.verify

    def counting(*args: object) -> bool:
        calls.append(args)
        return real_verify(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(crypto, "verify", counting)
    forged = anchor(net, 1)
    forged = Transaction.from_wire({**forged.to_wire(), "signature": "00" * 64})
    with pytest.raises(MempoolRejected) as refused:
        replica.submit(forged, NOW)
    assert refused.value.code == "mempool_full" and calls == []


def test_static_checks_judge_by_the_composition_of_the_next_height() -> None:
    """A kind of a composition the chain has not reached is refused at admission with
    unknown_kind, whatever later versions this code knows."""
    net = make_testnet(composition=1)
    app = build_application()  # knows every version
    assert len(app.versions) > 1
    replica = Replica(genesis=net.genesis, app=app, key=net.validator_keys[0],
                      tip=ChainTip.genesis(net.genesis, app))
    key = net.client_keys[0]
    tx = sign_transaction(key, chain_id=net.genesis.chain_id, kind="privacy.register_key",
                          nonce=0, payload={"key": "00" * 32}, created_at=NOW)
    with pytest.raises(Rejected) as refused:
        replica.submit(tx, NOW)
    assert refused.value.code == "unknown_kind"


def test_gossip_batches_stay_inside_the_receivers_message_limit() -> None:
    """Batches are cut by bytes as well as by count: a batch of many large transactions
    would otherwise be refused whole by every peer (message too large)."""
    from services.ledger.core.replica import FLUSH_TXS, ReplicaConfig

    net = make_testnet()
    app = build_application()
    config = ReplicaConfig(message_bytes_max=4 * 1024, tx_batch_txs_max=1_000)
    sender, receiver = (Replica(genesis=net.genesis, app=app, key=k, config=config,
                                tip=ChainTip.genesis(net.genesis, app))
                        for k in net.validator_keys[:2])
    for nonce in range(40):
        tx = sign_transaction(net.client_keys[0], chain_id=net.genesis.chain_id,
                              kind="notary.anchor", nonce=nonce, created_at=NOW,
                              payload={"digest": f"{nonce + 1:064x}", "label": "x" * 120})
        sender.submit(tx, NOW)
    batches = broadcasts(sender.on_timer(FLUSH_TXS, NOW), "txs")
    assert len(batches) > 1
    for data in batches:
        assert len(data) <= config.message_bytes_max
        receiver.on_message(data, NOW)
        assert receiver.last_rejection is None
    assert len(receiver.mempool) == 40
