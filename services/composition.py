"""The one assembly of the state machine that every replica runs, by version.

Every service builds its :class:`Application` here and nowhere else: a replica
running a different set of contracts, or the same contracts in another order,
would compute different state roots and fork off the chain.

The composition is versioned. ``COMPOSITIONS[n]`` lists the contracts of
version ``n`` in order; a running chain moves from one version to the next at
a height the consortium schedules (``consortium.propose`` with a
``schedule_upgrade`` action, executed once more than two thirds of the
validator organisations approved it). Every replica runs version ``n`` below
that height and ``n + 1`` from it; a replica whose code lacks ``n + 1`` halts
before the height (``UpgradeRequired``) instead of forking, and resumes once
upgraded. So a version, once released, never changes: a new domain is a new
version appended here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.ledger.core.contract import Contract
from services.ledger.core.execution import Application
from services.ledger.core.notary import NotaryContract
from services.trace.contract import TraceContract

#: version -> a factory of that version's contracts, in execution order
COMPOSITIONS: dict[int, Callable[[], Sequence[Contract]]] = {
    1: lambda: [NotaryContract(), TraceContract()],
}


def build_application() -> Application:
    """Every composition this code knows, so it can follow the chain across upgrades."""
    return Application.versioned({v: make() for v, make in COMPOSITIONS.items()})
