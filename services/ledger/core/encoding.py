"""Canonical encoding of everything that is hashed or signed.

The ecosphere hashes and signs *canonical JSON*: the JSON Canonicalization
Scheme of RFC 8785 restricted to a profile that makes it exact and cheap:

* values are ``null``, ``true``/``false``, integers, strings, arrays and
  objects; **no floating-point numbers** (money is integer minor units, time is
  integer milliseconds);
* integers lie in ``[-(2**53 - 1), 2**53 - 1]`` so that every JSON
  implementation (RFC 8785 serialises numbers as IEEE doubles) reads them
  exactly;
* object keys are ASCII strings, so sorting by code point (what we do) equals
  sorting by UTF-16 code unit (what RFC 8785 requires);
* strings are valid Unicode (no lone surrogates) and are written in UTF-8 with
  only the escapes RFC 8785 prescribes (``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``
  and ``\\u00xx`` for other control characters);
* no insignificant whitespace.

Byte strings (hashes, keys, signatures) are carried as lowercase hex strings;
the data model decides which strings are hex.

Decoding is strict: :func:`decode` accepts only bytes that are *exactly* the
canonical encoding of the value they denote (re-encoding must give the same
bytes), so a message has one byte representation and one hash, duplicate keys
and floats are refused, and a signature over canonical bytes can be checked on
the received bytes directly.

The test vectors live in ``tests/ledger/core/vectors/encoding.json``.

This module never does I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from services.ledger.core.errors import EncodingError

INT_MAX = 2**53 - 1
INT_MIN = -INT_MAX
DEPTH_MAX = 64

_encoder = json.JSONEncoder(
    ensure_ascii=False,
    sort_keys=True,
    separators=(",", ":"),
    allow_nan=False,
    check_circular=False,
)


def _reject_float(text: str) -> Any:
    raise EncodingError(f"floating-point number {text!r} is not allowed")


def _reject_constant(text: str) -> Any:
    raise EncodingError(f"constant {text!r} is not allowed")


def check_value(value: Any, depth_max: int = DEPTH_MAX) -> None:
    """Raise :class:`EncodingError` unless ``value`` is inside the canonical profile."""
    _check(value, depth_max)


def _check(value: Any, depth_left: int) -> None:
    if value is None or value is True or value is False or isinstance(value, str):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise EncodingError(f"integer {value} outside the range of ±(2**53 - 1)")
        return
    if depth_left <= 0:
        raise EncodingError("value nested too deeply")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise EncodingError(f"object key {key!r} is not an ASCII string")
            _check(item, depth_left - 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth_left - 1)
        return
    raise EncodingError(f"type {type(value).__name__} has no canonical encoding")


def encode(value: Any) -> bytes:
    """Return the canonical bytes of ``value``, checking it is inside the profile."""
    check_value(value)
    return encode_unchecked(value)


def encode_unchecked(value: Any) -> bytes:
    """Encode a value already known to be inside the profile (built by our own code)."""
    try:
        return _encoder.encode(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError("string is not valid Unicode (lone surrogate)") from exc
    except (TypeError, ValueError) as exc:
        raise EncodingError(str(exc)) from exc


def _parse_int(text: str) -> int:
    value = int(text)
    if len(text) > 15 and not INT_MIN <= value <= INT_MAX:
        raise EncodingError(f"integer {text} outside the range of ±(2**53 - 1)")
    return value


_decoder = json.JSONDecoder(parse_float=_reject_float, parse_constant=_reject_constant,
                            parse_int=_parse_int)


def decode(data: bytes, *, size_max: int | None = None) -> Any:
    """Decode canonical bytes; raise :class:`EncodingError` on anything else.

    The profile is checked without walking the value in Python where it can be:
    the parser refuses floats and constants and range-checks integers as it
    reads them; keys can only be non-ASCII if the bytes are, so the full walk
    runs only for non-ASCII input; re-encoding proves the bytes canonical
    (which also refuses duplicate keys, whitespace and needless escapes).
    Nesting is bounded here only by the parser's recursion limit and the size
    limit; where depth matters it is checked on the part that matters
    (a transaction payload: ``TxLimits.payload_depth_max``).
    """
    if size_max is not None and len(data) > size_max:
        raise EncodingError(f"{len(data)} bytes exceed the limit of {size_max}")
    try:
        text = data.decode("utf-8")
        value = _decoder.decode(text)
    except EncodingError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EncodingError(f"not valid JSON: {exc}") from exc
    if not data.isascii():
        check_value(value)
    try:
        canonical = encode_unchecked(value)
    except RecursionError as exc:
        raise EncodingError("value nested too deeply") from exc
    if canonical != data:
        raise EncodingError("bytes are not in canonical form")
    return value


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    """SHA-256 with a domain-separation tag, so no two kinds of object share a hash."""
    return hashlib.sha256(tag + b"\x00" + data).digest()


# --- helpers for strict schema decoding of wire dictionaries -----------------

_HEX = frozenset("0123456789abcdef")


def to_hex(data: bytes) -> str:
    return data.hex()


def from_hex(value: object, *, length: int | None = None, field: str = "value") -> bytes:
    """Parse lowercase hex; ``length`` is in bytes."""
    if not isinstance(value, str):
        raise EncodingError(f"{field} must be a hex string")
    if length is not None and len(value) != 2 * length:
        raise EncodingError(f"{field} must be {length} bytes ({2 * length} hex digits)")
    if len(value) % 2 or not _HEX.issuperset(value):
        raise EncodingError(f"{field} must be lowercase hex")
    return bytes.fromhex(value)


def get_int(
    obj: Mapping[str, Any], field: str, *, lo: int = 0, hi: int = INT_MAX
) -> int:
    value = obj.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise EncodingError(f"{field} must be an integer")
    if not lo <= value <= hi:
        raise EncodingError(f"{field} must be between {lo} and {hi}")
    return value


def get_str(obj: Mapping[str, Any], field: str, *, size_max: int = 256) -> str:
    value = obj.get(field)
    if not isinstance(value, str):
        raise EncodingError(f"{field} must be a string")
    if len(value) > size_max:
        raise EncodingError(f"{field} longer than {size_max} characters")
    return value


def get_map(obj: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = obj.get(field)
    if not isinstance(value, dict):
        raise EncodingError(f"{field} must be an object")
    return value


def get_list(obj: Mapping[str, Any], field: str, *, size_max: int) -> Sequence[Any]:
    value = obj.get(field)
    if not isinstance(value, list):
        raise EncodingError(f"{field} must be an array")
    if len(value) > size_max:
        raise EncodingError(f"{field} has more than {size_max} items")
    return value


def require_keys(obj: object, keys: frozenset[str], what: str) -> Mapping[str, Any]:
    """Check ``obj`` is an object with exactly ``keys``."""
    if not isinstance(obj, dict):
        raise EncodingError(f"{what} must be an object")
    if obj.keys() != keys:
        missing = sorted(keys - obj.keys())
        extra = sorted(obj.keys() - keys)
        raise EncodingError(f"{what}: missing fields {missing}, unknown fields {extra}")
    return obj
