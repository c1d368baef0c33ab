"""Cross-cutting HTTP policies of the gateway, as aiohttp middlewares.

* **Authentication**: a request carrying an RFC 9421 signature is verified
  against the Ed25519 key registered on the chain under its ``keyid``; the
  verified key id becomes the request's principal. Endpoints that read private
  data require one (401 problem otherwise).
* **Rate limits**: a token bucket per client address, taken from every request
  before anything else costs (body decoding, signature checks), and one per
  principal (the key id) for a signed request once verified: ``rate_per_s``
  sustained, ``rate_burst`` at once; 429 problem with ``Retry-After``.
* **Idempotency-Key** on POST: the first answer for (principal, key) is kept
  for ``idempotency_ttl_s`` and replayed for repeats; the same key with another
  body is a 422 ``idempotency_key_reused``; a repeat while the first is still
  running is a 409 ``idempotency_in_progress``.
* **CORS**: allowed origins are configured (none by default); preflight
  requests are answered here.
* **Request bodies**: ``Content-Encoding`` gzip (x-gzip) and deflate are decoded
  here, once, for every handler (aiohttp's own decoding is turned off, see
  ``HANDLER_ARGS``), within ``body_bytes_max`` decoded bytes, ``gzip_members_max``
  members per layer (``gzip_empty_members_max`` of them empty), in time linear in
  the body; a body that does not decode is a 400 ``bad_content_encoding``, any
  other coding a 415 ``unsupported_content_encoding``. A body larger than
  ``decode_inline_bytes_max`` (sent or decoded) is decoded in a worker thread, never
  on the event loop, at most ``decodes_max`` at once: beyond, a 503
  ``decoding_busy`` with ``Retry-After``. ``Expect: 100-continue`` is answered before
  the body is sent: 413 ``body_too_large`` when the announced Content-Length is
  over the limit, 417 for any other expectation (:func:`expect_handler`).

Every bound is named and configurable (``PolicyLimits``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import ipaddress
import re
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aiohttp import web
from aiohttp.http import HttpVersion11

from services.gateway.models import IDEMPOTENCY_KEY
from services.gateway.problems import Problem, problem_middleware
from services.ledger.core.httpsig import STATUS, HttpSigError, ReplayCache, verify_request

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
PRINCIPAL: web.RequestKey[str] = web.RequestKey("principal", str)
#: the URI a signed request's signature was verified against (``signed_target_uri``)
TARGET_URI: web.RequestKey[str] = web.RequestKey("target_uri", str)
KeyResolver = Callable[[str], bytes | None]
#: keyword arguments of the app's request handler: bodies are decoded by the
#: ``decode_body`` policy, where a bad or unknown coding becomes a problem (aiohttp's
#: own decoder answers an unknown ``br``/``zstd`` with a plain-text 400 before any
#: middleware runs, and a corrupt gzip with a 500)
HANDLER_ARGS: Mapping[str, object] = MappingProxyType({"auto_decompress": False})
#: content codings decoded (RFC 9110 section 8.4.1; x-gzip is gzip, section 8.4.1.3),
#: as zlib window bits
CONTENT_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
                   "deflate": zlib.MAX_WBITS}
ACCEPT_ENCODING = "gzip, deflate"
#: codings stacked on one body ("gzip, gzip" is legal, and a cheap amplifier)
CONTENT_CODINGS_MAX = 2
#: gzip members in one layer, and how many of them may be empty (RFC 1952 section 2.2
#: allows several members; a client sends one, two when a stream was concatenated)
GZIP_MEMBERS_MAX = 16
GZIP_EMPTY_MEMBERS_MAX = 2
#: input handed to zlib at a time, doubling from the least to the most within a member:
#: what follows a member's end is copied by zlib (``unused_data``), at most one chunk,
#: so decoding costs time linear in the body, however many members it has
_DECODE_CHUNK_MIN_BYTES = 256
_DECODE_CHUNK_MAX_BYTES = 64 * 1024
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY)


@dataclass(frozen=True)
class PolicyLimits:
    rate_per_s: float = 200.0
    rate_burst: float = 400.0
    buckets_max: int = 100_000
    idempotency_ttl_s: float = 24 * 3600
    idempotency_entries_max: int = 100_000
    #: bytes of remembered answers in all, and the largest answer remembered (a larger
    #: one is not kept: a retry then runs again, as without the header)
    idempotency_bytes_max: int = 64 * 1024 * 1024
    idempotency_answer_bytes_max: int = 1024 * 1024
    signature_max_age_s: int = 300
    cors_origins: tuple[str, ...] = ()
    public_base_url: str | None = None  # set when a proxy terminates TLS in front
    #: addresses (CIDR) of the proxies in front (the ingress): only from them is
    #: X-Forwarded-For believed, so rate limits are per client, not per ingress pod
    trusted_proxies: tuple[str, ...] = ()
    #: a request body, as sent and once decoded (the app's client_max_size is the same)
    body_bytes_max: int = 4 * 1024 * 1024
    content_codings_max: int = CONTENT_CODINGS_MAX
    gzip_members_max: int = GZIP_MEMBERS_MAX
    gzip_empty_members_max: int = GZIP_EMPTY_MEMBERS_MAX
    #: decoded on the event loop when sent and decoded within this; else in a worker
    #: thread, at most ``decodes_max`` bodies at once (503 ``decoding_busy`` beyond)
    decode_inline_bytes_max: int = 64 * 1024
    decodes_max: int = 4


class TokenBuckets:
    def __init__(self, rate: float, burst: float, size_max: int) -> None:
        self.rate, self.burst, self.size_max = rate, burst, size_max
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, who: str, now: float, cost: float = 1.0) -> float:
        """0 if allowed, else the seconds to wait."""
        tokens, last = self._buckets.pop(who, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[who] = (tokens, now)
        while len(self._buckets) > self.size_max:
            self._buckets.popitem(last=False)
        return wait


@dataclass
class _Remembered:
    body_hash: bytes
    expires: float
    status: int | None = None
    body: bytes = b""
    content_type: str = "application/json"


@dataclass
class Policies:
    limits: PolicyLimits
    resolve_key: KeyResolver
    buckets: TokenBuckets = field(init=False)
    replay: ReplayCache = field(default_factory=ReplayCache)
    _idempotent: OrderedDict[tuple[str, str], _Remembered] = field(default_factory=OrderedDict)
    _idempotent_bytes: int = 0
    #: where large bodies are decoded (None: the event loop's default executor)
    decode_executor: concurrent.futures.Executor | None = None
    _decodes_running: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.buckets = TokenBuckets(self.limits.rate_per_s, self.limits.rate_burst,
                                    self.limits.buckets_max)
        self._proxies = tuple(ipaddress.ip_network(n, strict=False)
                              for n in self.limits.trusted_proxies)

    def middlewares(self) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
        """CORS outermost (so problems carry CORS headers too), then problems, then the
        cheap refusals first: the client address's rate limit before the body is decoded
        and a signature verified, then the signed caller's own limit per key."""
        return [self.cors, problem_middleware, self.limit_client, self.decode_body,
                self.authenticate, self.rate_limit, self.idempotency]

    # --- CORS ---------------------------------------------------------------------

    @web.middleware
    async def cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = origin is not None and (origin in self.limits.cors_origins
                                          or "*" in self.limits.cors_origins)
        if request.method == "OPTIONS" and origin is not None:
            if not allowed:
                return Problem(403, "cors_origin_refused",
                               f"origin {origin} is not allowed").response(request.path)
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if allowed and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = (
                "Content-Type, Idempotency-Key, Signature, Signature-Input, Content-Digest")
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        return response

    # --- authentication ---------------------------------------------------------------

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if "Signature" in request.headers or "Signature-Input" in request.headers:
            # Verification costs a body read and an Ed25519 check: the address paid for
            # it first (limit_client), so forged signatures cannot bypass the rate limit.
            # body_exists, not can_read_body: decode_body may have read it already
            body = await request.read() if request.body_exists else None
            target = target_uri(request, self.limits.public_base_url)
            try:
                principal = verify_request(
                    method=request.method, url=target,
                    headers=combined_fields(request), body=body or None,
                    now=int(time.time()), resolve_key=self.resolve_key, replay=self.replay,
                    max_age_s=self.limits.signature_max_age_s)
            except HttpSigError as exc:
                raise Problem(STATUS.get(exc.code, 401), exc.code, str(exc)) from exc
            request[PRINCIPAL] = principal
            request[TARGET_URI] = target
        return await handler(request)

    # --- request bodies ------------------------------------------------------------------

    @web.middleware
    async def decode_body(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Decode a content-coded body once, before anyone reads it."""
        codings = content_codings(request, self.limits.content_codings_max)
        # total_compressed_bytes is set when aiohttp decoded the body itself (an app
        # served without HANDLER_ARGS): decoding again would fail.
        if codings and request.content.total_compressed_bytes is None:
            raw = await request.read()
            # The one body every reader (signature, idempotency, handler) sees: aiohttp's
            # read() returns _read_bytes once set, and offers no public way to set it.
            request._read_bytes = await self._decode(raw, codings)
        return await handler(request)

    async def _decode(self, raw: bytes, codings: list[str]) -> bytes:
        """``raw`` decoded: on the event loop when small (sent and decoded within
        ``decode_inline_bytes_max``), else in a worker thread, at most ``decodes_max``
        at once: decoding a large body may take milliseconds, and the loop serves
        everyone else meanwhile."""
        lim = self.limits
        decode = functools.partial(decode_content, codings=codings,
                                   members_max=lim.gzip_members_max,
                                   empty_members_max=lim.gzip_empty_members_max)
        inline_max = lim.decode_inline_bytes_max
        if len(raw) <= inline_max:
            try:
                return decode(raw, limit=min(lim.body_bytes_max, inline_max))
            except Problem as refused:
                if refused.status != 413 or lim.body_bytes_max <= inline_max:
                    raise
        if self._decodes_running >= lim.decodes_max:
            raise Problem(503, "decoding_busy", f"{lim.decodes_max} request bodies are "
                          "being decoded; send this one again later", retry_after_s=1)
        self._decodes_running += 1
        work = asyncio.get_running_loop().run_in_executor(
            self.decode_executor, functools.partial(decode, raw, limit=lim.body_bytes_max))
        # The slot is freed when the thread is done, not when the client goes away: a
        # cancelled request's decoding still runs to its end.
        work.add_done_callback(self._decoded)
        return await asyncio.shield(work)

    def _decoded(self, work: asyncio.Future[bytes]) -> None:
        self._decodes_running -= 1
        if not work.cancelled():
            work.exception()  # retrieved: a request that went away leaves no warning

    # --- the client's address's rate limit, before any work ------------------------------

    @web.middleware
    async def limit_client(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._limit(f"ip:{self.client_address(request)}")
        return await handler(request)

    # --- the client's address -------------------------------------------------------------

    def client_address(self, request: web.Request) -> str:
        """The address of the client: the peer, or — when the peer is one of the trusted
        proxies (the ingress) — the right-most X-Forwarded-For entry that is not a
        trusted proxy. Never trusted from anyone else (it would be spoofable)."""
        peer = request.remote or ""
        if not self._proxies or not _in_networks(peer, self._proxies):
            return peer
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed(hops):
            if hop and not _in_networks(hop, self._proxies):
                return hop
        return peer

    # --- rate limits ----------------------------------------------------------------------

    @web.middleware
    async def rate_limit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A signed caller's own limit, per key (its address paid in limit_client)."""
        principal = request.get(PRINCIPAL)
        if principal is not None:
            self._limit(principal)
        return await handler(request)

    def _limit(self, who: str) -> None:
        wait = self.buckets.take(who, time.monotonic())
        if wait > 0:
            raise Problem(429, "rate_limited", f"too many requests from {who}",
                          retry_after_s=max(1, round(wait)))

    # --- idempotency --------------------------------------------------------------------

    @web.middleware
    async def idempotency(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or key is None:
            return await handler(request)
        if _IDEMPOTENCY_KEY.fullmatch(key) is None:
            raise Problem(400, "bad_idempotency_key", "Idempotency-Key must be 1..128 "
                          "printable ASCII characters, no space at either end")
        who = request.get(PRINCIPAL) or f"ip:{self.client_address(request)}"
        # The key names one request: the same key on another path (or with another
        # query, e.g. ?wait=commit) is another request, not a replay.
        digest = hashlib.sha256(request.query_string.encode() + b"\0" + await request.read())
        body_hash = digest.digest()
        now = time.monotonic()
        self._expire(now)
        slot = (who, f"{request.method} {request.path} {key}")
        known = self._idempotent.get(slot)
        if known is not None:
            if known.body_hash != body_hash:
                raise Problem(422, "idempotency_key_reused",
                              "this Idempotency-Key was used with another body or query")
            if known.status is None:
                raise Problem(409, "idempotency_in_progress",
                              "the first request with this key is still running")
            return web.Response(status=known.status, body=known.body,
                                content_type=known.content_type,
                                headers={"Idempotent-Replayed": "true"})
        self._make_room()
        remembered = _Remembered(body_hash, now + self.limits.idempotency_ttl_s)
        self._idempotent[slot] = remembered
        try:
            response = await handler(request)
        except BaseException:
            if self._idempotent.get(slot) is remembered:
                del self._idempotent[slot]  # failed before answering: may be retried
            raise
        body = response.body if isinstance(response, web.Response) else None
        if isinstance(body, bytes) and len(body) <= self.limits.idempotency_answer_bytes_max \
                and self._idempotent.get(slot) is remembered:
            remembered.status = response.status
            remembered.body = body
            remembered.content_type = response.content_type
            self._idempotent_bytes += len(body)
            self._make_room()
        elif self._idempotent.get(slot) is remembered:
            del self._idempotent[slot]
        return response

    def _make_room(self) -> None:
        """Forget the oldest *answered* entries until within the count and byte bounds;
        a request still running is never forgotten (its repeat would run twice), so a
        table full of running requests refuses new keys."""
        if not self._over():
            return
        for slot in [s for s, r in self._idempotent.items() if r.status is not None]:
            self._forget(slot)
            if not self._over():
                return
        if len(self._idempotent) >= self.limits.idempotency_entries_max:
            raise Problem(503, "idempotency_busy", "too many requests with an "
                          "Idempotency-Key are running", retry_after_s=1)

    def _over(self) -> bool:
        return (len(self._idempotent) >= self.limits.idempotency_entries_max
                or self._idempotent_bytes > self.limits.idempotency_bytes_max)

    def _forget(self, slot: tuple[str, str]) -> None:
        gone = self._idempotent.pop(slot, None)
        if gone is not None:
            self._idempotent_bytes -= len(gone.body)

    def _expire(self, now: float) -> None:
        expired = []
        for slot, remembered in self._idempotent.items():  # oldest first = expiry order
            if remembered.expires > now:
                break
            if remembered.status is not None:
                expired.append(slot)
        for slot in expired:
            self._forget(slot)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def content_codings(request: web.Request,
                    codings_max: int = CONTENT_CODINGS_MAX) -> list[str]:
    """The codings applied to the request's body, in the order applied (identity
    dropped); a 415 problem naming the codings accepted for any other, or for more
    than ``codings_max`` of them."""
    if not request.body_exists:
        return []
    listed = [c.strip().lower() for value in request.headers.getall("Content-Encoding", [])
              for c in value.split(",") if c.strip()]
    codings = [c for c in listed if c != "identity"]
    unknown = [c for c in codings if c not in CONTENT_CODINGS]
    if unknown or len(codings) > codings_max:
        what = f"content coding {unknown[0][:40]!r}" if unknown else "more than " \
            f"{codings_max} content codings"
        raise Problem(415, "unsupported_content_encoding",
                      f"{what} is not supported; send {ACCEPT_ENCODING} or identity",
                      headers={"Accept-Encoding": ACCEPT_ENCODING})
    return codings


def decode_content(raw: bytes, codings: list[str], limit: int, *,
                   members_max: int = GZIP_MEMBERS_MAX,
                   empty_members_max: int = GZIP_EMPTY_MEMBERS_MAX) -> bytes:
    """``raw`` with ``codings`` undone (the last applied first), at most ``limit`` bytes
    and ``members_max`` gzip members (``empty_members_max`` of them empty) at every
    step: 400 ``bad_content_encoding`` or 413 ``body_too_large`` problems. Time linear
    in the bytes read and written."""
    body = raw
    for coding in reversed(codings):
        body = _decode_one(body, coding, limit, members_max, empty_members_max)
    return body


def _decode_one(data: bytes, coding: str, limit: int, members_max: int,
                empty_members_max: int) -> bytes:
    view, at, out = memoryview(data), 0, bytearray()
    members = empty = 0
    while at < len(view):  # a gzip body may be several members (RFC 1952 section 2.2)
        members += 1
        if members > members_max:
            raise Problem(400, "bad_content_encoding",
                          f"the {coding} body has more than {members_max} members")
        before = len(out)
        at = _decode_member(view, at, coding, out, limit)
        if len(out) == before:
            empty += 1
            if empty > empty_members_max:
                raise Problem(400, "bad_content_encoding", f"the {coding} body has more "
                              f"than {empty_members_max} empty members")
        if at < len(view) and coding == "deflate":
            raise Problem(400, "bad_content_encoding", "bytes after the end of the deflate "
                          "stream")
    return bytes(out)


def _decode_member(view: memoryview, at: int, coding: str, out: bytearray,
                   limit: int) -> int:
    """One gzip member (or the deflate stream) from ``view[at:]`` onto ``out``; the
    position after it. The input goes in chunks growing from small: zlib copies what
    follows the end of a stream (``unused_data``), and that copy is then at most about
    twice the member, never the rest of the body."""
    wbits = CONTENT_CODINGS[coding]
    if coding == "deflate" and view[at] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw DEFLATE without the zlib wrapper, as sent by some
    decoder = zlib.decompressobj(wbits)
    size = _DECODE_CHUNK_MIN_BYTES
    while not decoder.eof:
        if at >= len(view):
            raise Problem(400, "bad_content_encoding", f"the {coding} body is truncated")
        chunk = view[at:at + size]
        at += len(chunk)
        size = min(2 * size, _DECODE_CHUNK_MAX_BYTES)
        try:
            out += decoder.decompress(chunk, limit + 1 - len(out))
        except zlib.error as exc:
            raise Problem(400, "bad_content_encoding",
                          f"the body does not decode as {coding}: {exc}") from exc
        if len(out) > limit or decoder.unconsumed_tail:
            raise Problem(413, "body_too_large",
                          f"the decoded body is over the limit of {limit} bytes")
    return at - len(decoder.unused_data)


def expect_handler(body_bytes_max: int,
                   content_codings_max: int = CONTENT_CODINGS_MAX) -> ExpectHandler:
    """The routes' answer to ``Expect`` (RFC 9110 section 10.1.1), given before the client
    sends its body: 413 when the announced body is over ``body_bytes_max``, 415 for a
    content coding not supported (or more than ``content_codings_max``), 417 for an
    expectation other than 100-continue."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        if request.version < HttpVersion11:
            return None  # an HTTP/1.0 client cannot wait for 100 (section 10.1.1)
        expectation = request.headers.get("Expect", "").strip().lower()
        problem = None
        if expectation != "100-continue":
            problem = Problem(417, "expectation_failed",
                              "the only expectation understood is 100-continue")
        elif request.content_length is not None and request.content_length > body_bytes_max:
            problem = Problem(413, "body_too_large",
                              f"a body is at most {body_bytes_max} bytes; this one "
                              f"would be {request.content_length}")
        else:
            try:
                content_codings(request, content_codings_max)
            except Problem as refused:
                problem = refused
        if problem is not None:
            response = problem.response(request.path)
            response.force_close()  # the body, if it comes anyway, is not read
            return response
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not part of the response
        return None

    return expect


def combined_fields(request: web.Request) -> dict[str, str]:
    """Each header field once, its lines joined with ", " (RFC 9421 section 2.1: a field
    sent on several lines is signed as one value; ``dict()`` would keep the first)."""
    names = {name.lower() for name in request.headers}
    return {name: ", ".join(request.headers.getall(name)) for name in names}


def public_base(request: web.Request, public_base_url: str | None) -> str:
    """``scheme://host`` as clients reach the gateway: the configured public base (behind
    a proxy or ingress), else the request's own scheme and Host."""
    return (public_base_url or f"{request.scheme}://{request.host}").rstrip("/")


def target_uri(request: web.Request, public_base_url: str | None) -> str:
    """The URI a client signs (RFC 9421 ``@target-uri``): the public base with the raw
    (still percent-encoded) path and query. The one rule: the policies verify
    signatures against it and relays pass on what was verified
    (:func:`signed_target_uri`)."""
    return public_base(request, public_base_url) + request.raw_path


def signed_target_uri(request: web.Request) -> str:
    """The URI this request's verified signature covers (call after principal_of)."""
    principal_of(request)
    return request[TARGET_URI]


def principal_of(request: web.Request) -> str:
    """The verified key id of a signed request, or a 401 problem."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise Problem(401, "signature_required",
                      "sign this request with your registered key (RFC 9421)")
    return str(principal)
