"""EPCIS webhooks: delivering new matching events to each subscription, signed.

The dispatcher (:class:`WebhookDispatcher`, a follower of the chain run by the
gateway's one follower loop, :mod:`services.gateway.follower`) follows the
``epcis_events`` view by ``pos`` and POSTs every new matching event to each
subscription's ``dest``, in order, at most ``WebhookLimits.batch_events_max`` per
EPCISQueryDocument, one delivery in flight per subscription, and advances the
subscription's cursor (in MongoDB) only after a 2xx: delivery is at least once (a
crash between the answer and the cursor write sends the batch again). A failed
delivery is retried with exponential backoff (``retry_backoff_s`` doubling up to
``retry_backoff_max_s``, with jitter); after ``attempts_before_suspend`` consecutive
failures the subscription is ``suspended`` and tried once every
``suspended_retry_s``; nothing is skipped. With ``reportIfEmpty`` an empty document is
sent when nothing matched for ``report_if_empty_interval_s``.

**Fairness.** A round starts a delivery for each due subscription that has none in
flight, as slots allow (``concurrency_max`` in all, ``concurrency_per_org_max`` per
organisation, organisations taking turns), and never waits for them: each has its own
deadline (``delivery_timeout_s``), and one that ends with more to send, or that frees
a slot somebody waits for, wakes the next round. One organisation's slow destinations
thus hold its own slots only. An organisation has at most
``subscriptions_per_org_max`` subscriptions (the gateway ``subscriptions_max``).

**Answers.** A destination's answer is read up to ``response_bytes_max`` bytes, never
decompressed, and dropped (a non-2xx keeps a short excerpt in ``last_error``): a
destination cannot make the gateway hold a large, endless or compressed ("bomb")
body.

Each callback carries ``GS1-Signature: <hex HMAC-SHA256 of the exact body bytes, keyed
with the UTF-8 bytes of the subscription's signatureToken>`` — the header the EPCIS 2.0
subscription's ``signatureToken`` is for; the receiver recomputes it over the raw body
and compares in constant time — plus ``GS1-Query-Name``, ``GS1-Subscription-ID``,
``GS1-EPCIS-Version`` and ``GS1-CBV-Version``. Destinations: public addresses only
(:mod:`services.trace.edge.epcis.resolver`). Deliveries stop while the owner's key or
organisation is not active. The token is stored as given (it is needed for every
callback). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from services.gateway.follower import FollowerLimits, FollowerLoop
from services.gateway.views.queries import views_height
from services.gateway.views.schema import POS_STRIDE
from services.ledger.core import consortium
from services.trace.edge.epcis.binding import (
    CBV_VERSION,
    EPCIS_VERSION,
    JSON,
    QUERIES,
    SUBSCRIPTIONS,
    dumps,
    now_ms,
)
from services.trace.edge.epcis.query import parse_event_query, query_document, run_query
from services.trace.edge.epcis.resolver import PublicResolver, address_allowed, literal_address

log = logging.getLogger("ecosphere.gateway.epcis")
#: bytes of a refusing destination's answer kept in the subscription's ``last_error``
ERROR_EXCERPT_BYTES = 200


@dataclass(frozen=True)
class WebhookLimits:
    """Bounds of the webhook dispatcher (every one named, all configurable)."""

    #: look for new events this often (and when a block commits)
    poll_interval_s: float = 1.0
    #: events per callback document
    batch_events_max: int = 100
    #: one callback's whole exchange (its own deadline: a round never waits for it)
    delivery_timeout_s: float = 10.0
    #: bytes of a destination's answer read, undecompressed; the rest is never read
    response_bytes_max: int = 64 * 1024
    #: first retry delay after a failed delivery; doubles per failure up to the max
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 300.0
    #: consecutive failures before a subscription is suspended
    attempts_before_suspend: int = 8
    #: a suspended subscription is tried this often
    suspended_retry_s: float = 900.0
    #: callbacks in flight at once (one per subscription at most), in all and per
    #: organisation (its slow destinations hold its own slots only)
    concurrency_max: int = 16
    concurrency_per_org_max: int = 4
    #: with reportIfEmpty, an empty document when nothing matched for this long
    report_if_empty_interval_s: float = 60.0
    #: subscriptions served (per round; also the most that may exist), and the most
    #: one organisation may have
    subscriptions_max: int = 1_000
    subscriptions_per_org_max: int = 100
    #: stopping waits this long for the loop to end (a step in a MongoDB call), then
    #: cancels it
    stop_timeout_s: float = 5.0
    #: deliver to loopback addresses (plain http too): local development only — in a
    #: deployment it would reach the node's own admin and broker ports
    loopback_allowed: bool = False

    def __post_init__(self) -> None:
        if min(self.poll_interval_s, self.delivery_timeout_s, self.retry_backoff_s,
               self.retry_backoff_max_s, self.suspended_retry_s,
               self.report_if_empty_interval_s, self.stop_timeout_s) <= 0:
            raise ValueError("intervals must be positive")
        if min(self.batch_events_max, self.attempts_before_suspend, self.concurrency_max,
               self.concurrency_per_org_max, self.subscriptions_max,
               self.subscriptions_per_org_max) < 1:
            raise ValueError("counts must be positive")
        if self.response_bytes_max < 0:
            raise ValueError("response_bytes_max must not be negative")


class WebhookDispatcher:
    """Delivers subscriptions' new events (``host``: the gateway's GatewayApi)."""

    name = "epcis webhooks"

    def __init__(self, host: Any, limits: WebhookLimits | None = None) -> None:
        self.host = host
        self.limits = limits or WebhookLimits()
        self.loop = FollowerLoop(self, FollowerLimits(
            poll_interval_s=self.limits.poll_interval_s,
            retry_backoff_s=self.limits.retry_backoff_s,
            retry_backoff_max_s=self.limits.retry_backoff_max_s))
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random()
        self._run: asyncio.Task[None] | None = None  # the task of the one active run
        #: subscription id -> (owner, its delivery): at most one each
        self._inflight: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._slot_wanted = False  # the last round left due subscriptions waiting
        self._turn = 0  # which organisation goes first in the next round
        self.deliveries = 0
        self.delivery_failures = 0

    @property
    def running(self) -> bool:
        """Whether a run is active (the gateway host's, or :meth:`EpcisApi.start`'s)."""
        return self._run is not None

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def notify(self) -> None:
        """A block was committed, or a subscription made: look for work now."""
        self.loop.notify()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set (the shared follower loop); deliveries in flight
        are abandoned at stop (and sent again later: their cursors were not advanced).
        One run at a time: a second call while one is active returns at once."""
        if self._run is not None:
            log.warning("%s: already running; a second run is refused", self.name)
            return
        self._run = asyncio.current_task()
        try:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.limits.delivery_timeout_s),
                # an answer is read raw: a compressed one is never inflated
                auto_decompress=False,
                connector=aiohttp.TCPConnector(resolver=PublicResolver(
                    loopback_allowed=self.limits.loopback_allowed)))
            await self.loop.run(stop)
        finally:
            self._run = None

    async def halt(self) -> None:
        """End the active run, wherever it runs (the host's included): its loop is asked
        to end; if it has not within ``stop_timeout_s`` (a step stuck in a MongoDB call),
        its task is cancelled. Returns once it has ended, or after twice that time."""
        task = self._run
        if task is None:
            return
        timeout_s = self.limits.stop_timeout_s
        halting = asyncio.ensure_future(self.loop.halt())
        try:
            done, _ = await asyncio.wait([halting, task], timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                log.warning("%s: still running after %.1fs; cancelled", self.name, timeout_s)
                task.cancel()
                await asyncio.wait([task], timeout=timeout_s)
        finally:
            halting.cancel()

    async def step(self) -> int:
        return await self.dispatch_round()

    def on_failure(self, exc: BaseException, failures: int) -> None:
        """Counted by the loop (``failures_total``); nothing else to mark."""

    async def close(self) -> None:
        """Abandon the deliveries in flight (their cursors stay: sent again later), then
        close the session."""
        tasks = [task for _, task in self._inflight.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.limits.stop_timeout_s)
        self._inflight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def dispatch_round(self) -> int:
        """Start a delivery for each due subscription with none in flight, as slots allow
        (organisations taking turns); how many were started. Never waits for them."""
        db = self.host.views.current()
        if db is None:
            return 0
        # In flight before the read: a document read now may be one its delivery is
        # about to move (its cursor), so it waits for the next round. Only rounds start
        # deliveries, so none starts between here and the filter below.
        busy_ids = set(self._inflight)
        before = (await views_height(db) + 1) * POS_STRIDE
        now = now_ms()
        subs = await db[SUBSCRIPTIONS].find({"next_attempt_ms": {"$lte": now}}) \
            .sort("_id", 1).limit(self.limits.subscriptions_max).to_list()
        due = [s for s in subs if str(s["_id"]) not in busy_ids]
        if not due:
            return 0
        names = sorted({s["query"] for s in due})
        queries = {q["_id"]: q for q in await db[QUERIES].find({"_id": {"$in": names}})
                   .to_list()}
        busy: dict[str, int] = {}
        for owner, _ in self._inflight.values():
            busy[owner] = busy.get(owner, 0) + 1
        self._turn += 1
        started = 0
        waiting = False
        for sub in in_turns(due, self._turn):
            owner = str(sub.get("owner", ""))
            if len(self._inflight) >= self.limits.concurrency_max \
                    or busy.get(owner, 0) >= self.limits.concurrency_per_org_max:
                waiting = True
                continue
            query = queries.get(sub["query"])
            if query is None:
                continue
            inactive = self.owner_inactive(sub)
            if inactive is not None:  # paused, not lost: the cursor stays where it was
                await db[SUBSCRIPTIONS].update_one({"_id": sub["_id"]}, {"$set": {
                    "last_error": inactive,
                    "next_attempt_ms": now + int(self.limits.suspended_retry_s * 1000)}})
                continue
            sub_id = str(sub["_id"])
            task = asyncio.create_task(self._deliver(db, sub, query, before),
                                       name=f"epcis webhook {sub_id}")
            self._inflight[sub_id] = (owner, task)
            busy[owner] = busy.get(owner, 0) + 1
            started += 1
        self._slot_wanted = waiting
        return started

    async def _deliver(self, db: Any, sub: dict[str, Any], query: Mapping[str, Any],
                       before: int) -> None:
        """One subscription's delivery, on its own: wakes the loop when it ends with more
        to send, or when a subscription waits for the slot it frees."""
        more = False
        try:
            more = await self._serve(db, sub, query, before)
        except Exception as exc:
            log.warning("epcis webhooks: %s: %s", type(exc).__name__, exc)
        finally:
            self._inflight.pop(str(sub["_id"]), None)
        if more or self._slot_wanted:
            self.notify()

    def owner_inactive(self, sub: Mapping[str, Any]) -> str | None:
        """Why the subscription's owner may not receive events now (None: it may): its
        key revoked, or its organisation suspended or gone, on the chain's tip."""
        view = self.host.chain.view()
        key = consortium.key_record(view, str(sub.get("owner_key", "")))
        if key is None or key["status"] != "active" or key["org"] != sub.get("owner"):
            return "owner_key_inactive: the subscribing key is no longer active"
        org = consortium.org_record(view, str(sub["owner"]))
        if org is None or org.get("status") != "active":
            return "owner_org_inactive: the owning organisation is not active"
        return None

    async def _serve(self, db: Any, sub: dict[str, Any], query: Mapping[str, Any],
                     before: int) -> bool:
        """One delivery to one subscription; True if it has more to send at once."""
        flt, _, _ = parse_event_query([tuple(p) for p in query["query"]])
        cursor = int(sub["cursor"])
        result = await run_query(db, flt, after=cursor, want=self.limits.batch_events_max,
                                 before=before)
        now = now_ms()
        new_cursor = result.scanned_to
        if not result.events:
            report = bool(sub.get("report_if_empty")) and now - int(
                sub.get("last_report_ms", 0)) >= self.limits.report_if_empty_interval_s * 1000
            if not report:
                if new_cursor > cursor:
                    await self._advance(db, sub, cursor, new_cursor, 0, now, report=False)
                return result.more
        body = dumps(query_document(result.events, str(query["_id"]),
                                     subscription_id=str(sub["_id"])))
        error = await self.post_callback(sub, body)
        if error is None:
            self.deliveries += 1
            await self._advance(db, sub, cursor, max(cursor, new_cursor), len(result.events),
                                now, report=True)
            return result.more
        self.delivery_failures += 1
        failures = int(sub.get("failures", 0)) + 1
        suspended = failures >= self.limits.attempts_before_suspend
        delay = self.limits.suspended_retry_s if suspended else min(
            self.limits.retry_backoff_max_s,
            self.limits.retry_backoff_s * (1 << min(failures - 1, 30)))
        delay *= 0.5 + 0.5 * self._rng.random()
        await db[SUBSCRIPTIONS].update_one({"_id": sub["_id"]}, {"$set": {
            "failures": failures, "status": "suspended" if suspended else "active",
            "next_attempt_ms": now + int(delay * 1000), "last_error": error[:500]}})
        return False

    async def _advance(self, db: Any, sub: Mapping[str, Any], old: int, new: int,
                       delivered: int, now: int, *, report: bool) -> None:
        fields: dict[str, Any] = {"cursor": new, "failures": 0, "status": "active",
                                  "next_attempt_ms": 0, "last_error": None}
        if report:
            fields["last_report_ms"] = now
            fields["last_delivery_ms"] = now
        update: dict[str, Any] = {"$set": fields}
        if delivered:
            update["$inc"] = {"delivered_events": delivered}
        # Guarded by the old cursor: a subscription deleted meanwhile is not recreated.
        await db[SUBSCRIPTIONS].update_one({"_id": sub["_id"], "cursor": old}, update)

    async def post_callback(self, sub: Mapping[str, Any], body: bytes) -> str | None:
        """POST one callback; None on a 2xx answer, else what went wrong. At most
        ``response_bytes_max`` bytes of the answer are read, as sent (never inflated);
        of a non-2xx one a short excerpt is kept in the error."""
        session = self._session
        if session is None:
            return "the dispatcher is stopped"
        host = urlsplit(str(sub["dest"])).hostname or ""
        if literal_address(host) is not None and not address_allowed(
                host, loopback_allowed=self.limits.loopback_allowed):
            return f"{host} is not a public address"
        signature = hmac.new(str(sub["secret"]).encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": JSON, "GS1-Signature": signature,
                   "GS1-Query-Name": str(sub["query"]),
                   "GS1-Subscription-ID": str(sub["_id"]),
                   "GS1-EPCIS-Version": EPCIS_VERSION, "GS1-CBV-Version": CBV_VERSION}
        try:
            async with session.post(str(sub["dest"]), data=body, headers=headers,
                                    allow_redirects=False) as response:
                head = await read_at_most(response, self.limits.response_bytes_max)
                if 200 <= response.status < 300:
                    return None
                excerpt = head[:ERROR_EXCERPT_BYTES].decode("utf-8", "replace")
                return f"HTTP {response.status}" + (f": {excerpt}" if excerpt else "")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The first ``limit`` bytes of ``response``'s body (as sent); a body longer than
    that is left unread and its connection closed rather than reused."""
    chunks: list[bytes] = []
    size = 0
    content = response.content
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if not content.at_eof():
        response.close()
    return b"".join(chunks)


def in_turns(subs: Sequence[dict[str, Any]], turn: int) -> Iterator[dict[str, Any]]:
    """``subs`` one organisation after another (each in its own order), starting with a
    different organisation each ``turn``: none is always served first."""
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for sub in subs:
        by_owner.setdefault(str(sub.get("owner", "")), []).append(sub)
    if not by_owner:
        return
    owners = sorted(by_owner)
    shift = turn % len(owners)
    queues = collections.deque(collections.deque(by_owner[o])
                               for o in owners[shift:] + owners[:shift])
    while queues:
        queue = queues.popleft()
        yield queue.popleft()
        if queue:
            queues.append(queue)


__all__ = ["WebhookDispatcher", "WebhookLimits"]
