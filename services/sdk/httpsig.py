"""HTTP Message Signatures (RFC 9421) with Ed25519, and Content-Digest (RFC 9530).

Reads of private data through the gateway are authenticated by signing the
request with the caller's Ed25519 key, the one registered on the chain under
its key id. This module is the whole protocol for both sides, as pure
functions: no I/O and no clock (callers pass ``now``, integer seconds since
the epoch).

Client::

    headers.update(sign_request(key, method="GET", url=url, headers=headers,
                                body=None, now=int(time.time()), nonce=nonce))

Server::

    key_id = verify_request(method=..., url=..., headers=..., body=...,
                            now=int(time.time()), resolve_key=..., replay=cache)

``verify_request`` raises :class:`HttpSigError` with a stable ``code``;
``STATUS[code]`` is the HTTP status to answer (400 malformed, 401 refused).

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
are combined per section 2.1: each line trimmed, obsolete line folding replaced
by one space, lines joined with ", ". Covered values must be printable US-ASCII
(HTAB allowed): obs-text is refused rather than guessed at.

The target URI is normalised as RFC 9110 section 4.2.3 allows (scheme and host
lowercased, default port dropped, empty path as "/", fragment dropped;
percent-encoding untouched), so the server must pass the URL the client used:
scheme and authority as seen from outside any TLS-terminating proxy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import cast

from services.ledger.core import crypto
from services.ledger.core.crypto import PrivateKey

ALG = "ed25519"
DEFAULT_LABEL = "sig1"
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
# Structured Field Values (RFC 8941): parsing of Dictionaries, serialisation of
# Inner Lists with parameters.


class Token(str):
    """An RFC 8941 Token (serialised unquoted), as opposed to a String."""

    __slots__ = ()


BareItem = bool | int | Decimal | str | bytes  # a Token is a str
Params = Mapping[str, BareItem]


@dataclass(frozen=True, slots=True)
class Item:
    value: BareItem
    params: Params


@dataclass(frozen=True, slots=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params


class _SFError(Exception):
    """Malformed structured field; callers turn it into an HttpSigError."""


_DIGITS = frozenset("0123456789")
_LCALPHA = frozenset("abcdefghijklmnopqrstuvwxyz")
_ALPHA = _LCALPHA | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TCHAR = _ALPHA | _DIGITS | frozenset("!#$%&'*+-.^_`|~")
_KEY_FIRST = _LCALPHA | {"*"}
_KEY_REST = _LCALPHA | _DIGITS | frozenset("_-.*")
_TOKEN_REST = _TCHAR | frozenset(":/")
_BASE64 = _ALPHA | _DIGITS | frozenset("+/=")
_MAX_INTEGER = 999_999_999_999_999


def _is_string(value: object) -> bool:
    return isinstance(value, str) and not isinstance(value, Token)


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Parser:
    """RFC 8941 section 4.2, over a str that must be ASCII."""

    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise _SFError("structured field is not ASCII")
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise _SFError("structured field ends too early")
        self.pos += 1
        return char

    def expect(self, char: str) -> None:
        if self.take() != char:
            raise _SFError(f"expected {char!r} at offset {self.pos - 1}")

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def dictionary(self) -> dict[str, Item | InnerList]:
        self.skip(" ")
        members: dict[str, Item | InnerList] = {}
        while not self.at_end():
            key = self.key()
            member: Item | InnerList
            if self.peek() == "=":
                self.pos += 1
                member = self.inner_list() if self.peek() == "(" else self.item()
            else:
                member = Item(True, self.params())
            members[key] = member
            self.skip(" \t")
            if self.at_end():
                break
            self.expect(",")
            self.skip(" \t")
            if self.at_end():
                raise _SFError("trailing comma in dictionary")
        return members

    def whole_inner_list(self) -> InnerList:
        self.skip(" ")
        inner = self.inner_list()
        self.skip(" ")
        if not self.at_end():
            raise _SFError("characters after the inner list")
        return inner

    def inner_list(self) -> InnerList:
        self.expect("(")
        items: list[Item] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                return InnerList(tuple(items), self.params())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise _SFError("inner list members must be separated by spaces")

    def item(self) -> Item:
        value = self.bare_item()
        return Item(value, self.params())

    def params(self) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            params[key] = value
        return params

    def key(self) -> str:
        start = self.pos
        if not self.peek() or self.peek() not in _KEY_FIRST:
            raise _SFError(f"a key must start with a lowercase letter or '*' at {start}")
        while self.peek() and self.peek() in _KEY_REST:
            self.pos += 1
        return self.text[start : self.pos]

    def bare_item(self) -> BareItem:
        char = self.peek()
        if not char:
            raise _SFError("missing value")
        if char == "-" or char in _DIGITS:
            return self.number()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        if char in _ALPHA or char == "*":
            return self.token()
        raise _SFError(f"unexpected {char!r} at offset {self.pos}")

    def number(self) -> int | Decimal:
        sign = 1
        if self.peek() == "-":
            self.pos += 1
            sign = -1
        if not self.peek() or self.peek() not in _DIGITS:
            raise _SFError("a number needs digits")
        digits: list[str] = []
        decimal = False
        while self.peek():
            char = self.peek()
            if char in _DIGITS:
                digits.append(char)
            elif char == "." and not decimal:
                if len(digits) > 12:
                    raise _SFError("decimal has too many integer digits")
                digits.append(char)
                decimal = True
            else:
                break
            self.pos += 1
            if len(digits) > (16 if decimal else 15):
                raise _SFError("number is too long")
        text = "".join(digits)
        if not decimal:
            return sign * int(text)
        if text.endswith(".") or len(text) - text.index(".") - 1 > 3:
            raise _SFError("decimal needs 1 to 3 fractional digits")
        return sign * Decimal(text)

    def string(self) -> str:
        self.expect('"')
        chars: list[str] = []
        while True:
            char = self.take()
            if char == "\\":
                escaped = self.take()
                if escaped not in ('"', "\\"):
                    raise _SFError("only \\\" and \\\\ may be escaped in a string")
                chars.append(escaped)
            elif char == '"':
                return "".join(chars)
            elif not " " <= char <= "~":
                raise _SFError("strings hold printable ASCII only")
            else:
                chars.append(char)

    def token(self) -> Token:
        start = self.pos
        self.pos += 1
        while self.peek() and self.peek() in _TOKEN_REST:
            self.pos += 1
        return Token(self.text[start : self.pos])

    def byte_sequence(self) -> bytes:
        self.expect(":")
        end = self.text.find(":", self.pos)
        if end < 0:
            raise _SFError("byte sequence is not closed")
        encoded = self.text[self.pos : end]
        self.pos = end + 1
        if not set(encoded) <= _BASE64:
            raise _SFError("byte sequence is not base64")
        # RFC 8941 4.2.7: parsers SHOULD NOT fail on missing padding.
        padded = encoded.rstrip("=")
        padded += "=" * (-len(padded) % 4)
        try:
            return base64.b64decode(padded, validate=True)
        except binascii.Error as exc:
            raise _SFError(f"byte sequence is not base64: {exc}") from None

    def boolean(self) -> bool:
        self.expect("?")
        char = self.take()
        if char not in ("0", "1"):
            raise _SFError("a boolean is ?0 or ?1")
        return char == "1"


def _parse_dictionary(text: str) -> dict[str, Item | InnerList]:
    return _Parser(text).dictionary()


def _serialize_key(key: str) -> str:
    if not key or key[0] not in _KEY_FIRST or not set(key[1:]) <= _KEY_REST:
        raise _SFError(f"{key!r} is not a structured field key")
    return key


def _serialize_string(value: str) -> str:
    if not all(" " <= char <= "~" for char in value):
        raise _SFError("strings hold printable ASCII only")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serialize_bare(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if abs(value) > _MAX_INTEGER:
            raise _SFError("integer out of range")
        return str(value)
    if isinstance(value, Decimal):
        rounded = value.quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)
        whole, _, fraction = f"{abs(rounded):f}".partition(".")
        if len(whole) > 12:
            raise _SFError("decimal out of range")
        return ("-" if rounded < 0 else "") + whole + "." + (fraction.rstrip("0") or "0")
    if isinstance(value, Token):
        if not value or (value[0] not in _ALPHA and value[0] != "*") or not (
            set(value[1:]) <= _TOKEN_REST
        ):
            raise _SFError(f"{value!r} is not a token")
        return str(value)
    if isinstance(value, str):
        return _serialize_string(value)
    return ":" + base64.b64encode(value).decode("ascii") + ":"


def _serialize_params(params: Params) -> str:
    return "".join(
        ";" + _serialize_key(key) + ("" if value is True else "=" + _serialize_bare(value))
        for key, value in params.items()
    )


def _serialize_item(item: Item) -> str:
    return _serialize_bare(item.value) + _serialize_params(item.params)


def _serialize_inner_list(inner: InnerList) -> str:
    members = " ".join(_serialize_item(item) for item in inner.items)
    return f"({members})" + _serialize_params(inner.params)


# --------------------------------------------------------------------------
# Content-Digest (RFC 9530)


def content_digest(body: bytes) -> str:
    """The Content-Digest field value for ``body``: ``sha-256=:<base64>:``."""
    digest = hashlib.sha256(body).digest()
    return "sha-256=:" + base64.b64encode(digest).decode("ascii") + ":"


def verify_content_digest(value: str, body: bytes) -> None:
    """Check a Content-Digest field value against ``body``; raise ``bad_digest``.

    Every sha-256 and sha-512 member must match; other algorithms are ignored
    (RFC 9530 section 2 lets recipients ignore members), but at least one
    supported member must be present.
    """
    try:
        members = _parse_dictionary(value)
    except _SFError as exc:
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
_OBS_FOLD = re.compile(r"\r?\n[ \t]+")
_PORT = re.compile(r"[0-9]*")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _fields(headers: HeaderInput) -> dict[str, list[str]]:
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


def _structured(lines: Sequence[str]) -> str:
    """Field lines combined for structured-field parsing (RFC 8941 section 4.2)."""
    return ", ".join(line.strip(" \t") for line in lines if line.strip(" \t"))


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
        if not port or port == _DEFAULT_PORTS.get(scheme):
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
        params_value = _serialize_inner_list(inner)
    except _SFError as exc:
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
            return _serialize_inner_list(self.inner_list())
        except _SFError as exc:
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
            inner = _Parser(params).whole_inner_list()
        except _SFError as exc:
            raise HttpSigError("bad_signature_input", f"signature parameters: {exc}") from None
    try:
        return _base(_Message(method, url, _fields(headers)), inner)
    except _Underivable as exc:
        raise HttpSigError("bad_signature_input", str(exc)) from None


# --------------------------------------------------------------------------
# Client


def sign_request(
    key: PrivateKey,
    *,
    method: str,
    url: str,
    headers: HeaderInput,
    body: bytes | None,
    now: int,
    expires_in: int = 60,
    nonce: str,
    label: str = DEFAULT_LABEL,
    tag: str = DEFAULT_TAG,
    components: Sequence[str] | None = None,
) -> dict[str, str]:
    """The headers to add to a request so that ``verify_request`` accepts it.

    Returns ``Signature-Input`` and ``Signature``, and ``Content-Digest`` when
    there is a body (``body`` not None, even empty); set them on the request,
    replacing any of the same name. ``nonce`` must be unique per key within the
    server's window: use ``secrets.token_urlsafe(16)``.

    Covered by default: ``@method``, ``@target-uri``, ``@authority``,
    ``content-digest`` (with a body), ``content-type`` and the EPCIS
    ``gs1-capture-error-behaviour`` (when present).
    ``components`` replaces that list; ``content-digest`` is still added when
    there is a body.
    """
    if not _is_integer(now) or not _is_integer(expires_in) or expires_in <= 0:
        raise HttpSigError("bad_signature_input", "now and expires_in must be integers, "
                                                  "expires_in positive")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_LENGTH:
        raise HttpSigError("bad_signature_input",
                           f"nonce must be 1 to {MAX_NONCE_LENGTH} characters")
    fields = _fields(headers)
    added: dict[str, str] = {}
    if body is not None:
        digest = content_digest(body)
        added["Content-Digest"] = digest
        fields["content-digest"] = [digest]
    if components is None:
        covered = ["@method", "@target-uri", "@authority"]
        if body is not None:
            covered.append("content-digest")
        if "content-type" in fields:
            covered.append("content-type")
        if ERROR_BEHAVIOUR_HEADER in fields:
            covered.append(ERROR_BEHAVIOUR_HEADER)
    else:
        covered = list(components)
        if body is not None and "content-digest" not in covered:
            covered.append("content-digest")
    params = SignatureParams(
        components=tuple(covered), created=now, expires=now + expires_in,
        keyid=key.key_id, nonce=nonce, alg=ALG, tag=tag,
    )
    try:
        label = _serialize_key(label)
    except _SFError as exc:
        raise HttpSigError("bad_signature_input", f"label: {exc}") from None
    base = signature_base(method=method, url=url, headers=_pairs(fields), params=params)
    signature = base64.b64encode(key.sign(base)).decode("ascii")
    added["Signature-Input"] = f"{label}={params.serialize()}"
    added["Signature"] = f"{label}=:{signature}:"
    return added


def _pairs(fields: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, values in fields.items() for value in values]


# --------------------------------------------------------------------------
# Server


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
    if created is None or not _is_integer(created):
        raise HttpSigError("bad_signature_input", "created must be present and an integer")
    if expires is not None and not _is_integer(expires):
        raise HttpSigError("bad_signature_input", "expires must be an integer")
    if not _is_string(keyid) or not 0 < len(cast(str, keyid)) <= MAX_KEYID_LENGTH:
        raise HttpSigError("bad_signature_input", "keyid must be present and a string")
    if nonce is None:
        if require_nonce:
            raise HttpSigError("bad_signature_input", "nonce must be present")
    elif not _is_string(nonce) or not 0 < len(cast(str, nonce)) <= MAX_NONCE_LENGTH:
        raise HttpSigError("bad_signature_input", "nonce must be a non-empty string")
    if alg is not None and (not _is_string(alg) or alg != ALG):
        raise HttpSigError("bad_signature_input", f"unsupported alg; only {ALG!r} is accepted")
    if "tag" in params and not _is_string(params["tag"]):
        raise HttpSigError("bad_signature_input", "tag must be a string")
    created_at = cast(int, created)
    expires_at = cast(int | None, expires)
    if expires_at is not None and expires_at < created_at:
        raise HttpSigError("bad_signature_input", "expires is before created")
    return _Metadata(created_at, expires_at, cast(str, keyid), cast(str | None, nonce))


def _choose(
    inputs: Mapping[str, Item | InnerList], label: str | None, tag: str | None
) -> tuple[str, InnerList]:
    candidates = [
        (name, member) for name, member in inputs.items()
        if (label is None or name == label)
        and (tag is None or (isinstance(member, InnerList) and _is_string(member.params.get("tag"))
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
    fields = _fields(headers)
    if "signature-input" not in fields or "signature" not in fields:
        raise HttpSigError("missing_signature",
                           "the request is not signed: Signature and Signature-Input are required")
    try:
        inputs = _parse_dictionary(_structured(fields["signature-input"]))
        signatures = _parse_dictionary(_structured(fields["signature"]))
    except _SFError as exc:
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
        verify_content_digest(_structured(fields["content-digest"]), content)

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
