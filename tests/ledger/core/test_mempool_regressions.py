"""Regression (found by review, now fixed): a nonce exactly nonce_gap_max ahead is refused."""

from services.ledger.core.mempool import Mempool, MempoolLimits
from tests.ledger.core.test_mempool import A, tx


def test_nonce_exactly_gap_max_ahead_is_admitted():
    # docstring: "nonces at most ``nonce_gap_max`` ahead of the sender's next nonce"
    pool = Mempool(MempoolLimits(nonce_gap_max=3))
    pool.add(tx(A, 3), 0)
    assert tx(A, 3).hash in pool
