"""``ecosphere bench network``: the five services over the real RabbitMQ, under load.

Starts four validators and the gateway as separate processes on a fresh data
directory (its own AMQP prefix), waits until every one is ready, then runs
the load process (``services.runtime.loadgen``) against the gateway and
prints one JSON line:

``committed_tps``       transactions committed per second (as the gateway saw them)
``offered_tps``         transactions offered per second
``p50_ms`` / ``p99_ms`` submit → committed, per transaction (``?wait=commit``)
``verify_ceiling_tps``  Ed25519 verifications per second on this machine (same run)
                        × cores ÷ 5: every transaction is verified once by each of
                        the five replicas (the gateway at admission, the four
                        validators when its batch arrives), which bounds throughput
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from services.ledger.bench import measure_verify_per_s
from services.ledger.node import keys
from services.ledger.node.amqp import Topology, delete_topology
from services.ledger.node.settings import DEFAULT_AMQP_URL
from services.runtime.datadir import SERVICES, DataDir, ensure_genesis
from services.runtime.network import ProcessNetwork, admin_port

REPLICAS_VERIFYING = 5
BENCH_CLIENTS = 200


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


async def _wait_ready(base: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(_ready(admin_port(base, s)) for s in SERVICES):
            return
        await asyncio.sleep(0.3)
    raise RuntimeError("the network did not become ready")


async def bench_network(*, duration: float, rate: float | None, url: str | None = None,
                        port: int = 18500, batch: int = 200,
                        concurrency: int = 16) -> dict[str, Any]:
    url = url or os.environ.get("ECOSPHERE_AMQP_URL", DEFAULT_AMQP_URL)
    root = Path(tempfile.mkdtemp(prefix="ecosphere-bench-"))
    data = DataDir(root)
    ensure_genesis(data, bench_clients=BENCH_CLIENTS)
    prefix = f"bench-{os.getpid()}"
    env = {"ECOSPHERE_LOG_LEVEL": "WARNING"}
    for name in ("ECOSPHERE_AMQP__QUEUE_TYPE",):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if os.environ.get("ECOSPHERE_PROFILE_DIR"):
        env["ECOSPHERE_PROFILE_DIR"] = os.environ["ECOSPHERE_PROFILE_DIR"]
    network = ProcessNetwork(data, port, url, prefix=prefix, extra_env=env)
    try:
        await network.start()
        await _wait_ready(port)
        verify_per_s = measure_verify_per_s()
        count = int((rate or 6_000) * duration * 1.2) + batch
        cmd = [sys.executable, "-m", "services.runtime.loadgen",
               "--gateway", f"http://127.0.0.1:{port}", "--duration", str(duration),
               "--count", str(count), "--clients", str(BENCH_CLIENTS),
               "--batch", str(batch), "--concurrency", str(concurrency)]
        if rate is not None:
            cmd += ["--mode", "rate", "--rate", str(rate)]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"load process failed ({proc.returncode})")
        figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        await network.stop()
        node_ids = [keys.load(data.node_key(s)).key_id for s in SERVICES]
        await delete_topology(url, Topology(prefix), node_ids)
        if not os.environ.get("ECOSPHERE_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"bench: data kept in {root}", file=sys.stderr)
    cores = os.cpu_count() or 1
    figures.update({
        "mode": "rate" if rate is not None else "saturate",
        "verify_per_s": round(verify_per_s, 1),
        "cores": cores,
        "verify_ceiling_tps": round(verify_per_s * cores / REPLICAS_VERIFYING, 1),
    })
    return figures
