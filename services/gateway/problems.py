"""HTTP errors as RFC 9457 problem details, each with a stable ``code``.

Every failure the gateway answers is ``application/problem+json``::

    {"type": "/problems/<code>", "title": ..., "status": ..., "detail": ...,
     "code": "<code>", "instance": "<request path>"}

The middleware maps the ledger's exception tree (each error carries a code)
and aiohttp's HTTP errors to problems; anything unexpected becomes a 500
problem with code ``internal`` and no traceback in the body (it is logged).
This is the only place that turns errors into HTTP.

A client that goes away mid-request (its connection reset while the body is
read, the handler cancelled) is not an error of the gateway: it is counted in
:class:`HttpStats` and logged at debug level, never as an unhandled exception.
A body the server cannot read for the client's fault (a content coding that
does not decode, a chunked framing that breaks off) is a 400 problem.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from services.ledger.core.errors import (
    InvalidSignature,
    LedgerError,
    MempoolRejected,
    Rejected,
    TransactionFailed,
    Unavailable,
    UpgradeRequired,
)

__all__ = ["HTTP_STATS", "PROBLEM_JSON", "HttpStats", "HttpStatsCollector", "Problem",
           "client_gone", "parse_json_body", "problem_from", "problem_middleware"]

log = logging.getLogger("ecosphere.gateway")
PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Bad request", 401: "Unauthorised", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Payload too large",
    415: "Unsupported media type", 417: "Expectation failed", 422: "Unprocessable content",
    429: "Too many requests", 499: "Client closed request", 500: "Internal error",
    503: "Unavailable", 504: "Timeout",
}
# Rejections whose meaning is "state says no" rather than "malformed".
_CONFLICT_CODES = frozenset({"bad_nonce", "nonce_taken", "duplicate", "conflict"})
# aiohttp's HTTP errors that carry a header the problem must keep (RFC 9110: a 405
# lists the methods of the resource in Allow; a 415 may list codings in Accept-Encoding).
_KEPT_HEADERS = ("Allow", "Accept-Encoding", "Retry-After")


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str = "", *,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self, instance: str, *, type_uri: str | None = None) -> web.Response:
        body: dict[str, Any] = {
            "type": type_uri or f"/problems/{self.code}",
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "instance": instance,
            **self.extra,
        }
        headers = dict(self.headers)
        if "retry_after_s" in self.extra:
            headers["Retry-After"] = str(self.extra["retry_after_s"])
        return web.Response(status=self.status, body=json.dumps(body).encode(),
                            content_type=PROBLEM_JSON, headers=headers)


def parse_json_body(raw: bytes | str, **loads: Any) -> Any:
    """A request body as JSON, or a 400 ``bad_json`` problem: malformed text, bad UTF-8
    and nesting too deep for the parser are all the client's mistake, never a 500."""
    try:
        return json.loads(raw, **loads)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Problem(400, "bad_json", f"body is not JSON: {str(exc)[:200]}") from exc


def problem_from(exc: LedgerError) -> Problem:
    """The HTTP problem for a ledger error, keeping its stable code."""
    if isinstance(exc, MempoolRejected):
        if exc.code in ("mempool_full", "sender_full"):
            return Problem(503, exc.code, exc.message, retry_after_s=1)
        return Problem(409, exc.code, exc.message)
    if isinstance(exc, TransactionFailed):
        status = 409 if exc.code in _CONFLICT_CODES else 422
        if exc.code in ("forbidden",):
            status = 403
        return Problem(status, exc.code, exc.message)
    if isinstance(exc, InvalidSignature):
        return Problem(422, exc.code, exc.message)
    if isinstance(exc, Rejected):
        return Problem(422 if exc.code != "bad_encoding" else 400, exc.code, exc.message)
    if isinstance(exc, UpgradeRequired):  # this gateway's code is behind the chain
        return Problem(503, exc.code, "this gateway halted: the chain runs composition "
                       f"version {exc.version}, which its code lacks", retry_after_s=60)
    if isinstance(exc, Unavailable):
        return Problem(503, exc.code, exc.message, retry_after_s=5)
    return Problem(500, "internal", "internal error")


# --- clients that go away ------------------------------------------------------------------

@dataclass
class HttpStats:
    """What the HTTP edge counts besides answers: clients that left mid-request."""

    client_disconnects: int = 0
    handlers_cancelled: int = 0


HTTP_STATS: web.AppKey[HttpStats] = web.AppKey("http_stats", HttpStats)


class HttpStatsCollector(Collector):
    """``/metrics``: clients that went away before their answer."""

    def __init__(self, stats: HttpStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "ecosphere_http_client_disconnects",
            "Requests whose client closed the connection before the answer",
            value=self.stats.client_disconnects)
        yield CounterMetricFamily(
            "ecosphere_http_handlers_cancelled",
            "Request handlers cancelled (client gone or server stopping)",
            value=self.stats.handlers_cancelled)


def client_gone(request: web.Request) -> bool:
    """Whether the client's connection is closed (or closing): nobody reads an answer."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _count(request: web.Request, field: str) -> None:
    stats = request.app.get(HTTP_STATS)
    if stats is not None:
        setattr(stats, field, getattr(stats, field) + 1)


# --- the middleware ------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _from_http_exception(exc: web.HTTPException) -> Problem:
    code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
            415: "unsupported_media_type"}.get(exc.status, f"http_{exc.status}")
    detail = exc.reason or ""
    if exc.status == 413 and exc.text:  # aiohttp names the limit and the size read
        detail = exc.text
    headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    return Problem(exc.status, code, detail, headers=headers)


def _unreadable_body(exc: web.RequestPayloadError) -> Problem:
    """A body aiohttp could not read: its payload error, raised by ``request.read()``
    with the parser's error as the cause."""
    cause = exc.__cause__
    if isinstance(cause, ContentEncodingError):
        return Problem(400, "bad_content_encoding",
                       "the body does not decode with its Content-Encoding")
    reason = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
    return Problem(400, "bad_body", f"the body could not be read: {reason[:200]}")


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response(request.path)
    except LedgerError as exc:
        return problem_from(exc).response(request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(exc).response(request.path)
    except asyncio.CancelledError:
        # Never swallowed: cancellation must reach whoever cancelled (aiohttp when the
        # client leaves, or the server stopping). Counted, not logged as an error.
        _count(request, "handlers_cancelled")
        log.debug("handler cancelled on %s %s", request.method, request.path)
        raise
    except (ConnectionError, web.RequestPayloadError) as exc:
        if client_gone(request):
            _count(request, "client_disconnects")
            log.debug("client went away during %s %s: %r", request.method, request.path, exc)
            # Nobody reads this answer (nginx's 499); it keeps aiohttp from logging a 500.
            return Problem(499, "client_closed_request", "the client closed the "
                           "connection").response(request.path)
        if isinstance(exc, web.RequestPayloadError):
            return _unreadable_body(exc).response(request.path)
        # A connection of our own (an outbound call) that failed: the gateway's error.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return Problem(500, "internal", "internal error").response(request.path)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return Problem(500, "internal", "internal error").response(request.path)
