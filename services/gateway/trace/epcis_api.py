"""The EPCIS 2.0 REST binding of the gateway, under ``/epcis``.

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

**Capture.** The capturing party signs its HTTP request with its own key. The gateway
validates the document (:func:`services.trace.epcis.validate_document`; 400 problem
with the EpcisError ``code`` and ``path``, nothing relayed), then relays the *exact*
request — method, the URL the client signed (``scheme://host`` + raw path, as the
policies verify it), the signature fields and every field the signature covers, and
the raw body as text — in a ``trace.capture`` transaction signed by its relay key. The
contract verifies the party's signature over those bytes itself: the gateway can
neither forge nor alter a capture. ``GS1-Capture-Error-Behaviour: rollback`` (default:
all or nothing) or ``proceed`` (invalid events are rejected one by one, reported in
the job, the rest are captured) becomes the payload's ``error_behaviour``; when the
header is sent the signature must cover it (the SDK's ``sign_request`` does), and the
contract takes the mode from the signed request, so no relay can turn an
all-or-nothing capture into a partial one. Replaying a relayed request records
nothing new: events are unique by their CBV 2.0 hash.
``POST /epcis/events`` relays a single-event request the same way (the contract reads
an EPCISDocument body or a single event).

Before relaying, the transaction is *executed against the replica's tip* (a dry run of
the very contract the validators run). A proposer silently drops a failing
transaction and an observing gateway never hears of it, and a dropped relay
transaction would leave a gap in the relay key's nonces that holds back every later
relayed transaction until it expires; so a capture the chain would refuse now is not
sent: its job is answered at once as failed with the contract's code (the capture ID
is then the hash of the transaction that was not sent). A capture naming an event that
a still running capture names too is refused with 409 ``capture_in_progress`` (one of
the two would fail at the proposer). What the dry run cannot foresee (a conflicting
transaction from elsewhere committed in between) fails at the proposer and shows as
``expired`` once the transaction's time-to-live has passed.

**Jobs.** The capture ID is the relay transaction's hash (hex). Jobs live in a bounded
in-memory map (``JOBS_MAX``; the oldest finished ones are forgotten first, 503
``too_many_captures`` when all are running) fed by the gateway's ``CommitWaiters``:
``running`` while the transaction waits, then ``success`` with, in ``proceed`` mode,
one error per ``trace.capture.rejected`` event of the transaction (position, code,
reason), or failed (refused, rejected, or expired). After a restart, or for a job
forgotten, a committed capture is still answered from the ``transactions`` view (and
the block's events from the store); one still in the mempool answers ``running``.

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
parameters ANDed. Standard parameters not implemented (``orderBy``,
``eventCountLimit``, the quantity and class matches, …) answer 501
ImplementationException; any other parameter is a 400 problem ``query_parameter``
(QueryParameterException). Problems are typed ``epcisException:<Name>``; served
events carry the chain's ``recordTime`` and an ``eventID``. ``nextPageToken`` is an
opaque cursor over ``pos`` bound to the query; the next page's URL is also in
``Link: <…>; rel="next"``.

**Webhooks.** Named queries and their subscriptions are *gateway state, not chain
state*: they live in the MongoDB collections ``epcis_queries`` and
``epcis_subscriptions`` of the views database (not registered views, so a views
rebuild keeps them) and survive a gateway restart. A query belongs to the
organisation of the key that created it; only that organisation's keys subscribe to
it or delete it. A subscription's cursor starts at the chain tip when it is created:
it receives events committed afterwards. The dispatcher (:meth:`EpcisApi.start` /
:meth:`EpcisApi.stop`) follows the ``epcis_events`` view by ``pos`` and POSTs every new
matching event to each subscription's ``dest``, in order, at most
``WebhookLimits.batch_events_max`` per EPCISQueryDocument, one delivery in flight per
subscription, and advances the subscription's cursor (in MongoDB) only after a 2xx:
delivery is at least once (a crash between the answer and the cursor write sends the
batch again). A failed delivery is retried with exponential backoff
(``retry_backoff_s`` doubling up to ``retry_backoff_max_s``, with jitter); after
``attempts_before_suspend`` consecutive failures the subscription is ``suspended`` and
tried once every ``suspended_retry_s``; nothing is skipped. With ``reportIfEmpty`` an
empty document is sent when nothing matched for ``report_if_empty_interval_s``.

Each callback carries ``GS1-Signature: <hex HMAC-SHA256 of the exact body bytes, keyed
with the UTF-8 bytes of the subscription's signatureToken>`` — the header the EPCIS 2.0
subscription's ``signatureToken`` is for; the receiver recomputes it over the raw body
and compares in constant time — plus ``GS1-Query-Name``, ``GS1-Subscription-ID``,
``GS1-EPCIS-Version`` and ``GS1-CBV-Version``. ``dest`` must be ``https://`` to a
public address: the delivery session's resolver (:class:`PublicResolver`) refuses
private, link-local (cloud metadata), shared, reserved and multicast addresses at
every connection, so a subscriber cannot make the gateway call the platform's
internal services (DNS rebinding included). Loopback, and plain ``http://`` to it,
only with ``WebhookLimits.loopback_allowed`` (``ecosphere up`` and tests). Deliveries
stop while the owner's key or organisation is not active. The token is stored as
given (it is needed for every callback). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import aiohttp
import aiohttp.abc
import aiohttp.resolver
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.errors import DuplicateKeyError

from services.gateway.api import GatewayApi, Receipt
from services.gateway.models import Model, Open
from services.gateway.openapi import Endpoint
from services.gateway.policies import principal_of
from services.gateway.problems import Problem, parse_json_body, problem_from
from services.gateway.trace.views import EPCIS_EVENTS
from services.gateway.views.queries import get_transaction, views_height
from services.gateway.views.schema import POS_STRIDE, pos_of
from services.ledger.core import consortium
from services.ledger.core.encoding import INT_MAX
from services.ledger.core.errors import LedgerError
from services.ledger.core.replica import Commit, TxRejected
from services.trace import epcis, eventhash, identifiers
from services.trace.contract import EVENTS_PER_CAPTURE_MAX

log = logging.getLogger("ecosphere.gateway.epcis")

# The binding's header pattern is ^\d+(\.\d+)?$ (GS1-EPCIS-Version: 2.0)
EPCIS_VERSION = "2.0"
CBV_VERSION = "2.0"
EPCIS_CONTEXT = eventhash.EPCIS_CONTEXT_2_0_0
JSON = "application/json"
JSON_LD = "application/ld+json"
CAPTURE_MEDIA_TYPES = frozenset({JSON, JSON_LD})
CAPTURE_KIND = "trace.capture"

#: events per capture: what the contract takes in one transaction
CAPTURE_EVENTS_MAX = EVENTS_PER_CAPTURE_MAX
#: room left in a transaction for its envelope, the relayed headers and URL, and the
#: JSON escaping of the body; the file size limit is ``tx_bytes_max`` less this
CAPTURE_OVERHEAD_BYTES = 16 * 1024
#: relayed request header fields: at most this many, this long in all
RELAYED_HEADERS_MAX = 32
RELAYED_HEADER_BYTES_MAX = 8 * 1024
#: capture jobs remembered in memory
JOBS_MAX = 10_000
#: the standard's default page size is the server's choice; this is ours
PER_PAGE_DEFAULT = 100
PER_PAGE_MAX = 1_000
#: view documents one page may examine for the parameters that are checked on the full
#: event (MATCH_epc, MATCH_anyEPC, MATCH_parentID); past it the page ends early and
#: ``nextPageToken`` continues the scan
QUERY_SCAN_MAX = 20_000
QUERY_READ_BATCH = 500
QUERY_PARAMS_MAX = 32
QUERY_VALUES_MAX = 100
QUERY_VALUE_CHARS_MAX = 2_048
PAGE_TOKEN_CHARS_MAX = 256
QUERY_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
SUBSCRIPTION_ID = r"^[0-9a-f]{32}$"
HEX32 = r"^[0-9a-f]{64}$"
#: a nextPageToken as this server writes it (URL-safe base64, see encode_page_token)
PAGE_TOKEN = rf"^[A-Za-z0-9_-]{{1,{PAGE_TOKEN_CHARS_MAX}}}$"
NAMED_QUERIES_PER_ORG_MAX = 100
SUBSCRIPTIONS_PER_QUERY_MAX = 20
DEST_CHARS_MAX = 2_048
TOKEN_CHARS_MIN = 16
TOKEN_CHARS_MAX = 512
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

QUERIES = "epcis_queries"
SUBSCRIPTIONS = "epcis_subscriptions"

_QUERY_NAME_RE = re.compile(QUERY_NAME)
_SUBSCRIPTION_RE = re.compile(SUBSCRIPTION_ID)
_HEX32_RE = re.compile(HEX32)
_URI_SPLIT = re.compile(r",(?=[A-Za-z][A-Za-z0-9+.-]*:)")
_COVERED_FIELD = re.compile(r'"([a-z0-9!#$%&\'*+.^_`|~-]+)"')
_SIGNATURE_FIELDS = ("Signature", "Signature-Input", "Content-Digest", "Content-Type")
_BIZ_TRANSACTION = "EQ_bizTransaction_"
#: standard EPCIS 2.0 query parameters not implemented here: answered 501
#: (ImplementationException), not 400 as if the name were unknown
_STANDARD_UNSUPPORTED = frozenset({
    "orderBy", "orderDirection", "eventCountLimit", "maxEventCount", "MATCH_epcClass",
    "MATCH_inputEPCClass", "MATCH_outputEPCClass", "MATCH_anyEPCClass", "EQ_quantity",
    "GT_quantity", "GE_quantity", "LT_quantity", "LE_quantity",
    "EQ_transformationID", "EQ_errorReason", "EXISTS_errorDeclaration",
    "GE_errorDeclarationTime", "LT_errorDeclarationTime", "EQ_correctiveEventID",
    "EQ_persistentDisposition_set", "EQ_persistentDisposition_unset"})
#: the EPCIS 2.0 exception of a problem that does not name one, by HTTP status
_EPCIS_EXCEPTIONS = {400: "ValidationException", 401: "SecurityException",
                     403: "SecurityException", 404: "ResourceNotFoundException",
                     406: "NotAcceptableException", 409: "ValidationException",
                     422: "ValidationException",
                     413: "CaptureLimitExceededException",
                     415: "UnsupportedMediaTypeException", 429: "ImplementationException",
                     501: "ImplementationException", 503: "ImplementationException"}


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


# --------------------------------------------------------------------------- #
# Models (the OpenAPI document is generated from these)
# --------------------------------------------------------------------------- #

class EPCISDocument(BaseModel):
    """An EPCIS 2.0 document (JSON-LD), validated in full by the gateway and the chain."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    context: Any = Field(alias="@context", examples=[[EPCIS_CONTEXT]])
    type: Literal["EPCISDocument"]
    schemaVersion: Literal["2.0"]
    creationDate: str
    epcisBody: dict[str, Any] = Field(description="{eventList: [EPCIS events]}")


class EPCISEvent(BaseModel):
    """One EPCIS 2.0 event (JSON-LD form)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["ObjectEvent"])
    eventTime: str
    eventTimeZoneOffset: str


class CaptureAccepted(Open):
    captureID: str = Field(description="The relay transaction's hash; poll Location")
    location: str
    running: bool
    success: bool


class CaptureError(Open):
    type: str
    code: str
    detail: str = ""
    position: int | None = Field(None, description="The event's index in the capture")


class CaptureJob(Open):
    """A capture job, in the EPCIS 2.0 shape plus the chain's coordinates."""

    captureID: str
    createdAt: str
    finishedAt: str | None = None
    running: bool
    success: bool
    captureErrorBehaviour: Literal["rollback", "proceed"]
    errors: list[CaptureError]
    eventsCaptured: int | None = None
    txHash: str | None = None
    height: int | None = None


class EPCISQueryDocument(BaseModel):
    """An EPCIS 2.0 query document: epcisBody.queryResults {queryName, subscriptionID?,
    resultsBody.eventList}."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    context: Any = Field(alias="@context")
    type: Literal["EPCISQueryDocument"]
    schemaVersion: str
    creationDate: str
    epcisBody: dict[str, Any]


def _one_or_more(words: Sequence[str]) -> str:
    """The pattern of a parameter holding some of ``words``, separated by | or ,."""
    word = "(" + "|".join(words) + ")"
    return rf"^{word}([|,]{word})*$"


class EventsQuery(BaseModel):
    """The standard query parameters understood (``EQ_bizTransaction_<type>`` too)."""

    model_config = ConfigDict(extra="allow")

    eventType: str | None = Field(None, pattern=_one_or_more(epcis.EVENT_TYPES),
                                  description="ObjectEvent, AggregationEvent, ... (several "
                                              "separated by | or ,)")
    EQ_action: str | None = Field(None, pattern=_one_or_more(epcis.ACTIONS),
                                  description="ADD, OBSERVE or DELETE (several separated "
                                              "by | or ,)")
    EQ_bizStep: str | None = Field(None, description="CBV word, URN or Web URI")
    EQ_disposition: str | None = Field(None, description="CBV word, URN or Web URI")
    GE_eventTime: str | None = Field(None, description="RFC 3339, inclusive",
                                     json_schema_extra={"format": "date-time"})
    LT_eventTime: str | None = Field(None, description="RFC 3339, exclusive",
                                     json_schema_extra={"format": "date-time"})
    GE_recordTime: str | None = Field(None, description="RFC 3339, inclusive",
                                      json_schema_extra={"format": "date-time"})
    LT_recordTime: str | None = Field(None, description="RFC 3339, exclusive",
                                      json_schema_extra={"format": "date-time"})
    EQ_readPoint: str | None = Field(None, description="SGLN (URN or Digital Link)")
    EQ_bizLocation: str | None = Field(None, description="SGLN (URN or Digital Link)")
    MATCH_epc: str | None = Field(None, description="EPC URN, pattern or Digital Link")
    MATCH_anyEPC: str | None = Field(None, description="EPC URN, pattern or Digital Link")
    MATCH_parentID: str | None = Field(None, description="EPC URN or Digital Link")
    MATCH_inputEPC: str | None = Field(None, description="a transformation's input")
    MATCH_outputEPC: str | None = Field(None, description="a transformation's output")
    EQ_eventID: str | None = None
    perPage: int | None = Field(None, ge=1, le=PER_PAGE_MAX)
    nextPageToken: str | None = Field(None, pattern=PAGE_TOKEN, description="The "
                                      "nextPageToken of the previous page of this query")


class PageQuery(Model):
    perPage: int | None = Field(None, ge=1, le=PER_PAGE_MAX)
    nextPageToken: str | None = Field(None, pattern=PAGE_TOKEN, description="The "
                                      "nextPageToken of the previous page of this query")


class NamedQueryBody(Model):
    name: str = Field(pattern=QUERY_NAME)
    query: dict[str, str | list[str]] = Field(
        description="Query parameters as for GET /epcis/events (no paging)")


class NamedQuery(Open):
    name: str
    owner: str = Field(description="The organisation that created it")
    query: dict[str, list[str]]
    createdAt: str


class NamedQueryList(Model):
    queries: list[NamedQuery]


class NameList(Model):
    names: list[str]


class SubscriptionInfo(Open):
    subscriptionID: str
    queryName: str
    dest: str
    stream: bool
    reportIfEmpty: bool
    createdAt: str
    status: str


class SubscriptionList(Model):
    subscriptions: list[SubscriptionInfo]


class SubscriptionBody(Model):
    dest: str = Field(min_length=8, max_length=DEST_CHARS_MAX,
                      description="https:// URL (http:// for loopback hosts only)")
    signatureToken: str = Field(min_length=TOKEN_CHARS_MIN, max_length=TOKEN_CHARS_MAX,
                                description="Shared secret: callbacks carry GS1-Signature, "
                                            "the hex HMAC-SHA256 of the body with it")
    reportIfEmpty: bool = False
    stream: bool | None = Field(None, description="EPCIS 2.0: true: deliver new events "
                                                  "as they are recorded (required: this "
                                                  "gateway streams; schedules are not "
                                                  "supported)")
    schedule: dict[str, Any] | None = Field(None, description="Not supported (501)")
    initialRecordTime: str | None = Field(None, description="Not supported (501): "
                                                            "deliveries start at the tip")


class SubscriptionCreated(Open):
    subscriptionID: str
    queryName: str
    dest: str
    reportIfEmpty: bool
    createdAt: str


# --------------------------------------------------------------------------- #
# Query parameters
# --------------------------------------------------------------------------- #

EventPredicate = Callable[[Mapping[str, Any]], bool]


@dataclass
class EventFilter:
    """A parsed query: a MongoDB filter on the view, plus checks on the full event."""

    conditions: list[dict[str, Any]] = field(default_factory=list)
    predicates: list[EventPredicate] = field(default_factory=list)
    normalised: dict[str, list[str]] = field(default_factory=dict)

    def mongo(self, after: int, before: int) -> dict[str, Any]:
        bounds = {"pos": {"$gt": after, "$lt": before}}
        return {"$and": [*self.conditions, bounds]} if self.conditions else bounds

    @property
    def digest(self) -> str:
        text = json.dumps(sorted(self.normalised.items()), separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _query_problem(detail: str, parameter: str | None = None) -> Problem:
    extra: dict[str, Any] = {"epcisException": "QueryParameterException"}
    if parameter is not None:
        extra["parameter"] = parameter[:128]
    return Problem(400, "query_parameter", detail, **extra)


def _split(value: str, *, uris: bool) -> list[str]:
    """The values of a multi-valued parameter: EPCIS 2.0 separates them with ``|`` (the
    REST binding's own example: ``EQ_bizStep=shipping|decommissioning``); commas are
    accepted too (EPCIS 1.x habit), except inside URIs."""
    parts = [part for piece in value.split("|")
             for part in (_URI_SPLIT.split(piece) if uris else piece.split(","))]
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class _Ident:
    exact: str | None  # canonical Digital Link
    prefix: str | None  # an idpat pattern: canonical class Digital Link + "/"

    def matches(self, canonical: str) -> bool:
        if self.exact is not None:
            return canonical == self.exact
        return self.prefix is not None and canonical.startswith(self.prefix)

    def condition(self, field_name: str) -> dict[str, Any]:
        if self.exact is not None:
            return {field_name: self.exact}
        return {field_name: {"$regex": "^" + re.escape(self.prefix or "")}}


def _identifier(value: str, name: str) -> _Ident:
    try:
        canonical = identifiers.to_digital_link(value)
    except identifiers.IdentifierError as exc:
        raise _query_problem(f"{name}: {value[:80]!r} is not an EPC URN, pattern or GS1 "
                             f"Digital Link ({exc.code})", name) from exc
    if value.startswith("urn:epc:idpat:"):
        return _Ident(None, canonical.rstrip("/") + "/")
    return _Ident(canonical, None)


def _canonical(identifier: object) -> str | None:
    if not isinstance(identifier, str):
        return None
    try:
        return identifiers.to_digital_link(identifier)
    except identifiers.IdentifierError:
        return identifier


def _ids_of(event: Mapping[str, Any], keys: Sequence[str], parent: bool) -> list[str]:
    out: list[str] = []
    for key in keys:
        for item in event.get(key) or ():
            canonical = _canonical(item)
            if canonical is not None:
                out.append(canonical)
    if parent:
        canonical = _canonical(event.get("parentID"))
        if canonical is not None:
            out.append(canonical)
    return out


def _match_predicate(wanted: Sequence[_Ident], keys: Sequence[str],
                     parent: bool) -> EventPredicate:
    def check(event: Mapping[str, Any]) -> bool:
        return any(w.matches(c) for c in _ids_of(event, keys, parent) for w in wanted)
    return check


def _location_variants(value: str, name: str) -> list[str]:
    """The spellings of one location the view may hold: as given, its canonical Digital
    Link, and its SGLN URN for every company prefix length (the view keeps the
    identifier as the capturing party wrote it)."""
    variants = {value}
    try:
        parsed = identifiers.parse_identifier(value)
    except identifiers.IdentifierError as exc:
        raise _query_problem(f"{name}: {value[:80]!r} is not an SGLN URN or GS1 Digital "
                             f"Link ({exc.code})", name) from exc
    variants.add(parsed.to_digital_link())
    for cpl in range(6, 13):
        with contextlib.suppress(identifiers.IdentifierError, ValueError):
            variants.add(identifiers.to_urn(value, company_prefix_length=cpl))
    return sorted(variants)


def _time_bound(value: str, name: str) -> int:
    try:
        return epcis.parse_time(value, name)
    except epcis.EpcisError as exc:
        raise _query_problem(f"{name}: {exc.message}", name) from exc


def _vocabulary(value: str, kind: str, name: str) -> str:
    try:
        return epcis.normalize_vocabulary(value, kind, path=name)
    except epcis.EpcisError as exc:
        raise _query_problem(f"{name}: {exc.message}", name) from exc


def parse_event_query(pairs: Sequence[tuple[str, str]], *,
                      paging: bool = False) -> tuple[EventFilter, int, str | None]:
    """The filter, perPage and nextPageToken of the query parameters ``pairs``.

    Raises a 400 problem ``query_parameter`` for an unknown parameter or a bad value.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        if len(value) > QUERY_VALUE_CHARS_MAX * QUERY_VALUES_MAX:
            raise _query_problem(f"{name[:64]}: value too long", name)
        grouped.setdefault(name, []).append(value)
    if len(grouped) > QUERY_PARAMS_MAX:
        raise _query_problem(f"at most {QUERY_PARAMS_MAX} parameters")
    per_page = PER_PAGE_DEFAULT
    token: str | None = None
    flt = EventFilter()
    for name, raw_values in grouped.items():
        if name in ("perPage", "nextPageToken"):
            if not paging:
                raise _query_problem(f"{name} is not part of a named query", name)
            if len(raw_values) != 1:
                raise _query_problem(f"{name} is given more than once", name)
            if name == "perPage":
                text = raw_values[0]
                if not (text.isascii() and text.isdigit() and len(text) <= 7
                        and 1 <= int(text) <= PER_PAGE_MAX):
                    raise _query_problem(f"perPage must be 1..{PER_PAGE_MAX}", name)
                per_page = int(text)
            else:
                token = raw_values[0]
            continue
        uris = name.startswith(("MATCH_", "EQ_readPoint", "EQ_bizLocation", "EQ_eventID",
                                _BIZ_TRANSACTION))
        values = [v for raw in raw_values for v in _split(raw, uris=uris)]
        if not values:
            raise _query_problem(f"{name[:64]} has no value", name)
        if len(values) > QUERY_VALUES_MAX:
            raise _query_problem(f"{name[:64]}: at most {QUERY_VALUES_MAX} values", name)
        if any(len(v) > QUERY_VALUE_CHARS_MAX for v in values):
            raise _query_problem(f"{name[:64]}: a value is too long", name)
        _add_parameter(flt, name, values)
    return flt, per_page, token


def _add_parameter(flt: EventFilter, name: str, values: list[str]) -> None:
    cond = flt.conditions
    if name == "eventType":
        bad = [v for v in values if v not in epcis.EVENT_TYPES]
        if bad:
            raise _query_problem(f"eventType: {bad[0][:80]!r} is not an EPCIS event type", name)
        normal = sorted(set(values))
        cond.append({"type": {"$in": normal}})
    elif name == "EQ_action":
        bad = [v for v in values if v not in epcis.ACTIONS]
        if bad:
            raise _query_problem(f"EQ_action: {bad[0][:80]!r} is not ADD, OBSERVE or DELETE",
                                 name)
        normal = sorted(set(values))
        cond.append({"action": {"$in": normal}})
    elif name in ("EQ_bizStep", "EQ_disposition"):
        kind = name[3:]
        normal = sorted({_vocabulary(v, kind, name) for v in values})
        cond.append({kind: {"$in": normal}})
    elif name in ("GE_eventTime", "LT_eventTime", "GE_recordTime", "LT_recordTime"):
        if len(values) != 1:
            raise _query_problem(f"{name} takes one time", name)
        millis = _time_bound(values[0], name)
        op = "$gte" if name.startswith("GE_") else "$lt"
        cond.append({name[3:]: {op: millis}})
        normal = [str(millis)]
    elif name in ("EQ_readPoint", "EQ_bizLocation"):
        variants = sorted({s for v in values for s in _location_variants(v, name)})
        cond.append({name[3:]: {"$in": variants}})
        normal = variants
    elif name in ("MATCH_epc", "MATCH_anyEPC", "MATCH_parentID", "MATCH_inputEPC",
                  "MATCH_outputEPC"):
        wanted = [_identifier(v, name) for v in values]
        exact = sorted({w.exact for w in wanted if w.exact is not None})
        ors: list[dict[str, Any]] = [{"epcs": {"$in": exact}}] if exact else []
        ors += [w.condition("epcs") for w in wanted if w.exact is None]
        cond.append(ors[0] if len(ors) == 1 else {"$or": ors})
        if name == "MATCH_epc":
            flt.predicates.append(_match_predicate(wanted, ("epcList", "childEPCs"), False))
        elif name == "MATCH_anyEPC":
            flt.predicates.append(_match_predicate(
                wanted, ("epcList", "childEPCs", "inputEPCList", "outputEPCList"), True))
        elif name == "MATCH_inputEPC":
            flt.predicates.append(_match_predicate(wanted, ("inputEPCList",), False))
        elif name == "MATCH_outputEPC":
            flt.predicates.append(_match_predicate(wanted, ("outputEPCList",), False))
        else:
            flt.predicates.append(_match_predicate(wanted, (), True))
        normal = sorted(w.exact or f"{w.prefix}*" for w in wanted)
    elif name == "EQ_eventID":
        normal = sorted(set(values))
        cond.append({"eventID": {"$in": normal}})
    elif name.startswith(_BIZ_TRANSACTION) and len(name) > len(_BIZ_TRANSACTION):
        btt = _vocabulary(name[len(_BIZ_TRANSACTION):], "btt", name)
        normal = sorted({f"{btt}|{v}" for v in values})
        cond.append({"bizTransactions": {"$in": normal}})
    elif name in _STANDARD_UNSUPPORTED:
        raise Problem(501, "query_parameter_unsupported", f"{name} is an EPCIS 2.0 query "
                      "parameter this repository does not implement (results come in "
                      "the order the chain recorded them)",
                      epcisException="ImplementationException", parameter=name)
    else:
        raise _query_problem(f"unknown query parameter {name[:64]!r}", name)
    flt.normalised[name] = normal


def encode_page_token(pos: int, flt: EventFilter) -> str:
    raw = json.dumps([pos, flt.digest], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_page_token(token: str, flt: EventFilter) -> int:
    try:
        if len(token) > PAGE_TOKEN_CHARS_MAX:
            raise ValueError
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise _query_problem("nextPageToken is not one of ours", "nextPageToken") from None
    if (not isinstance(value, list) or len(value) != 2 or type(value[0]) is not int
            or not 0 <= value[0] <= INT_MAX or value[1] != flt.digest):
        raise _query_problem("nextPageToken belongs to another query (or is damaged)",
                             "nextPageToken")
    return int(value[0])


@dataclass
class QueryResult:
    events: list[dict[str, Any]]
    last_pos: int | None  # pos of the last event returned
    scanned_to: int  # every view document up to this pos was examined
    more: bool  # there are further matches (or unexamined documents) below the bound


def stored_event(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The event as the chain recorded it (undoing ``put_json_value``), served the way
    EPCIS 2.0 says a repository serves it: ``recordTime`` is when the repository (the
    chain: its block time) recorded the event, whatever the capture said, and an
    event captured without an ``eventID`` gets its CBV 2.0 hash as one."""
    text = doc.get("event_json")
    if isinstance(text, str):
        loaded = json.loads(text)
        event = loaded if isinstance(loaded, dict) else {}
    else:
        raw = doc.get("event")
        event = dict(raw) if isinstance(raw, Mapping) else {}
    if isinstance(doc.get("recordTime"), int):
        event["recordTime"] = epcis.format_time(doc["recordTime"])
    if "eventID" not in event and isinstance(doc.get("event_hash"), str):
        event["eventID"] = doc["event_hash"]
    return numbers_as_numbers(event)


async def run_query(db: Any, flt: EventFilter, *, after: int, want: int,
                    before: int) -> QueryResult:
    """Up to ``want`` matching events with ``after < pos < before``, in ``pos`` order."""
    found: list[tuple[int, dict[str, Any]]] = []
    cursor = after
    scanned = 0
    exhausted = False
    while len(found) <= want and scanned < QUERY_SCAN_MAX:
        batch = want + 1 - len(found)
        if flt.predicates:
            batch = min(QUERY_READ_BATCH, max(batch, 50), QUERY_SCAN_MAX - scanned)
        docs = await db[EPCIS_EVENTS].find(flt.mongo(cursor, before)) \
            .sort("pos", 1).limit(batch).to_list()
        for doc in docs:
            scanned += 1
            cursor = int(doc["pos"])
            event = stored_event(doc)
            if all(check(event) for check in flt.predicates):
                found.append((cursor, event))
                if len(found) > want:
                    break
        if len(docs) < batch:
            exhausted = True
            break
    more = len(found) > want or not exhausted
    page = found[:want]
    # With a further match found, the next read starts after the last one returned;
    # otherwise everything read so far was examined.
    scanned_to = page[-1][0] if len(found) > want else cursor
    return QueryResult([e for _, e in page], page[-1][0] if page else None, scanned_to,
                       more)


def query_document(events: list[dict[str, Any]], query_name: str, *,
                   subscription_id: str | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {"queryName": query_name}
    if subscription_id is not None:
        results["subscriptionID"] = subscription_id
    results["resultsBody"] = {"eventList": events}
    return {"@context": [EPCIS_CONTEXT], "type": "EPCISQueryDocument",
            "schemaVersion": "2.0", "creationDate": epcis.format_time(_now_ms()),
            "epcisBody": {"queryResults": results}}


def _now_ms() -> int:
    return int(time.time() * 1000)


class JsonNumber(str):
    """Decimal text to be written as a JSON number (never through a float)."""


#: fields EPCIS 2.0 defines as numbers; the chain keeps them as exact decimal text
_SENSOR_NUMBERS = ("value", "minValue", "maxValue", "meanValue", "sDev", "percRank")
_QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList",
                   "outputQuantityList")
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)


def _as_number(value: Any) -> Any:
    return JsonNumber(value) if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value) \
        else value


def numbers_as_numbers(event: dict[str, Any]) -> dict[str, Any]:
    """Sensor values and quantities served as JSON numbers, as the standard's schema has
    them (they are exact decimal text on the chain)."""
    for element in event.get("sensorElementList") or ():
        for report in (element.get("sensorReport") or ()) if isinstance(element, dict) else ():
            if isinstance(report, dict):
                for key in _SENSOR_NUMBERS:
                    if key in report:
                        report[key] = _as_number(report[key])
    for field_name in _QUANTITY_LISTS:
        for item in event.get(field_name) or ():
            if isinstance(item, dict) and "quantity" in item:
                item["quantity"] = _as_number(item["quantity"])
    return event


def _marked(value: Any, mark: str) -> Any:
    if isinstance(value, JsonNumber):
        return f"{mark}{value}{mark}"
    if isinstance(value, dict):
        return {k: _marked(v, mark) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked(v, mark) for v in value]
    return value


def _dumps(value: Any) -> bytes:
    """JSON, with :class:`JsonNumber` text written as numbers: each is first written as a
    string between a fresh random marker (unguessable, so no captured string can pose
    as one), then the marked strings are replaced by the bare digits."""
    mark = f"@{secrets.token_hex(12)}@"
    text = json.dumps(_marked(value, mark), separators=(",", ":"), ensure_ascii=False)
    if mark not in text:
        return text.encode()
    pattern = re.compile(f'"{re.escape(mark)}(-?[0-9]+(?:\\.[0-9]+)?){re.escape(mark)}"')
    return pattern.sub(r"\1", text).encode()


# --------------------------------------------------------------------------- #
# Capture jobs
# --------------------------------------------------------------------------- #

@dataclass
class Job:
    capture_id: str
    created_at: int
    behaviour: str
    principal: str | None = None
    running: bool = True
    success: bool = False
    finished_at: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    events_captured: int | None = None
    height: int | None = None
    tx_hash: bytes | None = None
    expires_at: int | None = None  # block time after which the transaction cannot commit
    event_hashes: tuple[str, ...] = ()
    future: asyncio.Future[Receipt | TxRejected] | None = None

    def fail(self, code: str, detail: str, at: int) -> None:
        self.running, self.success, self.finished_at = False, False, at
        self.errors = [_error(code, detail, None)]

    def to_json(self) -> dict[str, Any]:
        return {
            "captureID": self.capture_id,
            "createdAt": epcis.format_time(self.created_at),
            "finishedAt": None if self.finished_at is None
            else epcis.format_time(self.finished_at),
            "running": self.running,
            "success": self.success,
            "captureErrorBehaviour": self.behaviour,
            "errors": self.errors,
            "eventsCaptured": self.events_captured,
            "txHash": None if self.tx_hash is None else self.tx_hash.hex(),
            "height": self.height,
        }


def _error(code: str, detail: str, position: int | None) -> dict[str, Any]:
    return {"type": f"/problems/{code}", "code": code, "detail": detail[:512],
            "position": position}


def _succeeded(job: Job) -> bool:
    """A relayed capture's transaction always commits (its outcome is in its events):
    the capture succeeded if events were recorded and, all-or-nothing (rollback), none
    was refused."""
    if not job.events_captured:
        return False
    return job.behaviour == "proceed" or not job.errors


def _outcome(events: Sequence[Any], tx_index: int) -> tuple[int, list[dict[str, Any]]]:
    """(events captured, per-event errors) of one capture transaction's events."""
    captured = 0
    errors: list[dict[str, Any]] = []
    for event in events:
        if event.tx_index != tx_index:
            continue
        if event.type == "trace.event.captured":
            captured += 1
        elif event.type == "trace.capture.rejected":
            a = event.attributes
            errors.append(_error(str(a.get("code", "rejected")), str(a.get("reason", "")),
                                 a.get("position")))
    return captured, errors


# --------------------------------------------------------------------------- #
# The API
# --------------------------------------------------------------------------- #

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class EpcisApi:
    def __init__(self, gateway: GatewayApi, *, webhook_limits: WebhookLimits | None = None,
                 jobs_max: int = JOBS_MAX) -> None:
        self.gateway = gateway
        self.limits = webhook_limits or WebhookLimits()
        self.jobs_max = jobs_max
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._pending_events: dict[str, str] = {}  # event hash -> running capture id
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] = lambda: None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._indexes_ready = False
        self._rng = random.Random()
        self.deliveries = 0
        self.delivery_failures = 0

    # --- declaration ------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        E = Endpoint  # noqa: N806 - a short alias keeps the table readable
        capture = functools.partial(self._wrap, capture=True)
        wrap = self._wrap
        tag = "epcis"
        name = {"name": {"type": "string", "pattern": QUERY_NAME}}
        return [
            E("OPTIONS", "/epcis/capture", capture(self.capture_options),
              "What a capture may be: limits, error behaviours, media types", tag,
              {204: None}, errors=(429,)),
            E("POST", "/epcis/capture", capture(self.post_capture),
              "Capture an EPCISDocument (asynchronous; signed by the capturing party)", tag,
              {202: CaptureAccepted}, body=EPCISDocument, signed=True,
              errors=(400, 409, 413, 415, 422, 429, 503),
              description="The party's RFC 9421-signed request is relayed to the chain, "
                          "which verifies the signature itself. Header "
                          "GS1-Capture-Error-Behaviour: rollback (default) | proceed. "
                          "Answers 202 with Location: /epcis/capture/{captureID}."),
            E("GET", "/epcis/capture/{capture_id}", capture(self.get_capture),
              "A capture job", tag, {200: CaptureJob}, signed=True,
              path_params={"capture_id": {"type": "string", "pattern": HEX32}},
              errors=(400, 404, 429, 503)),
            E("POST", "/epcis/events", capture(self.post_event),
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
            E("POST", "/epcis/queries", wrap(self.post_query), "Create a named query", tag,
              {201: NamedQuery}, body=NamedQueryBody, signed=True,
              errors=(400, 409, 415, 422, 429, 503)),
            E("GET", "/epcis/queries", wrap(self.list_queries),
              "The caller's organisation's named queries", tag, {200: NamedQueryList},
              signed=True, errors=(400, 429, 503)),
            E("GET", "/epcis/eventTypes", wrap(self.event_types),
              "The EPCIS event types this repository records", tag, {200: NameList},
              errors=(429,)),
            E("GET", "/epcis/queries/{name}/subscriptions", wrap(self.list_subscriptions),
              "A named query's subscriptions (its owner only)", tag,
              {200: SubscriptionList}, signed=True, path_params=name,
              errors=(400, 403, 404, 429, 503)),
            E("GET", "/epcis/queries/{name}", wrap(self.get_query), "A named query", tag,
              {200: NamedQuery}, signed=True, path_params=name,
              errors=(400, 404, 429, 503)),
            E("DELETE", "/epcis/queries/{name}", wrap(self.delete_query),
              "Delete a named query and its subscriptions (its owner only)", tag,
              {204: None}, signed=True, path_params=name,
              errors=(400, 403, 404, 429, 503)),
            E("GET", "/epcis/queries/{name}/events", wrap(self.run_named_query),
              "Run a named query", tag, {200: EPCISQueryDocument}, query=PageQuery,
              signed=True, path_params=name, errors=(400, 404, 429, 503)),
            E("POST", "/epcis/queries/{name}/subscriptions", wrap(self.post_subscription),
              "Subscribe a webhook to a named query (its owner only)", tag,
              {201: SubscriptionCreated}, body=SubscriptionBody, signed=True,
              path_params=name, errors=(400, 403, 404, 409, 415, 422, 429, 501, 503),
              description="New matching events are POSTed to dest as EPCISQueryDocuments "
                          "with GS1-Signature: hex HMAC-SHA256 of the body keyed with "
                          "signatureToken, and GS1-Query-Name."),
            E("DELETE", "/epcis/queries/{name}/subscriptions/{subscription_id}",
              wrap(self.delete_subscription), "Unsubscribe (the query's owner only)", tag,
              {204: None}, signed=True,
              path_params={**name, "subscription_id": {"type": "string",
                                                        "pattern": SUBSCRIPTION_ID}},
              errors=(400, 403, 404, 429, 503)),
        ]

    def _wrap(self, handler: Handler, *, capture: bool = False) -> Handler:
        """Answer problems here (so they carry the EPCIS headers too) and add them."""

        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                response = await handler(request)
            except Problem as problem:
                # EPCIS 2.0 names its errors by exception type
                # (type: epcisException:<Name>); the stable ``code`` stays alongside.
                name = problem.extra.get("epcisException") or _EPCIS_EXCEPTIONS.get(
                    problem.status, "ImplementationException")
                problem.extra["epcisException"] = name
                response = problem.response(request.path,
                                            type_uri=f"epcisException:{name}")
            response.headers["GS1-EPCIS-Version"] = EPCIS_VERSION
            response.headers["GS1-CBV-Version"] = CBV_VERSION
            if capture:
                response.headers["GS1-EPCIS-Capture-Limit"] = str(CAPTURE_EVENTS_MAX)
                response.headers["GS1-EPCIS-Capture-File-Size-Limit"] = str(
                    self.capture_size_limit())
            return response

        return wrapped

    def capture_size_limit(self) -> int:
        """Bytes of a capture body the chain can carry in one transaction."""
        return max(0, int(self.gateway.chain.tip.params.tx_bytes_max)
                   - CAPTURE_OVERHEAD_BYTES)

    # --- capture ----------------------------------------------------------------------

    async def post_capture(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        text = await self._capture_body(request)
        behaviour = self._behaviour(request)
        document = _load_json(text)
        try:
            events = epcis.validate_document(document)
        except epcis.EpcisError as exc:
            raise _validation_problem(exc) from exc
        if not events:
            raise Problem(400, "empty_capture", "epcisBody.eventList holds no event",
                          epcisException="ValidationException")
        if len(events) > CAPTURE_EVENTS_MAX:
            raise Problem(413, "capture_limit_exceeded",
                          f"at most {CAPTURE_EVENTS_MAX} events per capture "
                          f"(GS1-EPCIS-Capture-Limit)",
                          epcisException="CaptureLimitExceededException")
        hashes = _hashes(events)
        job = self.relay_capture(self._relayed_request(request, text), behaviour,
                                 event_hashes=hashes, principal=principal)
        return self._accepted(job)

    async def post_event(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        text = await self._capture_body(request)
        behaviour = self._behaviour(request)
        try:
            event = epcis.validate_event(_load_json(text))
        except epcis.EpcisError as exc:
            raise _validation_problem(exc) from exc
        job = self.relay_capture(self._relayed_request(request, text), behaviour,
                                 event_hashes=_hashes([event]), principal=principal)
        return self._accepted(job)

    async def _capture_body(self, request: web.Request) -> str:
        if request.content_type not in CAPTURE_MEDIA_TYPES:
            raise Problem(415, "unsupported_media_type",
                          "send application/json or application/ld+json")
        raw = await request.read()
        limit = self.capture_size_limit()
        if len(raw) > limit:
            raise Problem(413, "capture_too_large",
                          f"a capture is at most {limit} bytes "
                          f"(GS1-EPCIS-Capture-File-Size-Limit)",
                          epcisException="CaptureLimitExceededException")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Problem(400, "bad_encoding", "the body is not UTF-8") from exc

    def _behaviour(self, request: web.Request) -> str:
        value = request.headers.get("GS1-Capture-Error-Behaviour", "rollback").strip()
        if value.lower() not in ("rollback", "proceed"):
            raise Problem(400, "bad_capture_error_behaviour",
                          "GS1-Capture-Error-Behaviour is rollback or proceed")
        return value.lower()

    def _base_url(self, request: web.Request) -> str:
        """``scheme://host`` as the client sees it (the public base behind a proxy)."""
        base = getattr(self.gateway.options, "public_base_url", None) \
            or f"{request.scheme}://{request.host}"
        return str(base).rstrip("/")

    def _target_uri(self, request: web.Request) -> str:
        """The URL the client signed, built as the policies build it to verify it."""
        return self._base_url(request) + request.raw_path

    def _relayed_request(self, request: web.Request, body: str) -> dict[str, Any]:
        """The request as the party signed it: the signature fields and every field the
        signature covers, with their values combined as RFC 9421 does."""
        names = {n.lower() for n in _SIGNATURE_FIELDS}
        names.update(n for n in _COVERED_FIELD.findall(
            ", ".join(request.headers.getall("Signature-Input", []))) if n[0] != "@")
        headers: dict[str, str] = {}
        for name in sorted(names):
            values = request.headers.getall(name, [])
            if values:
                headers[name] = ", ".join(values)
        if len(headers) > RELAYED_HEADERS_MAX or sum(
                len(k) + len(v) for k, v in headers.items()) > RELAYED_HEADER_BYTES_MAX:
            raise Problem(400, "headers_too_large", "the signature covers too many or too "
                          "long header fields")
        return {"method": request.method, "url": self._target_uri(request),
                "headers": headers, "body": body}

    def _accepted(self, job: Job) -> web.Response:
        location = f"/epcis/capture/{job.capture_id}"
        body = {"captureID": job.capture_id, "location": location, "running": job.running,
                "success": job.success}
        return web.Response(status=202, body=_dumps(body), content_type=JSON,
                            headers={"Location": location})

    def relay_capture(self, request: Mapping[str, Any], behaviour: str, *,
                      event_hashes: Sequence[str] = (), principal: str | None = None) -> Job:
        """Relay a signed capture request to the chain; returns its job.

        The transaction is first executed against the replica's tip: a capture the chain
        would refuse is not sent, its job fails at once with the contract's code.
        """
        relay = self.gateway.relay
        if relay is None:
            raise Problem(503, "relay_unavailable", "this gateway has no relay key",
                          retry_after_s=60)
        self._sweep()
        busy = next((h for h in event_hashes if h in self._pending_events), None)
        if busy is not None:
            raise Problem(409, "capture_in_progress",
                          f"event {busy} is part of capture {self._pending_events[busy]}, "
                          "which is still running; retry when it has finished")
        self._make_room()
        waiters = self.gateway.waiters
        if waiters.count >= waiters.limit:
            raise Problem(503, "too_many_waiters", "too many transactions are being "
                          "followed", retry_after_s=1)
        payload = {"request": dict(request), "error_behaviour": behaviour}
        now = _now_ms()
        try:
            tx = relay.sign(CAPTURE_KIND, payload)
            # Judged as the relay's next transaction: its predecessors waiting in the
            # mempool are other parties' captures, which this one does not depend on.
            failure = self.gateway.chain.dry_run(tx, now, assume_next_nonce=True)
            if failure is not None:
                job = Job(tx.hash.hex(), now, behaviour, principal)
                job.fail(failure.code, failure.message, now)
                self.jobs[job.capture_id] = job
                return job
            relay.submit(tx)
        except LedgerError as exc:
            raise _ledger_problem(exc) from exc
        job = Job(tx.hash.hex(), now, behaviour, principal, tx_hash=tx.hash,
                  expires_at=tx.created_at + int(self.gateway.chain.tip.params.tx_ttl_ms),
                  event_hashes=tuple(event_hashes))
        self.jobs[job.capture_id] = job
        for h in job.event_hashes:
            self._pending_events[h] = job.capture_id
        future = waiters.wait(tx.hash)
        job.future = future
        future.add_done_callback(functools.partial(self._finished, job))
        return job

    def _finished(self, job: Job, future: asyncio.Future[Receipt | TxRejected]) -> None:
        self._release(job)
        if future.cancelled() or not job.running:
            return
        result = future.result()
        if isinstance(result, TxRejected):
            job.fail(result.code, result.message, _now_ms())
            return
        job.running = False
        job.height, job.finished_at = result.height, int(result.block.header.time)
        events = self.gateway.chain.store.events(result.height) or []
        job.events_captured, job.errors = _outcome(events, result.index)
        job.success = _succeeded(job)

    def _release(self, job: Job) -> None:
        for h in job.event_hashes:
            if self._pending_events.get(h) == job.capture_id:
                del self._pending_events[h]

    def _sweep(self) -> None:
        """Running jobs whose transaction can no longer commit (its time-to-live passed
        at block time) have failed: a proposer dropped it."""
        tip_time = int(self.gateway.chain.tip.time)
        for job in [j for j in self.jobs.values() if j.running]:
            if job.expires_at is not None and tip_time > job.expires_at:
                if job.future is not None and job.tx_hash is not None:
                    self.gateway.waiters.forget(job.tx_hash, job.future)
                job.fail("expired", "the transaction was not committed within its "
                         "time-to-live (a proposer refused it)", tip_time)
                self._release(job)

    def _make_room(self) -> None:
        if len(self.jobs) < self.jobs_max:
            return
        for capture_id, job in list(self.jobs.items()):
            if not job.running:
                del self.jobs[capture_id]
                if len(self.jobs) < self.jobs_max:
                    return
        raise Problem(503, "too_many_captures", "too many captures are running",
                      retry_after_s=5)

    async def get_capture(self, request: web.Request) -> web.Response:
        principal_of(request)
        capture_id = request.match_info["capture_id"]
        if not _HEX32_RE.match(capture_id):
            raise Problem(400, "bad_capture_id", "a capture ID is 64 lowercase hex digits")
        self._sweep()
        job = self.jobs.get(capture_id)
        if job is None:
            job = await self._job_from_chain(capture_id)
        if job is None:
            raise Problem(404, "capture_not_found", f"no capture {capture_id}")
        return _json(job.to_json())

    async def _job_from_chain(self, capture_id: str) -> Job | None:
        """A job this gateway does not remember: waiting in the mempool, or committed."""
        tx_hash = bytes.fromhex(capture_id)
        pending = self.gateway.chain.pending(tx_hash)
        if pending is not None and pending.kind == CAPTURE_KIND:
            return Job(capture_id, pending.created_at,
                       str(pending.payload.get("error_behaviour", "rollback")),
                       tx_hash=tx_hash)
        db = self.gateway.views_db()
        record = await self.gateway.views_call(get_transaction(db, capture_id))
        if record is None or record.get("kind") != CAPTURE_KIND:
            return None
        payload = record.get("payload") or {}
        job = Job(capture_id, int(record["created_at"]),
                  str(payload.get("error_behaviour", "rollback")), tx_hash=tx_hash)
        job.running = False
        job.height, job.finished_at = int(record["height"]), int(record["time"])
        events = self.gateway.chain.store.events(job.height) or []
        job.events_captured, job.errors = _outcome(events, int(record["index"]))
        job.success = _succeeded(job)
        return job

    # --- queries ----------------------------------------------------------------------

    async def list_events(self, request: web.Request) -> web.Response:
        principal_of(request)
        flt, per_page, token = parse_event_query(list(request.query.items()), paging=True)
        return await self._page(request, flt, per_page, token, "SimpleEventQuery")

    async def _page(self, request: web.Request, flt: EventFilter, per_page: int,
                    token: str | None, query_name: str) -> web.Response:
        after = -1 if token is None else decode_page_token(token, flt)
        db = self.gateway.views_db()
        result = await self.gateway.views_call(self._query(db, flt, after, per_page))
        headers = {}
        if result.more:
            next_after = result.scanned_to
            params = [(k, v) for k, v in request.query.items() if k != "nextPageToken"]
            params.append(("nextPageToken", encode_page_token(next_after, flt)))
            url = f"{self._base_url(request)}{request.path}?{urlencode(params)}"
            headers["Link"] = f'<{url}>; rel="next"'
        return _json(query_document(result.events, query_name), headers=headers,
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
        db = self.gateway.views_db()
        found = await self.gateway.views_call(
            db[EPCIS_EVENTS].find({"$or": [{"eventID": {"$in": ids}}, {"_id": {"$in": ids}}]})
            .sort("pos", 1).limit(1).to_list())
        if not found:
            raise Problem(404, "event_not_found", f"no event {event_id[:120]}")
        return _json(query_document([stored_event(found[0])], "SimpleEventQuery"),
                     request=request)

    # --- named queries ----------------------------------------------------------------

    async def _json_body(self, request: web.Request, model: type[BaseModel]) -> Any:
        if request.content_type != JSON:
            raise Problem(415, "unsupported_media_type", "send application/json")
        body = parse_json_body(await request.read())
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Problem(422, "bad_body", f"{where}: {first['msg']}") from exc

    def _org_of(self, key_id: str) -> str:
        record = consortium.key_record(self.gateway.chain.view(), key_id)
        if record is None:
            raise Problem(401, "unknown_key", "the signing key is not registered")
        return str(record["org"])

    async def _ensure_indexes(self, db: Any) -> None:
        if not self._indexes_ready:
            await db[QUERIES].create_index("owner")
            await db[SUBSCRIPTIONS].create_index("query")
            await db[SUBSCRIPTIONS].create_index("next_attempt_ms")
            self._indexes_ready = True

    async def post_query(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        body: NamedQueryBody = await self._json_body(request, NamedQueryBody)
        pairs = _pairs(body.query)
        parse_event_query(pairs)  # refuses unknown parameters and bad values now
        org = self._org_of(principal)
        db = self.gateway.views_db()
        doc = {"_id": body.name, "owner": org, "owner_key": principal,
               "query": [list(p) for p in pairs], "created": _now_ms()}
        await self.gateway.views_call(self._insert_query(db, doc))
        return _json(_query_out(doc), status=201,
                     headers={"Location": f"/epcis/queries/{body.name}"})

    async def _insert_query(self, db: Any, doc: dict[str, Any]) -> None:
        await self._ensure_indexes(db)
        if await db[QUERIES].count_documents({"owner": doc["owner"]}) \
                >= NAMED_QUERIES_PER_ORG_MAX:
            raise Problem(409, "too_many_queries",
                          f"at most {NAMED_QUERIES_PER_ORG_MAX} named queries per "
                          "organisation")
        if await db[QUERIES].find_one({"_id": doc["_id"]}, {"_id": 1}) is not None:
            raise Problem(409, "query_exists", f"a query named {doc['_id']} exists",
                          epcisException="DuplicateNameException")
        try:
            await db[QUERIES].insert_one(doc)
        except DuplicateKeyError as exc:
            raise Problem(409, "query_exists", f"a query named {doc['_id']} exists",
                          epcisException="DuplicateNameException") from exc

    async def _named(self, request: web.Request) -> tuple[Any, dict[str, Any]]:
        name = request.match_info["name"]
        if not _QUERY_NAME_RE.match(name):
            raise Problem(400, "bad_query_name", "a query name is 1..64 of [A-Za-z0-9_.-]")
        db = self.gateway.views_db()
        doc = await self.gateway.views_call(db[QUERIES].find_one({"_id": name}))
        if doc is None:
            raise Problem(404, "query_not_found", f"no named query {name}",
                          epcisException="NoSuchNameException")
        return db, doc

    def _require_owner(self, request: web.Request, doc: Mapping[str, Any]) -> str:
        org = self._org_of(principal_of(request))
        if org != doc["owner"]:
            raise Problem(403, "forbidden", f"the query belongs to {doc['owner']}")
        return org

    async def capture_options(self, request: web.Request) -> web.Response:
        """EPCIS 2.0 discovery: the capture limits (added by the wrapper), the error
        behaviours and the media types this repository accepts."""
        return web.Response(status=204, headers={
            "Allow": "OPTIONS, POST", "GS1-Capture-Error-Behaviour": "rollback, proceed",
            "Accept-Post": ", ".join(sorted(CAPTURE_MEDIA_TYPES))})

    async def list_queries(self, request: web.Request) -> web.Response:
        org = self._org_of(principal_of(request))
        db = self.gateway.views_db()
        docs = await self.gateway.views_call(
            db[QUERIES].find({"owner": org}).sort("_id", 1).to_list(NAMED_QUERIES_PER_ORG_MAX))
        return _json({"queries": [_query_out(d) for d in docs]})

    async def event_types(self, request: web.Request) -> web.Response:
        return _json({"names": sorted(epcis.EVENT_TYPES)})

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        principal_of(request)
        db, doc = await self._named(request)
        self._require_owner(request, doc)
        subs = await self.gateway.views_call(
            db[SUBSCRIPTIONS].find({"query": doc["_id"]}).sort("_id", 1)
            .to_list(SUBSCRIPTIONS_PER_QUERY_MAX))
        return _json({"subscriptions": [{
            "subscriptionID": sub["_id"], "queryName": doc["_id"], "dest": sub["dest"],
            "stream": True, "reportIfEmpty": bool(sub.get("report_if_empty")),
            "createdAt": epcis.format_time(int(sub["created"])),
            "status": str(sub.get("status", "active"))} for sub in subs]})

    async def get_query(self, request: web.Request) -> web.Response:
        principal_of(request)
        _, doc = await self._named(request)
        return _json(_query_out(doc))

    async def delete_query(self, request: web.Request) -> web.Response:
        principal_of(request)
        db, doc = await self._named(request)
        self._require_owner(request, doc)

        async def delete() -> None:
            await db[SUBSCRIPTIONS].delete_many({"query": doc["_id"]})
            await db[QUERIES].delete_one({"_id": doc["_id"]})

        await self.gateway.views_call(delete())
        return web.Response(status=204)

    async def run_named_query(self, request: web.Request) -> web.Response:
        principal_of(request)
        _, doc = await self._named(request)
        flt, _, _ = parse_event_query([tuple(p) for p in doc["query"]])
        paging = [(k, v) for k, v in request.query.items()]
        unknown = [k for k, _ in paging if k not in ("perPage", "nextPageToken")]
        if unknown:
            raise _query_problem(f"unknown query parameter {unknown[0][:64]!r} (a named "
                                 "query takes perPage and nextPageToken only)", unknown[0])
        _, per_page, token = parse_event_query(paging, paging=True)
        return await self._page(request, flt, per_page, token, str(doc["_id"]))

    # --- subscriptions ----------------------------------------------------------------

    async def post_subscription(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        db, doc = await self._named(request)
        self._require_owner(request, doc)
        body: SubscriptionBody = await self._json_body(request, SubscriptionBody)
        if body.schedule is not None or body.initialRecordTime is not None:
            raise Problem(501, "subscription_controls_unsupported", "this gateway streams "
                          "new events (stream: true); schedules and initialRecordTime are "
                          "not supported", epcisException="SubscriptionControlsException")
        if body.stream is not True:
            raise Problem(400, "subscription_controls", "a subscription sets stream: true "
                          "(EPCIS 2.0: stream or schedule)",
                          epcisException="SubscriptionControlsException")
        _check_dest(body.dest, loopback_allowed=self.limits.loopback_allowed)
        subscription_id = secrets.token_hex(16)
        now = _now_ms()
        sub = {"_id": subscription_id, "query": doc["_id"], "owner": doc["owner"],
               "owner_key": principal, "dest": body.dest, "secret": body.signatureToken,
               "report_if_empty": body.reportIfEmpty, "created": now,
               "cursor": pos_of(int(self.gateway.chain.tip.height) + 1, 0) - 1,
               "status": "active", "failures": 0, "next_attempt_ms": 0,
               "last_report_ms": now, "delivered_events": 0, "last_error": None}
        await self.gateway.views_call(self._insert_subscription(db, sub))
        self._wake.set()
        location = f"/epcis/queries/{doc['_id']}/subscriptions/{subscription_id}"
        return _json({"subscriptionID": subscription_id, "queryName": doc["_id"],
                      "dest": body.dest, "reportIfEmpty": body.reportIfEmpty,
                      "createdAt": epcis.format_time(now)}, status=201,
                     headers={"Location": location})

    async def _insert_subscription(self, db: Any, sub: dict[str, Any]) -> None:
        await self._ensure_indexes(db)
        if await db[SUBSCRIPTIONS].count_documents({"query": sub["query"]}) \
                >= SUBSCRIPTIONS_PER_QUERY_MAX:
            raise Problem(409, "too_many_subscriptions",
                          f"at most {SUBSCRIPTIONS_PER_QUERY_MAX} subscriptions per query")
        if await db[SUBSCRIPTIONS].count_documents({}) >= self.limits.subscriptions_max:
            raise Problem(409, "too_many_subscriptions", "the gateway serves no more "
                          "subscriptions")
        await db[SUBSCRIPTIONS].insert_one(sub)

    async def delete_subscription(self, request: web.Request) -> web.Response:
        principal_of(request)
        db, doc = await self._named(request)
        subscription_id = request.match_info["subscription_id"]
        if not _SUBSCRIPTION_RE.match(subscription_id):
            raise Problem(400, "bad_subscription_id", "a subscription ID is 32 hex digits")
        self._require_owner(request, doc)
        result = await self.gateway.views_call(db[SUBSCRIPTIONS].delete_one(
            {"_id": subscription_id, "query": doc["_id"]}))
        if result.deleted_count == 0:
            raise Problem(404, "subscription_not_found",
                          f"no subscription {subscription_id} to {doc['_id']}",
                          epcisException="NoSuchSubscriptionException")
        return web.Response(status=204)

    # --- the webhook dispatcher -------------------------------------------------------

    async def start(self) -> None:
        """Start the webhook dispatcher (call from the gateway's event loop)."""
        if self._task is not None:
            return
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.limits.delivery_timeout_s),
            connector=aiohttp.TCPConnector(resolver=PublicResolver(
                loopback_allowed=self.limits.loopback_allowed)))
        self._unsubscribe = self.gateway.chain.on_commit(self._on_commit)
        self._task = asyncio.create_task(self._dispatch_loop())

    async def stop(self) -> None:
        """Stop the dispatcher; a delivery in flight is abandoned (and sent again later:
        its cursor was not advanced)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        self._unsubscribe()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.limits.delivery_timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _on_commit(self, _commit: Commit) -> None:
        self._wake.set()

    async def _dispatch_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            more = False
            try:
                self._sweep()
                more = await self.dispatch_round()
                failures = 0
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("epcis webhooks: dispatch failed (%s: %s); retrying",
                                type(exc).__name__, exc)
                await self._sleep(min(self.limits.retry_backoff_max_s,
                                      self.limits.retry_backoff_s * (1 << min(failures, 10))),
                                  wakeable=False)
                continue
            if not more:
                await self._sleep(self.limits.poll_interval_s, wakeable=True)

    async def _sleep(self, seconds: float, *, wakeable: bool) -> None:
        waiters = [asyncio.ensure_future(self._stop.wait())]
        if wakeable:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def dispatch_round(self) -> bool:
        """Serve every subscription that is due once; True if some have more to send."""
        gateway = self.gateway
        if gateway.views is None or not gateway.views_available():
            return False
        db = gateway.views
        before = (await views_height(db) + 1) * POS_STRIDE
        now = _now_ms()
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
            inactive = self._owner_inactive(sub)
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

    def _owner_inactive(self, sub: Mapping[str, Any]) -> str | None:
        """Why the subscription's owner may not receive events now (None: it may): its
        key revoked, or its organisation suspended or gone, on the chain's tip."""
        view = self.gateway.chain.view()
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
        now = _now_ms()
        new_cursor = result.scanned_to
        if not result.events:
            report = bool(sub.get("report_if_empty")) and now - int(
                sub.get("last_report_ms", 0)) >= self.limits.report_if_empty_interval_s * 1000
            if not report:
                if new_cursor > cursor:
                    await self._advance(db, sub, cursor, new_cursor, 0, now, report=False)
                return result.more
        body = _dumps(query_document(result.events, str(query["_id"]),
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
        if _literal_address(host) is not None and not address_allowed(
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


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #

def _json(payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None,
          request: web.Request | None = None) -> web.Response:
    content_type = JSON
    if request is not None:
        accept = request.headers.get("Accept", "")
        if JSON_LD in accept and JSON not in accept:
            content_type = JSON_LD
    return web.Response(status=status, body=_dumps(payload), content_type=content_type,
                        headers=dict(headers or {}))


def _load_json(text: str) -> Any:
    try:
        return epcis.parse_json(text)
    except epcis.EpcisError as exc:
        raise _validation_problem(exc) from exc
    except (ValueError, RecursionError) as exc:
        raise Problem(400, "bad_json", f"the body is not JSON: {str(exc)[:200]}") from exc


def _validation_problem(exc: epcis.EpcisError) -> Problem:
    return Problem(400, exc.code, exc.message, path=exc.path,
                   epcisException="ValidationException")


def _hashes(events: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for index, event in enumerate(events):
        try:
            out.append(eventhash.event_hash(event))
        except (ValueError, identifiers.IdentifierError) as exc:
            raise Problem(400, getattr(exc, "code", "bad_event"), str(exc)[:300],
                          path=f"epcisBody.eventList[{index}]",
                          epcisException="ValidationException") from exc
    return out


def _ledger_problem(exc: LedgerError) -> Problem:
    if exc.code == "tx_too_large":
        return Problem(413, "capture_too_large", exc.message,
                       epcisException="CaptureLimitExceededException")
    return problem_from(exc)


def _pairs(query: Mapping[str, str | list[str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in query.items():
        for item in [value] if isinstance(value, str) else value:
            out.append((name, item))
    return out


def _query_out(doc: Mapping[str, Any]) -> dict[str, Any]:
    grouped: dict[str, list[str]] = {}
    for name, value in doc["query"]:
        grouped.setdefault(name, []).append(value)
    return {"name": doc["_id"], "owner": doc["owner"], "query": grouped,
            "createdAt": epcis.format_time(int(doc["created"]))}


def _check_dest(dest: str, *, loopback_allowed: bool = False) -> None:
    """The syntactic rules for a webhook ``dest`` (addresses are checked on resolving)."""
    try:
        parts = urlsplit(dest)
        host = parts.hostname
        _ = parts.port  # a bad port raises here
    except ValueError as exc:
        raise Problem(422, "bad_dest", f"dest is not a URL: {exc}") from exc
    if not host:
        raise Problem(422, "bad_dest", "dest names no host")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback_allowed
                                   and host in LOOPBACK_HOSTS):
        if _literal_address(host) is not None and not address_allowed(
                host, loopback_allowed=loopback_allowed):
            raise Problem(422, "bad_dest", f"dest {host} is not a public address")
        return
    raise Problem(422, "bad_dest", "dest must be an https:// URL" + (
        " (http:// only for loopback hosts)" if loopback_allowed else ""))


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def address_allowed(host: str, *, loopback_allowed: bool) -> bool:
    """Whether a webhook may be delivered to IP address ``host``: a public unicast
    address only — never private, link-local (cloud metadata), shared (CGNAT),
    reserved or multicast ranges, nor loopback unless allowed (local development)."""
    address = _literal_address(host)
    if address is None:
        return False
    if address.is_loopback:
        return loopback_allowed
    if isinstance(address, ipaddress.IPv6Address) and any(
            address in net for net in _IPV6_EMBEDDING_IPV4):
        return False  # NAT64, 6to4, IPv4-compatible: an IPv4 address inside (maybe private)
    return address.is_global and not address.is_multicast


_IPV6_EMBEDDING_IPV4 = tuple(ipaddress.IPv6Network(n) for n in (
    "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16"))


class PublicResolver(aiohttp.abc.AbstractResolver):
    """Resolves webhook hosts, keeping only addresses :func:`address_allowed` accepts.

    It sits in the delivery session's connector, so the address checked is the one
    connected to: a name that resolves to an internal address (now, or after a DNS
    rebinding) is refused at every delivery, not only when the subscription was made.
    """

    def __init__(self, *, loopback_allowed: bool) -> None:
        self.loopback_allowed = loopback_allowed
        self._inner = aiohttp.resolver.DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[aiohttp.abc.ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found
                   if address_allowed(r["host"], loopback_allowed=self.loopback_allowed)]
        if not allowed:
            raise OSError(f"{host} resolves to no public address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


__all__ = [
    "CAPTURE_EVENTS_MAX",
    "QUERIES",
    "SUBSCRIPTIONS",
    "EpcisApi",
    "EventFilter",
    "WebhookLimits",
    "parse_event_query",
    "query_document",
]
