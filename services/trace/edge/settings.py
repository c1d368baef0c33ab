"""The trace domain's options: section ``trace`` of a service's settings
(``ECOSPHERE_TRACE__PROVENANCE_EVENTS_MAX=500``): provenance answers and their
cache, EPCIS webhooks, the anonymous scan budget."""

from __future__ import annotations

from pydantic import Field

from services.ledger.node.settings import Strict


class TraceSettings(Strict):
    provenance_events_max: int = Field(500, ge=1)  # steps in one provenance answer
    provenance_ids_max: int = Field(256, ge=1)  # identifiers one walk may visit
    provenance_depth_max: int = Field(4, ge=0)  # transformation hops back
    provenance_cache_entries: int = Field(2_048, ge=0)
    provenance_cache_steps: int = Field(200_000, ge=0)  # steps held by the cache in all
    #: EPCIS webhooks may call loopback addresses (``ecosphere up`` on one machine);
    #: never in a deployment, where loopback reaches the node's own admin ports
    webhook_loopback_allowed: bool = False
    #: anonymous consumer scans (GET /v1/trace/verify) recorded on the chain, for all
    #: clients together (a token bucket); beyond it a verify answers "not recorded"
    scan_rate_per_s: float = Field(50.0, gt=0)
    scan_burst: float = Field(200.0, ge=1)
    #: queued scans go out as one trace.record_scans per interval (so captures on the
    #: relay key wait behind at most one); 500 is the contract's SCANS_PER_BATCH_MAX
    scan_batch_max: int = Field(500, ge=1, le=500)
    scan_batch_interval_ms: int = Field(1_000, ge=50, le=60_000)
    scan_queue_max: int = Field(5_000, ge=1)


__all__ = ["TraceSettings"]
