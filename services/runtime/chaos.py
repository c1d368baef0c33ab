"""``ecosphere chaos``: a soak run of ``ecosphere up`` under faults, with its figures.

Starts ``ecosphere up`` (a child process, over the local RabbitMQ), offers load
from many senders — each sends single transactions without waiting, as real
clients do, and takes its next nonce from the gateway after any refusal — and
injects one fault per round: ``kill -9`` of a validator, of the current leader
or of the gateway (``up`` restarts it), or a drop of every broker connection.
Then it stops the load, waits for every accepted transaction to commit, and
prints one JSON object:

* ``rounds``: what each round did, when commits resumed after it and when the
  victim was back at the tip;
* ``accepted``: transactions the gateway accepted (``202``), ``committed``,
  ``lost`` (accepted, never committed), ``wedged_senders`` (senders whose accepted
  nonces did not all commit);
* ``identical_chains``: every validator's store holds the same block at every
  height.

A soak and a measurement, not a test: the bounds it reports are the tests' to
assert (``tests/integration/test_up_chaos.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.node import keys
from services.runtime.datadir import (
    VALIDATOR_SERVICES,
    DataDir,
    bench_client_key,
    ensure_genesis,
)
from services.runtime.network import admin_port

VALIDATORS = tuple(s for s, *_ in VALIDATOR_SERVICES)
FAULTS = ("kill_validator", "kill_leader", "kill_gateway", "broker_drop")
RESUME_WAIT_S = 60.0
COMMIT_WAIT_S = 90.0


@dataclass
class SenderState:
    key: PrivateKey
    next_nonce: int = 0
    accepted: dict[int, str] = field(default_factory=dict)  # nonce -> tx hash


@dataclass
class Chaos:
    data: DataDir
    port: int
    senders: list[SenderState]
    rate: float
    amqp_url: str | None
    rng: random.Random
    proc: subprocess.Popen[bytes] | None = None
    refused: dict[str, int] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- the network ---------------------------------------------------------------

    def start(self) -> None:
        env = {**os.environ, "ECOSPHERE_LOG_LEVEL": "WARNING"}
        if self.amqp_url:
            env["ECOSPHERE_AMQP_URL"] = self.amqp_url
        log = (self.data.root / "up.out").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--data", str(self.data.root),
             "--port", str(self.port), "--report-s", "0"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        subprocess.run([sys.executable, "-m", "services.cli", "broker", "remove", "--data",
                        str(self.data.root)], check=False, capture_output=True, timeout=60)

    def status(self) -> dict[str, Any]:
        return dict(json.loads((self.data.root / "up.json").read_text()))

    async def get(self, path: str, port: int | None = None) -> tuple[int, Any]:
        if self.session is None:
            raise RuntimeError("the chaos run's HTTP session is not open")
        try:
            async with self.session.get(f"http://127.0.0.1:{port or self.port}{path}",
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                body = await resp.read()
                if "json" in resp.headers.get("Content-Type", ""):
                    return resp.status, json.loads(body)
                return resp.status, body.decode()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return 0, None

    async def height(self, service: str) -> int:
        status, text = await self.get("/metrics", port=admin_port(self.port, service))
        if status != 200 or not isinstance(text, str):
            return -1
        for line in text.splitlines():
            if line.startswith("ecosphere_height "):
                return int(float(line.split()[1]))
        return -1

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        for service in (*VALIDATORS, "gateway"):
            while True:
                status, _ = await self.get("/readyz", port=admin_port(self.port, service))
                if status == 200:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{service} not ready in {timeout_s}s")
                await asyncio.sleep(0.2)

    # --- load ------------------------------------------------------------------------

    async def load(self, stop: asyncio.Event, chain_id: str) -> None:
        """Every sender in its own task, in nonce order, at ``rate / senders`` tx/s."""
        await asyncio.gather(*(self._send(sender, stop, chain_id) for sender in self.senders))

    async def _send(self, sender: SenderState, stop: asyncio.Event, chain_id: str) -> None:
        if self.session is None:
            raise RuntimeError("the chaos run's HTTP session is not open")
        interval = len(self.senders) / self.rate
        while not stop.is_set():
            started = time.monotonic()
            tx = _anchor(sender.key, chain_id, sender.next_nonce)
            try:
                async with self.session.post(
                        f"{self.gateway}/v1/transactions", data=tx.wire_bytes,
                        headers={"Content-Type": "application/json"},
                        timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    body = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                status, body = 0, {"code": type(exc).__name__}
            if status in (200, 202):
                sender.accepted[tx.nonce] = tx.hash.hex()
                sender.next_nonce += 1
            else:
                code = str(body.get("code", status)) if isinstance(body, dict) else str(status)
                self.refused[code] = self.refused.get(code, 0) + 1
                got, info = await self.get(f"/v1/keys/{sender.key.key_id}")
                if got == 200:
                    sender.next_nonce = int(info["next_usable_nonce"])
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def wedged(self) -> list[str]:
        out = []
        for sender in self.senders:
            if not sender.accepted:
                continue
            status, info = await self.get(f"/v1/keys/{sender.key.key_id}")
            if status != 200 or int(info["next_nonce"]) <= max(sender.accepted):
                out.append(sender.key.key_id)
        return out

    # --- faults ----------------------------------------------------------------------

    async def round(self, fault: str) -> dict[str, Any]:
        victim = None
        if fault == "kill_leader":
            height = await self.height("ledger")
            genesis = ensure_genesis(self.data)
            by_key = {keys.load(self.data.node_key(s)).key_id: s for s in VALIDATORS}
            victim = by_key[genesis.validators.proposer(height + 1, 0).key_id]
        elif fault == "kill_validator":
            victim = self.rng.choice(VALIDATORS)
        elif fault == "kill_gateway":
            victim = "gateway"
        watch = "ledger" if victim != "ledger" else "trace"
        before = await self.height(watch)
        old_pid = None
        started = time.monotonic()
        if victim is not None:
            # a victim still restarting from the last round: wait until it runs again
            # (killing a pid the supervisor already reaped could hit another process)
            if await self._until(lambda: self._running(victim)) is None:
                return {"fault": fault, "victim": victim, "skipped": "not running",
                        "commits_resumed_s": None, "victim_at_tip_s": None}
            old_pid = int(self.status()["services"][victim]["pid"])
            os.kill(old_pid, signal.SIGKILL)
        else:
            await asyncio.to_thread(
                subprocess.run, ["rabbitmqctl", "close_all_connections", "ecosphere chaos"],
                check=False, capture_output=True, timeout=60)
        resumed = await self._until(lambda: self._advanced(watch, before))
        back = None
        if victim is not None:
            await self._until(lambda: self._restarted(victim, old_pid))
            top = await self.height(watch)
            back = await self._until(lambda: self._at(victim, top))
        return {"fault": fault, "victim": victim,
                "commits_resumed_s": None if resumed is None else round(resumed - started, 2),
                "victim_at_tip_s": None if back is None else round(back - started, 2)}

    async def _advanced(self, service: str, before: int) -> bool:
        return await self.height(service) > before

    async def _running(self, service: str) -> bool:
        return bool(self.status()["services"][service]["running"])

    async def _restarted(self, service: str, old_pid: int | None) -> bool:
        entry = self.status()["services"][service]
        return bool(entry["running"]) and entry["pid"] != old_pid

    async def _at(self, service: str, height: int) -> bool:
        return await self.height(service) >= height

    @staticmethod
    async def _until(check: Any, timeout_s: float = RESUME_WAIT_S) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await check():
                return time.monotonic()
            await asyncio.sleep(0.05)
        return None


def _anchor(key: PrivateKey, chain_id: str, nonce: int) -> Transaction:
    digest = hashlib.sha256(f"chaos/{key.key_id}/{nonce}".encode()).hexdigest()
    return sign_transaction(key, chain_id=chain_id, kind="notary.anchor", nonce=nonce,
                            payload={"digest": digest}, created_at=int(time.time() * 1000))


def _chains(data: DataDir) -> dict[str, dict[int, bytes]]:
    out = {}
    for service in VALIDATORS:
        conn = sqlite3.connect(f"file:{data.store(service)}?mode=ro", uri=True, timeout=10)
        try:
            out[service] = {h: bytes(b) for h, b in conn.execute("SELECT height, hash "
                                                                  "FROM blocks")}
        finally:
            conn.close()
    return out


def _committed_hashes(data: DataDir) -> set[str]:
    conn = sqlite3.connect(f"file:{data.store('ledger')}?mode=ro", uri=True, timeout=10)
    try:
        out: set[str] = set()
        for (raw,) in conn.execute("SELECT block FROM blocks"):
            for tx in json.loads(raw)["txs"]:
                out.add(Transaction.from_wire(tx).hash.hex())
        return out
    finally:
        conn.close()


async def run_chaos(*, rounds: int, senders: int, rate: float, interval_s: float,
                    port: int, data_dir: Path | None, seed: int,
                    amqp_url: str | None) -> dict[str, Any]:
    root = data_dir or Path(tempfile.mkdtemp(prefix="ecosphere-chaos-"))
    data = DataDir(root)
    genesis = ensure_genesis(data, bench_clients=senders)
    chaos = Chaos(data, port, [SenderState(bench_client_key(i)) for i in range(senders)],
                  rate, amqp_url, random.Random(seed))
    chaos.start()
    began = time.monotonic()
    try:
        async with aiohttp.ClientSession() as session:
            chaos.session = session
            await chaos.wait_ready()
            stop = asyncio.Event()
            load = asyncio.create_task(chaos.load(stop, genesis.chain_id))
            results = []
            for i in range(rounds):
                await asyncio.sleep(interval_s)
                results.append(await chaos.round(FAULTS[i % len(FAULTS)]))
            await asyncio.sleep(interval_s)
            stop.set()
            await load
            settled = time.monotonic()
            wedged = await chaos.wedged()
            while wedged and time.monotonic() - settled < COMMIT_WAIT_S:
                await asyncio.sleep(0.5)
                wedged = await chaos.wedged()
            waited = time.monotonic() - settled
            top = await chaos.height("gateway")
            for service in VALIDATORS:
                await chaos._until(lambda s=service: chaos._at(s, top))
    finally:
        chaos.stop()
    accepted = {h for s in chaos.senders for h in s.accepted.values()}
    on_chain = _committed_hashes(data)
    chains = _chains(data)
    merged: dict[int, bytes] = {}
    identical = True
    for chain in chains.values():
        for height, block_hash in chain.items():
            identical &= merged.setdefault(height, block_hash) == block_hash
    resumed = [r["commits_resumed_s"] for r in results if r["commits_resumed_s"] is not None]
    back = [r["victim_at_tip_s"] for r in results if r["victim_at_tip_s"] is not None]
    return {
        "rounds": results,
        "seconds": round(time.monotonic() - began, 1),
        "senders": senders,
        "offered_tps": rate,
        "accepted": len(accepted),
        "committed": len(accepted & on_chain),
        "lost": len(accepted - on_chain),
        "wedged_senders": len(wedged),
        "all_committed_after_load_s": round(waited, 2),
        "refused": chaos.refused,
        "heights": {s: len(c) for s, c in chains.items()},
        "identical_chains": identical,
        "commits_resumed_max_s": max(resumed, default=None),
        "victim_at_tip_max_s": max(back, default=None),
        "data": str(root),
    }


__all__ = ["run_chaos"]
