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
import signal
import socket
import subprocess
import sys
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
from services.runtime.datadir import SERVICES, DataDir, ensure_genesis, network_prefix
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


class RunningNetwork:
    """What tests do with a running five-service network, however it was started."""

    data: DataDir
    genesis: Any
    port: int
    prefix: str
    url: str
    client_key: PrivateKey
    nonce: int

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

    def tx(self, label: str = "", key: PrivateKey | None = None,
           nonce: int | None = None) -> Transaction:
        """A notary anchor by the demo key (its running nonce) or by ``key`` at ``nonce``."""
        if key is None:
            key, nonce = self.client_key, self.nonce
            self.nonce += 1
        if nonce is None:
            raise ValueError("a key other than the demo key needs its nonce")
        digest = hashlib.sha256(f"{self.prefix}/{key.key_id}/{nonce}/{label}".encode()
                                ).hexdigest()
        return sign_transaction(key, chain_id=self.genesis.chain_id,
                                kind="notary.anchor", nonce=nonce,
                                payload={"digest": digest, "label": label[:100]},
                                created_at=int(time.time() * 1000))

    def submit(self, txs: list[Transaction], *, wait: bool = True) -> list[dict[str, Any]]:
        query = "?wait=commit" if wait else ""
        status, body = self.http("POST", f"/v1/transactions{query}",
                                 {"transactions": [t.to_wire() for t in txs]})
        assert status in (200, 202), body
        return list(body["transactions"])


class Net(RunningNetwork):
    """The five services as processes the test starts and stops one by one (no
    supervisor: a service the test stops stays stopped)."""

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


class UpNet(RunningNetwork):
    """The network as a user runs it: ``ecosphere up`` in a child process, which starts
    and supervises the five services (its children: pids in ``<data>/up.json``)."""

    def __init__(self, root: Path, url: str, *, senders: int = 0,
                 env: dict[str, str] | None = None) -> None:
        self.data = DataDir(root)
        # Extra member keys (the benchmark's deterministic ones) for many senders.
        self.genesis = ensure_genesis(self.data, bench_clients=senders)
        self.port = free_port_block()
        self.prefix = network_prefix(self.genesis)
        self.url = url
        self.env = {**os.environ, "ECOSPHERE_AMQP_URL": url, "ECOSPHERE_LOG_LEVEL": "INFO",
                    **(env or {})}
        self.env.pop("ECOSPHERE_AMQP__PREFIX", None)
        self.client_key = keys.load(self.data.demo_key)
        self.nonce = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.out_path = root / "up.out"

    def start(self) -> None:
        out = self.out_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--data", str(self.data.root),
             "--port", str(self.port), "--report-s", "0"],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def status(self) -> dict[str, Any]:
        path = self.data.root / "up.json"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                return dict(json.loads(path.read_text()))
            except (OSError, ValueError):
                time.sleep(0.1)
        raise AssertionError(f"no up.json; up said:\n{self.output()}")

    def pid(self, service: str) -> int:
        return int(self.status()["services"][service]["pid"])

    def kill9(self, service: str) -> int:
        """SIGKILL one of ``up``'s children; returns the pid killed."""
        pid = self.pid(service)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, service: str, old_pid: int, timeout: float = 30.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            entry = self.status()["services"][service]
            if entry["pid"] != old_pid and entry["running"]:
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"{service} was not restarted; up said:\n{self.output()}")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        subprocess.run([sys.executable, "-m", "services.cli", "broker", "remove", "--data",
                        str(self.data.root), "--amqp-url", self.url], check=False,
                       capture_output=True, timeout=60)


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


@pytest.fixture
def up_factory(broker_url: str, tmp_path: Path) -> Iterator[Any]:
    nets: list[UpNet] = []

    def make(senders: int = 0, env: dict[str, str] | None = None, name: str = "up") -> UpNet:
        net = UpNet(tmp_path / name, broker_url, senders=senders, env=env)
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
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the store is being created right now
            return {}
        raise
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
