"""The benchmark's load process: signs transactions ahead of time, then offers them to
the gateway and measures submit → committed (``?wait=commit``) per transaction.

Run by ``ecosphere bench network`` as a separate process, so that signing and
HTTP on the client side do not share a process with any service. Prints one
JSON line on stdout.

Modes: ``saturate`` keeps ``concurrency`` batch requests in flight;
``rate`` offers ``rate`` transactions per second in ticks of 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from typing import Any

import aiohttp

from services.ledger.core.transactions import Transaction, sign_transaction
from services.runtime.datadir import bench_client_key
from services.sdk.client import ApiError, AsyncClient

TICK_S = 0.01


def presign(chain_id: str, clients: int, count: int, created_at: int,
            start_nonce: int = 0) -> list[bytes]:
    """``count`` transactions spread over ``clients`` senders, as request-ready JSON."""
    keys = [bench_client_key(i) for i in range(clients)]
    out = []
    for i in range(count):
        client, nonce = i % clients, start_nonce + i // clients
        tx: Transaction = sign_transaction(
            keys[client], chain_id=chain_id, kind="notary.anchor", nonce=nonce,
            payload={"digest": hashlib.sha256(f"bench/{created_at}/{i}".encode()).hexdigest()},
            created_at=created_at)
        out.append(tx.wire_bytes)
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Recorder:
    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.committed = 0
        self.offered = 0
        self.refused: dict[str, int] = {}

    async def post(self, client: AsyncClient, batch: list[bytes]) -> None:
        self.offered += len(batch)
        started = time.perf_counter()
        try:
            results = await client.submit_wire(batch, wait=True)
        except (aiohttp.ClientError, TimeoutError, ApiError) as exc:
            name = exc.code if isinstance(exc, ApiError) else type(exc).__name__
            self.refused[name] = self.refused.get(name, 0) + len(batch)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        for result in results:
            if result.get("status") == "committed":
                self.committed += 1
                self.latencies_ms.append(elapsed_ms)
            else:
                code = result.get("code", result.get("status", "unknown"))
                self.refused[code] = self.refused.get(code, 0) + 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with AsyncClient(args.gateway, timeout_s=120) as client:
        status = await client.status()
        chain_id = status["chain_id"]
        created_at = int(status["server_time"])
        total = int(args.count)
        txs = presign(chain_id, args.clients, total, created_at, args.start_nonce)
        rec = Recorder()
        started = time.perf_counter()
        if args.mode == "saturate":
            queue = [txs[i:i + args.batch] for i in range(0, len(txs), args.batch)]

            async def worker() -> None:
                while queue and time.perf_counter() - started < args.duration:
                    await rec.post(client, queue.pop(0))

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        else:
            per_tick = args.rate * TICK_S
            owed = 0.0
            cursor = 0
            pending: set[asyncio.Task[None]] = set()
            next_tick = started
            while time.perf_counter() - started < args.duration and cursor < len(txs):
                owed += per_tick
                take = int(owed)
                owed -= take
                if take:
                    task = asyncio.create_task(rec.post(client, txs[cursor:cursor + take]))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    cursor += take
                next_tick += TICK_S
                await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
            if pending:
                await asyncio.wait(pending)
        elapsed = time.perf_counter() - started
    return {
        "committed": rec.committed,
        "offered": rec.offered,
        "seconds": round(elapsed, 3),
        "committed_tps": round(rec.committed / elapsed, 1),
        "offered_tps": round(rec.offered / elapsed, 1),
        "p50_ms": round(percentile(rec.latencies_ms, 50), 1),
        "p99_ms": round(percentile(rec.latencies_ms, 99), 1),
        "refused": rec.refused,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loadgen")
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--mode", choices=["saturate", "rate"], default="saturate")
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--start-nonce", type=int, default=0)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
