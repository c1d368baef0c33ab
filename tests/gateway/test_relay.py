"""The relay's nonces: from the chain and the local mempool at every send."""

from __future__ import annotations

import types
from typing import Any

from services.gateway.relay import Relay
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.transactions import Transaction
from services.ledger.node.access import Nonces


def test_a_nonce_that_left_the_mempool_uncommitted_is_reused() -> None:
    """Found in review: after a relay transaction was dropped uncommitted, every later
    one waited behind the gap for ever."""
    waiting: set[int] = set()
    committed = {"next": 0}
    sent: list[Transaction] = []

    def submit(tx: Transaction) -> None:
        sent.append(tx)
        waiting.add(tx.nonce)

    def nonces(key: str) -> Nonces:
        usable = committed["next"]
        while usable in waiting:
            usable += 1
        return Nonces(committed["next"], usable, len(waiting))

    chain: Any = types.SimpleNamespace(chain_id="ecosphere-test", nonces=nonces,
                                       submit=submit)
    relay = Relay(chain, PrivateKey.derive("relay"))
    payload = {"epc": "x", "country": "DE"}
    assert [relay.send("trace.record_scan", payload).nonce for _ in range(3)] == [0, 1, 2]
    waiting.discard(0)  # nonce 0 dropped without committing: 1 and 2 wait behind it
    assert relay.send("trace.record_scan", payload).nonce == 0
    committed["next"], waiting = 3, set()  # all committed
    assert relay.send("trace.record_scan", payload).nonce == 3


