"""A lying gateway against the SDK's offline checks (each case was found in review and
once accepted): another transaction's proof, another key's absence, another chain."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from services.composition import build_application
from services.ledger.core import merkle
from services.ledger.core.blocks import Block, tx_leaf_hashes
from services.ledger.core.certificate import PRECOMMIT, CommitCertificate, Vote
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.replica import ChainTip, Replica
from services.ledger.core.state import state_key
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.core.validators import Validator, ValidatorSet
from services.ledger.sim.testnet import GENESIS_TIME, make_testnet
from services.sdk import proofs
from services.sdk.client import Client

NOW = GENESIS_TIME


def certify(net: Any, block: Block) -> CommitCertificate:
    votes = {k.key_id: Vote.sign(k, PRECOMMIT, net.genesis.chain_id, block.height, 0,
                                 block.hash, block.header.time + 1 + i)
             for i, k in enumerate(net.validator_keys)}
    return CommitCertificate.from_votes(votes)


def chain(chain_id: str = "ecosphere-sim", txs: tuple[Transaction, ...] = ()
          ) -> tuple[Any, Replica, Block, CommitCertificate]:
    net = make_testnet(chain_id=chain_id)
    app = build_application()
    replica = Replica(genesis=net.genesis, app=app, key=net.validator_keys[0],
                      tip=ChainTip.genesis(net.genesis, app))
    proposer_id = net.genesis.validators.proposer(1, 0).key_id
    proposer = Replica(genesis=net.genesis, app=app,
                       key=next(k for k in net.validator_keys if k.key_id == proposer_id),
                       tip=ChainTip.genesis(net.genesis, app))
    for tx in txs:
        proposer.submit(tx, NOW)
    block = proposer.build_proposal_block(1, 0, NOW)
    certificate = certify(net, block)
    replica.apply_certified(block, certificate, NOW)
    return net, replica, block, certificate


def anchor(net: Any, nonce: int) -> Transaction:
    return sign_transaction(net.client_keys[0], chain_id=net.genesis.chain_id,
                            kind="notary.anchor", nonce=nonce,
                            payload={"digest": f"{nonce + 1:064x}"}, created_at=NOW)


def gateway_answering(net: Any, answer: dict[str, Any]) -> Client:
    client = Client("http://gateway.invalid", genesis=net.genesis)
    client.call = lambda method, path, **kw: dict(answer)  # type: ignore[method-assign]
    return client


def state_answer(replica: Replica, block: Block, certificate: CommitCertificate,
                 key: str) -> dict[str, Any]:
    raw = replica.tip.state.get(state_key(key))
    return {"key": key, "value": None if raw is None else json.loads(raw),
            "height": block.height, "header": block.header.to_wire(),
            "certificate": certificate.to_wire(),
            "proof": replica.tip.state.prove(state_key(key)).to_wire()}


def test_the_proof_of_another_transaction_is_refused() -> None:
    net = make_testnet()
    committed, asked = anchor(net, 0), anchor(net, 1)
    net, _, block, certificate = chain(txs=(committed,))
    assert block.txs == (committed,)
    proof = merkle.InclusionProof(0, 1, merkle.inclusion_proof(tx_leaf_hashes(block.txs), 0))
    answer = {"status": "committed", "height": 1, "header": block.header.to_wire(),
              "certificate": certificate.to_wire(), "proof": proof.to_wire(),
              "transaction": committed.to_wire()}  # and no tx_hash
    client = gateway_answering(net, answer)
    assert client.transaction(committed.hash.hex(), verify=True)["status"] == "committed"
    with pytest.raises(proofs.ProofError, match="not"):
        client.transaction(asked.hash.hex(), verify=True)


def test_an_absence_proof_of_another_key_is_refused() -> None:
    net, replica, block, certificate = chain()
    present = f"consortium/key/{net.admin_keys[0].key_id}"
    answer = state_answer(replica, block, certificate, "consortium/key/nobody")
    client = gateway_answering(net, answer)
    with pytest.raises(proofs.ProofError, match="is about"):
        client.state(present, verify=True)
    honest = gateway_answering(net, state_answer(replica, block, certificate, present))
    assert honest.state(present, verify=True) is not None
    with pytest.raises(proofs.ProofError, match="older"):
        honest.state(present, verify=True, min_height=2)


def test_blocks_of_another_chain_with_the_same_validators_prove_nothing() -> None:
    production = make_testnet(chain_id="ecosphere-prod")
    staging, replica, block, certificate = chain("ecosphere-staging")
    assert production.genesis.validators.hash == staging.genesis.validators.hash
    key = f"consortium/key/{staging.admin_keys[0].key_id}"
    client = gateway_answering(production, state_answer(replica, block, certificate, key))
    with pytest.raises(proofs.ProofError, match="belongs to chain"):
        client.state(key, verify=True)


def test_a_validator_set_installed_on_another_chain_is_not_trusted() -> None:
    production = make_testnet(chain_id="ecosphere-prod")
    staging, replica, _, _ = chain("ecosphere-staging")
    attacker = PrivateKey.derive("attacker")
    their_set = ValidatorSet.of([Validator(attacker.key_id, attacker.public.raw, 1,
                                           "operator")])
    block = replica.build_proposal_block(2, 0, NOW)
    header = dataclasses.replace(block.header, next_validators_hash=their_set.hash)
    forged = Block(header, block.txs, block.last_commit)
    certified = {"block": {"header": header.to_wire()},
                 "certificate": certify(staging, forged).to_wire()}
    trust = proofs.ValidatorTrust(production.genesis)
    with pytest.raises(proofs.ProofError, match="belongs to chain"):
        trust.follow(their_set.hash,
                     lambda _: {"validators": their_set.to_wire(), "first_height": 3},
                     lambda height: certified if height == 2 else None)


def test_a_malformed_answer_is_a_proof_error() -> None:
    net = make_testnet()
    trusted = net.genesis.validators
    answers: list[dict[str, Any]] = [{"header": {}}, {"header": {}, "certificate": {}}, {},
                                     {"header": 3}]
    for answer in answers:
        with pytest.raises(proofs.ProofError):
            proofs.verify_state_value(answer, trusted)
        with pytest.raises(proofs.ProofError):
            proofs.verify_transaction(answer, trusted, {})
