"""Deterministic simulation of a consortium under faults (TigerBeetle's VOPR,
indy-plenum's SimNetwork).

One process, one seeded ``random.Random``, one simulated clock. Replicas are
the real :class:`~services.ledger.core.replica.Replica` behind the real
:class:`~services.ledger.node.host.Host`, with a :class:`MemoryStore` as their
disk. The network loses, delays, duplicates and reorders messages, partitions
and heals; honest replicas crash (sometimes in the middle of performing their
actions) and restart from their disk; up to f replicas are Byzantine:

``twin``        a second instance holding the same validator key and seeing a
                different share of the clients (equivocating proposals and votes)
``equivocate``  sends conflicting, correctly signed votes to different peers
``bad_sig``     corrupts signatures of some outgoing messages
``withhold``    drops some of its outgoing votes and proposals
``garbage``     sends random bytes and malformed JSON to its peers

Invariants checked:

* **agreement** — no two honest replicas commit different blocks at one height
  (checked at every commit);
* **validity** — the chain an honest replica committed replays from genesis
  with every signature and rule checked, and no transaction commits twice;
* **liveness** — once the network heals and every replica is back, every
  transaction clients submitted commits on every honest replica within
  ``liveness_ms`` of simulated time.

The same seed gives the same run, message for message.

The simulator runs the application it is given (``Simulation(app=...)``; by
default the ledger's own notary contract, which its workload uses): the ledger
imports no domain. Replicas may run different code (``SimNode.app``): a
replica whose code lacks the composition the chain upgraded to halts
(``SimNode.halted``) until it is booted again with code that has it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from services.ledger.core.certificate import Vote
from services.ledger.core.consensus.tendermint import TimeoutParams
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import decode, encode_unchecked
from services.ledger.core.errors import (
    LedgerError,
    Rejected,
    Unavailable,
    UpgradeRequired,
)
from services.ledger.core.execution import Application
from services.ledger.core.notary import NotaryContract
from services.ledger.core.replica import ChainTip, Commit, Replica, ReplicaConfig
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.core.wire import seal
from services.ledger.node.host import Host
from services.ledger.node.store import MemoryStore
from services.ledger.sim.testnet import Testnet, make_testnet

BYZANTINE_MODES = ("twin", "equivocate", "bad_sig", "withhold", "garbage")
TRACE_LINES_MAX = 400


@dataclass(frozen=True)
class SimConfig:
    replicas: int = 4
    byzantine: int = 1
    chaos_ms: int = 20_000
    liveness_ms: int = 60_000
    txs: int = 40
    clients: int = 3
    faults: bool = True


@dataclass
class SimResult:
    seed: int
    safety_violations: int = 0
    liveness_failures: int = 0
    committed_blocks: int = 0
    committed_txs: int = 0
    violation: str | None = None
    trace: list[str] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)
    misbehaviour: dict[str, int] = field(default_factory=dict)
    digest: str = ""


class Scheduler:
    def __init__(self) -> None:
        self.now = 0
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, time: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(time, self.now), self._seq, fn))

    def after(self, delay: int, fn: Callable[[], None]) -> None:
        self.at(self.now + max(0, delay), fn)

    def run_until(self, time: int, stop: Callable[[], bool] | None = None) -> None:
        while self._heap and self._heap[0][0] <= time:
            when, _, fn = heapq.heappop(self._heap)
            self.now = when
            fn()
            if stop is not None and stop():
                return
        self.now = max(self.now, time)


class SimNode:
    """One replica instance: its key, disk, clock offset and (when up) its host."""

    def __init__(self, sim: Simulation, name: str, key: PrivateKey, honest: bool,
                 modes: frozenset[str] = frozenset()) -> None:
        self.sim = sim
        self.name = name
        self.key = key
        self.node_id = key.key_id
        self.honest = honest
        self.modes = modes
        self.store = MemoryStore()
        self.host: Host | None = None
        self.app = sim.app  # the code this replica runs
        self.halted: UpgradeRequired | None = None
        self.generation = 0
        self.clock_offset = sim.rng.randint(-150, 150)
        self.group = 0  # partition group

    @property
    def up(self) -> bool:
        return self.host is not None and not self.host.stopped

    def clock(self) -> int:
        return self.sim.genesis_time + self.sim.scheduler.now + self.clock_offset

    def boot(self) -> None:
        self.generation += 1
        generation = self.generation
        sim = self.sim

        node = self

        class _Timers:
            def schedule(self, delay_ms: int, callback: Callable[[], None]) -> None:
                def fire() -> None:
                    if node.generation == generation and node.up:
                        with node.halting():
                            callback()
                sim.scheduler.after(delay_ms, fire)

        class _Transport:
            def send(self, peer: str, data: bytes) -> None:
                sim.network.send(node, peer, data)

            def broadcast(self, data: bytes, kind: str) -> None:
                for peer in sim.node_ids:
                    if peer != node.node_id:
                        sim.network.send(node, peer, data)

        transport = _Transport() if self.honest else ByzantineTransport(self, _Transport())
        self.halted = None
        self.host = Host.boot(genesis=sim.testnet.genesis, app=self.app, key=self.key,
                              store=self.store, transport=transport, timers=_Timers(),
                              clock=self.clock, config=sim.replica_config)
        self.host.listeners.committed.append(self._on_commit)
        with self.halting():
            self.host.start()

    @contextlib.contextmanager
    def halting(self) -> Iterator[None]:
        """Its code lacks the chain's composition: it stops (the host already has)."""
        try:
            yield
        except UpgradeRequired as exc:
            self.halted = exc
            self.sim.log(f"{self.name} halts: {exc}")

    def crash(self, *, mid_actions: bool) -> None:
        if self.host is None:
            return
        if mid_actions:
            self.host.crash_after = self.sim.rng.randint(0, 4)
            generation = self.generation

            def force() -> None:  # it was idle: crash it now, unless it already restarted
                if self.generation == generation and not self.sim.healed:
                    self.crash(mid_actions=False)
            self.sim.scheduler.after(300, force)
        else:
            self.host.stopped = True
            self.host = None
            self.generation += 1

    def deliver(self, data: bytes) -> None:
        if self.up and self.host is not None:
            with self.halting():
                self.host.deliver(data)
            if self.host is not None and self.host.stopped:
                self.host = None
                self.generation += 1

    def _on_commit(self, commit: Commit) -> None:
        self.sim.on_commit(self, commit)


class SimNetwork:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.drop_pm = 0
        self.dup_pm = 0
        self.delay_min = 1
        self.delay_max = 20
        self.partitioned = False
        self.messages = 0

    def calm(self) -> None:
        self.drop_pm = self.dup_pm = 0
        self.delay_min, self.delay_max = 1, 20
        self.partitioned = False

    def send(self, src: SimNode, dst_id: str, data: bytes) -> None:
        rng = self.sim.rng
        for dst in self.sim.instances.get(dst_id, ()):
            if self.partitioned and dst.group != src.group:
                continue
            if rng.randrange(1000) < self.drop_pm:
                continue
            copies = 2 if rng.randrange(1000) < self.dup_pm else 1
            for _ in range(copies):
                self.messages += 1
                delay = rng.randint(self.delay_min, self.delay_max)
                self.sim.scheduler.after(delay, functools.partial(dst.deliver, data))


class ByzantineTransport:
    """Outgoing messages of a Byzantine replica, bent according to its modes."""

    def __init__(self, node: SimNode, inner: object) -> None:
        self.node = node
        self.inner = inner

    def send(self, peer: str, data: bytes) -> None:
        for out in self._bend(data):
            self.inner.send(peer, out)  # type: ignore[attr-defined]

    def broadcast(self, data: bytes, kind: str) -> None:
        sim = self.node.sim
        peers = [p for p in sim.node_ids if p != self.node.node_id]
        for peer in peers:
            for out in self._bend(data, peer):
                self.inner.send(peer, out)  # type: ignore[attr-defined]
        if "garbage" in self.node.modes and sim.rng.randrange(4) == 0:
            peer = sim.rng.choice(peers)
            self.inner.send(peer, random_garbage(sim.rng))  # type: ignore[attr-defined]

    def _bend(self, data: bytes, peer: str = "") -> list[bytes]:
        rng = self.node.sim.rng
        modes = self.node.modes
        if "withhold" in modes and rng.randrange(3) == 0 and (b'"type":"vote"' in data
                                                              or b'"type":"proposal"' in data):
            return []
        if "bad_sig" in modes and rng.randrange(4) == 0:
            return [corrupt_signature(data, rng)]
        if "equivocate" in modes and b'"type":"vote"' in data and rng.randrange(2) == 0:
            conflicting = self._conflicting_vote(data)
            if conflicting is not None:
                return [conflicting]
        return [data]

    def _conflicting_vote(self, data: bytes) -> bytes | None:
        msg = decode(data)
        vote = Vote.from_wire(msg["body"])
        other = None if vote.block_hash is not None else hashlib.sha256(data).digest()
        twin = Vote.sign(self.node.key, vote.type, vote.chain_id, vote.height, vote.round,
                         other, vote.time)
        return seal(self.node.key, vote.chain_id, "vote", twin.to_wire())


def corrupt_signature(data: bytes, rng: random.Random) -> bytes:
    marker = data.rfind(b'"signature":"')
    if marker < 0:
        return data
    pos = marker + len(b'"signature":"') + rng.randrange(128)
    flipped = b"0" if data[pos:pos + 1] != b"0" else b"1"
    return data[:pos] + flipped + data[pos + 1:]


def random_garbage(rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    if choice == 1:
        return b'{"chain_id":"ecosphere-sim","type":"vote","from":"x","body":1,"signature":"00"}'
    if choice == 2:
        return encode_unchecked({"nested": [[[[[[[[[[1]]]]]]]]]] * 3})
    return b"[" * 5000


class Simulation:
    def __init__(self, seed: int, config: SimConfig, *, app: Application | None = None) -> None:
        self.seed = seed
        self.config = config
        self.rng = random.Random(seed)
        self.scheduler = Scheduler()
        self.network = SimNetwork(self)
        self.app = app or Application([NotaryContract()])
        self.testnet: Testnet = make_testnet(validators=config.replicas,
                                             clients=config.clients)
        self.genesis_time = self.testnet.genesis.genesis_time
        self.replica_config = ReplicaConfig(
            timeouts=TimeoutParams(propose_ms=800, propose_delta_ms=400, vote_ms=400,
                                   vote_delta_ms=400, empty_block_interval_ms=500),
            gossip_interval_ms=400, sync_timeout_ms=1_000)
        self.result = SimResult(seed)
        self.trace: list[str] = []
        self.committed: dict[int, bytes] = {}  # height -> block hash (honest)
        self.tx_heights: dict[bytes, int] = {}
        self.instances: dict[str, list[SimNode]] = {}
        self.nodes: list[SimNode] = []
        self._build_nodes()
        self.node_ids = sorted(self.instances)
        self.txs: list[Transaction] = []
        self._nonces = [0] * config.clients
        self._digest = hashlib.sha256(str(seed).encode())
        self.healed = False

    # --- set-up ----------------------------------------------------------------------

    def _build_nodes(self) -> None:
        byz = set(self.rng.sample(range(self.config.replicas), self.config.byzantine))
        for i, key in enumerate(self.testnet.validator_keys):
            honest = i not in byz
            modes: frozenset[str] = frozenset()
            if not honest:
                picked = self.rng.sample(BYZANTINE_MODES, self.rng.randint(1, 3))
                modes = frozenset(picked)
            node = SimNode(self, f"v{i}", key, honest, modes)
            self.nodes.append(node)
            self.instances.setdefault(key.key_id, []).append(node)
            if "twin" in modes:
                twin = SimNode(self, f"v{i}'", key, False, modes)
                self.nodes.append(twin)
                self.instances[key.key_id].append(twin)
        for node in self.nodes:
            if not node.honest:
                self.log(f"{node.name} is byzantine: {sorted(node.modes)}")

    def log(self, line: str) -> None:
        self.trace.append(f"{self.scheduler.now:>7} {line}")
        if len(self.trace) > TRACE_LINES_MAX:
            del self.trace[: len(self.trace) - TRACE_LINES_MAX]

    @property
    def honest(self) -> list[SimNode]:
        return [n for n in self.nodes if n.honest]

    # --- invariants ------------------------------------------------------------------

    def on_commit(self, node: SimNode, commit: Commit) -> None:
        block = commit.block
        self._digest.update(node.name.encode() + block.hash)
        if not node.honest:
            return
        known = self.committed.get(block.height)
        if known is None:
            self.committed[block.height] = block.hash
            self.log(f"{node.name} commits h={block.height} {block.hash.hex()[:12]} "
                     f"txs={len(block.txs)} r={commit.certificate.round}")
            for tx in block.txs:
                if tx.hash in self.tx_heights:
                    self.violate(f"tx {tx.hash.hex()[:12]} committed twice")
                self.tx_heights[tx.hash] = block.height
        elif known != block.hash:
            self.violate(f"agreement: {node.name} commits {block.hash.hex()[:12]} at height "
                         f"{block.height}, others committed {known.hex()[:12]}")

    def violate(self, what: str) -> None:
        self.log(f"VIOLATION {what}")
        self.result.safety_violations += 1
        if self.result.violation is None:
            self.result.violation = what
            self.result.trace = list(self.trace)

    def check_validity(self) -> None:
        """Replay an honest chain from genesis with every check on."""
        node = max(self.honest, key=lambda n: n.store.height())
        replica = Replica(genesis=self.testnet.genesis, app=self.app, key=None,
                          tip=ChainTip.genesis(self.testnet.genesis, self.app))
        for height in range(1, node.store.height() + 1):
            stored = node.store.block(height)
            if stored is None:
                self.violate(f"validity: {node.name} lacks block {height}")
                return
            try:
                stored.certificate.verify(replica.chain_id, replica.tip.next_validators,
                                          block_time=stored.block.header.time)
                ex = replica.execute_block(stored.block, certified=False)
                replica._commit(stored.block, stored.certificate, ex, [])
            except LedgerError as exc:
                self.violate(f"validity: block {height} of {node.name} fails replay: {exc}")
                return

    # --- workload --------------------------------------------------------------------

    def _make_tx(self) -> Transaction:
        client = self.rng.randrange(self.config.clients)
        key = self.testnet.client_keys[client]
        nonce = self._nonces[client]
        self._nonces[client] += 1
        digest = hashlib.sha256(f"{self.seed}/{client}/{nonce}".encode()).hexdigest()
        return sign_transaction(key, chain_id=self.testnet.genesis.chain_id,
                                kind="notary.anchor", nonce=nonce,
                                payload={"digest": digest, "label": f"doc {nonce}"},
                                created_at=self.genesis_time + self.scheduler.now)

    def _submit(self, tx: Transaction, node: SimNode) -> None:
        if node.host is None or not node.up:
            return
        with node.halting(), contextlib.suppress(Rejected, Unavailable):  # clients retry
            node.host.submit(tx)

    def _submit_random(self, tx: Transaction) -> None:
        self._submit(tx, self.rng.choice(self.nodes))

    # --- faults ----------------------------------------------------------------------

    def _chaos(self) -> None:
        rng, net, cfg = self.rng, self.network, self.config
        net.drop_pm = rng.choice((0, 20, 50, 100, 200))
        net.dup_pm = rng.choice((0, 20, 100))
        net.delay_min, net.delay_max = 1, rng.choice((20, 100, 300, 800))
        self.log(f"network drop={net.drop_pm}‰ dup={net.dup_pm}‰ delay<={net.delay_max}ms")
        t = rng.randint(500, 3_000)
        while t < cfg.chaos_ms:
            event = rng.randrange(4)
            if event == 0:
                self.scheduler.at(t, self._partition)
            elif event == 1:
                self.scheduler.at(t, self._heal_partition)
            elif event == 2:
                self.scheduler.at(t, self._crash_someone)
            else:
                self.scheduler.at(t, self._restart_all)
            t += rng.randint(500, 3_000)

    def _partition(self) -> None:
        for node in self.nodes:
            node.group = self.rng.randrange(2)
        self.network.partitioned = True
        groups = {n.name: n.group for n in self.nodes}
        self.log(f"partition {groups}")

    def _heal_partition(self) -> None:
        if self.network.partitioned:
            self.network.partitioned = False
            self.log("partition healed")

    def _crash_someone(self) -> None:
        candidates = [n for n in self.honest if n.host is not None]
        if not candidates:
            return
        node = self.rng.choice(candidates)
        mid = self.rng.randrange(2) == 0
        self.log(f"crash {node.name}{' mid-actions' if mid else ''} "
                 f"at stored height {node.store.height()}")
        node.crash(mid_actions=mid)

    def _restart_all(self) -> None:
        for node in self.nodes:
            if not node.up and node.halted is None:
                self.log(f"restart {node.name} from stored height {node.store.height()}")
                node.boot()

    # --- the run -----------------------------------------------------------------------

    def run(self) -> SimResult:
        cfg = self.config
        for node in self.nodes:
            node.boot()
        for _ in range(cfg.txs):
            at = self.rng.randint(0, max(1, cfg.chaos_ms - 1))
            self.scheduler.at(at, self._new_tx)
        if cfg.faults:
            self._chaos()
        self.scheduler.run_until(cfg.chaos_ms, stop=lambda: self.result.safety_violations > 0)
        heal_at = self.scheduler.now
        self.healed = True
        self.network.calm()
        for node in self.nodes:
            if node.host is not None:
                node.host.crash_after = None
        self._restart_all()
        self.log("healed: network calm, every replica up")
        self._retry_clients()
        deadline = heal_at + cfg.liveness_ms
        self.scheduler.run_until(deadline, stop=self._done)
        if self.result.safety_violations == 0:
            if not self._done():
                missing = [tx.hash.hex()[:12] for tx in self.txs
                           if not self._committed_everywhere(tx)]
                heights = {n.name: n.store.height() for n in self.honest}
                self.result.liveness_failures += 1
                self.log(f"LIVENESS {len(missing)} txs not committed everywhere "
                         f"{missing[:5]} heights={heights}")
                if self.result.violation is None:
                    self.result.violation = f"liveness: {len(missing)} txs missing"
                    self.result.trace = list(self.trace)
            self.check_validity()
        self._collect()
        return self.result

    def _new_tx(self) -> None:
        tx = self._make_tx()
        self.txs.append(tx)
        self._submit_random(tx)

    def _retry_clients(self) -> None:
        """Clients resend what has not committed, to every honest replica, every 2 s."""
        if self._done():
            return
        for tx in self.txs:
            if tx.hash not in self.tx_heights:
                for node in self.honest:
                    self._submit(tx, node)
        self.scheduler.after(2_000, self._retry_clients)

    def _committed_everywhere(self, tx: Transaction) -> bool:
        height = self.tx_heights.get(tx.hash)
        return height is not None and all(n.store.height() >= height for n in self.honest)

    def _done(self) -> bool:
        return bool(self.committed) and all(self._committed_everywhere(tx) for tx in self.txs)

    def _collect(self) -> None:
        r = self.result
        r.committed_blocks = len(self.committed)
        r.committed_txs = len(self.tx_heights)
        for node in self.nodes:
            if node.host is not None:
                for reason, n in node.host.replica.rejections.items():
                    r.rejections[reason] = r.rejections.get(reason, 0) + n
                for kind, n in node.host.replica.misbehaviour.items():
                    r.misbehaviour[kind] = r.misbehaviour.get(kind, 0) + n
        self._digest.update(str(sorted(self.committed.items())).encode())
        r.digest = self._digest.hexdigest()[:16]


def run_seed(seed: int, config: SimConfig | None = None, *,
             app: Application | None = None) -> SimResult:
    return Simulation(seed, config or SimConfig(), app=app).run()
