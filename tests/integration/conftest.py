"""Integration fixtures: the five services as processes over the real RabbitMQ.

Each test gets its own data directory, its own AMQP prefix (so its queues and
exchanges are its own) and its own ports. Without a broker the tests skip
locally with the reason; under CI (``CI=true``) they fail instead: CI must
run them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.node import keys
from services.ledger.node.amqp import Topology, broker_answers, delete_topology
from services.ledger.node.settings import DEFAULT_AMQP_URL
from services.runtime.datadir import SERVICES, DataDir, ensure_genesis
from services.runtime.network import ProcessNetwork, admin_port

AMQP_URL = os.environ.get("ECOSPHERE_TEST_AMQP_URL", DEFAULT_AMQP_URL)


def _broker_up() -> bool:
    return asyncio.run(broker_answers(AMQP_URL))


@pytest.fixture(scope="session")
def broker_url() -> str:
    if not _broker_up():
        if os.environ.get("CI") == "true":
            pytest.fail(f"no AMQP broker at {AMQP_URL}: CI must run the integration tests")
        pytest.skip(f"no AMQP broker at {AMQP_URL} (start one: rabbitmq-server -detached)")
    return AMQP_URL


def free_port_block(size: int = 5) -> int:
    """A base port with ``size`` consecutive free ports above it."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + size >= 65535:
            continue
        ok = True
        for port in range(base, base + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


class Net:
    """A running five-process network and a tiny client for it (the SDK comes later)."""

    def __init__(self, root: Path, url: str, env: dict[str, str] | None = None) -> None:
        self.data = DataDir(root)
        self.genesis = ensure_genesis(self.data)
        self.port = free_port_block()
        self.prefix = f"test-{uuid.uuid4().hex[:10]}"
        self.url = url
        self.network = ProcessNetwork(self.data, self.port, url, prefix=self.prefix,
                                      extra_env={"ECOSPHERE_LOG_LEVEL": "INFO", **(env or {})})
        self.loop = asyncio.new_event_loop()
        self.client_key: PrivateKey = keys.load(self.data.demo_key)
        self.nonce = 0

    # --- processes -----------------------------------------------------------------

    def start(self, *services: str) -> None:
        for service in services or SERVICES:
            self.loop.run_until_complete(self.network.start_one(service))

    def stop(self, service: str) -> int | None:
        return self.loop.run_until_complete(self.network.stop_one(service))

    def kill9(self, service: str) -> None:
        self.network.kill(service)
        proc = self.network.procs[service]
        self.loop.run_until_complete(proc.wait())

    def close(self) -> None:
        self.loop.run_until_complete(self.network.stop())
        node_ids = [keys.load(self.data.node_key(s)).key_id for s in SERVICES]
        self.loop.run_until_complete(delete_topology(self.url, Topology(self.prefix), node_ids))
        self.loop.close()

    # --- HTTP --------------------------------------------------------------------------

    def http(self, method: str, path: str, body: Any = None, port: int | None = None,
             timeout: float = 35.0) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port or self.port}{path}", data=data,
                                     method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
                ctype = resp.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            raw, status, ctype = exc.read(), exc.code, exc.headers.get("content-type", "")
        return status, json.loads(raw) if "json" in ctype else raw.decode()

    def metrics(self, service: str) -> dict[str, float]:
        status, text = self.http("GET", "/metrics", port=admin_port(self.port, service))
        assert status == 200
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def height(self, service: str = "gateway") -> int:
        return int(self.metrics(service).get("ecosphere_height", -1))

    def wait_ready(self, timeout: float = 60.0, services: tuple[str, ...] = SERVICES) -> None:
        deadline = time.monotonic() + timeout
        pending = set(services)
        while pending and time.monotonic() < deadline:
            for service in list(pending):
                try:
                    status, _ = self.http("GET", "/readyz", port=admin_port(self.port, service),
                                          timeout=2)
                except OSError:
                    continue
                if status == 200:
                    pending.discard(service)
            time.sleep(0.2)
        assert not pending, f"not ready: {pending}"

    def wait_height(self, height: int, service: str = "gateway", timeout: float = 60.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if self.height(service) >= height:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{service} did not reach height {height} in {timeout}s")

    # --- transactions -----------------------------------------------------------------

    def tx(self, label: str = "") -> Transaction:
        digest = hashlib.sha256(f"{self.prefix}/{self.nonce}/{label}".encode()).hexdigest()
        tx = sign_transaction(self.client_key, chain_id=self.genesis.chain_id,
                              kind="notary.anchor", nonce=self.nonce,
                              payload={"digest": digest, "label": label[:100]},
                              created_at=int(time.time() * 1000))
        self.nonce += 1
        return tx

    def submit(self, txs: list[Transaction], *, wait: bool = True) -> list[dict[str, Any]]:
        query = "?wait=commit" if wait else ""
        status, body = self.http("POST", f"/v1/transactions{query}",
                                 {"transactions": [t.to_wire() for t in txs]})
        assert status in (200, 202), body
        return list(body["transactions"])


@pytest.fixture
def net_factory(broker_url: str, tmp_path: Path) -> Iterator[Any]:
    nets: list[Net] = []

    def make(env: dict[str, str] | None = None, name: str = "net") -> Net:
        net = Net(tmp_path / name, broker_url, env)
        nets.append(net)
        return net

    yield make
    for net in nets:
        net.close()


def read_chain(db: Path) -> dict[int, bytes]:
    import sqlite3

    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {h: bytes(b) for h, b in conn.execute("SELECT height, hash FROM blocks")}
    finally:
        conn.close()


def tx_hashes_in_chain(db: Path) -> set[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        out: set[str] = set()
        for (raw,) in conn.execute("SELECT block FROM blocks"):
            block = json.loads(raw)
            for tx in block["txs"]:
                out.add(Transaction.from_wire(tx).hash.hex())
        return out
    finally:
        conn.close()
