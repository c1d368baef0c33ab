"""The trace domain's gateway plugin: its routes, its followers, its metrics.

Built once per gateway process from a :class:`~services.gateway.plugin.PluginContext`
(the gateway's API object, the ``trace`` settings section): the public trace
endpoints (:mod:`.api`: products, verification with the anonymous scan budget,
certificates, provenance), the EPCIS 2.0 binding (:mod:`.epcis`) whose
webhook dispatcher and capture-job sweeper are the plugin's followers of the chain, and
the provenance cache it invalidates when the projector writes events naming an
identifier.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.gateway.openapi import Endpoint
from services.gateway.plugin import PluginContext, PluginFollower, ProjectedDocs
from services.trace.edge.api import TraceApi
from services.trace.edge.epcis.api import EpcisApi
from services.trace.edge.epcis.webhooks import WebhookLimits
from services.trace.edge.provenance import ProvenanceCacheCollector, ProvenanceLimits
from services.trace.edge.scans import ScanCounters, ScanLimits
from services.trace.edge.settings import TraceSettings

__all__ = ["TracePlugin"]


class TracePlugin:
    name = "trace"

    def __init__(self, context: PluginContext) -> None:
        settings = context.settings
        if not isinstance(settings, TraceSettings):
            raise TypeError(f"the trace plugin needs TraceSettings, not {type(settings)}")
        self.settings = settings
        self.api = TraceApi(context.host, ProvenanceLimits(
            events_max=settings.provenance_events_max, ids_max=settings.provenance_ids_max,
            depth_max=settings.provenance_depth_max,
            cache_entries=settings.provenance_cache_entries,
            cache_steps=settings.provenance_cache_steps),
            ScanLimits.from_settings(settings))
        self.epcis = EpcisApi(context.host, webhook_limits=WebhookLimits(
            loopback_allowed=settings.webhook_loopback_allowed,
            response_bytes_max=settings.webhook_response_bytes_max,
            delivery_timeout_s=settings.webhook_delivery_timeout_s,
            concurrency_max=settings.webhook_concurrency_max,
            concurrency_per_org_max=settings.webhook_concurrency_per_org_max,
            subscriptions_max=settings.webhook_subscriptions_max,
            subscriptions_per_org_max=settings.webhook_subscriptions_per_org_max,
            stop_timeout_s=settings.webhook_stop_timeout_s),
            sweep_interval_s=settings.capture_sweep_interval_ms / 1000)

    def endpoints(self) -> Sequence[Endpoint]:
        return [*self.api.endpoints(), *self.epcis.endpoints()]

    def followers(self) -> Sequence[PluginFollower]:
        return self.epcis.followers()

    def collectors(self) -> Sequence[Collector]:
        return [ProvenanceCacheCollector(self.api.provenance_cache),
                _ScanCollector(self.api.scans.counters), _WebhookCollector(self.epcis)]

    def on_projected(self, docs: ProjectedDocs) -> None:
        self.api.on_projected(docs)

    async def close(self) -> None:
        """Stop what the EPCIS binding runs itself (after a restart of its dispatcher:
        the host's runs have ended), then the scan flusher."""
        await self.epcis.stop()
        await self.api.close()


class _ScanCollector(Collector):
    """``/metrics``: the anonymous scan budget (ecosphere_trace_scans_*)."""

    def __init__(self, counters: ScanCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("ecosphere_trace_scans", "Relayed consumer scans, by "
                                     "outcome (queued, merged, over_budget, ...)",
                                     labels=["outcome"])
        for f in fields(self.counters):
            family.add_metric([f.name], getattr(self.counters, f.name))
        yield family


class _WebhookCollector(Collector):
    """``/metrics``: EPCIS webhook deliveries and the dispatcher's failing steps."""

    def __init__(self, epcis: EpcisApi) -> None:
        self.epcis = epcis

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        webhooks = self.epcis.webhooks
        deliveries = CounterMetricFamily("ecosphere_epcis_webhook_deliveries",
                                         "EPCIS webhook callbacks, by result",
                                         labels=["result"])
        deliveries.add_metric(["ok"], webhooks.deliveries)
        deliveries.add_metric(["failed"], webhooks.delivery_failures)
        yield deliveries
        failing = GaugeMetricFamily("ecosphere_epcis_webhook_dispatch_failing",
                                    "Dispatcher steps failed in a row (0: healthy)")
        failing.add_metric([], webhooks.loop.failing)
        yield failing
        in_flight = GaugeMetricFamily("ecosphere_epcis_webhook_in_flight",
                                      "EPCIS webhook callbacks in flight now")
        in_flight.add_metric([], webhooks.in_flight)
        yield in_flight
