"""The trace domain's options: section ``trace`` of a service's settings
(``ECOSPHERE_TRACE__PROVENANCE_EVENTS_MAX=500``): provenance answers and their
cache, EPCIS webhooks and capture jobs, the scan budgets."""

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
    #: bytes of a webhook destination's answer read (then the connection is dropped):
    #: a destination must not make the gateway hold a large or endless body
    webhook_response_bytes_max: int = Field(64 * 1024, ge=0, le=16 * 1024 * 1024)
    #: one callback's whole exchange (connect, send, answer): its own deadline; a round
    #: never waits for its deliveries, so a slow destination delays only itself
    webhook_delivery_timeout_s: float = Field(10.0, gt=0, le=300)
    #: callbacks in flight at once, in all and per organisation (so that one
    #: organisation's slow destinations cannot take every slot)
    webhook_concurrency_max: int = Field(16, ge=1)
    webhook_concurrency_per_org_max: int = Field(4, ge=1)
    #: subscriptions the gateway serves in all, and per organisation (one organisation
    #: cannot take the whole gateway's share)
    webhook_subscriptions_max: int = Field(1_000, ge=1)
    webhook_subscriptions_per_org_max: int = Field(100, ge=1)
    #: stopping the dispatcher waits this long for its loop to end, then cancels it
    webhook_stop_timeout_s: float = Field(5.0, gt=0, le=60)
    #: capture jobs whose transaction expired are failed (and their commit waiter freed)
    #: on every commit and at least this often
    capture_sweep_interval_ms: int = Field(1_000, ge=10, le=60_000)
    #: anonymous consumer scans (GET /v1/trace/verify) recorded on the chain, for all
    #: clients together (a token bucket); beyond it a verify answers "not recorded"
    scan_rate_per_s: float = Field(50.0, gt=0)
    scan_burst: float = Field(200.0, ge=1)
    #: queued scans go out as one trace.record_scans per interval (so captures on the
    #: relay key wait behind at most one); 500 is the contract's SCANS_PER_BATCH_MAX
    scan_batch_max: int = Field(500, ge=1, le=500)
    scan_batch_interval_ms: int = Field(1_000, ge=50, le=60_000)
    scan_queue_max: int = Field(5_000, ge=1)
    #: scans with a valid tag code skip the anonymous budget but not a budget of their
    #: item's own (a token bucket per item): one tag's harvested codes cannot fill the
    #: queue everyone shares; beyond it a verify is refused with 429 and Retry-After
    scan_item_rate_per_s: float = Field(0.1, gt=0)
    scan_item_burst: float = Field(10.0, ge=1)
    #: items whose bucket is remembered (least recently scanned forgotten first)
    scan_items_max: int = Field(20_000, ge=1)


__all__ = ["TraceSettings"]
