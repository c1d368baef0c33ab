"""What a domain brings to the gateway, and what the gateway gives it.

The gateway is a host that imports no domain. The composition
(``services.composition``) hands it each domain's :class:`DomainEdge`:

* what exists without a running gateway — the domain's MongoDB views (read models
  the projector writes from committed blocks, and ``views rebuild`` recreates), its
  partner-event schemas (what ``docs/asyncapi.yaml`` documents) and its read policy
  (what of its chain data the generic routes serve only to its parties, and never
  publish to partners: :mod:`services.gateway.read_policy`);
* a factory of its :class:`GatewayPlugin`, built once per gateway process with a
  :class:`PluginContext`: the gateway's API object (the narrow chain interface, the
  views, the waiters, the relay), the domain's own settings section and the
  gateway's data directory.

A plugin answers its routes, runs its followers of the chain on the host's follower
loops, feeds the host's /metrics, hears which view documents the projector wrote
(for caches derived from them), and closes when the gateway stops. Nothing here
registers itself by being imported: the host assembles everything explicitly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.registry import Collector
from pydantic import BaseModel

from services.gateway.openapi import Endpoint
from services.gateway.read_policy import ReadPolicy
from services.gateway.views.schema import ViewSpec

__all__ = ["DomainEdge", "GatewayPlugin", "PluginContext", "PluginFollower", "ProjectedDocs"]

#: collection -> _id -> fields written by one projector batch (None: views reset)
ProjectedDocs = Mapping[str, Mapping[Any, Mapping[str, Any]]] | None


class PluginFollower(Protocol):
    """A follower of the chain a plugin runs (``services.gateway.follower``)."""

    def notify(self) -> None:
        """A block was committed (or work arrived): step without waiting for the poll."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """Follow until ``stop`` is set; never raises except on cancellation."""
        ...


class GatewayPlugin(Protocol):
    name: str

    def endpoints(self) -> Sequence[Endpoint]: ...

    def followers(self) -> Sequence[PluginFollower]: ...

    def collectors(self) -> Sequence[Collector]: ...

    def on_projected(self, docs: ProjectedDocs) -> None:
        """The projector wrote ``docs`` (for caches derived from the views)."""
        ...

    async def close(self) -> None:
        """The gateway stops: finish what is queued (the replica still runs)."""
        ...


@dataclass(frozen=True)
class PluginContext:
    #: the gateway's API object: ``chain`` (services.gateway.chain.Chain), ``relay``,
    #: ``waiters``, ``views_db()``/``views_call()``, ``options``
    host: Any
    settings: BaseModel  # the domain's own section of the service's settings
    data_dir: Path  # the gateway's own directory (<data>/gateway)


@dataclass(frozen=True)
class DomainEdge:
    """A domain's edge as the gateway sees it (one per domain of the composition)."""

    name: str
    views: tuple[ViewSpec, ...] = ()
    #: (event type, data model, subject attribute or None) of every event it emits
    events: tuple[tuple[str, type[BaseModel], str | None], ...] = ()
    plugin: Callable[[PluginContext], GatewayPlugin] | None = None
    #: what of its state, events and transactions only their parties read (None: all
    #: public); a value, not the plugin's: the partner exchange and the AsyncAPI
    #: document need it without a running gateway
    read_policy: ReadPolicy | None = None
