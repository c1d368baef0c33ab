"""The one assembly of the state machine that every replica runs.

Every service builds its :class:`Application` here and nowhere else: a replica
running a different set of contracts, or the same contracts in another order,
would compute different state roots and fork off the chain.
"""

from __future__ import annotations

from services.ledger.core.execution import Application
from services.ledger.core.notary import NotaryContract
from services.trace.contract import TraceContract


def build_application() -> Application:
    return Application([NotaryContract(), TraceContract()])
