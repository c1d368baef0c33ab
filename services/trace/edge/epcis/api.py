"""The EPCIS 2.0 REST binding, under ``/epcis``: the trace domain's gateway plugin part.

=========================================================  ==================================
``POST   /epcis/capture``                                  capture an EPCISDocument: 202 and
                                                           ``Location: /epcis/capture/<id>``
``GET    /epcis/capture/{captureID}``                      the capture job
``POST   /epcis/events``                                   capture one event (answered like
                                                           a capture)
``GET    /epcis/events``                                   query events (EPCISQueryDocument,
                                                           ``nextPageToken`` paging)
``GET    /epcis/events/{eventID}``                         one event, by eventID or CBV hash
``POST   /epcis/queries``                                  create a named query
``GET    /epcis/queries/{name}``                           a named query
``DELETE /epcis/queries/{name}``                           delete it (and its subscriptions)
``GET    /epcis/queries/{name}/events``                    run it
``POST   /epcis/queries/{name}/subscriptions``             subscribe a webhook to it
``DELETE /epcis/queries/{name}/subscriptions/{id}``        unsubscribe
=========================================================  ==================================

Every endpoint needs an RFC 9421 signature by a key registered on the chain (the
policies middleware verifies it; 401 problem otherwise): EPCIS events are business
data (public provenance is served by ``/v1/trace``). Every ``/epcis`` answer, problems
included, carries ``GS1-EPCIS-Version`` and ``GS1-CBV-Version``; the capture endpoints
also advertise ``GS1-EPCIS-Capture-Limit`` (events per capture, the contract's
``EVENTS_PER_CAPTURE_MAX``) and ``GS1-EPCIS-Capture-File-Size-Limit`` (bytes: the
chain's ``tx_bytes_max`` less ``CAPTURE_OVERHEAD_BYTES`` for the transaction envelope,
the relayed headers and the JSON escaping of the body).

The parts, one module each: :mod:`.capture` (validate, relay the party's signed
request, capture jobs), :mod:`.query` (the standard's query parameters on the
``epcis_events`` view, paging), :mod:`.named` (named queries and subscriptions),
:mod:`.webhooks` (deliveries, signed), :mod:`.resolver` (public destinations only),
:mod:`.models` (the OpenAPI models) and :mod:`.binding` (versions, limits, JSON with
exact numbers, EPCIS exception types). This module declares the routes and answers
the event queries.

**Queries.** ``GET /epcis/events`` reads the ``epcis_events`` view (the full event as
the chain recorded it, returned as stored) in chain order (``pos``), only from blocks
the projector has completed. Parameters: ``eventType``, ``EQ_action``, ``EQ_bizStep``
and ``EQ_disposition`` (bare CBV words, URNs or Web URIs), ``GE_eventTime``,
``LT_eventTime``, ``GE_recordTime``, ``LT_recordTime`` (RFC 3339), ``EQ_readPoint``,
``EQ_bizLocation`` (SGLN URN or Digital Link), ``MATCH_epc`` (epcList and childEPCs),
``MATCH_anyEPC`` (also parentID, inputs and outputs), ``MATCH_parentID``,
``MATCH_inputEPC``, ``MATCH_outputEPC`` (EPC URNs, ``urn:epc:idpat:…`` patterns or
Digital Links), ``EQ_bizTransaction_<type>``, ``EQ_eventID``, ``perPage``
(1..``PER_PAGE_MAX``) and ``nextPageToken``. A parameter may repeat, or list values
separated by ``|`` (EPCIS 2.0) or commas (identifiers split only before a new URI
scheme, so a comma inside an EPC URN is kept): values of one parameter are ORed,
parameters ANDed. Served events carry the chain's ``recordTime`` and an ``eventID``.
The next page's URL is also in ``Link: <…>; rel="next"``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from services.gateway.openapi import Endpoint
from services.gateway.policies import principal_of, public_base
from services.gateway.problems import Problem
from services.gateway.views.queries import views_height
from services.gateway.views.schema import POS_STRIDE
from services.trace import epcis
from services.trace.edge.epcis.binding import (
    HEX32,
    JOBS_MAX,
    QUERY_NAME,
    QUERY_VALUE_CHARS_MAX,
    SUBSCRIPTION_ID,
    Handler,
    epcis_handler,
    json_answer,
)
from services.trace.edge.epcis.capture import SWEEP_INTERVAL_S, CaptureDesk, CaptureSweeper
from services.trace.edge.epcis.models import (
    CaptureAccepted,
    CaptureJob,
    EPCISDocument,
    EPCISEvent,
    EPCISQueryDocument,
    EventsQuery,
    NamedQuery,
    NamedQueryBody,
    NamedQueryList,
    NameList,
    PageQuery,
    SubscriptionBody,
    SubscriptionCreated,
    SubscriptionList,
)
from services.trace.edge.epcis.named import NamedQueries
from services.trace.edge.epcis.query import (
    EventFilter,
    QueryResult,
    decode_page_token,
    encode_page_token,
    parse_event_query,
    query_document,
    run_query,
    stored_event,
)
from services.trace.edge.epcis.webhooks import WebhookDispatcher, WebhookLimits
from services.trace.edge.views import EPCIS_EVENTS


class EpcisApi:
    """The ``/epcis`` routes over the gateway ``host`` (its ``GatewayApi``): captures,
    queries, named queries with webhook subscriptions, and their dispatcher."""

    def __init__(self, host: Any, *, webhook_limits: WebhookLimits | None = None,
                 jobs_max: int = JOBS_MAX, sweep_interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.host = host
        self.webhooks = WebhookDispatcher(host, webhook_limits)
        self.captures = CaptureDesk(host, jobs_max=jobs_max, sweep_interval_s=sweep_interval_s)
        self._tasks: dict[str, asyncio.Task[None]] = {}  # what start() runs, by follower
        self._stop = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        limits = self.webhooks.limits
        self.named = NamedQueries(host, self._page, loopback_allowed=limits.loopback_allowed,
                                  subscriptions_max=limits.subscriptions_max,
                                  subscriptions_per_org_max=limits.subscriptions_per_org_max,
                                  subscribed=self.webhooks.notify)

    @property
    def jobs(self) -> Any:
        return self.captures.jobs

    def followers(self) -> list[WebhookDispatcher | CaptureSweeper]:
        """What the gateway host runs on its follower loops (and notifies on commits): the
        webhook dispatcher and the sweeper of expired capture jobs."""
        return [self.webhooks, self.captures.sweeper]

    async def start(self) -> None:
        """Run the followers on this loop, for an EpcisApi served on its own or restarted
        after :meth:`stop`; one already running (the gateway host's run, or an earlier
        start's) is left as it is: one run of each at a time."""
        own = {name: t for name, t in self._tasks.items() if not t.done()}
        wanted = [f for f in self.followers() if not f.running and f.name not in own]
        if not wanted:
            return
        if not own:
            self._stop = asyncio.Event()
        for follower in wanted:
            own[follower.name] = asyncio.create_task(follower.run(self._stop))
        self._tasks = own
        if self._unsubscribe is None:
            self._unsubscribe = self.host.chain.on_commit(self._notify_followers)

    def _notify_followers(self, _commit: Any) -> None:
        for follower in self.followers():
            follower.notify()

    async def stop(self) -> None:
        """Take the webhook dispatcher down, wherever it runs (a delivery in flight is
        abandoned and sent again later: its cursor was not advanced), and what
        :meth:`start` started; bounded (``WebhookLimits.stop_timeout_s``, then
        cancelled). :meth:`start` runs them again."""
        tasks, self._tasks = list(self._tasks.values()), {}
        self._stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.webhooks.halt()
        if tasks:
            timeout_s = self.webhooks.limits.stop_timeout_s
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=timeout_s)

    def endpoints(self) -> list[Endpoint]:
        E = Endpoint  # noqa: N806 - a short alias keeps the table readable
        def capture(handler: Handler) -> Handler:
            return epcis_handler(handler, capture_size_limit=self.captures.capture_size_limit)

        wrap = epcis_handler
        tag = "epcis"
        name = {"name": {"type": "string", "pattern": QUERY_NAME}}
        return [
            E("OPTIONS", "/epcis/capture", capture(self.captures.capture_options),
              "What a capture may be: limits, error behaviours, media types", tag,
              {204: None}, errors=(429,)),
            E("POST", "/epcis/capture", capture(self.captures.post_capture),
              "Capture an EPCISDocument (asynchronous; signed by the capturing party)", tag,
              {202: CaptureAccepted}, body=EPCISDocument, signed=True,
              errors=(400, 409, 413, 415, 422, 429, 503),
              description="The party's RFC 9421-signed request is relayed to the chain, "
                          "which verifies the signature itself. Header "
                          "GS1-Capture-Error-Behaviour: rollback (default) | proceed. "
                          "Answers 202 with Location: /epcis/capture/{captureID}."),
            E("GET", "/epcis/capture/{capture_id}", capture(self.captures.get_capture),
              "A capture job", tag, {200: CaptureJob}, signed=True,
              path_params={"capture_id": {"type": "string", "pattern": HEX32}},
              errors=(400, 404, 429, 503)),
            E("POST", "/epcis/events", capture(self.captures.post_event),
              "Capture one EPCIS event (asynchronous; signed by the capturing party)", tag,
              {202: CaptureAccepted}, body=EPCISEvent, signed=True,
              errors=(400, 409, 413, 415, 422, 429, 503)),
            E("GET", "/epcis/events", wrap(self.list_events),
              "Query events (EPCISQueryDocument; paged with nextPageToken)", tag,
              {200: EPCISQueryDocument}, query=EventsQuery, signed=True,
              errors=(400, 429, 501, 503),
              description="Also EQ_bizTransaction_<type>. Values of one parameter are "
                          "ORed (repeat it, or separate values with commas), parameters "
                          "ANDed; unknown parameters are refused. The next page is in "
                          "Link: <...>; rel=\"next\"."),
            E("GET", "/epcis/events/{event_id:.+}", wrap(self.get_event),
              "One event, by eventID or CBV event hash (URL-encoded)", tag,
              {200: EPCISQueryDocument}, signed=True,
              path_params={"event_id": {"type": "string", "minLength": 1,
                                        "maxLength": QUERY_VALUE_CHARS_MAX,
                                        "description": "an eventID (a URI) or CBV event "
                                                       "hash (ni:///sha-256;...), "
                                                       "percent-encoded, / as %2F"}},
              errors=(400, 404, 429, 503)),
            E("POST", "/epcis/queries", wrap(self.named.post_query), "Create a named query", tag,
              {201: NamedQuery}, body=NamedQueryBody, signed=True,
              errors=(400, 409, 415, 422, 429, 503)),
            E("GET", "/epcis/queries", wrap(self.named.list_queries),
              "The caller's organisation's named queries", tag, {200: NamedQueryList},
              signed=True, errors=(400, 429, 503)),
            E("GET", "/epcis/eventTypes", wrap(self.event_types),
              "The EPCIS event types this repository records", tag, {200: NameList},
              errors=(429,)),
            E("GET", "/epcis/queries/{name}/subscriptions", wrap(self.named.list_subscriptions),
              "A named query's subscriptions (its owner only)", tag,
              {200: SubscriptionList}, signed=True, path_params=name,
              errors=(400, 403, 404, 429, 503)),
            E("GET", "/epcis/queries/{name}", wrap(self.named.get_query), "A named query", tag,
              {200: NamedQuery}, signed=True, path_params=name,
              errors=(400, 404, 429, 503)),
            E("DELETE", "/epcis/queries/{name}", wrap(self.named.delete_query),
              "Delete a named query and its subscriptions (its owner only)", tag,
              {204: None}, signed=True, path_params=name,
              errors=(400, 403, 404, 429, 503)),
            E("GET", "/epcis/queries/{name}/events", wrap(self.named.run_named_query),
              "Run a named query", tag, {200: EPCISQueryDocument}, query=PageQuery,
              signed=True, path_params=name, errors=(400, 404, 429, 503)),
            E("POST", "/epcis/queries/{name}/subscriptions", wrap(self.named.post_subscription),
              "Subscribe a webhook to a named query (its owner only)", tag,
              {201: SubscriptionCreated}, body=SubscriptionBody, signed=True,
              path_params=name, errors=(400, 403, 404, 409, 415, 422, 429, 501, 503),
              description="New matching events are POSTed to dest as EPCISQueryDocuments "
                          "with GS1-Signature: hex HMAC-SHA256 of the body keyed with "
                          "signatureToken, and GS1-Query-Name."),
            E("DELETE", "/epcis/queries/{name}/subscriptions/{subscription_id}",
              wrap(self.named.delete_subscription), "Unsubscribe (the query's owner only)", tag,
              {204: None}, signed=True,
              path_params={**name, "subscription_id": {"type": "string",
                                                        "pattern": SUBSCRIPTION_ID}},
              errors=(400, 403, 404, 429, 503)),
        ]

    async def list_events(self, request: web.Request) -> web.Response:
        principal_of(request)
        flt, per_page, token = parse_event_query(list(request.query.items()), paging=True)
        return await self._page(request, flt, per_page, token, "SimpleEventQuery")

    async def _page(self, request: web.Request, flt: EventFilter, per_page: int,
                    token: str | None, query_name: str) -> web.Response:
        after = -1 if token is None else decode_page_token(token, flt)
        db = self.host.views_db()
        result = await self.host.views_call(self._query(db, flt, after, per_page))
        headers = {}
        if result.more:
            next_after = result.scanned_to
            params = [(k, v) for k, v in request.query.items() if k != "nextPageToken"]
            params.append(("nextPageToken", encode_page_token(next_after, flt)))
            base = public_base(request, self.host.options.public_base_url)
            url = f"{base}{request.path}?{urlencode(params)}"
            headers["Link"] = f'<{url}>; rel="next"'
        return json_answer(query_document(result.events, query_name), headers=headers,
                     request=request)

    async def _query(self, db: Any, flt: EventFilter, after: int,
                     want: int) -> QueryResult:
        before = (await views_height(db) + 1) * POS_STRIDE
        return await run_query(db, flt, after=after, want=want, before=before)

    async def get_event(self, request: web.Request) -> web.Response:
        principal_of(request)
        event_id = request.match_info["event_id"]
        if not 0 < len(event_id) <= QUERY_VALUE_CHARS_MAX:
            raise Problem(400, "bad_event_id", "an eventID is 1..2048 characters")
        ids = [event_id]
        if event_id.startswith("ni:///sha-256;") and "?" not in event_id:
            ids.append(event_id + "?ver=CBV2.0")
        db = self.host.views_db()
        found = await self.host.views_call(
            db[EPCIS_EVENTS].find({"$or": [{"eventID": {"$in": ids}}, {"_id": {"$in": ids}}]})
            .sort("pos", 1).limit(1).to_list())
        if not found:
            raise Problem(404, "event_not_found", f"no event {event_id[:120]}")
        return json_answer(query_document([stored_event(found[0])], "SimpleEventQuery"),
                     request=request)

    # --- named queries ----------------------------------------------------------------

    async def event_types(self, request: web.Request) -> web.Response:
        return json_answer({"names": sorted(epcis.EVENT_TYPES)})



__all__ = ["EpcisApi", "WebhookLimits"]
