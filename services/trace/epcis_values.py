"""The values inside EPCIS 2.0 events, each checked and normalised on its own: CBV 2.0
vocabulary words, times, decimals (never floats), URIs, GS1 identifiers, and JSON read
without floats; and :class:`EpcisError`, the one error of EPCIS validation.

:mod:`services.trace.epcis` validates whole events with these,
:mod:`services.trace.epcis_fields` the structured fields of an event. The rules each
value follows are listed in :mod:`services.trace.epcis`'s docstring.

This module is pure: it must never do I/O, read the clock, draw randomness or turn a
number into a float.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from services.trace.cbv import (
    BIZ_STEP_WORDS,
    BIZ_TRANSACTION_TYPE_WORDS,
    CBV,
    COMPONENT_WORDS,
    DISPOSITION_WORDS,
    ERROR_REASON_WORDS,
    GS1_VOC,
    MEASUREMENT_TYPE_WORDS,
    SENSOR_EXCEPTION_WORDS,
    SOURCE_DESTINATION_TYPE_WORDS,
)
from services.trace.hashvalues import (
    EventHashError,
    canonical_number,
    format_utc_millis,
    time_to_utc_millis,
)
from services.trace.identifiers import (
    Giai,
    Grai,
    GtinClass,
    Identifier,
    IdentifierError,
    Lgtin,
    Sgln,
    Sgtin,
    Sscc,
    parse_identifier,
)

__all__ = [
    "BIZ_STEPS",
    "BIZ_TRANSACTION_TYPES",
    "CLASS_KINDS",
    "DISPOSITIONS",
    "ERROR_REASONS",
    "INSTANCE_KINDS",
    "JSON_NUMBER_CHARS_MAX",
    "LIST_MAX",
    "SENSOR_COMPONENTS",
    "SENSOR_EXCEPTIONS",
    "SENSOR_TYPES",
    "SOURCE_DESTINATION_TYPES",
    "STRING_MAX",
    "UNITS",
    "EpcisError",
    "as_decimal",
    "as_identifier",
    "as_list",
    "as_object",
    "as_string",
    "as_time",
    "as_uri",
    "decimal_string",
    "format_time",
    "normalize_vocabulary",
    "parse_json",
    "parse_time",
]

# --------------------------------------------------------------------------- #
# CBV 2.0 vocabularies
# --------------------------------------------------------------------------- #

#: CBV 2.0 business steps (section 7.1).
BIZ_STEPS = frozenset(BIZ_STEP_WORDS)
#: CBV 2.0 dispositions (section 7.2).
DISPOSITIONS = frozenset(DISPOSITION_WORDS)
#: CBV 2.0 business transaction types (section 7.3).
BIZ_TRANSACTION_TYPES = frozenset(BIZ_TRANSACTION_TYPE_WORDS)
#: CBV 2.0 source/destination types (section 7.4).
SOURCE_DESTINATION_TYPES = frozenset(SOURCE_DESTINATION_TYPE_WORDS)
#: CBV 2.0 error reasons (section 7.5).
ERROR_REASONS = frozenset(ERROR_REASON_WORDS)
#: Sensor measurement types (GS1 web vocabulary, EPCIS 2.0 context).
SENSOR_TYPES = frozenset(MEASUREMENT_TYPE_WORDS)
SENSOR_EXCEPTIONS = frozenset(SENSOR_EXCEPTION_WORDS)
SENSOR_COMPONENTS = frozenset(COMPONENT_WORDS)
#: Common UN/CEFACT Recommendation 20 unit codes for sensor reports and quantities. Any
#: well-formed Rec 20 code (2-3 upper-case letters/digits) is accepted; these are named.
UNITS = {
    "CEL": "degree Celsius", "FAH": "degree Fahrenheit", "KEL": "kelvin",
    "P1": "percent", "A93": "gram per cubic metre", "KGM": "kilogram", "GRM": "gram",
    "TNE": "tonne", "LTR": "litre", "MTQ": "cubic metre", "MTR": "metre", "CMT": "centimetre",
    "MMT": "millimetre", "H87": "piece", "EA": "each", "C62": "one (unit)",
    "PAL": "pascal", "KPA": "kilopascal", "BAR": "bar", "LUX": "lux", "DD": "decimal degree",
    "SEC": "second", "MIN": "minute", "HUR": "hour", "MTS": "metre per second",
    "KMH": "kilometre per hour", "PPM": "parts per million", "VLT": "volt", "AMP": "ampere",
    "WTT": "watt", "HTZ": "hertz", "GY": "gray", "FAR": "farad",
}

_VOCABS: dict[str, tuple[frozenset[str], tuple[str, ...], str]] = {
    # kind: (words, accepted prefixes, error code)
    "bizStep": (BIZ_STEPS, ("urn:epcglobal:cbv:bizstep:", CBV + "BizStep-",
                            "cbv:BizStep-"), "unknown_bizstep"),
    "disposition": (DISPOSITIONS, ("urn:epcglobal:cbv:disp:", CBV + "Disp-",
                                   "cbv:Disp-"), "unknown_disposition"),
    "btt": (BIZ_TRANSACTION_TYPES, ("urn:epcglobal:cbv:btt:", CBV + "BTT-", "cbv:BTT-"),
            "unknown_biztransaction_type"),
    "sdt": (SOURCE_DESTINATION_TYPES, ("urn:epcglobal:cbv:sdt:", CBV + "SDT-",
                                       "cbv:SDT-"), "unknown_source_destination_type"),
    "er": (ERROR_REASONS, ("urn:epcglobal:cbv:er:", CBV + "ER-", "cbv:ER-"),
           "unknown_error_reason"),
    "sensorType": (SENSOR_TYPES, ("gs1:", "https://gs1.org/voc/", GS1_VOC),
                   "unknown_sensor_type"),
    "exception": (SENSOR_EXCEPTIONS, ("gs1:", "https://gs1.org/voc/", GS1_VOC),
                  "bad_sensor"),
    "component": (SENSOR_COMPONENTS, ("cbv:Comp-", CBV + "Comp-"), "bad_sensor"),
}
_CBV_NAMESPACES = ("urn:epcglobal:cbv:", "https://ref.gs1.org/cbv/", "cbv:", "gs1:",
                   "https://gs1.org/voc/", "https://ref.gs1.org/voc/")

STRING_MAX = 2048
LIST_MAX = 10_000
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


class EpcisError(ValueError):
    """An invalid EPCIS event or document; ``code`` is stable, ``path`` locates the field."""

    def __init__(self, code: str, message: str, path: str = "") -> None:
        super().__init__(f"{code} at {path or '$'}: {message}")
        self.code = code
        self.message = message
        self.path = path


def _fail(code: str, message: str, path: str) -> EpcisError:
    return EpcisError(code, message, path)


# --------------------------------------------------------------------------- #
# Scalars
# --------------------------------------------------------------------------- #

def parse_time(text: Any, path: str = "") -> int:
    """Milliseconds since the epoch of an RFC 3339 / ISO 8601 time with an offset.

    ``Z`` or ``±HH:MM`` is required (a time without offset is ambiguous). Fractional
    seconds beyond microseconds are cut, then rounded half-up to milliseconds. Pure
    arithmetic: never reads the clock.
    """
    if not isinstance(text, str) or len(text) > 64:
        raise _fail("bad_time", "a time is an RFC 3339 string", path)
    try:
        return time_to_utc_millis(text)
    except EventHashError as exc:
        raise _fail("bad_time", exc.message, path) from None


def format_time(millis: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` of milliseconds since the epoch."""
    return format_utc_millis(millis)


def as_time(value: Any, path: str) -> str:
    """A time in its normalised form: UTC, three fractional digits, ``Z``."""
    millis = parse_time(value, path)
    try:
        return format_time(millis)
    except EventHashError as exc:
        raise _fail("bad_time", exc.message, path) from None


def as_string(value: Any, path: str, *, max_len: int = STRING_MAX) -> str:
    """A non-empty string of at most ``max_len`` characters."""
    if isinstance(value, float):
        raise _fail("float_not_allowed", "floats are not allowed", path)
    if not isinstance(value, str):
        raise _fail("bad_field", "must be a string", path)
    if not value or len(value) > max_len:
        raise _fail("bad_field" if not value else "too_large",
                    f"must be 1..{max_len} characters", path)
    return value


def as_uri(value: Any, path: str) -> str:
    """An absolute URI, as given."""
    text = as_string(value, path)
    if not _ABSOLUTE_URI.fullmatch(text):
        raise _fail("bad_uri", f"{text[:80]!r} is not an absolute URI", path)
    return text


def as_list(value: Any, path: str, *, allow_empty: bool = False) -> list[Any]:
    """A list of at most ``LIST_MAX`` items (non-empty unless ``allow_empty``)."""
    if not isinstance(value, list):
        raise _fail("bad_field", "must be a list", path)
    if not value and not allow_empty:
        raise _fail("bad_field", "must not be empty", path)
    if len(value) > LIST_MAX:
        raise _fail("too_large", f"at most {LIST_MAX} items", path)
    return value


def as_object(value: Any, path: str) -> Mapping[str, Any]:
    """A JSON object."""
    if not isinstance(value, Mapping):
        raise _fail("bad_field", "must be an object", path)
    return value


def decimal_string(value: Any, path: str = "", *, code: str = "bad_field") -> int | str:
    """An integer (kept) or a decimal string (returned in canonical form); floats refused."""
    if isinstance(value, bool):
        raise _fail(code, "must be a number", path)
    if isinstance(value, float):
        raise _fail("float_not_allowed",
                    "floats are not allowed: give an integer or a decimal string", path)
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise _fail(code, "integer out of range", path)
        return value
    if not isinstance(value, str) or len(value) > 64 or not _DECIMAL.fullmatch(value):
        raise _fail(code, "must be an integer or a decimal string such as \"4.5\"", path)
    return canonical_number(value)


#: the longest JSON number a document may hold (characters). Numbers with a fraction or
#: exponent are read as decimal text, bounded so that an exponent cannot expand into
#: megabytes of digits; integers are bounded so that Python's own, per-process limit
#: (``sys.int_max_str_digits``, at least 640) never decides
JSON_NUMBER_CHARS_MAX = 64
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _json_decimal(text: str) -> str:
    """A JSON number with a fraction or exponent, as exact decimal text (never a float):
    ``26.1`` stays ``"26.1"``, ``2.5e1`` becomes ``"25"``-style plain notation."""
    if len(text) > JSON_NUMBER_CHARS_MAX or not _JSON_NUMBER.fullmatch(text):
        raise _fail("bad_number", f"number {text[:40]} is out of range", "")
    if "e" not in text and "E" not in text:
        return text
    number = Decimal(text)
    if abs(number.adjusted()) > JSON_NUMBER_CHARS_MAX:
        raise _fail("bad_number", f"number {text[:40]} is out of range", "")
    return format(number, "f")


def _json_int(text: str) -> int:
    """A JSON integer, refused beyond ``JSON_NUMBER_CHARS_MAX`` characters before Python's
    own limit (``sys.int_max_str_digits``, a per-process setting) could decide: replicas
    must agree on every document whatever their interpreter's settings."""
    if len(text) > JSON_NUMBER_CHARS_MAX or not _JSON_NUMBER.fullmatch(text):
        raise _fail("bad_number", f"number {text[:40]} is out of range", "")
    return int(text)


def _no_constant(text: str) -> Any:
    raise _fail("bad_number", f"{text} is not a number EPCIS accepts", "")


def parse_json(text: str | bytes) -> Any:
    """JSON as EPCIS 2.0 clients send it — sensor values and quantities are JSON numbers
    (``"value": 26.1``) — read without floats: a number with a fraction or exponent
    becomes its exact decimal text, which the validators accept wherever a decimal is
    (and the CBV 2.0 hash canonicalises like the number). NaN and Infinity are refused.
    Integers and decimals longer than ``JSON_NUMBER_CHARS_MAX`` characters are refused
    (``bad_number``), whatever the interpreter's own integer limit.
    Raises :class:`EpcisError` (``bad_number``) or ``ValueError`` (not JSON)."""
    return json.loads(text, parse_float=_json_decimal, parse_int=_json_int,
                      parse_constant=_no_constant)


def as_decimal(value: int | str) -> Decimal:
    """The exact value of what :func:`decimal_string` accepted."""
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - decimal_string accepted it
        return Decimal(0)


def normalize_vocabulary(value: Any, kind: str, *, allow_private_vocabulary: bool = True,
                         path: str = "") -> str:
    """The bare CBV word of a vocabulary value, or a private-vocabulary URI as given.

    ``kind`` is one of ``bizStep``, ``disposition``, ``btt``, ``sdt``, ``er``,
    ``sensorType``, ``exception``, ``component``.
    """
    words, prefixes, code = _VOCABS[kind]
    text = as_string(value, path)
    if text in words:
        return text
    for prefix in prefixes:
        if text.startswith(prefix):
            word = text[len(prefix):]
            if word in words:
                return word
            raise _fail(code, f"{text[:80]!r} is not a CBV 2.0 {kind} value", path)
    if text.startswith(_CBV_NAMESPACES):
        raise _fail(code, f"{text[:80]!r} is not a CBV 2.0 {kind} value", path)
    if _ABSOLUTE_URI.fullmatch(text) and ":" in text:
        if allow_private_vocabulary:
            return text
        raise _fail(code, f"private vocabulary {text[:80]!r} is not allowed", path)
    raise _fail(code, f"{text[:80]!r} is not a CBV 2.0 {kind} value", path)


# --------------------------------------------------------------------------- #
# Identifiers
# --------------------------------------------------------------------------- #

#: identifiers of one object (epcList, childEPCs, parentID, ...)
INSTANCE_KINDS = (Sgtin, Sscc, Sgln, Grai, Giai)
#: identifiers of a class of objects (the epcClass of a quantity)
CLASS_KINDS = (Lgtin, GtinClass)


def as_identifier(value: Any, path: str, kinds: tuple[type, ...]) -> str:
    """A GS1 identifier (EPC URN or Digital Link) of one of ``kinds``, as given."""
    text = as_string(value, path)
    try:
        parsed: Identifier = parse_identifier(text)
    except IdentifierError as exc:
        raise _fail("bad_identifier", f"{exc.code}: {exc.message}", path) from None
    if not isinstance(parsed, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise _fail("bad_identifier", f"expected {names}, got {type(parsed).__name__}", path)
    return text

