"""``ecosphere bench gateway``: queries, projection lag and view rebuilds, measured.

Starts the five services over the real RabbitMQ with MongoDB views (a real
server from ``$MONGO_URI``/``--mongo-uri``, else an embedded SecantusDB server
started for the run), then:

1. **projection lag** — drives ``rate`` tx/s at the gateway from the load
   process while sampling the gateway's ``ecosphere_views_lag_seconds`` every
   100 ms; reports its p50/p99;
2. **read latency** — once the views have caught up (the time it took is
   reported), ``readers`` concurrent clients issue the main queries
   (transactions by sender, a transaction with its proof, recent blocks,
   events by type, a state value with its proof) through the SDK; reports
   p50/p99 per query and overall;
3. **rebuild** — stops the network and recreates every view from the
   gateway's chain into a fresh database; reports transactions per second.

Targets from the issue: queries p99 ≤ 20 ms, lag p99 ≤ 1 s, rebuild ≥ 10,000 tx/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.ledger.node import keys
from services.ledger.node.amqp import Topology, delete_topology
from services.ledger.node.settings import DEFAULT_AMQP_URL
from services.runtime.bench_network import BENCH_CLIENTS, _wait_ready
from services.runtime.datadir import SERVICES, DataDir, bench_client_key, ensure_genesis
from services.runtime.loadgen import percentile
from services.runtime.network import ProcessNetwork
from services.sdk.client import ApiError, AsyncClient

LAG_SAMPLE_S = 0.1


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


async def _sample_lag(port: int, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        value = await asyncio.to_thread(_metric, port, "ecosphere_views_lag_seconds")
        if value is not None:
            out.append(value)
        await asyncio.sleep(LAG_SAMPLE_S)


async def _start_secantus(path: Path, port: int) -> tuple[asyncio.subprocess.Process, str]:
    """The embedded server as a process of its own: in the benchmark's process it would
    share the interpreter lock with the clients it is measured by."""
    server = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    proc = await asyncio.create_subprocess_exec(
        server, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(path),
        "--standalone", "--log-level", "WARNING",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return proc, f"mongodb://127.0.0.1:{port}/?retryWrites=false"
        except OSError:
            await asyncio.sleep(0.2)
    proc.kill()
    raise RuntimeError("the embedded MongoDB-wire server did not start")


async def _wait_projected(port: int, timeout_s: float = 300) -> float:
    """Seconds until the views caught up with the chain after the load stopped."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        lag = await asyncio.to_thread(_metric, port, "ecosphere_views_lag_blocks")
        if lag == 0:
            break
        await asyncio.sleep(0.2)
    return round(time.monotonic() - started, 2)


async def _readers(url: str, *, seconds: float, readers: int) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {}
    async with AsyncClient(url) as client:
        senders = [bench_client_key(i).key_id for i in range(8)]
        first = await client.call("GET", "/v1/transactions", query={"sender": senders[0]})
        sample_hash = first["items"][0]["tx_hash"] if first["items"] else None
        digest = first["items"][0]["payload"]["digest"] if first["items"] else "0" * 64
        queries: list[tuple[str, Callable[[int], tuple[str, dict[str, Any] | None]]]] = [
            ("transactions_by_sender", lambda i: ("/v1/transactions",
                                                  {"sender": senders[i % len(senders)],
                                                   "limit": 20})),
            ("transaction_with_proof", lambda i: (f"/v1/transactions/{sample_hash}", None)),
            ("recent_blocks", lambda i: ("/v1/blocks", {"limit": 20})),
            ("events_by_type", lambda i: ("/v1/events", {"type": "notary.document.anchored",
                                                         "limit": 20})),
            ("state_with_proof", lambda i: (f"/v1/state/notary/anchor/{digest}", None)),
        ]
        deadline = time.monotonic() + seconds

        async def reader(n: int) -> None:
            i = n
            while time.monotonic() < deadline:
                name, build = queries[i % len(queries)]
                path, query = build(i)
                started = time.perf_counter()
                with contextlib.suppress(ApiError):
                    await client.call("GET", path, query=query)
                latencies.setdefault(name, []).append((time.perf_counter() - started) * 1000)
                i += 1

        await asyncio.gather(*(reader(n) for n in range(readers)))
    report = {name: {"count": len(v), "p50_ms": round(percentile(v, 50), 2),
                     "p99_ms": round(percentile(v, 99), 2)} for name, v in latencies.items()}
    everything = [x for v in latencies.values() for x in v]
    report["all"] = {"count": len(everything), "p50_ms": round(percentile(everything, 50), 2),
                     "p99_ms": round(percentile(everything, 99), 2)}
    return report


async def _rebuild(data: DataDir, mongo_uri: str) -> dict[str, Any]:
    from services.composition import view_specs
    from services.gateway.views.mongo import connect
    from services.gateway.views.projector import Projector
    from services.ledger.node.store import SqliteStore

    store = SqliteStore(data.store("gateway"))
    client = connect(mongo_uri)
    try:
        db = client[f"rebuild_{uuid.uuid4().hex[:10]}"]
        report = (await Projector(store, db, view_specs()).rebuild()).to_dict()
        await client.drop_database(db.name)
        return report
    finally:
        await client.close()
        store.close()


@dataclass
class ViewsBench:
    """A benchmark's network: the five services over the real RabbitMQ with MongoDB
    views (``mongo_uri``, ``$MONGO_URI`` or an embedded server process)."""

    data: DataDir
    network: ProcessNetwork
    mongo_uri: str
    embedded: bool
    gateway: str


@contextlib.asynccontextmanager
async def views_bench(name: str, port: int, *, mongo_uri: str | None = None,
                      extra_env: dict[str, str] | None = None) -> AsyncIterator[ViewsBench]:
    url = os.environ.get("ECOSPHERE_AMQP_URL", DEFAULT_AMQP_URL)
    root = Path(tempfile.mkdtemp(prefix=f"ecosphere-{name}-"))
    data = DataDir(root)
    ensure_genesis(data, bench_clients=BENCH_CLIENTS)
    embedded: asyncio.subprocess.Process | None = None
    mongo_uri = mongo_uri or os.environ.get("MONGO_URI")
    if mongo_uri is None:
        embedded, mongo_uri = await _start_secantus(root / "mongo", port + 50)
    prefix = f"{name}-{os.getpid()}"
    network = ProcessNetwork(data, port, url, prefix=prefix, extra_env={
        "ECOSPHERE_LOG_LEVEL": "WARNING", "ECOSPHERE_MONGO_URI": mongo_uri,
        "ECOSPHERE_VIEWS__DB_NAME": f"{name}_{uuid.uuid4().hex[:10]}", **(extra_env or {})})
    try:
        await network.start()
        await _wait_ready(port)
        yield ViewsBench(data, network, mongo_uri, embedded is not None,
                         f"http://127.0.0.1:{port}")
    finally:
        with contextlib.suppress(Exception):
            await network.stop()
        node_ids = [keys.load(data.node_key(s)).key_id for s in SERVICES]
        await delete_topology(url, Topology(prefix), node_ids)
        if embedded is not None and embedded.returncode is None:
            embedded.terminate()
            await embedded.wait()
        shutil.rmtree(root, ignore_errors=True)


async def bench_gateway(*, duration: float, rate: float, readers: int = 16,
                        mongo_uri: str | None = None, port: int = 18700) -> dict[str, Any]:
    figures: dict[str, Any] = {"rate": rate, "duration_s": duration}
    async with views_bench("benchgw", port, mongo_uri=mongo_uri) as bench:
        figures["mongo"] = "embedded SecantusDB" if bench.embedded else "MONGO_URI"
        lags: list[float] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_lag(port, stop, lags))
        cmd = [sys.executable, "-m", "services.runtime.loadgen",
               "--gateway", bench.gateway, "--duration", str(duration),
               "--count", str(int(rate * duration * 1.2) + 100), "--clients",
               str(BENCH_CLIENTS), "--mode", "rate", "--rate", str(rate)]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        stop.set()
        await sampler
        load = out.decode().strip().splitlines()[-1] if out else "{}"
        figures["load"] = json.loads(load)
        figures["lag_p50_s"] = round(percentile(lags, 50), 3)
        figures["lag_p99_s"] = round(percentile(lags, 99), 3)
        figures["lag_samples"] = len(lags)
        figures["catch_up_s"] = await _wait_projected(port)
        figures["queries"] = await _readers(bench.gateway, seconds=duration / 2,
                                            readers=readers)
        await bench.network.stop()
        figures["rebuild"] = await _rebuild(bench.data, bench.mongo_uri)
    figures["targets"] = {"queries_p99_ms": 20, "lag_p99_s": 1.0, "rebuild_tx_per_s": 10_000}
    return figures
