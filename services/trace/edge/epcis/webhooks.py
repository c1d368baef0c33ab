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
import hashlib
import hmac
import logging
import random
from collections.abc import Mapping
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


@dataclass(frozen=True)
class WebhookLimits:
    """Bounds of the webhook dispatcher (every one named, all configurable)."""

    #: look for new events this often (and when a block commits)
    poll_interval_s: float = 1.0
    #: events per callback document
    batch_events_max: int = 100
    #: one callback's whole exchange
    delivery_timeout_s: float = 10.0
    #: first retry delay after a failed delivery; doubles per failure up to the max
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 300.0
    #: consecutive failures before a subscription is suspended
    attempts_before_suspend: int = 8
    #: a suspended subscription is tried this often
    suspended_retry_s: float = 900.0
    #: callbacks in flight at once (one per subscription at most)
    concurrency_max: int = 16
    #: with reportIfEmpty, an empty document when nothing matched for this long
    report_if_empty_interval_s: float = 60.0
    #: subscriptions served (per round; also the most that may exist)
    subscriptions_max: int = 1_000
    #: deliver to loopback addresses (plain http too): local development only — in a
    #: deployment it would reach the node's own admin and broker ports
    loopback_allowed: bool = False

    def __post_init__(self) -> None:
        if min(self.poll_interval_s, self.delivery_timeout_s, self.retry_backoff_s,
               self.retry_backoff_max_s, self.suspended_retry_s,
               self.report_if_empty_interval_s) <= 0:
            raise ValueError("intervals must be positive")
        if min(self.batch_events_max, self.attempts_before_suspend, self.concurrency_max,
               self.subscriptions_max) < 1:
            raise ValueError("counts must be positive")


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
        self.deliveries = 0
        self.delivery_failures = 0

    def notify(self) -> None:
        """A block was committed, or a subscription made: look for work now."""
        self.loop.notify()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set (the shared follower loop); an in-flight delivery
        is abandoned at stop (and sent again later: its cursor was not advanced)."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.limits.delivery_timeout_s),
            connector=aiohttp.TCPConnector(resolver=PublicResolver(
                loopback_allowed=self.limits.loopback_allowed)))
        await self.loop.run(stop)

    async def step(self) -> int:
        return int(await self.dispatch_round())

    def on_failure(self, exc: BaseException, failures: int) -> None:
        """Counted by the loop (``failures_total``); nothing else to mark."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def dispatch_round(self) -> bool:
        """Serve every subscription that is due once; True if some have more to send."""
        db = self.host.views.current()
        if db is None:
            return False
        before = (await views_height(db) + 1) * POS_STRIDE
        now = now_ms()
        subs = await db[SUBSCRIPTIONS].find({"next_attempt_ms": {"$lte": now}}) \
            .sort("_id", 1).limit(self.limits.subscriptions_max).to_list()
        if not subs:
            return False
        names = sorted({s["query"] for s in subs})
        queries = {q["_id"]: q for q in await db[QUERIES].find({"_id": {"$in": names}})
                   .to_list()}
        gate = asyncio.Semaphore(self.limits.concurrency_max)

        async def one(sub: dict[str, Any]) -> bool:
            query = queries.get(sub["query"])
            if query is None:
                return False
            inactive = self.owner_inactive(sub)
            if inactive is not None:  # paused, not lost: the cursor stays where it was
                await db[SUBSCRIPTIONS].update_one({"_id": sub["_id"]}, {"$set": {
                    "last_error": inactive,
                    "next_attempt_ms": now + int(self.limits.suspended_retry_s * 1000)}})
                return False
            async with gate:
                return await self._serve(db, sub, query, before)

        results = await asyncio.gather(*(one(s) for s in subs), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("epcis webhooks: %s: %s", type(result).__name__, result)
        return any(r is True for r in results)

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
        error = await self._post(sub, body)
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

    async def _post(self, sub: Mapping[str, Any], body: bytes) -> str | None:
        """POST one callback; None on a 2xx answer, else what went wrong."""
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
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"


__all__ = ["WebhookDispatcher", "WebhookLimits"]
