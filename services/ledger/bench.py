"""``ecosphere bench core``: the ledger core's throughput against the machine's limit.

Four replicas run in the deterministic simulator with no faults and every
check on: each replica verifies every transaction's signature once when it
admits it (from a client or from another replica's gossip batch), executes
every block, and verifies every envelope, proposal and vote. All four share
one process and one core, so the ceiling is about ``verify_per_s / 4``
committed transactions per second; ``ratio`` is ``committed_tps /
verify_per_s`` (0.25 would mean nothing but signature checks costs time).
Transactions are signed before the clock starts: clients sign, not replicas.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from services.ledger.core import crypto
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.sim.simulator import SimConfig, Simulation

CLIENTS = 200


def measure_verify_per_s(seconds: float = 1.0) -> float:
    key = crypto.PrivateKey.derive("bench/verify")
    digest = hashlib.sha256(b"bench").digest()
    signature = key.sign(digest)
    public = key.public.raw
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(200):
            crypto.verify(public, signature, digest)
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


def _signed_load(sim: Simulation, txs: int) -> list[Transaction]:
    keys = sim.testnet.client_keys
    out = []
    for i in range(txs):
        client = i % len(keys)
        out.append(sign_transaction(
            keys[client], chain_id=sim.testnet.genesis.chain_id, kind="notary.anchor",
            nonce=i // len(keys),
            payload={"digest": hashlib.sha256(f"bench/{i}".encode()).hexdigest()},
            created_at=sim.genesis_time))
    return out


def bench_core(*, txs: int = 20_000, replicas: int = 4) -> dict[str, Any]:
    config = SimConfig(replicas=replicas, byzantine=0, txs=0, clients=CLIENTS, faults=False)
    sim = Simulation(0, config)
    load = _signed_load(sim, txs)
    verify_per_s = measure_verify_per_s()
    for node in sim.nodes:
        node.boot()
    started = time.perf_counter()
    for i, tx in enumerate(load):
        node = sim.nodes[i % len(sim.nodes)]
        if node.host is None:
            raise RuntimeError(f"{node.name} is down during the benchmark")
        node.host.submit(tx)
        if i % 500 == 499:  # let the network and consensus run between client bursts
            sim.scheduler.run_until(sim.scheduler.now + 5)
    target = {tx.hash for tx in load}

    def done() -> bool:
        return len(sim.tx_heights) >= len(target) and all(
            n.store.height() >= max(sim.tx_heights.values()) for n in sim.nodes)

    while not done():
        sim.scheduler.run_until(sim.scheduler.now + 50, stop=done)
    elapsed = time.perf_counter() - started
    committed = len(target & sim.tx_heights.keys())
    committed_tps = committed / elapsed
    return {
        "replicas": replicas,
        "txs": committed,
        "blocks": len(sim.committed),
        "seconds": round(elapsed, 3),
        "committed_tps": round(committed_tps, 1),
        "verify_per_s": round(verify_per_s, 1),
        "ratio": round(committed_tps / verify_per_s, 4),
        "ceiling_tps": round(verify_per_s / replicas, 1),
    }
