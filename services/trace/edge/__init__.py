"""The trace domain's edge: everything of it that does I/O.

Its gateway plugin (:mod:`.plugin`: the trace endpoints, the EPCIS 2.0 REST binding,
provenance, the anonymous scan budget, webhooks), its MongoDB views (:mod:`.views`)
and its partner-event schemas (:mod:`.event_schemas`), and its settings section
(:mod:`.settings`). :data:`EDGE` is what the composition hands the gateway host.
The domain's pure part (contract and rules) is the package above; this edge may
import it, never the other way round.
"""

from __future__ import annotations

from services.gateway.plugin import DomainEdge
from services.trace.edge.event_schemas import TRACE_EVENTS
from services.trace.edge.plugin import TracePlugin
from services.trace.edge.views import TRACE_VIEWS

EDGE = DomainEdge(name="trace", views=TRACE_VIEWS, events=TRACE_EVENTS, plugin=TracePlugin)

__all__ = ["EDGE"]
