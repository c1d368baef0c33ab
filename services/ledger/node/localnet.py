"""The embedded network: the four validators in one process over the in-memory
transport, each with its own key and SQLite store under one data directory.

Layout of the data directory (created when absent)::

    genesis.json              the consortium's genesis (canonical JSON)
    <service>/node.key        the validator's key (PKCS#8 PEM, 0600)
    <service>/admin.key       the organisation's admin key
    <service>/chain.db        the replica's store (SQLite, WAL, fsync on commit)
    client/demo.key           a demo merchant key, for ``--load``

It is the default when no broker is configured, the simulator's twin on real
disks and a real clock, and what the crash-recovery tests kill with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.composition import build_application
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import encode_unchecked
from services.ledger.core.errors import LedgerError
from services.ledger.core.execution import Application
from services.ledger.core.genesis import ChainParams, Genesis, GenesisKey, GenesisOrg
from services.ledger.core.replica import Commit, ReplicaConfig
from services.ledger.core.state import StateView
from services.ledger.core.transactions import sign_transaction
from services.ledger.core.validators import Validator, ValidatorSet
from services.ledger.node import keys
from services.ledger.node.memory import MemoryHub
from services.ledger.node.runner import Clock, NodeRunner
from services.ledger.node.store import SqliteStore

log = logging.getLogger("ecosphere.localnet")

VALIDATOR_SERVICES = (
    ("ledger", "operator", "Ecosphere Platform Operator", ("platform",)),
    ("trace", "trace-center", "Supply-Chain Collaboration Center", ("observer",)),
    ("customs", "customs-joint", "Joint Customs Supervision", ("customs_cn", "customs_eu")),
    ("credit", "credit-center", "Public Credit Service Center", ("credit_center",)),
)
CHAIN_ID = "ecosphere-local"


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    def node_key(self, service: str) -> Path:
        return self.root / service / "node.key"

    def admin_key(self, service: str) -> Path:
        return self.root / service / "admin.key"

    def store(self, service: str) -> Path:
        return self.root / service / "chain.db"

    @property
    def demo_key(self) -> Path:
        return self.root / "client" / "demo.key"


def ensure_genesis(data: DataDir, *, genesis_time: int | None = None) -> Genesis:
    """Load the data directory's genesis, creating keys and genesis when absent."""
    if data.genesis_path.exists():
        return Genesis.from_wire(json.loads(data.genesis_path.read_bytes()))
    orgs, gkeys, validators = [], [], []
    for service, org_id, name, roles in VALIDATOR_SERVICES:
        node = keys.load_or_create(data.node_key(service))
        admin = keys.load_or_create(data.admin_key(service))
        orgs.append(GenesisOrg(org_id, name, roles))
        gkeys.append(GenesisKey(admin.public.raw, org_id, ("admin", "member")))
        validators.append(Validator(node.key_id, node.public.raw, 1, org_id))
    orgs.append(GenesisOrg("demo-merchants", "Demo Merchants", ("merchant",)))
    demo = keys.load_or_create(data.demo_key)
    gkeys.append(GenesisKey(demo.public.raw, "demo-merchants", ("member",)))
    genesis = Genesis(chain_id=CHAIN_ID,
                      genesis_time=genesis_time if genesis_time is not None else Clock()(),
                      params=ChainParams(), organisations=tuple(orgs), keys=tuple(gkeys),
                      validators=ValidatorSet.of(validators))
    tmp = data.genesis_path.with_suffix(".tmp")
    tmp.write_bytes(encode_unchecked(genesis.to_wire()))
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, data.genesis_path)
    return genesis


@dataclass
class EmbeddedNetwork:
    data: DataDir
    config: ReplicaConfig = field(default_factory=ReplicaConfig)
    runners: dict[str, NodeRunner] = field(default_factory=dict)
    on_commit: list[Callable[[str, Commit], None]] = field(default_factory=list)

    async def start(self, services: tuple[str, ...] | None = None) -> Genesis:
        loop = asyncio.get_running_loop()
        genesis = ensure_genesis(self.data)
        app = build_application()

        def defer(fn: Callable[[], None]) -> None:
            loop.call_soon(fn)

        self.hub = MemoryHub(defer)
        for service, *_ in VALIDATOR_SERVICES:
            if services is not None and service not in services:
                continue
            self.start_one(service, genesis, app)
        self.genesis = genesis
        return genesis

    def start_one(self, service: str, genesis: Genesis,
                  app: Application | None = None) -> NodeRunner:
        key = keys.load(self.data.node_key(service))
        transport = self.hub.attach(key.key_id, functools.partial(self._deliver, service))
        runner = NodeRunner(name=service, genesis=genesis, app=app or build_application(),
                            key=key, store=SqliteStore(self.data.store(service)),
                            transport=transport, config=self.config)
        runner.host.listeners.committed.append(functools.partial(self._committed, service))
        self.runners[service] = runner
        runner.start()
        return runner

    def _deliver(self, service: str, data: bytes) -> None:
        runner = self.runners.get(service)
        if runner is not None:
            runner.deliver(data)

    def _committed(self, service: str, commit: Commit) -> None:
        for listener in self.on_commit:
            listener(service, commit)

    def stop_one(self, service: str) -> None:
        runner = self.runners.pop(service, None)
        if runner is not None:
            self.hub.detach(runner.host.replica.key.key_id if runner.host.replica.key else "")
            runner.stop()

    def stop(self) -> None:
        for service in list(self.runners):
            self.stop_one(service)

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
                services = sorted(self.runners)
                if not services:
                    break
                runner = self.runners[services[turn % len(services)]]
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
