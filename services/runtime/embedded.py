"""The embedded network: the four validators and the gateway in one process over the
in-memory transport, each with its own key and SQLite store under one data
directory (``services.runtime.datadir``).

It is what ``ecosphere up`` runs when no broker is configured or reachable, the
simulator's twin on real disks and a real clock, and what the crash-recovery
tests kill with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from services.gateway.settings import GatewayOptions
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import LedgerError
from services.ledger.core.genesis import Genesis
from services.ledger.core.replica import Commit
from services.ledger.core.state import StateView
from services.ledger.core.transactions import sign_transaction
from services.ledger.node import keys
from services.ledger.node.memory import MemoryHub
from services.ledger.node.runner import NodeRunner
from services.runtime.datadir import (
    SERVICES,
    VALIDATOR_SERVICES,
    DataDir,
    ensure_genesis,
)
from services.runtime.node import ServiceNode
from services.runtime.settings import NodeSettings
from services.trace.edge.settings import TraceSettings

log = logging.getLogger("ecosphere.embedded")
__all__ = ["VALIDATOR_SERVICES", "DataDir", "EmbeddedNetwork"]


@dataclass
class EmbeddedNetwork:
    data: DataDir
    port: int = 8080
    nodes: dict[str, ServiceNode] = field(default_factory=dict)
    on_commit: list[Callable[[str, Commit], None]] = field(default_factory=list)
    settings_overrides: dict[str, object] = field(default_factory=dict)

    @property
    def runners(self) -> dict[str, NodeRunner]:
        return {name: node.runner for name, node in self.nodes.items()}

    async def start(self, services: tuple[str, ...] | None = None) -> Genesis:
        loop = asyncio.get_running_loop()
        self.genesis = ensure_genesis(self.data)

        def defer(fn: Callable[[], None]) -> None:
            loop.call_soon(fn)

        self.hub = MemoryHub(defer)
        for service in SERVICES:
            if services is None or service in services:
                await self.start_one(service)
        return self.genesis

    async def start_one(self, service: str, genesis: Genesis | None = None) -> ServiceNode:
        settings = NodeSettings(service=service, data_dir=self.data.root,
                                gateway=GatewayOptions(port=self.port),
                                trace=TraceSettings(webhook_loopback_allowed=True),
                                **self.settings_overrides)  # type: ignore[arg-type]
        key = keys.load(self.data.node_key(service))
        transport = self.hub.attach(key.key_id, functools.partial(self._deliver, service))
        node = ServiceNode(settings, genesis or self.genesis, key, transport)
        node.runner.host.listeners.committed.append(functools.partial(self._committed, service))
        self.nodes[service] = node
        node.runner.start()
        if service == "gateway":
            self.port = await node.serve_http()
        return node

    def _deliver(self, service: str, data: bytes) -> None:
        node = self.nodes.get(service)
        if node is not None:
            node.deliver(data)

    def _committed(self, service: str, commit: Commit) -> None:
        for listener in self.on_commit:
            listener(service, commit)

    async def stop_one(self, service: str) -> None:
        node = self.nodes.pop(service, None)
        if node is not None:
            self.hub.detach(node.key.key_id)
            await node.close()

    async def stop(self) -> None:
        for service in list(self.nodes):
            await self.stop_one(service)

    async def drive_load(self, tps: int, stop: asyncio.Event) -> int:
        """A demo merchant anchoring documents at about ``tps``, through every validator
        in turn; returns how many transactions were accepted."""
        key: PrivateKey = keys.load(self.data.demo_key)
        accepted = 0
        nonce: int | None = None
        tick_s = 0.05
        per_tick = max(1, round(tps * tick_s))
        turn = 0
        while not stop.is_set():
            for _ in range(per_tick):
                services = sorted(s for s in self.nodes if s != "gateway")
                if not services:
                    break
                runner = self.nodes[services[turn % len(services)]].runner
                turn += 1
                if nonce is None:
                    nonce = _next_nonce(runner, key.key_id)
                digest = hashlib.sha256(f"{key.key_id}/{nonce}".encode()).hexdigest()
                tx = sign_transaction(key, chain_id=self.genesis.chain_id,
                                      kind="notary.anchor", nonce=nonce,
                                      payload={"digest": digest, "label": f"demo {nonce}"},
                                      created_at=runner.clock())
                try:
                    runner.host.submit(tx)
                except LedgerError as exc:
                    log.warning("demo load: %s (%s)", exc, exc.code)
                    nonce = None  # re-read the next nonce from the chain
                    continue
                accepted += 1
                nonce += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick_s)
        return accepted


def _next_nonce(runner: NodeRunner, key_id: str) -> int:
    """The sender's next nonce as this replica sees it: committed, plus what waits."""
    replica = runner.host.replica
    committed = replica.app.next_nonce(StateView(replica.tip.state), key_id)
    waiting = replica.mempool.pending_nonces(key_id)
    while committed in waiting:
        committed += 1
    return committed
