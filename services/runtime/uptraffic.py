"""``ecosphere up --load TPS`` and its progress lines, for the network of processes.

The load is the demo merchant (``<data>/client/demo.key``) anchoring documents
through the gateway's public API, exactly as a client would: signed
transactions in small batches, each batch waiting for its commit. Its nonce
comes from the chain (``next_usable_nonce``) and is read again after any
refusal, so a refused batch never leaves the load stuck behind a gap.

Progress is read from the gateway (``/v1/status``) every ``report_s``: height,
blocks since the last line, the gateway's waiting transactions, and what the
load got committed or refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.transactions import sign_transaction
from services.sdk.client import ApiError, AsyncClient

TICK_S = 0.1
IN_FLIGHT_MAX = 64  # batches waiting for their commit at once
BATCH_MAX = 1_000  # transactions per request at most (the gateway's batch limit)


@dataclass
class LoadStats:
    sent: int = 0
    committed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    resync: bool = False  # a batch was refused: read the nonce from the chain again

    def refuse(self, code: str, count: int) -> None:
        self.refused[code] = self.refused.get(code, 0) + count
        self.resync = True


async def drive_load(gateway: str, key: PrivateKey, tps: int, stop: asyncio.Event,
                     stats: LoadStats) -> None:
    """Offer about ``tps`` transactions per second until ``stop``."""
    async with AsyncClient(gateway, timeout_s=60) as client:
        nonce: int | None = None
        chain_id: str | None = None
        owed = 0.0
        in_flight: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            try:
                if chain_id is None:
                    chain_id = str((await client.status())["chain_id"])
                if nonce is None:
                    info = await client.call("GET", f"/v1/keys/{key.key_id}")
                    nonce = int(info["next_usable_nonce"])
            except (aiohttp.ClientError, TimeoutError, ApiError, OSError):
                await _pause(stop, 1.0)  # the gateway is (re)starting
                continue
            # what a stalled gateway did not take is not owed for ever: at most one
            # batch waits, so a recovery is not met by a burst
            owed = min(owed + tps * TICK_S, float(BATCH_MAX))
            take = int(owed)
            if take and len(in_flight) < IN_FLIGHT_MAX:
                owed -= take
                now = int(time.time() * 1000)
                batch = []
                for n in range(nonce, nonce + take):
                    digest = hashlib.sha256(f"{key.key_id}/{n}".encode()).hexdigest()
                    batch.append(sign_transaction(
                        key, chain_id=chain_id, kind="notary.anchor", nonce=n,
                        payload={"digest": digest, "label": f"demo load {n}"},
                        created_at=now).wire_bytes)
                nonce += take
                task = asyncio.create_task(_post(client, batch, stats))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if stats.resync:
                stats.resync = False
                nonce = None
            await _pause(stop, TICK_S)
        if in_flight:
            await asyncio.wait(in_flight, timeout=5)


async def _post(client: AsyncClient, batch: list[bytes], stats: LoadStats) -> None:
    stats.sent += len(batch)
    try:
        results = await client.submit_wire(batch, wait=True)
    except ApiError as exc:
        stats.refuse(exc.code, len(batch))
        return
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        stats.refuse(type(exc).__name__, len(batch))
        return
    for result in results:
        if result.get("status") == "committed":
            stats.committed += 1
        elif result.get("status") == "rejected":
            stats.refuse(str(result.get("code", "rejected")), 1)


async def report(gateway: str, every_s: float, stop: asyncio.Event,
                 say: Callable[[str], None], load: LoadStats | None) -> None:
    """Print one progress line every ``every_s`` seconds until ``stop``."""
    last_height: int | None = None
    last_committed = 0
    async with AsyncClient(gateway, timeout_s=max(1.0, every_s)) as client:
        while not stop.is_set():
            await _pause(stop, every_s)
            if stop.is_set():
                return
            try:
                status: dict[str, Any] = await client.status()
                height, waiting = int(status["height"]), status["mempool_txs"]
            except (aiohttp.ClientError, TimeoutError, ApiError, OSError) as exc:
                say(f"ecosphere: gateway not answering ({type(exc).__name__})")
                continue
            except (KeyError, TypeError, ValueError) as exc:
                say(f"ecosphere: the gateway's status lacks {exc} (another version?)")
                continue
            line = (f"ecosphere: height={height} "
                    f"(+{height - (last_height if last_height is not None else height)} "
                    f"blocks) waiting_txs={waiting}")
            if load is not None:
                line += (f" load: committed={load.committed} "
                         f"(+{load.committed - last_committed}) sent={load.sent}"
                         + (f" refused={load.refused}" if load.refused else ""))
                last_committed = load.committed
            say(line)
            last_height = height


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
