"""Regression (found by review, now fixed): Mempool.verified() ignores the public_key bytes."""

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.mempool import Mempool
from services.ledger.core.transactions import Transaction
from tests.ledger.core.test_mempool import A, tx


def test_verified_is_false_when_public_key_bytes_differ():
    # docstring: "True if these exact bytes (signature included) were admitted"
    pool = Mempool()
    t = tx(A, 0)
    pool.add(t, 0)
    wire = t.to_wire()
    wire["public_key"] = PrivateKey.derive("someone else").public.hex()
    other = Transaction.from_wire(wire)
    assert other.wire_bytes != t.wire_bytes
    assert not pool.verified(other)
