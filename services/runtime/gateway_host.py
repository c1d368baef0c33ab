"""The gateway's wiring: one place that builds every part of the gateway process and
hands each what it needs.

Built once, when the gateway's replica exists (:class:`GatewayHost`):

* the narrow chain interface (``ReplicaChain``) over the replica's runner;
* the relay (when ``<data>/gateway/relay.key`` exists) and the views access (empty
  until the views database opens);
* the domains' read policies (``ReadGuard``: what of their chain data only their
  parties read), which the platform API enforces on its generic routes and the
  partner-event publisher by withholding restricted events;
* the platform API (``GatewayApi``) and one plugin per domain of the composition,
  each with its own settings section;
* the followers of the chain — the projector (views), the partner-event publisher
  (when a broker is configured) and every plugin's followers — started with the HTTP
  app (:meth:`GatewayHost.followers_ctx`, an aiohttp ``cleanup_ctx``) and stopped with
  it, each on the shared follower loop, each notified on every commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from services import composition
from services.gateway.api import GatewayApi
from services.gateway.event_schemas import EventCatalogue
from services.gateway.openapi import Endpoint
from services.gateway.plugin import GatewayPlugin, PluginContext, PluginFollower
from services.gateway.read_policy import ReadGuard
from services.gateway.relay import Relay
from services.gateway.views.access import ViewsAccess
from services.ledger.core.replica import Commit
from services.ledger.node import keys
from services.ledger.node.access import ReplicaChain
from services.ledger.node.amqp import Topology
from services.ledger.node.runner import NodeRunner
from services.runtime.settings import NodeSettings

log = logging.getLogger("ecosphere.gateway")
FOLLOWERS_STOP_S = 10.0  # how long stopping waits for the followers' last steps

__all__ = ["GatewayHost"]


@dataclass
class GatewayHost:
    settings: NodeSettings
    runner: NodeRunner
    registry: CollectorRegistry  # the process's /metrics
    events_url: str | None  # the broker partner events go to (None: no publisher)
    chain: ReplicaChain = field(init=False)
    views: ViewsAccess = field(init=False)
    #: every partner event type, the composition's: the API's replay and the publisher
    #: give the same event the same CloudEvent (its subject included)
    catalogue: EventCatalogue = field(init=False)
    #: every domain's read policy: the API's generic routes and the publisher obey it
    reads: ReadGuard = field(init=False)
    api: GatewayApi = field(init=False)
    plugins: dict[str, GatewayPlugin] = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.chain = ReplicaChain(self.runner)
        relay_path = s.node_dir / "relay.key"
        relay = Relay(self.chain, keys.load(relay_path)) if relay_path.exists() else None
        self.views = ViewsAccess()
        self.catalogue = composition.event_catalogue()
        self.reads = ReadGuard(e.read_policy for e in composition.edges()
                               if e.read_policy is not None)
        self.api = GatewayApi(self.chain, s.gateway, catalogue=self.catalogue, relay=relay,
                              views=self.views, reads=self.reads)
        self.plugins = {}
        for domain in composition.DOMAINS:
            edge = domain.edge
            if edge is None or edge.plugin is None:
                continue
            plugin = edge.plugin(PluginContext(host=self.api,
                                               settings=getattr(s, domain.name),
                                               data_dir=s.node_dir))
            self.plugins[domain.name] = plugin
            for collector in plugin.collectors():
                self.registry.register(collector)

    def endpoints(self) -> list[Endpoint]:
        """The platform's routes, then each domain's."""
        out = self.api.endpoints()
        for plugin in self.plugins.values():
            out.extend(plugin.endpoints())
        return out

    def readiness_reasons(self) -> list[str]:
        projector = self.views.projector
        if projector is not None and not projector.ready():
            return [f"views lag {projector.lag_blocks} blocks"]
        return []

    async def followers_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """Open the views, start every follower; at cleanup stop them, let the plugins
        finish (the replica still runs), close the views."""
        stop = asyncio.Event()
        followers: list[PluginFollower] = []
        await self._open_views(followers)
        if self.events_url is not None and self.settings.views.events_enabled:
            from services.gateway.events import EventPublisher, PublisherCollector

            publisher = EventPublisher(
                self.chain.store, url=self.events_url,
                checkpoint_path=self.settings.node_dir / "events.checkpoint",
                topology=Topology(self.settings.amqp.prefix),
                catalogue=self.catalogue, withheld=self.reads.restricts_event_type)
            self.registry.register(PublisherCollector(publisher))
            followers.append(publisher)
        for plugin in self.plugins.values():
            followers.extend(plugin.followers())
        unsubscribe = [self.chain.on_commit(_notifier(f)) for f in followers]
        tasks = [asyncio.create_task(f.run(stop)) for f in followers]
        try:
            yield
        finally:
            stop.set()
            for cancel in unsubscribe:
                cancel()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=FOLLOWERS_STOP_S)
                if pending:  # steps stuck past the wait: abandon them
                    log.warning("%d followers still running after %.0fs: cancelled",
                                len(pending), FOLLOWERS_STOP_S)
                    for task in pending:
                        task.cancel()
                    await asyncio.wait(pending, timeout=FOLLOWERS_STOP_S)
            for plugin in self.plugins.values():
                await plugin.close()
            await self.views.close()

    async def _open_views(self, followers: list[PluginFollower]) -> None:
        s = self.settings
        if not s.views.enabled:
            return
        from services.gateway.views.mongo import open_database
        from services.gateway.views.projector import (
            Projector,
            ProjectorCollector,
            ProjectorLimits,
        )

        try:
            database = await open_database(s.mongo_uri, data_dir=s.node_dir,
                                           db_name=s.views.db_name)
        except RuntimeError as exc:
            log.warning("views disabled: %s", exc)
            return
        limits = ProjectorLimits(batch_blocks_max=s.views.batch_blocks_max,
                                 ready_lag_blocks_max=s.views.ready_lag_blocks_max)
        projector = Projector(self.chain.store, database.db, composition.view_specs(),
                              limits=limits)
        for plugin in self.plugins.values():
            projector.listeners.append(plugin.on_projected)
        self.registry.register(ProjectorCollector(projector))
        self.views.attach(database, projector)
        followers.append(projector)


def _notifier(follower: PluginFollower) -> Callable[[Commit], None]:
    def notify(_commit: Commit) -> None:
        follower.notify()
    return notify
