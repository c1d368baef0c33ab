"""The five services as processes over the real RabbitMQ, under hostile messages and
lost data. (kill -9 and broker drops run through ``ecosphere up`` itself, in
``test_up_chaos``.)"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.wire import seal
from services.ledger.node import keys
from services.runtime.datadir import SERVICES
from tests.integration.conftest import Net, RunningNetwork, read_chain, tx_hashes_in_chain

pytestmark = pytest.mark.functional
VALIDATORS = ("ledger", "trace", "customs", "credit")


def chains(net: RunningNetwork, services: tuple[str, ...] = SERVICES
           ) -> dict[str, dict[int, bytes]]:
    return {s: read_chain(net.data.store(s)) for s in services}


def assert_same_chain(net: RunningNetwork, services: tuple[str, ...] = SERVICES) -> int:
    """All replicas hold the same blocks at every common height; returns the lowest tip."""
    merged: dict[int, bytes] = {}
    all_chains = chains(net, services)
    for service, chain in all_chains.items():
        assert sorted(chain) == list(range(1, len(chain) + 1)), f"{service} has a gap"
        for height, block_hash in chain.items():
            assert merged.setdefault(height, block_hash) == block_hash, (
                f"{service} differs at height {height}")
    return min(len(c) for c in all_chains.values())


class Load:
    """A client thread submitting batches and remembering what was committed."""

    def __init__(self, net: RunningNetwork, batch: int = 20) -> None:
        self.net = net
        self.batch = batch
        self.committed: set[str] = set()
        self.errors: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            txs = [self.net.tx("load") for _ in range(self.batch)]
            try:
                results = self.net.submit(txs, wait=True)
            except Exception as exc:
                self.errors.append(exc)
                time.sleep(0.2)
                continue
            for r in results:
                if r["status"] == "committed":
                    self.committed.add(r["tx_hash"])
            pending = [r for r in results if r["status"] != "committed"]
            if pending:
                # a refused batch leaves a nonce gap: resynchronise from the chain
                self.errors.append(pending[0])
                time.sleep(0.5)
                status, key = self.net.http("GET", f"/v1/keys/{self.net.client_key.key_id}")
                if status == 200:
                    self.net.nonce = key["next_usable_nonce"]

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_commits_over_rabbitmq_with_proofs(net_factory: Any) -> None:
    net: Net = net_factory()
    net.start()
    net.wait_ready()
    results = net.submit([net.tx(f"doc {i}") for i in range(30)])
    assert {r["status"] for r in results} == {"committed"}, results[:3]
    receipt = results[0]
    assert receipt["proof"]["tree_size"] >= 1 and receipt["certificate"]["votes"]
    status, block = net.http("GET", f"/v1/blocks/{receipt['height']}")
    assert status == 200
    assert block["block"]["header"]["tx_root"] and block["certificate"]["height"] == (
        receipt["height"])
    status, problem = net.http("GET", "/v1/blocks/999999")
    assert status == 404 and problem["code"] == "block_not_found"
    net.wait_height(receipt["height"], service="credit")
    assert_same_chain(net, VALIDATORS)


async def _publish_raw(url: str, exchange: str, bodies: list[bytes]) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        ex = await channel.get_exchange(exchange)
        for body in bodies:
            await ex.publish(aio_pika.Message(body), routing_key="")
    finally:
        await connection.close()


def _rejected(net: Net, service: str) -> float:
    return sum(v for k, v in net.metrics(service).items()
               if k.startswith("ecosphere_rejected_messages_total"))


def test_garbage_forged_oversized_and_replayed_messages_are_refused(
        net_factory: Any) -> None:
    net: Net = net_factory(env={"ECOSPHERE_LIMITS__MESSAGE_BYTES_MAX": str(1 << 20)})
    net.start()
    net.wait_ready()
    chain_id = net.genesis.chain_id
    outsider = PrivateKey.derive("outsider")
    ledger_key = keys.load(net.data.node_key("ledger"))
    valid_status = seal(ledger_key, chain_id, "status", {"height": 0, "round": 0})
    forged = bytearray(valid_status)
    at = forged.rfind(b'"signature":"') + 20
    forged[at] = ord("1") if forged[at] == ord("0") else ord("0")  # still hex, wrong
    bodies = [
        b"\x00\xffgarbage",
        b"not json at all",
        json.dumps({"chain_id": chain_id, "type": "vote", "from": "x",
                    "body": {}}).encode(),  # unsigned
        seal(outsider, chain_id, "status", {"height": 1, "round": 0}),  # unknown sender
        bytes(forged),  # wrongly signed
        seal(ledger_key, "another-chain", "status", {"height": 1, "round": 0}),
        b"[" * 5000,
        b'{"a":' + b"1" * (2 << 20) + b"}",  # oversized
    ]
    before = {s: _rejected(net, s) for s in VALIDATORS}
    height = net.height("gateway")
    # Stays sync: Net's start/stop run their own loop, which cannot run inside another one.
    asyncio.run(_publish_raw(net.url, f"{net.prefix}.consensus", bodies))
    asyncio.run(_publish_raw(net.url, f"{net.prefix}.txs", bodies[:3]))
    # replay: a genuine message seen before is refused as a duplicate or is harmless
    asyncio.run(_publish_raw(net.url, f"{net.prefix}.consensus", [valid_status] * 3))
    net.wait_height(height + 3, timeout=30)
    for service in VALIDATORS:
        gained = _rejected(net, service) - before[service]
        assert gained >= len(bodies) - 1, (service, gained)
        status, _ = net.http("GET", "/healthz",
                             port=net.port + 1 + VALIDATORS.index(service))
        assert status == 200
    metrics = net.metrics("ledger")
    assert metrics.get('ecosphere_rejected_messages_total{reason="bad_signature"}', 0) >= 1
    assert metrics.get('ecosphere_rejected_messages_total{reason="unknown_sender"}', 0) >= 1
    assert metrics.get('ecosphere_rejected_messages_total{reason="amqp_oversized"}', 0) >= 1
    assert net.submit([net.tx("still fine")])[0]["status"] == "committed"
    assert_same_chain(net, VALIDATORS)


def test_validator_with_an_empty_data_directory_rebuilds_from_peers(
        net_factory: Any) -> None:
    net: Net = net_factory()
    net.start()
    net.wait_ready()
    net.submit([net.tx(f"before {i}") for i in range(20)])
    assert net.stop("customs") == 0
    store = net.data.store("customs")
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    net.submit([net.tx(f"meanwhile {i}") for i in range(10)])
    top = net.height("ledger")
    net.start("customs")
    net.wait_height(top, service="customs", timeout=60)
    assert_same_chain(net, VALIDATORS)
    assert tx_hashes_in_chain(store) == tx_hashes_in_chain(net.data.store("ledger")) or (
        tx_hashes_in_chain(store) >= tx_hashes_in_chain(net.data.store("ledger")))
