"""The EPCIS 2.0 REST binding's common ground: versions, limits, media types, JSON
output with exact numbers, and problems typed as EPCIS exceptions.

Every ``/epcis`` answer, problems included, carries ``GS1-EPCIS-Version`` and
``GS1-CBV-Version`` (:func:`epcis_handler`); problems are typed
``epcisException:<Name>`` with the stable ``code`` kept alongside.

No I/O here beyond building responses.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from services.gateway.problems import Problem, problem_from
from services.ledger.core.errors import LedgerError
from services.trace import epcis_values, eventhash, identifiers
from services.trace.capture import EVENTS_PER_CAPTURE_MAX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

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

#: the EPCIS 2.0 exception of a problem that does not name one, by HTTP status
EPCIS_EXCEPTIONS = {400: "ValidationException", 401: "SecurityException",
                     403: "SecurityException", 404: "ResourceNotFoundException",
                     406: "NotAcceptableException", 409: "ValidationException",
                     422: "ValidationException",
                     413: "CaptureLimitExceededException",
                     415: "UnsupportedMediaTypeException", 429: "ImplementationException",
                     501: "ImplementationException", 503: "ImplementationException"}




def now_ms() -> int:
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


def dumps(value: Any) -> bytes:
    """JSON, with :class:`JsonNumber` text written as numbers: each is first written as a
    string between a fresh random marker (unguessable, so no captured string can pose
    as one), then the marked strings are replaced by the bare digits."""
    mark = f"@{secrets.token_hex(12)}@"
    text = json.dumps(_marked(value, mark), separators=(",", ":"), ensure_ascii=False)
    if mark not in text:
        return text.encode()
    pattern = re.compile(f'"{re.escape(mark)}(-?[0-9]+(?:\\.[0-9]+)?){re.escape(mark)}"')
    return pattern.sub(r"\1", text).encode()


def json_answer(payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None,
          request: web.Request | None = None) -> web.Response:
    content_type = JSON
    if request is not None:
        accept = request.headers.get("Accept", "")
        if JSON_LD in accept and JSON not in accept:
            content_type = JSON_LD
    return web.Response(status=status, body=dumps(payload), content_type=content_type,
                        headers=dict(headers or {}))


def load_json(text: str) -> Any:
    try:
        return epcis_values.parse_json(text)
    except epcis_values.EpcisError as exc:
        raise validation_problem(exc) from exc
    except (ValueError, RecursionError) as exc:
        raise Problem(400, "bad_json", f"the body is not JSON: {str(exc)[:200]}") from exc


def validation_problem(exc: epcis_values.EpcisError) -> Problem:
    return Problem(400, exc.code, exc.message, path=exc.path,
                   epcisException="ValidationException")


def event_hashes(events: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for index, event in enumerate(events):
        try:
            out.append(eventhash.event_hash(event))
        except (ValueError, identifiers.IdentifierError) as exc:
            raise Problem(400, getattr(exc, "code", "bad_event"), str(exc)[:300],
                          path=f"epcisBody.eventList[{index}]",
                          epcisException="ValidationException") from exc
    return out


def ledger_problem(exc: LedgerError) -> Problem:
    if exc.code == "tx_too_large":
        return Problem(413, "capture_too_large", exc.message,
                       epcisException="CaptureLimitExceededException")
    return problem_from(exc)


def epcis_handler(handler: Handler, *, capture_size_limit: Callable[[], int] | None = None
                  ) -> Handler:
    """``handler`` answering its problems itself (so they carry the EPCIS headers too),
    typed as EPCIS exceptions, and with the EPCIS headers on every answer (the capture
    limits too, when ``capture_size_limit`` is given)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Problem as problem:
            # EPCIS 2.0 names its errors by exception type
            # (type: epcisException:<Name>); the stable ``code`` stays alongside.
            name = problem.extra.get("epcisException") or EPCIS_EXCEPTIONS.get(
                problem.status, "ImplementationException")
            problem.extra["epcisException"] = name
            response = problem.response(request.path, type_uri=f"epcisException:{name}")
        response.headers["GS1-EPCIS-Version"] = EPCIS_VERSION
        response.headers["GS1-CBV-Version"] = CBV_VERSION
        if capture_size_limit is not None:
            response.headers["GS1-EPCIS-Capture-Limit"] = str(CAPTURE_EVENTS_MAX)
            response.headers["GS1-EPCIS-Capture-File-Size-Limit"] = str(capture_size_limit())
        return response

    return wrapped


__all__ = [
    "CAPTURE_EVENTS_MAX",
    "CAPTURE_KIND",
    "CAPTURE_MEDIA_TYPES",
    "CBV_VERSION",
    "EPCIS_CONTEXT",
    "EPCIS_VERSION",
    "JSON",
    "JSON_LD",
    "Handler",
    "JsonNumber",
    "dumps",
    "epcis_handler",
    "event_hashes",
    "json_answer",
    "ledger_problem",
    "load_json",
    "now_ms",
    "numbers_as_numbers",
    "validation_problem",
]
