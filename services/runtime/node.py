"""One service process: a replica on a transport, its admin endpoints, and — for the
gateway — the public HTTP API.

``ledger``, ``trace``, ``customs`` and ``credit`` are validators (each holds
its organisation's validator key); ``gateway`` is a non-voting observer that
serves clients. All run the same replica with the same state machine
(``services.composition``); they differ in key, queue bindings and HTTP.

Admin endpoints (validators on their admin port, the gateway on its public
port): ``/healthz`` (the process and its replica are alive), ``/readyz``
(connected to the broker and caught up with the best peer it has heard of),
``/metrics`` (Prometheus).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

from services.composition import build_application
from services.gateway import models
from services.gateway.openapi import Endpoint, docs_routes
from services.gateway.policies import Policies, PolicyLimits
from services.gateway.problems import Problem, problem_middleware
from services.ledger.core import consortium
from services.ledger.core.consensus.tendermint import TimeoutParams
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import UpgradeRequired
from services.ledger.core.genesis import Genesis
from services.ledger.core.mempool import MempoolLimits
from services.ledger.core.regossip import RegossipLimits
from services.ledger.core.replica import ReplicaConfig
from services.ledger.core.state import StateView
from services.ledger.node import keys
from services.ledger.node.amqp import AmqpLimits, AmqpTransport, Topology, TransportStats
from services.ledger.node.host import Transport
from services.ledger.node.metrics import CONTENT_TYPE, ReplicaMetrics
from services.ledger.node.runner import NodeRunner
from services.ledger.node.settings import DEFAULT_AMQP_URL
from services.ledger.node.store import SqliteStore
from services.runtime.gateway_host import GatewayHost
from services.runtime.settings import NodeSettings

log = logging.getLogger("ecosphere.service")
#: a service's exit code when the chain runs a composition its code lacks (not restarted)
EXIT_UPGRADE_REQUIRED = 3
__version__ = "0.1.0"


def replica_config(settings: NodeSettings) -> ReplicaConfig:
    c, limits = settings.consensus, settings.limits
    return ReplicaConfig(
        timeouts=TimeoutParams(propose_ms=c.propose_ms, propose_delta_ms=c.propose_delta_ms,
                               vote_ms=c.vote_ms, vote_delta_ms=c.vote_delta_ms,
                               empty_block_interval_ms=c.empty_block_interval_ms),
        mempool=MempoolLimits(txs_max=limits.mempool_txs_max,
                              bytes_max=limits.mempool_bytes_max,
                              per_sender_max=limits.mempool_per_sender_max),
        gossip_interval_ms=c.gossip_interval_ms,
        tx_batch_txs_max=limits.tx_batch_txs_max,
        tx_batch_wait_ms=limits.tx_batch_wait_ms,
        sync_batch_blocks_max=limits.sync_batch_blocks_max,
        sync_timeout_ms=limits.sync_timeout_ms,
        message_bytes_max=limits.message_bytes_max,
        regossip=RegossipLimits(resend_after_ms=limits.tx_resend_after_ms,
                                resend_max_ms=max(limits.tx_resend_max_ms,
                                                  limits.tx_resend_after_ms),
                                per_tick_max=limits.tx_resend_per_tick_max),
    )


def amqp_limits(settings: NodeSettings) -> AmqpLimits:
    a = settings.amqp
    return AmqpLimits(prefetch=a.prefetch, txs_prefetch=a.txs_prefetch,
                      queue_length_max=a.queue_length_max,
                      consensus_ttl_ms=a.consensus_ttl_ms, txs_ttl_ms=a.txs_ttl_ms,
                      publish_in_flight_max=a.publish_in_flight_max, outbox_max=a.outbox_max,
                      message_bytes_max=settings.limits.message_bytes_max,
                      queue_type=a.queue_type)


def load_genesis(settings: NodeSettings) -> Genesis:
    return Genesis.from_wire(json.loads((settings.data_dir / "genesis.json").read_bytes()))


#: the aiohttp app's typed state: the process it serves
NODE: web.AppKey[ServiceNode] = web.AppKey("node", t=object)  # type: ignore[arg-type]


class ServiceNode:
    """One service process's parts, wired in one place: the replica (``runner``) over
    ``transport``, its metrics and admin endpoints, and — for the gateway — the
    :class:`~services.runtime.gateway_host.GatewayHost` (API, plugins, followers).

    ``events_url``: where the gateway publishes partner events (None: nowhere)."""

    def __init__(self, settings: NodeSettings, genesis: Genesis, key: PrivateKey,
                 transport: Transport, *, transport_stats: TransportStats | None = None,
                 events_url: str | None = None) -> None:
        s = settings
        self.settings = settings
        self.genesis = genesis
        self.key = key
        self.transport_stats = transport_stats
        self.runner = NodeRunner(name=s.service, genesis=genesis, app=build_application(),
                                 key=key, store=SqliteStore(s.node_dir / "chain.db"),
                                 transport=transport, config=replica_config(s))
        self.metrics = ReplicaMetrics(self.runner.host.replica, s.service)
        self.metrics.transport = transport_stats
        self.metrics.restarts = s.restarts
        self.runner.host.listeners.committed.append(self.metrics.on_commit)
        self.gateway: GatewayHost | None = None
        if s.service == "gateway":
            self.gateway = GatewayHost(s, self.runner, self.metrics.registry, events_url)
        self.web_runner: web.AppRunner | None = None

    def deliver(self, data: bytes) -> bool:
        return self.runner.deliver(data)

    # --- HTTP -----------------------------------------------------------------------

    def web_app(self) -> web.Application:
        from services.gateway.policies import HANDLER_ARGS, expect_handler
        from services.gateway.problems import HTTP_STATS, HttpStats, HttpStatsCollector

        s = self.settings
        expect = expect_handler(s.gateway.body_bytes_max, s.gateway.content_codings_max)
        if self.gateway is None:
            app = web.Application(middlewares=[problem_middleware],
                                  client_max_size=s.gateway.body_bytes_max,
                                  handler_args=HANDLER_ARGS)
        else:
            g = s.gateway
            policies = Policies(PolicyLimits(rate_per_s=g.rate_per_s, rate_burst=g.rate_burst,
                                             buckets_max=g.rate_buckets_max,
                                             idempotency_ttl_s=g.idempotency_ttl_s,
                                             idempotency_entries_max=g.idempotency_entries_max,
                                             idempotency_bytes_max=g.idempotency_bytes_max,
                                             cors_origins=tuple(g.cors_origins),
                                             trusted_proxies=tuple(g.trusted_proxies),
                                             public_base_url=g.public_base_url,
                                             body_bytes_max=g.body_bytes_max,
                                             content_codings_max=g.content_codings_max,
                                             gzip_members_max=g.gzip_members_max,
                                             gzip_empty_members_max=g.gzip_empty_members_max,
                                             decode_inline_bytes_max=g.decode_inline_bytes_max,
                                             decodes_max=g.decodes_max),
                                resolve_key=self.resolve_key)
            app = web.Application(middlewares=policies.middlewares(),
                                  client_max_size=g.body_bytes_max, handler_args=HANDLER_ARGS)
            endpoints = self.gateway.endpoints()
            app.add_routes(self.gateway.api.routes(endpoints))
            app.add_routes(docs_routes(endpoints + self.admin_endpoints(),
                                       title="ecosphere gateway", version=__version__,
                                       expect=expect))
            app.cleanup_ctx.append(self.gateway.followers_ctx)
        app[NODE] = self
        app[HTTP_STATS] = stats = HttpStats()
        self.metrics.registry.register(HttpStatsCollector(stats))
        app.add_routes([web.get(path, handler, expect_handler=expect)
                        for path, handler in (("/healthz", self.healthz),
                                              ("/readyz", self.readyz),
                                              ("/metrics", self.metrics_endpoint))])
        return app

    def admin_endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/healthz", self.healthz, "Liveness", "admin",
                     {200: models.Health}, errors=(503,)),
            Endpoint("GET", "/readyz", self.readyz, "Readiness: connected and caught up",
                     "admin", {200: models.Readiness}, errors=(503,)),
            Endpoint("GET", "/metrics", self.metrics_endpoint, "Prometheus metrics", "admin",
                     {200: None}, errors=(), content_type="text/plain"),
        ]

    def resolve_key(self, key_id: str) -> bytes | None:
        """The public key of an active key registered on the chain (RFC 9421 keyid)."""
        record = consortium.key_record(StateView(self.runner.host.replica.tip.state), key_id)
        if record is None or record["status"] != "active":
            return None
        return bytes.fromhex(record["public_key"])

    async def serve_http(self) -> int:
        """Serve HTTP (for the gateway this also opens the views and starts the
        followers: the app's cleanup context); returns the port."""
        s = self.settings
        host, port = ((s.gateway.host, s.gateway.port) if s.service == "gateway"
                      else (s.admin_host, s.admin_port))
        self.web_runner = web.AppRunner(self.web_app(), access_log=None)
        await self.web_runner.setup()
        site = web.TCPSite(self.web_runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def healthz(self, request: web.Request) -> web.Response:
        if self.runner.failed is not None:
            raise Problem(503, "replica_failed", f"replica stopped: {self.runner.failed}")
        return web.json_response({"status": "ok", "service": self.settings.service})

    def readiness(self) -> dict[str, Any]:
        reasons = []
        if self.runner.failed is not None:
            reasons.append("replica stopped")
        if self.transport_stats is not None and not self.transport_stats.connected:
            reasons.append("not connected to the broker")
        behind = self.metrics.behind()
        if behind > self.settings.ready_lag_blocks_max:
            reasons.append(f"catching up: {behind} blocks behind")
        if self.gateway is not None:
            reasons.extend(self.gateway.readiness_reasons())
        replica = self.runner.host.replica
        return {"ready": not reasons, "reasons": reasons, "height": replica.tip.height,
                "behind": behind, "peers_seen": len(replica.peers_seen)}

    async def readyz(self, request: web.Request) -> web.Response:
        state = self.readiness()
        if not state["ready"]:
            raise Problem(503, "not_ready", "; ".join(state["reasons"]),
                          height=state["height"], behind=state["behind"])
        return web.json_response(state)

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE})

    async def close(self) -> None:
        """Stop HTTP (the gateway's followers and plugins finish on the way: the replica
        still runs), then the replica."""
        if self.web_runner is not None:
            await self.web_runner.cleanup()
        self.runner.stop()


async def run_service(settings: NodeSettings, stop: asyncio.Event) -> int:
    """Run one service over RabbitMQ until ``stop`` is set or the replica fails."""
    genesis = load_genesis(settings)
    key = keys.load(settings.node_dir / "node.key")
    url = settings.amqp_url or DEFAULT_AMQP_URL
    built: list[ServiceNode] = []  # messages arrive once started, after the node exists

    def deliver(data: bytes) -> bool:
        return built[0].deliver(data) if built else False

    transport = AmqpTransport(url=url, node_id=key.key_id, validator=settings.is_validator,
                              deliver=deliver, topology=Topology(settings.amqp.prefix),
                              limits=amqp_limits(settings))
    node = ServiceNode(settings, genesis, key, transport, transport_stats=transport.stats,
                       events_url=url)
    built.append(node)
    transport.on_publish_failed = node.runner.publish_failed
    transport.on_connection = node.runner.transport_connected
    # /healthz, /readyz ("not connected") and /metrics answer while the broker is away.
    port = await node.serve_http()
    if not await _connect(transport, stop):  # stopped before the broker came
        await transport.close()
        await node.close()
        return 0
    node.runner.start()
    where = "http" if settings.service == "gateway" else "admin"
    log.info("%s up: %s on %s:%d, height %d", settings.service, where,
             settings.gateway.host if where == "http" else settings.admin_host, port,
             node.runner.host.replica.tip.height)
    stopped = asyncio.ensure_future(node.runner.stopped.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopped, stopping], return_when=asyncio.FIRST_COMPLETED)
    for f in (stopped, stopping):
        f.cancel()
    await transport.close()
    await node.close()
    if isinstance(node.runner.failed, UpgradeRequired):
        return EXIT_UPGRADE_REQUIRED
    return 0 if node.runner.failed is None else 1


async def _connect(transport: AmqpTransport, stop: asyncio.Event) -> bool:
    """Connect, retrying with backoff (the broker may start after us); False if ``stop``
    was set first."""
    delay = 0.5
    while not stop.is_set():
        try:
            await transport.start()
            return True
        except Exception as exc:  # aio-pika raises several unrelated types here
            if stop.is_set():
                return False
            log.warning("broker not reachable (%r); retrying in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
    return False
