"""Tests for the bounded, deduplicated, fair mempool (mempool.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import MempoolRejected
from services.ledger.core.mempool import Mempool, MempoolLimits
from services.ledger.core.transactions import Transaction, sign_transaction

CHAIN = "ecosphere-test"
T = 1_767_225_600_000
A, B, C = (PrivateKey.derive(f"mempool/{n}") for n in "abc")


def tx(
    key: PrivateKey, nonce: int, *, label: str = "", created_at: int = T, size: int = 0
) -> Transaction:
    payload = {"digest": f"{nonce:064x}", "label": label}
    if size:
        payload["pad"] = "x" * size
    return sign_transaction(
        key,
        chain_id=CHAIN,
        kind="notary.anchor",
        nonce=nonce,
        payload=payload,
        created_at=created_at,
    )


def nonces(next_map: dict[str, int]) -> Callable[[str], int]:
    return lambda sender: next_map.get(sender, 0)


def add_code(pool: Mempool, t: Transaction, next_nonce: int = 0) -> str:
    with pytest.raises(MempoolRejected) as info:
        pool.add(t, next_nonce)
    return info.value.code


def described(txs: list[Transaction]) -> list[str]:
    names = {A.key_id: "a", B.key_id: "b", C.key_id: "c"}
    return [f"{names[t.sender]}{t.nonce}" for t in txs]


# --------------------------------------------------------------------------- admission


def test_add_and_lookup():
    pool = Mempool()
    t = tx(A, 0)
    pool.add(t, 0)
    assert len(pool) == 1
    assert t.hash in pool
    assert pool.get(t.hash) is t
    assert pool.size_bytes == len(t.wire_bytes)


def test_duplicate():
    pool = Mempool()
    pool.add(tx(A, 0), 0)
    assert add_code(pool, tx(A, 0)) == "duplicate"
    assert len(pool) == 1


def test_bad_nonce():
    pool = Mempool()
    assert add_code(pool, tx(A, 4), next_nonce=5) == "bad_nonce"
    pool.add(tx(A, 5), 5)


def test_nonce_too_far():
    pool = Mempool(MempoolLimits(nonce_gap_max=3))
    pool.add(tx(A, 2), 0)
    assert add_code(pool, tx(A, 4), next_nonce=0) == "nonce_too_far"
    assert add_code(pool, tx(A, 100), next_nonce=0) == "nonce_too_far"
    pool.add(tx(A, 12), 10)  # measured from the sender's next nonce


def test_nonce_taken():
    pool = Mempool()
    pool.add(tx(A, 0, label="first"), 0)
    other = tx(A, 0, label="second")
    assert add_code(pool, other) == "nonce_taken"
    assert other.hash not in pool


def test_sender_full():
    pool = Mempool(MempoolLimits(per_sender_max=2))
    pool.add(tx(A, 0), 0)
    pool.add(tx(A, 1), 0)
    assert add_code(pool, tx(A, 2)) == "sender_full"
    pool.add(tx(B, 0), 0)  # other senders are not affected


def test_mempool_full_by_count():
    pool = Mempool(MempoolLimits(txs_max=2))
    pool.add(tx(A, 0), 0)
    pool.add(tx(B, 0), 0)
    assert add_code(pool, tx(C, 0)) == "mempool_full"
    assert len(pool) == 2


def test_mempool_full_by_bytes():
    first = tx(A, 0)
    second = tx(B, 0)
    limit = len(first.wire_bytes) + len(second.wire_bytes)
    pool = Mempool(MempoolLimits(bytes_max=limit))
    pool.add(first, 0)
    pool.add(second, 0)  # exactly at the limit
    assert pool.size_bytes == limit
    assert add_code(pool, tx(C, 0)) == "mempool_full"
    small = Mempool(MempoolLimits(bytes_max=len(first.wire_bytes) - 1))
    assert add_code(small, first) == "mempool_full"


def test_full_mempool_never_evicts():
    pool = Mempool(MempoolLimits(txs_max=1))
    waiting = tx(A, 0)
    pool.add(waiting, 0)
    add_code(pool, tx(B, 0))
    assert waiting.hash in pool


def test_rejected_add_changes_nothing():
    pool = Mempool(MempoolLimits(txs_max=1))
    pool.add(tx(A, 0), 0)
    before = (len(pool), pool.size_bytes)
    for t, nn in ((tx(A, 0), 0), (tx(B, 0), 0), (tx(A, 0, label="x"), 0)):
        with pytest.raises(MempoolRejected):
            pool.add(t, nn)
    assert (len(pool), pool.size_bytes) == before
    assert pool.reap(nonces({}), 10, 10**9) == [pool.get(tx(A, 0).hash)]


# --------------------------------------------------------------------------- reap


def test_reap_consecutive_nonces_only():
    pool = Mempool()
    for n in (0, 1, 3, 4):
        pool.add(tx(A, n), 0)
    assert described(pool.reap(nonces({}), 100, 10**9)) == ["a0", "a1"]


def test_reap_starts_at_committed_next_nonce():
    pool = Mempool()
    for n in (2, 3, 4):
        pool.add(tx(A, n), 0)
    assert pool.reap(nonces({}), 100, 10**9) == []
    assert described(pool.reap(nonces({A.key_id: 2}), 100, 10**9)) == ["a2", "a3", "a4"]
    assert described(pool.reap(nonces({A.key_id: 3}), 100, 10**9)) == ["a3", "a4"]


def test_gap_stops_only_that_sender():
    pool = Mempool()
    pool.add(tx(A, 1), 0)  # A waits for nonce 0
    pool.add(tx(B, 0), 0)
    pool.add(tx(B, 1), 0)
    assert described(pool.reap(nonces({}), 100, 10**9)) == ["b0", "b1"]


def test_reap_round_robin_in_arrival_order():
    pool = Mempool()
    for t in (tx(B, 0), tx(A, 0), tx(B, 1), tx(B, 2), tx(C, 0), tx(A, 1), tx(B, 3)):
        pool.add(t, 0)
    # senders by first arrival: b, a, c
    assert described(pool.reap(nonces({}), 100, 10**9)) == [
        "b0",
        "a0",
        "c0",
        "b1",
        "a1",
        "b2",
        "b3",
    ]


def test_reap_order_does_not_depend_on_nonce_arrival_order():
    pool = Mempool()
    for t in (tx(A, 2), tx(A, 0), tx(B, 0), tx(A, 1)):
        pool.add(t, 0)
    assert described(pool.reap(nonces({}), 100, 10**9)) == ["a0", "b0", "a1", "a2"]


def test_busy_sender_cannot_starve_others():
    pool = Mempool()
    for n in range(50):
        pool.add(tx(A, n), 0)
    pool.add(tx(B, 0), 0)
    pool.add(tx(C, 0), 0)
    assert described(pool.reap(nonces({}), 3, 10**9)) == ["a0", "b0", "c0"]


def test_reap_respects_txs_max():
    pool = Mempool()
    for k in (A, B, C):
        for n in range(3):
            pool.add(tx(k, n), 0)
    for limit in range(10):
        got = pool.reap(nonces({}), limit, 10**9)
        assert len(got) == min(limit, 9)
    assert pool.reap(nonces({}), 0, 10**9) == []


def test_reap_respects_bytes_max():
    pool = Mempool()
    txs = [tx(A, 0), tx(B, 0), tx(A, 1), tx(B, 1)]
    for t in txs:
        pool.add(t, 0)
    sizes = [len(t.wire_bytes) for t in txs]
    assert pool.reap(nonces({}), 100, sum(sizes)) == txs
    assert pool.reap(nonces({}), 100, sum(sizes) - 1) == txs[:3]
    assert pool.reap(nonces({}), 100, sizes[0] + sizes[1]) == txs[:2]
    assert pool.reap(nonces({}), 100, sizes[0] - 1) == []


def test_reap_does_not_remove():
    pool = Mempool()
    pool.add(tx(A, 0), 0)
    pool.reap(nonces({}), 10, 10**9)
    assert len(pool) == 1


def test_arrival_order_restarts_when_a_sender_empties():
    pool = Mempool()
    pool.add(tx(A, 0), 0)
    pool.add(tx(B, 0), 0)
    pool.remove([tx(A, 0)])
    pool.add(tx(A, 1), 1)
    assert described(pool.reap(nonces({A.key_id: 1}), 10, 10**9)) == ["b0", "a1"]


# --------------------------------------------------------------------------- after a block


def test_remove():
    pool = Mempool()
    t0, t1 = tx(A, 0), tx(A, 1)
    pool.add(t0, 0)
    pool.add(t1, 0)
    pool.remove([t0, tx(B, 0)])  # unknown ones are ignored
    assert t0.hash not in pool
    assert t1.hash in pool
    assert pool.size_bytes == len(t1.wire_bytes)


def test_after_block_drops_included_and_used_nonces():
    pool = Mempool()
    a0, a1, a2, b0 = tx(A, 0), tx(A, 1), tx(A, 2), tx(B, 0)
    for t in (a0, a1, a2, b0):
        pool.add(t, 0)
    # the block included a0 and a *different* transaction for A's nonce 1
    other_a1 = tx(A, 1, label="from elsewhere")
    dropped = pool.after_block([a0, other_a1], nonces({A.key_id: 2}), oldest_allowed=0)
    assert dropped == 2
    assert a0.hash not in pool
    assert a1.hash not in pool
    assert a2.hash in pool
    assert b0.hash in pool
    assert pool.size_bytes == len(a2.wire_bytes) + len(b0.wire_bytes)


def test_after_block_drops_expired():
    pool = Mempool()
    old, fresh = tx(A, 0, created_at=T - 10), tx(B, 0, created_at=T)
    pool.add(old, 0)
    pool.add(fresh, 0)
    assert pool.after_block([], nonces({}), oldest_allowed=T - 10) == 0
    assert pool.after_block([], nonces({}), oldest_allowed=T - 9) == 1
    assert old.hash not in pool
    assert fresh.hash in pool


def test_after_block_then_reap():
    pool = Mempool()
    txs = [tx(A, n) for n in range(4)]
    for t in txs:
        pool.add(t, 0)
    pool.after_block(txs[:2], nonces({A.key_id: 2}), oldest_allowed=0)
    assert pool.reap(nonces({A.key_id: 2}), 10, 10**9) == txs[2:]


def test_after_block_frees_room():
    pool = Mempool(MempoolLimits(txs_max=1, per_sender_max=1))
    pool.add(tx(A, 0), 0)
    pool.after_block([tx(A, 0)], nonces({A.key_id: 1}), oldest_allowed=0)
    assert len(pool) == 0
    assert pool.size_bytes == 0
    pool.add(tx(A, 1), 1)


# --------------------------------------------------------------------------- verified


def test_verified():
    pool = Mempool()
    t = tx(A, 0)
    assert not pool.verified(t)
    pool.add(t, 0)
    assert pool.verified(t)
    assert pool.verified(tx(A, 0))  # same bytes, another object


def test_verified_is_false_when_signature_bytes_differ():
    pool = Mempool()
    t = tx(A, 0)
    pool.add(t, 0)
    wire = t.to_wire()
    sig = bytearray(t.signature)
    sig[10] ^= 0xFF
    wire["signature"] = sig.hex()
    forged = Transaction.from_wire(wire)
    assert forged.hash == t.hash
    assert not pool.verified(forged)


def test_verified_is_false_after_removal():
    pool = Mempool()
    t = tx(A, 0)
    pool.add(t, 0)
    pool.remove([t])
    assert not pool.verified(t)


def test_pending_nonces():
    pool = Mempool()
    for n in (0, 1, 3):
        pool.add(tx(A, n), 0)
    assert pool.pending_nonces(A.key_id) == frozenset({0, 1, 3})
    assert pool.pending_nonces(B.key_id) == frozenset()
    pool.remove([tx(A, 1)])
    assert pool.pending_nonces(A.key_id) == frozenset({0, 3})
