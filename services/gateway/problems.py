"""HTTP errors as RFC 9457 problem details, each with a stable ``code``.

Every failure the gateway answers is ``application/problem+json``::

    {"type": "/problems/<code>", "title": ..., "status": ..., "detail": ...,
     "code": "<code>", "instance": "<request path>"}

The middleware maps the ledger's exception tree (each error carries a code)
and aiohttp's HTTP errors to problems; anything unexpected becomes a 500
problem with code ``internal`` and no traceback in the body (it is logged).
This is the only place that turns errors into HTTP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.ledger.core.errors import (
    InvalidSignature,
    LedgerError,
    MempoolRejected,
    Rejected,
    TransactionFailed,
)

log = logging.getLogger("ecosphere.gateway")
PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Bad request", 401: "Unauthorised", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Payload too large",
    415: "Unsupported media type", 422: "Unprocessable content", 429: "Too many requests",
    500: "Internal error", 503: "Unavailable", 504: "Timeout",
}
# Rejections whose meaning is "state says no" rather than "malformed".
_CONFLICT_CODES = frozenset({"bad_nonce", "nonce_taken", "duplicate", "conflict"})


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str = "",
                 **extra: Any) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
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
        headers = {}
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
    return Problem(500, "internal", "internal error")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
                415: "unsupported_media_type"}.get(exc.status, f"http_{exc.status}")
        return Problem(exc.status, code, exc.reason or "").response(request.path)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return Problem(500, "internal", "internal error").response(request.path)
