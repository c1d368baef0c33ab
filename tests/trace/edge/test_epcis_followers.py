"""The EPCIS binding's followers of the chain (services.trace.edge.epcis): the sweeper of
expired capture jobs, and starting and stopping the webhook dispatcher wherever it runs
(on its own, or on the gateway host's follower loop, services.runtime.gateway_host)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from services.gateway.api import CommitWaiters
from services.gateway.plugin import PluginContext
from services.runtime import gateway_host
from services.trace.edge.epcis.api import EpcisApi
from services.trace.edge.epcis.capture import CaptureDesk
from services.trace.edge.epcis.webhooks import WebhookDispatcher, WebhookLimits
from services.trace.edge.plugin import TracePlugin
from services.trace.edge.settings import TraceSettings

TTL_MS = 3_600_000


class Relay:
    """Signs and submits capture transactions the proposers will never include."""

    def __init__(self, tip: SimpleNamespace) -> None:
        self.tip = tip
        self._n = itertools.count(1)

    def sign(self, kind: str, payload: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(hash=next(self._n).to_bytes(32, "big"),
                               created_at=self.tip.time)

    def submit(self, tx: SimpleNamespace) -> None:
        """Accepted by the mempool; never committed."""


class StuckDb:
    """A views database whose every call hangs (MongoDB accepted and never answers)."""

    def __getitem__(self, name: str) -> StuckDb:
        return self

    async def find_one(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()


class Gateway:
    def __init__(self, db: Any = None, waiters: int = 100) -> None:
        self.tip = SimpleNamespace(time=1_000, height=5, params=SimpleNamespace(
            tx_ttl_ms=TTL_MS, tx_bytes_max=256 * 1024))
        self.listeners: list[Callable[[Any], None]] = []
        self.chain = SimpleNamespace(tip=self.tip, on_commit=self.on_commit,
                                     dry_run=lambda tx, now, assume_next_nonce: None)
        self.relay = Relay(self.tip)
        self.waiters = CommitWaiters(waiters)
        self.views = SimpleNamespace(current=lambda: db)

    def on_commit(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)


async def until(check: Callable[[], Any], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.01)


def dispatcher_runs() -> int:
    return sum(1 for t in asyncio.all_tasks() if not t.done()
               and getattr(t.get_coro(), "__qualname__", "") == WebhookDispatcher.run.__qualname__)


# --- C: expired capture jobs ----------------------------------------------------------


@pytest.mark.asyncio
async def test_expired_capture_jobs_are_swept_without_anyone_asking() -> None:
    """Found in review: jobs whose transaction expired kept their commit waiter until
    somebody used a capture endpoint; POST /v1/transactions?wait=commit got 503."""
    gateway = Gateway(waiters=3)
    desk = CaptureDesk(gateway, sweep_interval_s=0.05)
    for _ in range(3):
        desk.relay_capture({"method": "POST"}, "rollback")
    assert gateway.waiters.count == 3
    stop = asyncio.Event()
    sweeping = asyncio.create_task(desk.sweeper.run(stop))  # as the gateway host runs it
    try:
        gateway.tip.time += TTL_MS + 10  # past their time-to-live: they cannot commit
        await until(lambda: gateway.waiters.count == 0, timeout_s=2)
        assert [(j.running, j.errors[0]["code"]) for j in desk.jobs.values()] == [
            (False, "expired")] * 3
        gateway.waiters.wait(b"x" * 32)  # a client may wait for its commit again
    finally:
        stop.set()
        await asyncio.wait_for(sweeping, 5)


@pytest.mark.asyncio
async def test_a_commit_sweeps_at_once_and_the_host_runs_the_sweeper() -> None:
    gateway = Gateway()
    api = EpcisApi(gateway, sweep_interval_s=60.0)
    assert api.captures.sweeper in api.followers()  # run by the host, notified on commits
    job = api.captures.relay_capture({"method": "POST"}, "rollback")
    stop = asyncio.Event()
    sweeping = asyncio.create_task(api.captures.sweeper.run(stop))
    try:
        await asyncio.sleep(0.1)  # the first sweep: nothing expired yet
        assert job.running
        gateway.tip.time += TTL_MS + 10  # the commit of a block past the job's TTL ...
        api.captures.sweeper.notify()  # ... as the host tells its followers
        await until(lambda: not job.running, timeout_s=1)
        assert gateway.waiters.count == 0
    finally:
        stop.set()
        await asyncio.wait_for(sweeping, 5)


# --- D: starting and stopping the dispatcher ------------------------------------------


@pytest.mark.asyncio
async def test_stopping_a_dispatcher_stuck_in_a_round_is_bounded() -> None:
    """Found in review: stop() waited for the dispatcher with no timeout."""
    api = EpcisApi(Gateway(StuckDb()), webhook_limits=WebhookLimits(stop_timeout_s=0.2))
    await api.start()
    await until(lambda: api.webhooks.running)
    await asyncio.sleep(0.1)  # in its first round, waiting for MongoDB
    await asyncio.wait_for(api.stop(), 3)
    assert not api.webhooks.running and dispatcher_runs() == 0


@pytest.mark.asyncio
async def test_start_while_the_host_runs_the_dispatcher_starts_no_second_run() -> None:
    """Found in review: start() beside the host's run made a second run on the same
    follower loop (double deliveries, a leaked session); stop() then ended it for good."""
    gateway = Gateway()
    api = EpcisApi(gateway, webhook_limits=WebhookLimits(stop_timeout_s=1.0))
    host_stop = asyncio.Event()
    hosted = [asyncio.create_task(f.run(host_stop)) for f in api.followers()]
    try:
        await until(lambda: api.webhooks.running)
        await api.start()
        await api.start()
        await asyncio.sleep(0.05)
        assert dispatcher_runs() == 1
        await asyncio.wait_for(api.stop(), 3)  # halts the host's run, too
        assert hosted[0].done() and dispatcher_runs() == 0
        await api.start()  # ... which starts again, once
        await api.start()
        await until(lambda: api.webhooks.running)
        assert dispatcher_runs() == 1
        gateway.listeners[0](None)  # commits still reach it
        await asyncio.wait_for(api.stop(), 3)
        assert dispatcher_runs() == 0 and not gateway.listeners
    finally:
        host_stop.set()
        await asyncio.wait_for(asyncio.gather(*hosted), 5)


@pytest.mark.asyncio
async def test_the_host_cancels_a_follower_stuck_past_its_stop(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Found in review: followers_ctx waited FOLLOWERS_STOP_S for the followers and left
    the ones still running (here the trace plugin's dispatcher, stuck in MongoDB)."""
    monkeypatch.setattr(gateway_host, "FOLLOWERS_STOP_S", 0.2)
    gateway = Gateway(StuckDb())
    gateway.relay = None  # type: ignore[assignment]
    plugin = TracePlugin(PluginContext(host=gateway, data_dir=tmp_path, settings=TraceSettings(
        webhook_stop_timeout_s=60.0)))  # the plugin's own stop would wait a minute
    host = object.__new__(gateway_host.GatewayHost)
    host.settings = SimpleNamespace(views=SimpleNamespace(  # type: ignore[assignment]
        enabled=False, events_enabled=False))
    host.events_url = None
    host.chain = gateway.chain  # type: ignore[assignment]
    host.plugins = {"trace": plugin}
    host.views = SimpleNamespace(close=_nothing)  # type: ignore[assignment]
    serving = host.followers_ctx(web.Application()).__aiter__()
    await anext(serving)
    await until(lambda: plugin.epcis.webhooks.running)
    await asyncio.sleep(0.1)  # in its first round, waiting for MongoDB
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(serving), 5)
    assert not plugin.epcis.webhooks.running and dispatcher_runs() == 0


async def _nothing() -> None:
    return None
