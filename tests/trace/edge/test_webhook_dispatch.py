"""EPCIS webhook deliveries against hostile and slow destinations
(services.trace.edge.epcis.webhooks), and the per-organisation subscription cap
(services.trace.edge.epcis.named): real HTTP servers on loopback, the views on the
session's MongoDB-wire server."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.policies import PRINCIPAL
from services.trace.edge.epcis.api import EpcisApi
from services.trace.edge.epcis.binding import QUERIES, SUBSCRIPTIONS
from services.trace.edge.epcis.webhooks import WebhookDispatcher, WebhookLimits
from services.trace.edge.views import EPCIS_EVENTS

pytestmark = pytest.mark.functional

MIB = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ActiveView:
    """A chain state in which every key and organisation is active (a key id is also
    its organisation's id)."""

    def get(self, key: str) -> dict[str, Any]:
        ident = key.rsplit("/", 1)[-1]
        return {"status": "active", "org": ident, "public_key": "00" * 32}


class Gateway:
    """The part of the gateway's API the EPCIS binding uses, over ``db`` (or none)."""

    def __init__(self, db: Any = None) -> None:
        self.db = db
        self.chain = SimpleNamespace(view=ActiveView, tip=SimpleNamespace(height=5, time=0),
                                     on_commit=lambda _listener: lambda: None)
        self.views = SimpleNamespace(current=lambda: self.db)

    def views_db(self) -> Any:
        return self.db

    async def views_call(self, work: Awaitable[Any]) -> Any:
        return await work


async def serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    return runner, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"


@pytest_asyncio.fixture
async def running() -> AsyncIterator[Callable[[WebhookDispatcher], Awaitable[None]]]:
    """Runs dispatchers as the gateway host does (stopped at the end of the test)."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def run(dispatcher: WebhookDispatcher) -> None:
        tasks.append(asyncio.create_task(dispatcher.run(stop)))
        while not dispatcher.running:
            await asyncio.sleep(0.01)

    yield run
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)


def sub(dest: str, ident: str = "s1", owner: str = "org-a") -> dict[str, Any]:
    return {"_id": ident, "dest": dest, "secret": "s3cret", "query": "q", "owner": owner,
            "owner_key": owner}


# --- A: what a destination answers ---------------------------------------------------


@pytest.mark.asyncio
async def test_a_compressed_answer_is_never_inflated(running: Any) -> None:
    """Found in review: a 2xx answer of a gzip bomb (100 KiB on the wire) was inflated
    whole in the gateway's memory (RSS +414 MiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = packer.compress(bytes(32 * MIB)) + packer.flush()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip",
                                                "Content-Type": "application/json"})

    runner, url = await serve(hook)
    try:
        dispatcher = WebhookDispatcher(Gateway(), WebhookLimits(loopback_allowed=True))
        await running(dispatcher)
        tracemalloc.start()
        try:
            error = await dispatcher.post_callback(sub(url), b"{}")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert error is None  # delivered: a 2xx is all that counts
        assert peak < 4 * MIB, f"{peak / MIB:.1f} MiB held for one answer"
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_an_endless_answer_is_read_up_to_its_limit(running: Any) -> None:
    """A destination that answers 2xx and never ends its body: the delivery is done
    after ``response_bytes_max`` bytes, not at its timeout."""
    async def hook(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65_536)
        except (ConnectionError, RuntimeError):
            return response

    runner, url = await serve(hook)
    try:
        dispatcher = WebhookDispatcher(Gateway(), WebhookLimits(
            loopback_allowed=True, delivery_timeout_s=5.0, response_bytes_max=1_000))
        await running(dispatcher)
        started = time.monotonic()
        assert await dispatcher.post_callback(sub(url), b"{}") is None
        assert time.monotonic() - started < 2.5
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_a_refusal_keeps_a_short_excerpt_of_its_answer(running: Any) -> None:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503, body=b"busy " + b"y" * MIB)

    runner, url = await serve(hook)
    try:
        dispatcher = WebhookDispatcher(Gateway(), WebhookLimits(loopback_allowed=True))
        await running(dispatcher)
        error = await dispatcher.post_callback(sub(url), b"{}")
        assert error is not None and error.startswith("HTTP 503: busy yyy")
        assert len(error) < 300
    finally:
        await runner.cleanup()


# --- E: one organisation's slow destinations ----------------------------------------


class Destinations:
    """A fast and a slow webhook endpoint; the slow one answers when released, and
    records how many deliveries of each subscription it holds at once."""

    def __init__(self) -> None:
        self.fast_calls = 0
        self.release = asyncio.Event()
        self.holding: dict[str, int] = {}
        self.most_held: dict[str, int] = {}
        self.most_held_in_all = 0
        self.runners: list[web.AppRunner] = []

    async def start(self) -> tuple[str, str]:
        async def fast(request: web.Request) -> web.Response:
            await request.read()
            self.fast_calls += 1
            return web.Response(status=204)

        async def slow(request: web.Request) -> web.Response:
            await request.read()
            sub_id = request.headers["GS1-Subscription-ID"]
            self.holding[sub_id] = self.holding.get(sub_id, 0) + 1
            self.most_held[sub_id] = max(self.most_held.get(sub_id, 0),
                                         self.holding[sub_id])
            self.most_held_in_all = max(self.most_held_in_all, sum(self.holding.values()))
            try:
                await asyncio.wait_for(self.release.wait(), 10)
            finally:
                self.holding[sub_id] -= 1
            return web.Response(status=204)

        urls = []
        for handler in (fast, slow):
            runner, url = await serve(handler)
            self.runners.append(runner)
            urls.append(url)
        return urls[0], urls[1]

    async def stop(self) -> None:
        self.release.set()
        for runner in self.runners:
            await runner.cleanup()


async def subscribe(db: Any, subs: list[tuple[str, str, str]]) -> None:
    """(id, owner, dest) subscriptions reporting every round even when nothing matched."""
    await db[QUERIES].insert_one({"_id": "q", "owner": "org-a", "owner_key": "org-a",
                                  "query": [], "created": 0})
    await db[SUBSCRIPTIONS].insert_many([{
        "_id": ident, "query": "q", "owner": owner, "owner_key": owner, "dest": dest,
        "secret": "s3cret", "report_if_empty": True, "created": 0, "cursor": -1,
        "status": "active", "failures": 0, "next_attempt_ms": 0, "last_report_ms": 0,
        "delivered_events": 0, "last_error": None} for ident, owner, dest in subs])


@pytest.mark.asyncio
async def test_slow_destinations_do_not_hold_other_organisations(
        mongo_db: Any, running: Any) -> None:
    """Found in review: a round waited for all its deliveries, so one organisation's
    slow destinations delayed every other organisation's callbacks."""
    places = Destinations()
    fast, slow = await places.start()
    try:
        await subscribe(mongo_db, [("a1", "org-a", slow), ("b1", "org-b", fast)])
        dispatcher = WebhookDispatcher(Gateway(mongo_db), WebhookLimits(
            loopback_allowed=True, poll_interval_s=0.05, report_if_empty_interval_s=0.05,
            delivery_timeout_s=10.0))
        await running(dispatcher)
        await asyncio.sleep(1.5)
        assert places.holding.get("a1") == 1  # still waiting for its answer ...
        assert places.fast_calls >= 3  # ... while org-b's deliveries go on
        assert places.most_held == {"a1": 1}  # one delivery in flight per subscription
    finally:
        await places.stop()


@pytest.mark.asyncio
async def test_one_organisation_holds_at_most_its_share_of_the_slots(
        mongo_db: Any, running: Any) -> None:
    places = Destinations()
    fast, slow = await places.start()
    try:
        await subscribe(mongo_db, [("a1", "org-a", slow), ("a2", "org-a", slow),
                                   ("a3", "org-a", slow), ("b1", "org-b", fast)])
        dispatcher = WebhookDispatcher(Gateway(mongo_db), WebhookLimits(
            loopback_allowed=True, poll_interval_s=0.05, report_if_empty_interval_s=0.05,
            concurrency_max=2, concurrency_per_org_max=1))
        await running(dispatcher)
        await asyncio.sleep(1.5)
        assert places.most_held_in_all == 1  # org-a's share: one slot of two
        assert places.fast_calls >= 3
    finally:
        await places.stop()


# --- E: subscriptions per organisation -----------------------------------------------


@pytest.mark.asyncio
async def test_an_organisation_cannot_take_every_subscription(mongo_db: Any) -> None:
    """Found in review: one organisation could make all of the gateway's 1,000."""
    api = EpcisApi(Gateway(mongo_db), webhook_limits=WebhookLimits(
        subscriptions_per_org_max=2, subscriptions_max=10))

    @web.middleware
    async def signed_by(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[PRINCIPAL] = request.headers["X-Key"]  # the signature policy's verdict
        return await handler(request)

    app = web.Application(middlewares=[signed_by])
    app.add_routes([web.route(e.method, e.path, e.handler) for e in api.endpoints()])
    async with TestClient(TestServer(app)) as client:
        async def post(org: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
            async with client.post(path, json=body, headers={"X-Key": org}) as answer:
                return answer.status, await answer.json()

        subscription = {"dest": "https://partner.example.com/hook", "stream": True,
                        "signatureToken": "s3cret-" + "x" * 32}
        for org in ("org-a", "org-b"):
            assert (await post(org, "/epcis/queries", {"name": f"q-{org}", "query": {}}))[
                0] == 201
        for _ in range(2):
            status, _ = await post("org-a", "/epcis/queries/q-org-a/subscriptions",
                                   subscription)
            assert status == 201
        status, problem = await post("org-a", "/epcis/queries/q-org-a/subscriptions",
                                     subscription)
        assert status == 409 and problem["code"] == "too_many_subscriptions"
        assert "per organisation" in problem["detail"]
        status, _ = await post("org-b", "/epcis/queries/q-org-b/subscriptions", subscription)
        assert status == 201  # another organisation still subscribes


@pytest.mark.asyncio
async def test_each_event_is_delivered_once_in_order_while_rounds_overlap_deliveries(
        mongo_db: Any, running: Any) -> None:
    """A round reads the subscriptions while deliveries run: one that read a
    subscription mid-delivery (its cursor about to move) must not send its batch again."""
    received: dict[str, list[str]] = {}

    async def hook(request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        events = doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        received.setdefault(request.headers["GS1-Subscription-ID"], []).extend(
            e["eventID"] for e in events)
        return web.Response(status=204)

    runner, url = await serve(hook)
    try:
        await mongo_db[EPCIS_EVENTS].insert_many([{
            "_id": f"e{i}", "pos": i, "event": {"type": "ObjectEvent",
                                                "eventID": f"urn:uuid:e{i}"}}
            for i in range(40)])
        await subscribe(mongo_db, [(f"s{n}", f"org-{n % 3}", url) for n in range(6)])
        await mongo_db[SUBSCRIPTIONS].update_many({}, {"$set": {"report_if_empty": False}})
        dispatcher = WebhookDispatcher(Gateway(mongo_db), WebhookLimits(
            loopback_allowed=True, poll_interval_s=0.01, batch_events_max=1))
        await running(dispatcher)
        expected = [f"urn:uuid:e{i}" for i in range(40)]
        async with asyncio.timeout(20):
            while sum(len(v) for v in received.values()) < 6 * 40:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert received == {f"s{n}": expected for n in range(6)}
    finally:
        await runner.cleanup()
