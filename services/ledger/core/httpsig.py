"""HTTP Message Signatures (RFC 9421) with Ed25519, and Content-Digest (RFC 9530): the rules.

Reads of private data through the gateway, and EPCIS captures relayed to the
chain, are authenticated by an RFC 9421 signature with the caller's Ed25519
key, the one registered on the chain under its key id. This module is how a
signature is checked, as pure functions: the gateway runs it on every signed
request and the trace contract runs it on every relayed capture, so every
replica must reach the same verdict on the same bytes. It never does I/O and
never reads a clock: callers pass ``now``, integer seconds since the epoch
(the contract passes its block time). Signing lives with the clients
(``services.sdk.httpsig.sign_request``).

Server::

    key_id = verify_request(method=..., url=..., headers=..., body=...,
                            now=int(time.time()), resolve_key=..., replay=cache)

Errors::

    Exception
     └── HttpSigError   refused; ``code`` is stable, ``STATUS[code]`` is the HTTP status
                        (400 malformed, 401 refused)

The ecosphere profile, which ``verify_request`` enforces by default (RFC 9421
section 1.4 asks every application to state one):

* one signature, chosen by its ``tag`` ("ecosphere") and optionally its label;
* ``alg`` absent or ``"ed25519"``; ``keyid``, ``created`` and ``nonce`` present;
* ``@method`` and ``@target-uri`` covered; a request with content covers
  ``content-digest``, and any Content-Digest present matches the content;
* ``created`` at most ``max_age_s`` old and at most ``skew_s`` in the future,
  and ``expires`` (when given) not passed;
* a (keyid, nonce) pair is accepted once while the signature could be accepted.

Components understood: the derived ``@method``, ``@target-uri``,
``@authority``, ``@scheme``, ``@path`` and ``@query``, and HTTP fields without
component parameters (``sf``, ``key``, ``bs``, ``req``, ``tr`` and the rest are
refused, as section 2.5 requires for parameters not understood). Field values
are combined per section 2.1: each line trimmed, obsolete line folding (with
the whitespace around it) replaced by one space, lines joined with ", ".
Covered values must be printable US-ASCII (HTAB allowed): obs-text is refused
rather than guessed at.

The target URI is normalised as RFC 9110 section 4.2.3 allows (scheme and host
lowercased, default port dropped, empty path as "/", fragment dropped;
percent-encoding untouched), so the server must pass the URL the client used:
scheme and authority as seen from outside any TLS-terminating proxy. RFC 9421
normalises only ``@authority`` and ``@scheme``: a foreign signer that covers
``@target-uri`` of a URL not in that normal form is refused
(docs/adr/0006-httpsig-ours-with-interop.md lists this and every other known
difference from the maintained libraries).

Structured fields are parsed by our own :mod:`services.ledger.core.structured_fields`,
never by a third-party parser: an upgrade of one must not change a verdict.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from services.ledger.core import crypto
from services.ledger.core.structured_fields import (
    BareItem,
    InnerList,
    Item,
    Member,
    Params,
    StructuredFieldError,
    Token,
    combine_field_lines,
    is_integer,
    is_string,
    parse_dictionary,
    parse_inner_list,
    serialize_inner_list,
)

__all__ = [
    "ALG",
    "DEFAULT_REQUIRED_COMPONENTS",
    "DEFAULT_TAG",
    "DERIVED_COMPONENTS",
    "DIGEST_ALGORITHMS",
    "ERROR_BEHAVIOUR_HEADER",
    "MAX_KEYID_LENGTH",
    "MAX_NONCE_LENGTH",
    "MAX_REPLAY_ENTRIES",
    "STATUS",
    "HeaderInput",
    "HttpSigError",
    "ReplayCache",
    "SignatureParams",
    "header_fields",
    "signature_base",
    "verify_content_digest",
    "verify_request",
]

ALG = "ed25519"
DEFAULT_TAG = "ecosphere"
DEFAULT_REQUIRED_COMPONENTS = frozenset({"@method", "@target-uri"})
#: EPCIS 2.0's capture mode header: whoever relays a capture must not be able to change
#: an all-or-nothing capture into a partial one, so when present it must be signed
ERROR_BEHAVIOUR_HEADER = "gs1-capture-error-behaviour"
DERIVED_COMPONENTS = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@path", "@query"}
)
# Most (keyid, nonce) pairs a ReplayCache remembers; size it above the peak
# rate of signed requests times the acceptance window (max_age_s).
MAX_REPLAY_ENTRIES = 100_000
MAX_KEYID_LENGTH = 256
MAX_NONCE_LENGTH = 256
# Content-Digest algorithm keys checked (RFC 9530 section 5), to hashlib names.
DIGEST_ALGORITHMS: Mapping[str, str] = {"sha-256": "sha256", "sha-512": "sha512"}

STATUS: Mapping[str, int] = {
    "missing_signature": 401,
    "bad_signature_input": 400,
    "bad_digest": 400,
    "unknown_key": 401,
    "expired": 401,
    "replayed": 401,
    "bad_signature": 401,
}

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]


class HttpSigError(Exception):
    """A signature, or the request it signs, is refused; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        if code not in STATUS:
            raise ValueError(f"unknown http signature error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.code]


# --------------------------------------------------------------------------
# Content-Digest (RFC 9530)


def verify_content_digest(value: str, body: bytes) -> None:
    """Check a Content-Digest field value against ``body``; raise ``bad_digest``.

    Every sha-256 and sha-512 member must match; other algorithms are ignored
    (RFC 9530 section 2 lets recipients ignore members), but at least one
    supported member must be present.
    """
    try:
        members = parse_dictionary(value)
    except StructuredFieldError as exc:
        raise HttpSigError("bad_digest", f"Content-Digest is malformed: {exc}") from None
    checked = 0
    for algorithm, member in members.items():
        hash_name = DIGEST_ALGORITHMS.get(algorithm)
        if hash_name is None:
            continue
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            raise HttpSigError("bad_digest", f"Content-Digest {algorithm} is not a byte sequence")
        if not hmac.compare_digest(member.value, hashlib.new(hash_name, body).digest()):
            raise HttpSigError("bad_digest", f"Content-Digest {algorithm} does not match the body")
        checked += 1
    if not checked:
        raise HttpSigError("bad_digest", "Content-Digest has no sha-256 or sha-512 member")


# --------------------------------------------------------------------------
# The message and its component values (RFC 9421 section 2)


class _Underivable(Exception):
    """A covered component has no value in this message."""


_FIELD_NAME = re.compile(r"[a-z0-9!#$%&'*+\-.^_`|~]+")
_METHOD = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# RFC 9112 section 5.2: obs-fold = OWS CRLF RWS, so the whitespace before the line
# break is part of the fold too (a bare LF is accepted as a line break, section 2.2).
_OBS_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")
_PORT = re.compile(r"[0-9]*")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def header_fields(headers: HeaderInput) -> dict[str, list[str]]:
    """Header lines by lowercased name, in order; a Mapping may be a multidict."""
    pairs: Iterable[object] = headers.items() if isinstance(headers, Mapping) else headers
    fields: dict[str, list[str]] = {}
    try:
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise HttpSigError("bad_signature_input", "headers must be (name, value) pairs")
            name, value = pair
            if not isinstance(name, str) or not isinstance(value, str):
                raise HttpSigError("bad_signature_input", "header names and values must be str")
            # Only ASCII is case-folded: str.lower() would fold the Kelvin sign
            # into "k" and so alias a non-token name onto a real field name.
            fields.setdefault(name.lower() if name.isascii() else name, []).append(value)
    except TypeError:
        raise HttpSigError("bad_signature_input", "headers must be a mapping or pairs") from None
    return fields


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    authority: str
    path: str
    query: str | None

    @classmethod
    def parse(cls, url: str) -> _Target:
        if not url or not all("!" <= char <= "~" for char in url):
            raise _Underivable("the URL must be printable ASCII without spaces")
        url = url.split("#", 1)[0]
        scheme, sep, rest = url.partition("://")
        if not sep or not _SCHEME.fullmatch(scheme):
            raise _Underivable("the URL must be absolute (scheme://authority/path)")
        scheme = scheme.lower()
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, rest = rest[:cut], rest[cut:]
        path, question, query = rest.partition("?")
        return cls(scheme, cls._authority(scheme, authority), path or "/",
                   query if question else None)

    @staticmethod
    def _authority(scheme: str, authority: str) -> str:
        if "@" in authority:
            raise _Underivable("the URL must not carry userinfo")
        if authority.startswith("["):
            end = authority.find("]")
            if end < 0:
                raise _Underivable("the URL has an unclosed IPv6 literal")
            host, after = authority[: end + 1], authority[end + 1 :]
            if after and not after.startswith(":"):
                raise _Underivable("the URL's authority is malformed")
            port = after[1:]
        else:
            host, _, port = authority.partition(":")
        if not host or not _PORT.fullmatch(port):
            raise _Underivable("the URL's authority is malformed")
        host = host.lower()
        # A port is a decimal number: ":0443" is the default port of https too.
        if not port or port.lstrip("0") == _DEFAULT_PORTS.get(scheme):
            return host
        return f"{host}:{port}"

    def uri(self) -> str:
        query = "" if self.query is None else "?" + self.query
        return f"{self.scheme}://{self.authority}{self.path}{query}"


class _Message:
    """The signature context of a request: its method, target URI and fields."""

    def __init__(self, method: object, url: object, fields: Mapping[str, Sequence[str]]) -> None:
        self.method = method
        self.url = url
        self.fields = fields
        self._target: _Target | None = None

    def target(self) -> _Target:
        if self._target is None:
            if not isinstance(self.url, str):
                raise _Underivable("the URL must be a str")
            self._target = _Target.parse(self.url)
        return self._target

    def value(self, name: str) -> str:
        """The component value of ``name`` (section 2.1 and 2.2)."""
        if name == "@method":
            if not isinstance(self.method, str) or not _METHOD.fullmatch(self.method):
                raise _Underivable("the method is not an HTTP token")
            return self.method
        if name == "@target-uri":
            return self.target().uri()
        if name == "@authority":
            return self.target().authority
        if name == "@scheme":
            return self.target().scheme
        if name == "@path":
            return self.target().path
        if name == "@query":
            query = self.target().query
            return "?" if query is None else "?" + query
        lines = self.fields.get(name)
        if lines is None:
            raise _Underivable(f"covered field {name!r} is not in the request")
        values = [_OBS_FOLD.sub(" ", line).strip(" \t") for line in lines]
        combined = ", ".join(values)
        if not all(" " <= char <= "~" or char == "\t" for char in combined):
            raise _Underivable(f"covered field {name!r} holds characters that cannot be signed")
        return combined


def _component_names(inner: InnerList) -> list[str]:
    """The covered component names, checked as section 2 and 2.5 require."""
    names: list[str] = []
    for item in inner.items:
        name = item.value
        if not isinstance(name, str) or isinstance(name, Token):
            raise HttpSigError("bad_signature_input", "component identifiers must be strings")
        if item.params:
            raise HttpSigError("bad_signature_input",
                               f"component parameters are not supported ({name!r})")
        if name.startswith("@"):
            if name not in DERIVED_COMPONENTS:
                raise HttpSigError("bad_signature_input", f"unsupported component {name!r}")
        elif not _FIELD_NAME.fullmatch(name):
            raise HttpSigError("bad_signature_input",
                               f"{name!r} is not a lowercase HTTP field name")
        if name in names:
            raise HttpSigError("bad_signature_input", f"component {name!r} is covered twice")
        names.append(name)
    return names


def _base(message: _Message, inner: InnerList) -> bytes:
    """The signature base (section 2.5); raises _Underivable for the message's faults."""
    names = _component_names(inner)
    try:
        params_value = serialize_inner_list(inner)
    except StructuredFieldError as exc:
        raise HttpSigError("bad_signature_input", f"signature parameters: {exc}") from None
    lines = [f'"{name}": {message.value(name)}' for name in names]
    lines.append(f'"@signature-params": {params_value}')
    return "\n".join(lines).encode("ascii")


# --------------------------------------------------------------------------
# Signature parameters (section 2.3)


@dataclass(frozen=True, slots=True)
class SignatureParams:
    """The covered components and metadata of one signature, in RFC order.

    Parameters are serialised in the order created, expires, keyid, nonce,
    alg, tag, skipping those that are None.
    """

    components: tuple[str, ...]
    created: int | None = None
    expires: int | None = None
    keyid: str | None = None
    nonce: str | None = None
    alg: str | None = None
    tag: str | None = None

    def inner_list(self) -> InnerList:
        params: dict[str, BareItem] = {}
        for key in ("created", "expires", "keyid", "nonce", "alg", "tag"):
            value = getattr(self, key)
            if value is not None:
                params[key] = value
        return InnerList(tuple(Item(name, {}) for name in self.components), params)

    def serialize(self) -> str:
        """The inner list, as it appears in Signature-Input after ``label=``."""
        try:
            return serialize_inner_list(self.inner_list())
        except StructuredFieldError as exc:
            raise HttpSigError("bad_signature_input", f"signature parameters: {exc}") from None


def signature_base(
    *, method: str, url: str, headers: HeaderInput, params: SignatureParams | str
) -> bytes:
    """The signature base of a request (RFC 9421 section 2.5), as bytes.

    ``params`` is a :class:`SignatureParams` or the serialised inner list of a
    Signature-Input member (the text after ``label=``), which is parsed and
    re-serialised exactly as a verifier does.
    """
    if isinstance(params, SignatureParams):
        inner = params.inner_list()
    else:
        try:
            inner = parse_inner_list(params)
        except StructuredFieldError as exc:
            raise HttpSigError("bad_signature_input", f"signature parameters: {exc}") from None
    try:
        return _base(_Message(method, url, header_fields(headers)), inner)
    except _Underivable as exc:
        raise HttpSigError("bad_signature_input", str(exc)) from None


# --------------------------------------------------------------------------
# Verification (section 3.2) and replay


class ReplayCache:
    """(keyid, nonce) pairs seen, each remembered until its signature expires.

    Bounded by ``max_entries``: expired pairs are dropped first, then the
    oldest recorded. Dropping a pair that has not expired lets that one
    signature be replayed, so ``evictions`` counts them: export it, and raise
    ``max_entries`` if it ever grows. Kept in memory, so it protects one
    process; it is not thread-safe (use one per event loop).
    """

    def __init__(self, max_entries: int = MAX_REPLAY_ENTRIES) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._until: dict[tuple[str, str], int] = {}  # in order of recording
        self._expiry: list[tuple[int, str, str]] = []  # heap; may hold stale pairs
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._until)

    def seen(self, keyid: str, nonce: str, until: int, now: int) -> bool:
        """True if (keyid, nonce) is already remembered; otherwise remember it."""
        self._forget_expired(now)
        pair = (keyid, nonce)
        if pair in self._until:
            return True
        while len(self._until) >= self.max_entries:
            del self._until[next(iter(self._until))]
            self.evictions += 1
        self._until[pair] = until
        heapq.heappush(self._expiry, (until, keyid, nonce))
        if len(self._expiry) > 2 * self.max_entries:
            self._expiry = [(u, k, n) for (k, n), u in self._until.items()]
            heapq.heapify(self._expiry)
        return False

    def _forget_expired(self, now: int) -> None:
        while self._expiry and self._expiry[0][0] < now:
            until, keyid, nonce = heapq.heappop(self._expiry)
            if self._until.get((keyid, nonce)) == until:
                del self._until[(keyid, nonce)]


@dataclass(frozen=True, slots=True)
class _Metadata:
    created: int
    expires: int | None
    keyid: str
    nonce: str | None


def _metadata(params: Params, *, require_nonce: bool) -> _Metadata:
    created = params.get("created")
    expires = params.get("expires")
    keyid = params.get("keyid")
    nonce = params.get("nonce")
    alg = params.get("alg")
    if created is None or not is_integer(created):
        raise HttpSigError("bad_signature_input", "created must be present and an integer")
    if expires is not None and not is_integer(expires):
        raise HttpSigError("bad_signature_input", "expires must be an integer")
    if not is_string(keyid) or not 0 < len(cast(str, keyid)) <= MAX_KEYID_LENGTH:
        raise HttpSigError("bad_signature_input", "keyid must be present and a string")
    if nonce is None:
        if require_nonce:
            raise HttpSigError("bad_signature_input", "nonce must be present")
    elif not is_string(nonce) or not 0 < len(cast(str, nonce)) <= MAX_NONCE_LENGTH:
        raise HttpSigError("bad_signature_input", "nonce must be a non-empty string")
    if alg is not None and (not is_string(alg) or alg != ALG):
        raise HttpSigError("bad_signature_input", f"unsupported alg; only {ALG!r} is accepted")
    if "tag" in params and not is_string(params["tag"]):
        raise HttpSigError("bad_signature_input", "tag must be a string")
    created_at = cast(int, created)
    expires_at = cast(int | None, expires)
    if expires_at is not None and expires_at < created_at:
        raise HttpSigError("bad_signature_input", "expires is before created")
    return _Metadata(created_at, expires_at, cast(str, keyid), cast(str | None, nonce))


def _choose(
    inputs: Mapping[str, Member], label: str | None, tag: str | None
) -> tuple[str, InnerList]:
    candidates = [
        (name, member) for name, member in inputs.items()
        if (label is None or name == label)
        and (tag is None or (isinstance(member, InnerList) and is_string(member.params.get("tag"))
                             and member.params.get("tag") == tag))
    ]
    if not candidates:
        wanted = " and ".join(
            part for part in (label and f"label {label!r}", tag and f"tag {tag!r}") if part
        )
        raise HttpSigError("bad_signature_input", f"no signature with {wanted or 'a label'}")
    if len(candidates) > 1:
        raise HttpSigError("bad_signature_input", "several signatures match; cannot choose")
    name, member = candidates[0]
    if not isinstance(member, InnerList):
        raise HttpSigError("bad_signature_input", f"Signature-Input {name!r} is not an inner list")
    return name, member


def verify_request(
    *,
    method: str,
    url: str,
    headers: HeaderInput,
    body: bytes | None,
    now: int,
    resolve_key: Callable[[str], bytes | None],
    replay: ReplayCache,
    max_age_s: int = 300,
    skew_s: int = 30,
    required_components: frozenset[str] = DEFAULT_REQUIRED_COMPONENTS,
    label: str | None = None,
    tag: str | None = DEFAULT_TAG,
    require_nonce: bool = True,
    require_content_digest: bool = True,
) -> str:
    """Verify the request's signature under the ecosphere profile; return its keyid.

    ``resolve_key`` maps a keyid to the raw 32-byte Ed25519 public key
    registered on the chain, or None. ``url`` is the absolute URL the client
    used. The signature is chosen by ``tag`` (None: any) and ``label`` (None:
    any); exactly one may match. ``require_nonce`` and
    ``require_content_digest`` exist to check foreign signatures such as the
    RFC's examples; the gateway keeps both True.

    Raises HttpSigError; ``STATUS[error.code]`` is the HTTP status.
    """
    fields = header_fields(headers)
    if "signature-input" not in fields or "signature" not in fields:
        raise HttpSigError("missing_signature",
                           "the request is not signed: Signature and Signature-Input are required")
    try:
        inputs = parse_dictionary(combine_field_lines(fields["signature-input"]))
        signatures = parse_dictionary(combine_field_lines(fields["signature"]))
    except StructuredFieldError as exc:
        raise HttpSigError("bad_signature_input", f"malformed signature fields: {exc}") from None
    if not inputs or not signatures:
        raise HttpSigError("missing_signature",
                           "the request is not signed: Signature and Signature-Input are required")
    chosen, inner = _choose(inputs, label, tag)
    signature_item = signatures.get(chosen)
    if signature_item is None:
        raise HttpSigError("bad_signature_input", f"Signature has no member {chosen!r}")
    if not isinstance(signature_item, Item) or not isinstance(signature_item.value, bytes):
        raise HttpSigError("bad_signature_input", f"Signature {chosen!r} is not a byte sequence")
    signature = signature_item.value
    metadata = _metadata(inner.params, require_nonce=require_nonce)
    covered = _component_names(inner)
    missing = sorted(required_components - set(covered))
    if missing:
        raise HttpSigError("bad_signature_input", f"the signature must cover {', '.join(missing)}")
    content = b"" if body is None else body
    if content and require_content_digest and "content-digest" not in covered:
        raise HttpSigError("bad_signature_input", "a request with a body must cover content-digest")
    if "content-digest" in fields:
        verify_content_digest(combine_field_lines(fields["content-digest"]), content)

    if metadata.created > now + skew_s:
        raise HttpSigError("expired", "the signature was created in the future")
    if now - metadata.created > max_age_s:
        raise HttpSigError("expired", f"the signature is older than {max_age_s} s")
    if metadata.expires is not None and now > metadata.expires:
        raise HttpSigError("expired", "the signature has expired")

    public_key = resolve_key(metadata.keyid)
    if public_key is None:
        raise HttpSigError("unknown_key", f"no key {metadata.keyid!r} is registered")
    try:
        base = _base(_Message(method, url, fields), inner)
    except _Underivable as exc:
        raise HttpSigError("bad_signature", str(exc)) from None
    if not crypto.verify(public_key, signature, base):
        raise HttpSigError("bad_signature", "the signature does not verify")

    if metadata.nonce is not None:
        until = metadata.created + max_age_s
        if metadata.expires is not None:
            until = min(until, metadata.expires)
        if replay.seen(metadata.keyid, metadata.nonce, until, now):
            raise HttpSigError("replayed", "this signature's nonce was already used")
    return metadata.keyid
