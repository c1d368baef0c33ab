"""Prometheus metrics of a replica process.

Most figures are read from the replica when Prometheus scrapes (no cost on
the hot path); only commit latency is observed as it happens. Names:

=========================================  =====================================
``ecosphere_height``                       last committed height
``ecosphere_round``                        current consensus round
``ecosphere_commit_latency_seconds``       time from one commit to the next
``ecosphere_committed_txs_total``          transactions committed
``ecosphere_mempool_txs`` / ``_bytes``     waiting transactions
``ecosphere_rejected_messages_total``      refused messages, by reason
``ecosphere_misbehaviour_total``           evidence of Byzantine peers, by kind
``ecosphere_peers_seen``                   distinct peers heard from
``ecosphere_catchup_behind_blocks``        how far the best known peer is ahead
``ecosphere_amqp_*``                       transport: published, failed, duplicates...
``ecosphere_txs_regossiped_total``         client transactions gossiped again
``ecosphere_restarts_total``               restarts of this service by its supervisor
=========================================  =====================================
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.ledger.core.replica import Commit, Replica

if TYPE_CHECKING:
    from services.ledger.node.amqp import TransportStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ReplicaMetrics(Collector):
    def __init__(self, replica: Replica, service: str) -> None:
        self.replica = replica
        self.service = service
        self.transport: TransportStats | None = None
        self.committed_txs = 0
        self.restarts = 0  # restarts by ``ecosphere up``'s supervisor before this process
        self.registry = CollectorRegistry()
        self.commit_latency = Histogram(
            "ecosphere_commit_latency_seconds", "Time between consecutive commits",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry)
        self.registry.register(self)
        self._last_commit = time.monotonic()

    def on_commit(self, commit: Commit) -> None:
        now = time.monotonic()
        self.commit_latency.observe(now - self._last_commit)
        self._last_commit = now
        self.committed_txs += len(commit.block.txs)

    def behind(self) -> int:
        replica = self.replica
        best = max(replica._peers_ahead.values(), default=replica.tip.height)
        return max(0, best - replica.tip.height)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        r = self.replica
        yield _gauge("ecosphere_height", "Last committed height", r.tip.height)
        yield _gauge("ecosphere_round", "Current consensus round", r.consensus.round)
        yield _gauge("ecosphere_mempool_txs", "Waiting transactions", len(r.mempool))
        yield _gauge("ecosphere_mempool_bytes", "Bytes of waiting transactions",
                     r.mempool.size_bytes)
        yield _gauge("ecosphere_peers_seen", "Distinct peers heard from", len(r.peers_seen))
        yield _gauge("ecosphere_catchup_behind_blocks", "Heights the best peer is ahead",
                     self.behind())
        misses = CounterMetricFamily("ecosphere_compact_proposal_misses",
                                     "Compact proposals that needed the whole block")
        misses.add_metric([], r.compact_misses)
        yield misses
        for name, doc, value in (
                ("ecosphere_txs_regossiped", "Client transactions gossiped again",
                 r.regossip.resent),
                ("ecosphere_restarts", "Restarts of this service by its supervisor",
                 self.restarts)):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter
        yield _gauge("ecosphere_regossip_tracked", "Client transactions tracked for re-gossip",
                     len(r.regossip))
        committed = CounterMetricFamily("ecosphere_committed_txs", "Transactions committed")
        committed.add_metric([], self.committed_txs)
        yield committed
        rejected = CounterMetricFamily("ecosphere_rejected_messages",
                                       "Refused messages by reason", labels=["reason"])
        for reason, count in sorted(r.rejections.items()):
            rejected.add_metric([reason], count)
        if self.transport is not None:
            rejected.add_metric(["amqp_oversized"], self.transport.oversized)
        yield rejected
        misbehaviour = CounterMetricFamily("ecosphere_misbehaviour",
                                           "Evidence of Byzantine peers", labels=["kind"])
        for kind, count in sorted(r.misbehaviour.items()):
            misbehaviour.add_metric([kind], count)
        yield misbehaviour
        t = self.transport
        if t is not None:
            yield _gauge("ecosphere_amqp_connected", "Connected to the broker",
                         int(t.connected))
            for name, value in (("published", t.published), ("publish_failed",
                                                               t.publish_failed),
                                ("unroutable", t.unroutable),
                                ("outbox_dropped", t.outbox_dropped),
                                ("received", t.received), ("duplicates", t.duplicates),
                                ("dead_lettered", t.rejected), ("reconnects", t.reconnects)):
                c = CounterMetricFamily(f"ecosphere_amqp_{name}", f"AMQP {name}")
                c.add_metric([], value)
                yield c

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g
