"""Crash recovery and catch-up on the real store (SQLite, fsync) and a real clock.

The crash test runs ``ecosphere up`` in a child process and kills it with
SIGKILL while it commits under load; the restarted network must keep every
block it had committed, unchanged, agree on one chain and go on committing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.runtime.datadir import VALIDATOR_SERVICES, DataDir
from services.runtime.embedded import EmbeddedNetwork

SERVICES = [s for s, *_ in VALIDATOR_SERVICES]
pytestmark = pytest.mark.functional


def read_chain(db: Path) -> dict[int, bytes]:
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {h: bytes(b) for h, b in conn.execute("SELECT height, hash FROM blocks")}
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the store is being created right now
            return {}
        raise
    finally:
        conn.close()


def chains(data: DataDir) -> dict[str, dict[int, bytes]]:
    return {s: read_chain(data.store(s)) for s in SERVICES}


def assert_agree(all_chains: dict[str, dict[int, bytes]]) -> None:
    merged: dict[int, bytes] = {}
    for service, chain in all_chains.items():
        for height, block_hash in chain.items():
            assert merged.setdefault(height, block_hash) == block_hash, (
                f"{service} disagrees at height {height}")
        assert sorted(chain) == list(range(1, len(chain) + 1)), f"{service} has gaps"


def up(data: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--data", str(data),
                             "--report-s", "0.5", "--embedded", "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_height(data: DataDir, height: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if min(len(c) for c in chains(data).values()) >= height:
            return
        time.sleep(0.1)
    raise AssertionError(f"no height {height} within {timeout}s: "
                         f"{ {s: len(c) for s, c in chains(data).items()} }")


def test_sigkill_under_load_loses_nothing(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "net")
    target = 15
    for round_ in range(3):
        proc = up(data.root, "--load", "200")
        try:
            wait_height(data, target, timeout=60)
            time.sleep(0.05 + 0.13 * round_)  # land the kill at different points
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        before = chains(data)
        assert_agree(before)
        restarted = up(data.root, "--duration", "5", "--load", "50")  # slack for a busy CI
        out, _ = restarted.communicate(timeout=60)
        assert restarted.returncode == 0, out.decode()
        assert b"stopped cleanly" in out
        after = chains(data)
        assert_agree(after)
        for service in SERVICES:
            for height, block_hash in before[service].items():
                assert after[service].get(height) == block_hash, (
                    f"{service} lost or changed block {height} after SIGKILL")
        assert min(len(c) for c in after.values()) > max(len(c) for c in before.values())
        target = min(len(c) for c in after.values()) + 10


async def _run_for(network: EmbeddedNetwork, seconds: float, load: int = 100) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await network.drive_load(load, stop)


def _heights(network: EmbeddedNetwork) -> dict[str, int]:
    return {s: r.host.replica.tip.height for s, r in network.runners.items()}


async def _until(network: EmbeddedNetwork, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out: heights {_heights(network)}")


@pytest.mark.asyncio
async def test_catch_up_after_downtime_and_from_empty(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "net")
    network = EmbeddedNetwork(data, port=0)
    await network.start(services=("ledger", "trace", "customs"))  # credit is down
    await _run_for(network, 4.0)  # every 4th height waits out credit's turn
    assert min(_heights(network).values()) >= 4
    # A replica that was never up catches up from its peers.
    await network.start_one("credit")
    await _until(network, lambda: len(set(_heights(network).values())) == 1
                 and _heights(network)["credit"] >= 4, timeout=30)
    # One replica down for a while, then back.
    await network.stop_one("trace")
    await _run_for(network, 1.5)
    behind = max(_heights(network).values())
    await network.start_one("trace")
    await _until(network, lambda: _heights(network)["trace"] >= behind, timeout=30)
    # A replica restarted with an empty data directory rebuilds from its peers.
    await network.stop_one("customs")
    for suffix in ("", "-wal", "-shm"):
        Path(str(data.store("customs")) + suffix).unlink(missing_ok=True)
    assert not data.store("customs").exists()
    await _run_for(network, 0.5)
    top = max(_heights(network).values())
    await network.start_one("customs")
    await _until(network, lambda: _heights(network)["customs"] >= top, timeout=30)
    await _run_for(network, 1.0)
    failed = [r.failed for r in network.runners.values()]
    await network.stop()
    assert_agree(chains(data))
    assert failed == [None, None, None, None]
