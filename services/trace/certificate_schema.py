"""The data of a certificate (``ecosphere.certificate/v1``), checked before it is wrapped
as a verifiable document (:mod:`services.trace.wrapping`), and the RFC 3339 times its
validity is written in::

    {"$template": {"type": "ecosphere.certificate/v1"},
     "id": "<certificate number>", "type": "CE" | "CCC" | "ISO9001" | ...,
     "issuer": {"id": "<org id>", "name": "<name>"},
     "subject": {"kind": "product" | "batch" | "organisation", "id": "...", "name"?},
     "scope": "<scope code>", "validFrom": "<RFC 3339>", "validUntil": "<RFC 3339>",
     "attachments": [{"filename": ..., "type": <MIME type>, ...}, ...],  # optional
     ...free fields}

This module is pure: it must never do I/O, read the clock or draw randomness.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from services.ledger.core.encoding import DEPTH_MAX
from services.trace.civil import civil_from_days, days_from_civil, days_in_month
from services.trace.wrapping import DocumentError, check_json

__all__ = [
    "CERTIFICATE_TEMPLATE",
    "CERTIFICATE_TYPES",
    "SUBJECT_KINDS",
    "check_certificate_data",
    "ms_to_rfc3339",
    "rfc3339_to_ms",
]

CERTIFICATE_TEMPLATE: Final = "ecosphere.certificate/v1"
CERTIFICATE_TYPES: Final = frozenset({
    "CE", "CCC", "UKCA", "ISO9001", "ISO14001", "ISO22000", "ISO45001", "HACCP", "GMP",
    "ORGANIC", "ORIGIN", "TEST_REPORT", "BRAND", "HALAL", "KOSHER", "FSC", "FAIRTRADE", "FDA",
})
SUBJECT_KINDS: Final = frozenset({"product", "batch", "organisation"})

_DIGITS_RE: Final = re.compile(r"[0-9]+")
_ORG_ID_RE: Final = re.compile(r"[a-z0-9_.-]{1,64}")
_RFC3339_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_TEXT_MAX = 256
_ID_MAX = 128


def _fail(code: str, message: str) -> DocumentError:
    return DocumentError(message, code=code)


# --------------------------------------------------------------------------- certificates


def _require(data: Mapping[str, Any], key: str) -> Any:
    if key not in data:
        raise _fail("missing_field", f"{key} is required")
    return data[key]


def _text(value: object, where: str, code: str, size_max: int = _TEXT_MAX) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > size_max:
        raise _fail(code, f"{where} must be a non-blank string of at most {size_max} characters")
    if any(ord(ch) < 0x20 for ch in value):
        raise _fail(code, f"{where} must not contain control characters")
    return value


def _gtin_ok(digits: str) -> bool:
    if len(digits) not in (8, 12, 13, 14) or not _DIGITS_RE.fullmatch(digits):
        return False
    body = digits[:-1]
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == int(digits[-1])


def check_certificate_data(data: object) -> None:
    """Raise :class:`DocumentError` unless ``data`` is a certificate of
    ``ecosphere.certificate/v1`` (see the module docstring).

    Codes: ``not_object``, the JSON-profile codes of
    :func:`services.trace.wrapping.wrap_batch`
    (``float_not_allowed``, ...), ``bad_template``, ``missing_field``,
    ``bad_field`` (``id``, ``issuer``, ``scope``), ``unknown_certificate_type``,
    ``bad_subject`` (a product is a GTIN-8/12/13/14 with its check digit, a
    batch a lot id, an organisation an org id), ``bad_validity`` (RFC 3339
    date-times, ``validFrom`` before ``validUntil``), ``bad_attachments``.
    Free fields beyond these are allowed.
    """
    if not isinstance(data, Mapping):
        raise _fail("not_object", "certificate data must be a JSON object")
    check_json(data, "", DEPTH_MAX)
    template = _require(data, "$template")
    if not isinstance(template, Mapping) or template.get("type") != CERTIFICATE_TEMPLATE:
        raise _fail("bad_template", f"$template.type must be {CERTIFICATE_TEMPLATE!r}")
    _text(_require(data, "id"), "id", "bad_field", _ID_MAX)
    cert_type = _require(data, "type")
    if not isinstance(cert_type, str) or cert_type not in CERTIFICATE_TYPES:
        raise _fail("unknown_certificate_type",
                    f"type {cert_type!r} is not one of {sorted(CERTIFICATE_TYPES)}")
    issuer = _require(data, "issuer")
    if not isinstance(issuer, Mapping):
        raise _fail("bad_field", "issuer must be an object {id, name}")
    issuer_id = issuer.get("id")
    if not isinstance(issuer_id, str) or not _ORG_ID_RE.fullmatch(issuer_id):
        raise _fail("bad_field", "issuer.id must be an organisation id (1..64 of [a-z0-9-_.])")
    _text(issuer.get("name"), "issuer.name", "bad_field")
    _check_subject(_require(data, "subject"))
    _text(_require(data, "scope"), "scope", "bad_field")
    try:
        start = rfc3339_to_ms(_require(data, "validFrom"))
        end = rfc3339_to_ms(_require(data, "validUntil"))
    except DocumentError as exc:
        if exc.code == "missing_field":
            raise
        raise _fail("bad_validity", exc.message) from exc
    if not start < end:
        raise _fail("bad_validity", "validFrom must be before validUntil")
    if "attachments" in data:
        _check_attachments(data["attachments"])


def _check_subject(subject: object) -> None:
    if not isinstance(subject, Mapping) or set(subject) - {"kind", "id", "name"}:
        raise _fail("bad_subject", "subject must be an object {kind, id[, name]}")
    kind = subject.get("kind")
    ident = subject.get("id")
    if kind not in SUBJECT_KINDS:
        raise _fail("bad_subject", f"subject.kind must be one of {sorted(SUBJECT_KINDS)}")
    if not isinstance(ident, str):
        raise _fail("bad_subject", "subject.id must be a string")
    if kind == "product" and not _gtin_ok(ident):
        raise _fail("bad_subject", "a product is identified by its GTIN-8/12/13/14 "
                                   "(digits, valid check digit)")
    if kind == "organisation" and not _ORG_ID_RE.fullmatch(ident):
        raise _fail("bad_subject", "an organisation is identified by its org id")
    if kind == "batch":
        _text(ident, "subject.id", "bad_subject", _ID_MAX)
    if "name" in subject:
        _text(subject["name"], "subject.name", "bad_subject")


def _check_attachments(attachments: object) -> None:
    if not isinstance(attachments, list | tuple):
        raise _fail("bad_attachments", "attachments must be an array")
    for position, item in enumerate(attachments):
        if not isinstance(item, Mapping):
            raise _fail("bad_attachments", f"attachments.{position} must be an object")
        _text(item.get("filename"), f"attachments.{position}.filename", "bad_attachments")
        _text(item.get("type"), f"attachments.{position}.type", "bad_attachments")


# --------------------------------------------------------------------------- RFC 3339


_DAY_MS = 86_400_000


def rfc3339_to_ms(text: object) -> int:
    """Milliseconds since the Unix epoch of an RFC 3339 date-time (``2026-01-31T12:00:00Z``,
    ``...T20:00:00.250+08:00``); fractions below a millisecond are truncated.

    Strict RFC 3339 ``date-time`` (section 5.6), not ISO 8601 at large: no
    date alone, no week dates, no basic format. A leap second (``:60``) is
    refused: the chain counts Unix milliseconds, which have none. Raises
    :class:`DocumentError` ``bad_time``.
    """
    match = _RFC3339_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise _fail("bad_time", f"{text!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, zulu, sign, off_hour, off_minute = match.group(7, 8, 9, 10, 11)
    if not (1 <= month <= 12 and 1 <= day <= days_in_month(year, month)
            and hour <= 23 and minute <= 59 and second <= 59):
        raise _fail("bad_time", f"{text!r} is not a valid date and time")
    millis = int((fraction[1:] + "00")[:3]) if fraction else 0
    offset = 0
    if not zulu:
        if int(off_hour) > 23 or int(off_minute) > 59:
            raise _fail("bad_time", f"{text!r} has an invalid offset")
        offset = (int(off_hour) * 60 + int(off_minute)) * 60_000
        offset = -offset if sign == "-" else offset
    return (days_from_civil(year, month, day) * _DAY_MS
            + ((hour * 60 + minute) * 60 + second) * 1000 + millis - offset)


def ms_to_rfc3339(ms: int) -> str:
    """RFC 3339 in UTC with millisecond precision: ``2026-01-01T00:00:00.446Z``.

    For years 0000..9999; :class:`DocumentError` ``bad_time`` otherwise.
    """
    days, rest = divmod(ms, _DAY_MS)
    year, month, day = civil_from_days(days)
    if not 0 <= year <= 9999:
        raise _fail("bad_time", f"{ms} ms is outside years 0000..9999")
    seconds, millis = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"

