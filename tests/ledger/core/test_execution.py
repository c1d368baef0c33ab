"""Tests for the state machine framework: dynamic checks, rollback, limits (execution.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from services.composition import build_application
from services.ledger.core.contract import Contract, TxContext
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import InvalidBlock, InvalidTransaction, TransactionFailed
from services.ledger.core.execution import Application
from services.ledger.core.genesis import ChainParams
from services.ledger.core.notary import NotaryContract
from services.ledger.core.state import StateView
from services.ledger.core.transactions import Transaction
from services.ledger.sim.testnet import make_testnet
from tests.ledger.core.conftest import Chain, event_types, rejected_codes


def digest(n: int) -> str:
    return f"{n:064x}"


def anchor(chain: Chain, key: PrivateKey, n: int = 0, **kw: Any) -> Transaction:
    return chain.tx(key, "notary.anchor", {"digest": digest(n)}, **kw)


# --------------------------------------------------------------------------- assembly


def test_application_contracts():
    app = build_application()
    assert [c.name for c in app.contracts] == ["consortium", "notary", "trace", "privacy",
                                              "trade"]
    assert app.versions == (1, 2, 3)


class Named(Contract):
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.mark.parametrize("names", [["consortium"], ["a", "a"], ["nonce"], ["deadline"]])
def test_application_refuses_bad_contract_names(names):
    with pytest.raises(ValueError):
        Application([Named(n) for n in names])


# --------------------------------------------------------------------------- dynamic checks


def test_valid_block(chain, testnet):
    c = testnet.client_keys[0]
    result = chain.execute([anchor(chain, c, 1), anchor(chain, c, 2)])
    assert len(result.included) == 2
    assert result.rejected == ()
    assert result.params == chain.genesis.params
    assert result.validators_next == chain.genesis.validators
    assert result.state.root != chain.state.root


def test_unknown_sender(chain):
    stranger = PrivateKey.derive("stranger")
    result = chain.execute([anchor(chain, stranger)])
    assert rejected_codes(result) == ["unknown_sender"]
    assert result.events == ()


def test_replay_in_a_later_block_is_bad_nonce(chain, testnet):
    tx = anchor(chain, testnet.client_keys[0], 1)
    assert rejected_codes(chain.block([tx])) == []
    replay = chain.block([tx], time=tx.created_at + 1)
    assert rejected_codes(replay) == ["bad_nonce"]
    assert replay.writes == {}


def test_replay_in_the_same_block_is_bad_nonce(chain, testnet):
    tx = anchor(chain, testnet.client_keys[0], 1)
    result = chain.execute([tx, tx])
    assert len(result.included) == 1
    assert rejected_codes(result) == ["bad_nonce"]


def test_nonces_must_be_consecutive(chain, testnet):
    c = testnet.client_keys[0]
    result = chain.execute(
        [
            anchor(chain, c, 1, nonce=1),
            anchor(chain, c, 2, nonce=0),
            anchor(chain, c, 3, nonce=1),
            anchor(chain, c, 4, nonce=3),
        ]
    )
    assert rejected_codes(result) == ["bad_nonce", "bad_nonce"]
    assert [r.tx.nonce for r in result.rejected] == [1, 3]
    assert [t.nonce for t in result.included] == [0, 1]


def test_nonce_is_per_key(chain, testnet):
    txs = [anchor(chain, k, i) for i, k in enumerate(testnet.client_keys)]
    assert all(t.nonce == 0 for t in txs)
    result = chain.block(txs)
    assert len(result.included) == 4
    for k in testnet.client_keys:
        assert chain.next_nonce(k.key_id) == 1
        assert chain.get(f"nonce/{k.key_id}") == 1


def test_created_at_window(chain, testnet):
    p = chain.genesis.params
    c = testnet.client_keys[0]
    now = chain.next_time
    cases = [
        (now - p.tx_ttl_ms - 1, "expired"),
        (now - p.tx_ttl_ms, None),
        (now, None),
        (now + p.tx_future_ms, None),
        (now + p.tx_future_ms + 1, "too_early"),
        (0, "expired"),
    ]
    for created_at, code in cases:
        result = chain.execute([anchor(chain, c, nonce=0, created_at=created_at)], time=now)
        assert rejected_codes(result) == ([] if code is None else [code]), created_at


def test_created_at_window_follows_params():
    tn = make_testnet(params=ChainParams(tx_ttl_ms=10, tx_future_ms=5))
    chain = Chain(tn.genesis)
    c = tn.client_keys[0]
    now = chain.next_time
    for created_at, code in (
        (now - 11, "expired"),
        (now - 10, None),
        (now + 5, None),
        (now + 6, "too_early"),
    ):
        result = chain.execute([anchor(chain, c, nonce=0, created_at=created_at)])
        assert rejected_codes(result) == ([] if code is None else [code])


def test_unknown_kind(chain, testnet):
    tx = chain.tx(testnet.client_keys[0], "bogus.do", {})
    assert rejected_codes(chain.execute([tx])) == ["unknown_kind"]
    with pytest.raises(InvalidTransaction) as info:
        chain.check_static(tx)
    assert info.value.code == "unknown_kind"


def test_check_order_sender_before_nonce_before_time(chain, testnet):
    stranger = PrivateKey.derive("stranger")
    c = testnet.client_keys[0]
    far_past = 0
    assert rejected_codes(
        chain.execute([chain.tx(stranger, "bogus.do", {}, nonce=5, created_at=far_past)])
    ) == ["unknown_sender"]
    assert rejected_codes(
        chain.execute([chain.tx(c, "bogus.do", {}, nonce=5, created_at=far_past)])
    ) == ["bad_nonce"]
    assert rejected_codes(
        chain.execute([chain.tx(c, "bogus.do", {}, nonce=0, created_at=far_past)])
    ) == ["expired"]
    assert rejected_codes(chain.execute([chain.tx(c, "bogus.do", {}, nonce=0)])) == ["unknown_kind"]


# --------------------------------------------------------------------------- failures


def test_failing_tx_leaves_no_writes_and_no_events(chain, testnet):
    c0, c1 = testnet.client_keys[:2]
    chain.block([anchor(chain, c0, 7)])
    root = chain.state.root
    # the contract fails after the framework already wrote the sender's nonce
    result = chain.execute([anchor(chain, c1, 7)])
    assert rejected_codes(result) == ["conflict"]
    assert result.included == ()
    assert result.events == ()
    assert result.writes == {}
    assert result.state.root == root
    assert StateView(result.state).get(f"nonce/{c1.key_id}") is None


def test_failing_tx_between_good_ones(chain, testnet):
    c0, c1 = testnet.client_keys[:2]
    result = chain.execute(
        [anchor(chain, c0, 1), anchor(chain, c1, 1), anchor(chain, c1, 2, nonce=0)]
    )
    assert rejected_codes(result) == ["conflict"]
    assert [t.sender for t in result.included] == [c0.key_id, c1.key_id]
    assert [(e.tx_index, e.index) for e in result.events] == [(0, 0), (1, 1)]
    assert [e.attributes["digest"] for e in result.events] == [digest(1), digest(2)]


def test_rejection_carries_the_transaction(chain, testnet):
    stranger = PrivateKey.derive("stranger")
    tx = anchor(chain, stranger)
    [rejection] = chain.execute([tx]).rejected
    assert rejection.tx == tx
    assert rejection.code == "unknown_sender"
    assert rejection.message


def test_skip_failed_false_raises_tx_failed(chain, testnet):
    good = anchor(chain, testnet.client_keys[0], 1)
    bad = anchor(chain, PrivateKey.derive("stranger"))
    with pytest.raises(InvalidBlock) as info:
        chain.execute([good, bad], skip_failed=False)
    assert info.value.code == "tx_failed"
    assert isinstance(info.value.__cause__, TransactionFailed)
    assert info.value.__cause__.code == "unknown_sender"
    ok = chain.execute([good], skip_failed=False)
    assert ok.included == (good,)


def test_proposer_and_validator_agree(chain, testnet):
    txs = [
        anchor(chain, testnet.client_keys[0], 1),
        anchor(chain, PrivateKey.derive("x")),
        anchor(chain, testnet.client_keys[1], 2),
    ]
    built = chain.execute(txs)
    validated = chain.execute(list(built.included), skip_failed=False)
    assert validated.state.root == built.state.root
    assert validated.events == built.events
    assert validated.included == built.included


def test_execution_is_deterministic(chain, testnet):
    txs = [anchor(chain, k, i) for i, k in enumerate(testnet.client_keys)]
    a = chain.execute(txs)
    b = Chain(make_testnet().genesis).execute(txs)
    assert a.state.root == b.state.root
    assert a.events == b.events
    assert dict(a.writes) == dict(b.writes)


class Boom(Contract):
    name = "boom"
    actions: Mapping[str, frozenset[str] | None] = {"key": None, "type": None, "ok": None}

    def apply(self, ctx: TxContext) -> None:
        ctx.put("touched", 1)
        ctx.emit("boom.thing.touched", {})
        if ctx.tx.action == "key":
            raise KeyError("missing")
        if ctx.tx.action == "type":
            raise TypeError("wrong")


def test_contract_bugs_reject_the_tx_not_the_replica(testnet):
    chain = Chain(testnet.genesis, Application([NotaryContract(), Boom()]))
    c = testnet.client_keys[0]
    result = chain.execute(
        [
            chain.tx(c, "boom.key", {}),
            chain.tx(c, "boom.type", {}, nonce=0),
            chain.tx(c, "boom.ok", {}, nonce=0),
        ]
    )
    assert rejected_codes(result) == ["contract_error", "contract_error"]
    assert len(result.included) == 1
    assert event_types(result) == ["boom.thing.touched"]
    assert StateView(result.state).get("boom/touched") == 1


# --------------------------------------------------------------------------- block limits


def test_txs_max_limit(chain, testnet):
    txs = [anchor(chain, k, i) for i, k in enumerate(testnet.client_keys[:3])]
    result = chain.execute(txs, txs_max=2)
    assert result.included == tuple(txs[:2])
    assert result.rejected == ()  # left for a later block, not rejected
    with pytest.raises(InvalidBlock) as info:
        chain.execute(txs, txs_max=2, skip_failed=False)
    assert info.value.code == "invalid_block"
    chain.execute(txs, txs_max=3, skip_failed=False)


def test_failed_txs_do_not_count_against_txs_max(chain, testnet):
    stranger = anchor(chain, PrivateKey.derive("stranger"))
    txs = [anchor(chain, k, i) for i, k in enumerate(testnet.client_keys[:2])]
    result = chain.execute([stranger, *txs], txs_max=2)
    assert result.included == tuple(txs)


def test_bytes_max_limit(chain, testnet):
    txs = [anchor(chain, k, i) for i, k in enumerate(testnet.client_keys[:3])]
    two = len(txs[0].wire_bytes) + len(txs[1].wire_bytes)
    result = chain.execute(txs, bytes_max=two + len(txs[2].wire_bytes) - 1)
    assert result.included == tuple(txs[:2])
    with pytest.raises(InvalidBlock):
        chain.execute(txs, bytes_max=two, skip_failed=False)
    assert chain.execute(txs, bytes_max=two + len(txs[2].wire_bytes)).included == tuple(txs)


def test_block_limits_default_to_chain_params():
    tn = make_testnet(params=ChainParams(block_txs_max=2))
    chain = Chain(tn.genesis)
    txs = [anchor(chain, k, i) for i, k in enumerate(tn.client_keys[:3])]
    assert len(chain.execute(txs).included) == 2
    with pytest.raises(InvalidBlock):
        chain.execute(txs, skip_failed=False)


# --------------------------------------------------------------------------- precheck


def test_precheck(chain, testnet):
    c = testnet.client_keys[0]
    assert chain.app.precheck(chain.state, anchor(chain, c, nonce=5)) == 0
    chain.block([anchor(chain, c, 1, nonce=0)])
    assert chain.app.precheck(chain.state, anchor(chain, c, 2, nonce=1)) == 1
    with pytest.raises(TransactionFailed) as info:
        chain.app.precheck(chain.state, anchor(chain, c, 2, nonce=0))
    assert info.value.code == "bad_nonce"
    with pytest.raises(TransactionFailed) as info:
        chain.app.precheck(chain.state, anchor(chain, PrivateKey.derive("x")))
    assert info.value.code == "unknown_sender"


def test_precheck_sees_a_revocation_in_new_state(chain, testnet):
    c = testnet.client_keys[0]
    assert chain.app.precheck(chain.state, anchor(chain, c, nonce=0)) == 0
    chain.block([chain.tx(c, "consortium.revoke_key", {"key_id": c.key_id})])
    with pytest.raises(TransactionFailed) as info:
        chain.app.precheck(chain.state, anchor(chain, c, nonce=1))
    assert info.value.code == "key_inactive"


def test_next_nonce(chain, testnet):
    c = testnet.client_keys[0]
    assert Application.next_nonce(chain.view(), c.key_id) == 0
    chain.block([anchor(chain, c, 1), anchor(chain, c, 2)])
    assert Application.next_nonce(chain.view(), c.key_id) == 2
