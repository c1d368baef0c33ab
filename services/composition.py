"""The one list of domains, and the one assembly of the state machine every replica runs.

Every service builds its :class:`Application` here and nowhere else: a replica
running a different set of contracts, or the same contracts in another order,
would compute different state roots and fork off the chain. The gateway gets its
domains' edges here too (routes, views, partner-event schemas, followers), loaded
explicitly: nothing registers itself by being imported.

**A domain** (:class:`Domain`) is one folder, ``services/<domain>/``: its pure part
(contract and rules) and an ``edge/`` package with everything that does I/O (its
gateway plugin and its settings section). :data:`DOMAINS` lists them.

**The composition is versioned.** ``COMPOSITIONS[n]`` lists the contracts of version
``n`` in order; a running chain moves from one version to the next at a height the
consortium schedules (``consortium.propose`` with a ``schedule_upgrade`` action,
executed once more than two thirds of the validator organisations approved it).
Every replica runs version ``n`` below that height and ``n + 1`` from it; a replica
whose code lacks ``n + 1`` halts before the height (``UpgradeRequired``) instead of
forking, and resumes once upgraded. A version, once released, never changes: a new
domain is a new version appended here (its contracts) and a new entry of
:data:`DOMAINS` (its edge).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.gateway.event_schemas import PLATFORM_EVENTS, EventCatalogue
from services.gateway.plugin import DomainEdge
from services.gateway.views.schema import PLATFORM_VIEWS, ViewSpec, compose
from services.ledger.core.contract import Contract
from services.ledger.core.execution import Application
from services.ledger.core.notary import NotaryContract
from services.privacy import edge as privacy_edge
from services.privacy.contract import PrivacyContract
from services.trace import edge as trace_edge
from services.trace.contract import TraceContract
from services.trade import edge as trade_edge
from services.trade.contract import TradeContract

__all__ = ["COMPOSITIONS", "DOMAINS", "LATEST", "Domain", "build_application", "event_catalogue",
           "view_specs"]


@dataclass(frozen=True)
class Domain:
    name: str  # also its settings section (``ECOSPHERE_<NAME>__...``)
    edge: DomainEdge | None  # what the gateway serves of it (None: nothing)
    #: domains whose pure functions its pure part calls (never their edges; no cycles:
    #: tests/test_architecture.py checks both)
    depends: tuple[str, ...] = ()


#: every domain, in the order the gateway mounts them
DOMAINS: tuple[Domain, ...] = (
    Domain("trace", trace_edge.EDGE),
    Domain("privacy", privacy_edge.EDGE),
    Domain("trade", trade_edge.EDGE, depends=("trace", "privacy")),
)

#: version -> a factory of that version's contracts, in execution order
COMPOSITIONS: dict[int, Callable[[], Sequence[Contract]]] = {
    1: lambda: [NotaryContract(), TraceContract()],
    2: lambda: [NotaryContract(), TraceContract(), PrivacyContract()],  # + the vault
    3: lambda: [NotaryContract(), TraceContract(), PrivacyContract(),  # + trade
                TradeContract()],
}
#: what a new chain's genesis runs from height 1 (an existing chain moves to it by a
#: governance upgrade)
LATEST = max(COMPOSITIONS)


def build_application() -> Application:
    """Every composition this code knows, so it can follow the chain across upgrades."""
    return Application.versioned({v: make() for v, make in COMPOSITIONS.items()})


def edges() -> tuple[DomainEdge, ...]:
    return tuple(d.edge for d in DOMAINS if d.edge is not None)


def view_specs() -> tuple[ViewSpec, ...]:
    """The MongoDB views: the platform's, then each domain's (projection order)."""
    return compose(PLATFORM_VIEWS, *(e.views for e in edges()))


def event_catalogue() -> EventCatalogue:
    """Every partner event type: the platform's, then each domain's; those a domain's
    read policy restricts are withheld from the partner exchange."""
    policies = [e.read_policy for e in edges() if e.read_policy is not None]
    schemas = [schema for e in edges() for schema in e.events]
    return PLATFORM_EVENTS.extended(schemas, withheld=[
        t for t, _, _ in schemas if any(p.restricts_event_type(t) for p in policies)])
