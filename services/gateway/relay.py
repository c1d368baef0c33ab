"""The gateway's relay: transactions the gateway sends as the platform operator.

Two things reach the chain this way, and neither lets the gateway forge
anything of a party's:

* **signed captures**: an EPCIS client signs its HTTP request with its own key
  (RFC 9421); the relay wraps the exact request bytes in a ``trace.capture``
  transaction, and the contract verifies the party's signature itself;
* **consumer scans**: the scans of ``GET /v1/trace/verify``, anonymous unless a
  secure tag's fresh code proves possession, go out in batches
  (``trace.record_scans``) from a budgeted queue, at most one transaction per
  interval (``services.trace.edge.scans``): a flood of scans can neither
  crowd captures out nor decide a clone verdict (docs/adr/0005-clone-verdicts.md).
  Registered readers send their scans with their own keys, never through here.

The relay key is a member key of the operator organisation
(``<data>/gateway/relay.key``). Its nonces come from the chain and the local mempool
at each send (the relay is the key's only user; see :meth:`Relay._nonce`). Known
limit: right after a gateway restart its mempool is empty, so a send can reuse a
nonce that validators still hold from before; that capture then never commits and
its job fails as ``expired`` (the client captures again).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from services.gateway.chain import Chain
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import LedgerError
from services.ledger.core.transactions import Transaction, sign_transaction


class Relay:
    def __init__(self, chain: Chain, key: PrivateKey) -> None:
        self.chain = chain
        self.key = key
        self.sent = 0
        self.refused = 0

    def sign(self, kind: str, payload: Mapping[str, Any]) -> Transaction:
        """A transaction of the relay key with its next usable nonce: the committed one
        plus the unbroken run of this key's transactions still waiting in the local
        mempool — computed afresh for every transaction, never cached: one that left the
        mempool uncommitted (expired during a stall, dropped by a proposer) leaves a gap
        that the next one fills, instead of every later one waiting behind it for ever."""
        return sign_transaction(self.key, chain_id=self.chain.chain_id, kind=kind,
                                nonce=self.chain.nonces(self.key.key_id).usable,
                                payload=dict(payload), created_at=int(time.time() * 1000))

    def submit(self, tx: Transaction) -> Transaction:
        """Submit a transaction :meth:`sign` made; raises the ledger's rejection (the
        caller maps it to HTTP)."""
        try:
            self.chain.submit(tx)
        except LedgerError:
            self.refused += 1
            raise
        self.sent += 1
        return tx

    def send(self, kind: str, payload: Mapping[str, Any]) -> Transaction:
        """Sign and submit."""
        return self.submit(self.sign(kind, payload))
