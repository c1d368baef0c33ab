"""Validation and normalisation of EPCIS 2.0 events (JSON-LD form) with CBV 2.0 vocabularies.

:func:`validate_event` checks one event (a dict as in the EPCIS 2.0 JSON schema) and
returns its *normalised* form, the form the ecosphere stores and hashes:

* CBV values (bizStep, disposition, persistentDisposition, bizTransaction type,
  source/destination type, error reason, sensor type/exception/component) may be given as
  the bare word (``"shipping"``), the CBV URN (``urn:epcglobal:cbv:bizstep:shipping``) or
  the web vocabulary URI (``https://ref.gs1.org/cbv/BizStep-shipping``; sensor types
  ``gs1:Temperature``, ``https://gs1.org/voc/Temperature`` or
  ``https://ref.gs1.org/voc/Temperature``) and are normalised to the bare word. An unknown
  bare word is refused; an absolute URI outside the CBV namespaces is a *private
  vocabulary* value (EPCIS allows extensions) and is kept as given when
  ``allow_private_vocabulary`` is true (the default), refused otherwise.
* Times (``eventTime``, ``recordTime``, sensor times, ``declarationTime``) must be RFC 3339
  with an offset; they are normalised to UTC with three fractional digits
  (``2024-03-01T08:00:00.000Z``; extra digits rounded half-up, as the CBV event hash does).
  ``eventTimeZoneOffset`` (``±HH:MM``) keeps the local offset.
* **No floats.** The chain's canonical encoding has no floating-point numbers (a float has
  no single exact decimal form every replica agrees on), so quantities and sensor values
  must be JSON integers or decimal *strings* (``"4.5"``, ``"-18.25"``); a JSON float is
  refused with ``float_not_allowed``. Decimal strings keep exact values and are normalised
  to the canonical decimal form of the CBV event hash (``"4.50"`` → ``"4.5"``, ``"26.0"`` →
  ``"26"``); integers stay integers.
* Identifiers (EPCs, classes, parent IDs, locations, parties) must be EPC URNs or GS1
  Digital Link URIs (:mod:`services.trace.identifiers`); they are kept as given.
  :func:`epcs_of` returns them in canonical Digital Link form for indexing.
* User extensions are keys ``prefix:localName`` (at event level and inside the EPCIS
  extension points: readPoint, bizLocation, sensorElement, sensorMetadata, sensorReport,
  errorDeclaration, ilmd); any other unknown key is refused.

The normalised event hashes (:func:`services.trace.eventhash.event_hash`) like the
submitted one whenever the submission used the JSON-LD bare words; the chain hashes the
normalised event, so anyone can recompute the hash from stored data.

Errors are :class:`EpcisError` ``(code, message, path)`` with stable codes:
``bad_document``, ``bad_field``, ``unknown_field``, ``missing_field``, ``unknown_type``,
``bad_action``, ``field_not_allowed``, ``unknown_bizstep``, ``unknown_disposition``,
``unknown_biztransaction_type``, ``unknown_source_destination_type``,
``unknown_error_reason``, ``unknown_sensor_type``, ``bad_identifier``, ``bad_uri``,
``bad_time``, ``bad_quantity``, ``bad_sensor``, ``float_not_allowed``, ``too_large``.

This module is pure: no I/O, no clock, no randomness, no floats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from services.trace import eventhash as _eh
from services.trace.identifiers import (
    Giai,
    Grai,
    GtinClass,
    Identifier,
    IdentifierError,
    Lgtin,
    Pgln,
    Sgln,
    Sgtin,
    Sscc,
    parse_identifier,
)

# --------------------------------------------------------------------------- #
# CBV 2.0 vocabularies
# --------------------------------------------------------------------------- #

EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent",
               "AssociationEvent")
ACTIONS = ("ADD", "OBSERVE", "DELETE")
#: CBV 2.0 business steps (section 7.1).
BIZ_STEPS = frozenset(_eh._BIZSTEPS)
#: CBV 2.0 dispositions (section 7.2).
DISPOSITIONS = frozenset(_eh._DISPOSITIONS)
#: CBV 2.0 business transaction types (section 7.3).
BIZ_TRANSACTION_TYPES = frozenset(_eh._BTTS)
#: CBV 2.0 source/destination types (section 7.4).
SOURCE_DESTINATION_TYPES = frozenset(_eh._SDTS)
#: CBV 2.0 error reasons (section 7.5).
ERROR_REASONS = frozenset(_eh._ERS)
#: Sensor measurement types (GS1 web vocabulary, EPCIS 2.0 context).
SENSOR_TYPES = frozenset(_eh._MEASUREMENTS)
SENSOR_EXCEPTIONS = frozenset(_eh._EXCEPTIONS)
SENSOR_COMPONENTS = frozenset(_eh._COMPONENTS)
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
    "bizStep": (BIZ_STEPS, ("urn:epcglobal:cbv:bizstep:", _eh.CBV + "BizStep-",
                            "cbv:BizStep-"), "unknown_bizstep"),
    "disposition": (DISPOSITIONS, ("urn:epcglobal:cbv:disp:", _eh.CBV + "Disp-",
                                   "cbv:Disp-"), "unknown_disposition"),
    "btt": (BIZ_TRANSACTION_TYPES, ("urn:epcglobal:cbv:btt:", _eh.CBV + "BTT-", "cbv:BTT-"),
            "unknown_biztransaction_type"),
    "sdt": (SOURCE_DESTINATION_TYPES, ("urn:epcglobal:cbv:sdt:", _eh.CBV + "SDT-",
                                       "cbv:SDT-"), "unknown_source_destination_type"),
    "er": (ERROR_REASONS, ("urn:epcglobal:cbv:er:", _eh.CBV + "ER-", "cbv:ER-"),
           "unknown_error_reason"),
    "sensorType": (SENSOR_TYPES, ("gs1:", "https://gs1.org/voc/", _eh.GS1_VOC),
                   "unknown_sensor_type"),
    "exception": (SENSOR_EXCEPTIONS, ("gs1:", "https://gs1.org/voc/", _eh.GS1_VOC),
                  "bad_sensor"),
    "component": (SENSOR_COMPONENTS, ("cbv:Comp-", _eh.CBV + "Comp-"), "bad_sensor"),
}
_CBV_NAMESPACES = ("urn:epcglobal:cbv:", "https://ref.gs1.org/cbv/", "cbv:", "gs1:",
                   "https://gs1.org/voc/", "https://ref.gs1.org/voc/")

STRING_MAX = 2048
LIST_MAX = 10_000
EXTENSION_DEPTH_MAX = 16
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+", re.ASCII)
_OFFSET = re.compile(r"[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]", re.ASCII)
_EXTENSION_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*:[A-Za-z_][A-Za-z0-9_.-]*", re.ASCII)
_UOM = re.compile(r"[A-Z0-9]{2,3}", re.ASCII)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*", re.ASCII)
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
        return _eh.time_to_utc_millis(text)
    except _eh.EventHashError as exc:
        raise _fail("bad_time", exc.message, path) from None


def format_time(millis: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` of milliseconds since the epoch."""
    return _eh.format_utc_millis(millis)


def _time(value: Any, path: str) -> str:
    millis = parse_time(value, path)
    try:
        return format_time(millis)
    except _eh.EventHashError as exc:
        raise _fail("bad_time", exc.message, path) from None


def _string(value: Any, path: str, *, max_len: int = STRING_MAX) -> str:
    if isinstance(value, float):
        raise _fail("float_not_allowed", "floats are not allowed", path)
    if not isinstance(value, str):
        raise _fail("bad_field", "must be a string", path)
    if not value or len(value) > max_len:
        raise _fail("bad_field" if not value else "too_large",
                    f"must be 1..{max_len} characters", path)
    return value


def _uri(value: Any, path: str) -> str:
    text = _string(value, path)
    if not _ABSOLUTE_URI.fullmatch(text):
        raise _fail("bad_uri", f"{text[:80]!r} is not an absolute URI", path)
    return text


def _list(value: Any, path: str, *, allow_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise _fail("bad_field", "must be a list", path)
    if not value and not allow_empty:
        raise _fail("bad_field", "must not be empty", path)
    if len(value) > LIST_MAX:
        raise _fail("too_large", f"at most {LIST_MAX} items", path)
    return value


def _object(value: Any, path: str) -> Mapping[str, Any]:
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
    return _eh.canonical_number(value)


#: JSON numbers with a fraction or exponent are read as decimal text, bounded so that
#: an exponent cannot expand into megabytes of digits
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


def _no_constant(text: str) -> Any:
    raise _fail("bad_number", f"{text} is not a number EPCIS accepts", "")


def parse_json(text: str | bytes) -> Any:
    """JSON as EPCIS 2.0 clients send it — sensor values and quantities are JSON numbers
    (``"value": 26.1``) — read without floats: a number with a fraction or exponent
    becomes its exact decimal text, which the validators accept wherever a decimal is
    (and the CBV 2.0 hash canonicalises like the number). NaN and Infinity are refused.
    Raises :class:`EpcisError` (``bad_number``) or ``ValueError`` (not JSON)."""
    return json.loads(text, parse_float=_json_decimal, parse_constant=_no_constant)


def _number(value: int | str) -> Decimal:
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
    text = _string(value, path)
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

_INSTANCE = (Sgtin, Sscc, Sgln, Grai, Giai)
_CLASS = (Lgtin, GtinClass)


def _identifier(value: Any, path: str, kinds: tuple[type, ...]) -> str:
    text = _string(value, path)
    try:
        parsed: Identifier = parse_identifier(text)
    except IdentifierError as exc:
        raise _fail("bad_identifier", f"{exc.code}: {exc.message}", path) from None
    if not isinstance(parsed, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise _fail("bad_identifier", f"expected {names}, got {type(parsed).__name__}", path)
    return text


def _location(value: Any, path: str, opts: _Options) -> Mapping[str, Any]:
    obj = _object(value, path)
    out: dict[str, Any] = {}
    for key, item in obj.items():
        sub = f"{path}.{key}"
        if key == "id":
            text = _string(item, sub)
            if text.startswith(("urn:epc:", "https://", "http://")) or \
                    not opts.allow_private_identifiers:
                out["id"] = _identifier(text, sub, (Sgln,))
            else:
                out["id"] = _uri(text, sub)
        else:
            _extension(key, item, sub, out)
    if "id" not in out:
        raise _fail("missing_field", "id is required", path)
    return out


# --------------------------------------------------------------------------- #
# Extensions
# --------------------------------------------------------------------------- #

def _extension_value(value: Any, path: str, depth: int) -> Any:
    if depth > EXTENSION_DEPTH_MAX:
        raise _fail("too_large", "extension nested too deeply", path)
    if isinstance(value, float):
        raise _fail("float_not_allowed", "floats are not allowed", path)
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and len(value) > STRING_MAX:
            raise _fail("too_large", f"strings are at most {STRING_MAX} characters", path)
        return value
    if isinstance(value, int):
        return decimal_string(value, path)
    if isinstance(value, list):
        return [_extension_value(v, f"{path}[{i}]", depth + 1)
                for i, v in enumerate(_list(value, path, allow_empty=True))]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not _EXTENSION_KEY.fullmatch(key):
                raise _fail("unknown_field", f"extension keys are prefix:name, not {key!r}",
                            f"{path}.{key}")
            out[key] = _extension_value(item, f"{path}.{key}", depth + 1)
        return out
    raise _fail("bad_field", "not a JSON value", path)


def _extension(key: Any, value: Any, path: str, out: dict[str, Any]) -> None:
    if not isinstance(key, str) or not _EXTENSION_KEY.fullmatch(key):
        raise _fail("unknown_field", f"unknown field {str(key)[:80]!r}", path)
    out[key] = _extension_value(value, path, 0)


# --------------------------------------------------------------------------- #
# Structured fields
# --------------------------------------------------------------------------- #

@dataclass(frozen=True, slots=True)
class _Options:
    allow_private_vocabulary: bool
    allow_private_identifiers: bool


def _epc_list(value: Any, path: str, *, allow_empty: bool = True) -> list[str]:
    return [_identifier(v, f"{path}[{i}]", _INSTANCE)
            for i, v in enumerate(_list(value, path, allow_empty=allow_empty))]


def _quantity_list(value: Any, path: str) -> list[dict[str, Any]]:
    out = []
    for i, element in enumerate(_list(value, path, allow_empty=True)):
        sub = f"{path}[{i}]"
        obj = _object(element, sub)
        item: dict[str, Any] = {}
        for key, v in obj.items():
            if key == "epcClass":
                item[key] = _identifier(v, f"{sub}.epcClass", _CLASS)
            elif key == "quantity":
                q = decimal_string(v, f"{sub}.quantity", code="bad_quantity")
                if _number(q) < 0:
                    raise _fail("bad_quantity", "quantity must not be negative",
                                f"{sub}.quantity")
                item[key] = q
            elif key == "uom":
                item[key] = _uom(v, f"{sub}.uom")
            else:
                raise _fail("unknown_field", f"unknown field {str(key)[:80]!r}", f"{sub}.{key}")
        if "epcClass" not in item:
            raise _fail("missing_field", "epcClass is required", sub)
        if "uom" in item and "quantity" not in item:
            raise _fail("bad_quantity", "uom requires a quantity", sub)
        out.append(item)
    return out


def _uom(value: Any, path: str) -> str:
    text = _string(value, path)
    if not _UOM.fullmatch(text):
        raise _fail("bad_field", "uom is a UN/CEFACT Rec 20 code", path)
    return text


def _pair_list(value: Any, path: str, value_key: str, kind: str, opts: _Options,
               kinds: Callable[[str], tuple[type, ...] | None]) -> list[dict[str, str]]:
    out = []
    for i, element in enumerate(_list(value, path)):
        sub = f"{path}[{i}]"
        obj = _object(element, sub)
        extra = set(obj) - {"type", value_key}
        if extra:
            raise _fail("unknown_field", f"unknown field {min(map(str, extra))[:80]!r}", sub)
        if value_key not in obj:
            raise _fail("missing_field", f"{value_key} is required", sub)
        item: dict[str, str] = {}
        type_word = None
        if "type" in obj:
            type_word = normalize_vocabulary(
                obj["type"], kind, allow_private_vocabulary=opts.allow_private_vocabulary,
                path=f"{sub}.type")
            item["type"] = type_word
        elif kind == "sdt":
            raise _fail("missing_field", "type is required", sub)
        allowed = kinds(type_word) if type_word is not None else None
        if allowed is None:
            item[value_key] = _uri(obj[value_key], f"{sub}.{value_key}")
        else:
            item[value_key] = _identifier(obj[value_key], f"{sub}.{value_key}", allowed)
        out.append(item)
    return out


def _party_kinds(word: str) -> tuple[type, ...] | None:
    if word == "location":
        return (Sgln,)
    if word in ("owning_party", "possessing_party"):
        return (Pgln, Sgln)
    return None  # private source/destination type: any URI


def _any_uri(_: str) -> None:
    return None


def _persistent_disposition(value: Any, path: str, opts: _Options) -> dict[str, list[str]]:
    obj = _object(value, path)
    out: dict[str, list[str]] = {}
    for key, items in obj.items():
        if key not in ("set", "unset"):
            raise _fail("unknown_field", f"unknown field {str(key)[:80]!r}", f"{path}.{key}")
        out[key] = [normalize_vocabulary(v, "disposition",
                                         allow_private_vocabulary=opts.allow_private_vocabulary,
                                         path=f"{path}.{key}[{i}]")
                    for i, v in enumerate(_list(items, f"{path}.{key}"))]
    if not out:
        raise _fail("missing_field", "set or unset is required", path)
    return out


_SENSOR_URIS = ("deviceID", "deviceMetadata", "rawData", "dataProcessingMethod")
_SENSOR_NUMBERS = ("value", "minValue", "maxValue", "meanValue", "sDev", "percRank",
                   "percValue")


def _sensor_metadata(value: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in _object(value, path).items():
        sub = f"{path}.{key}"
        if key in ("time", "startTime", "endTime"):
            out[key] = _time(item, sub)
        elif key in (*_SENSOR_URIS, "bizRules"):
            out[key] = _uri(item, sub)
        else:
            _extension(key, item, sub, out)
    if "startTime" in out and "endTime" in out and \
            parse_time(out["startTime"]) > parse_time(out["endTime"]):
        raise _fail("bad_sensor", "startTime is after endTime", path)
    return out


def _sensor_report(value: Any, path: str, opts: _Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    private = opts.allow_private_vocabulary
    for key, item in _object(value, path).items():
        sub = f"{path}.{key}"
        if key == "type":
            out[key] = normalize_vocabulary(item, "sensorType", allow_private_vocabulary=private,
                                            path=sub)
        elif key == "exception":
            out[key] = normalize_vocabulary(item, "exception", allow_private_vocabulary=False,
                                            path=sub)
        elif key == "component":
            out[key] = normalize_vocabulary(item, "component", allow_private_vocabulary=private,
                                            path=sub)
        elif key in _SENSOR_NUMBERS:
            out[key] = decimal_string(item, sub, code="bad_sensor")
        elif key == "time":
            out[key] = _time(item, sub)
        elif key in (*_SENSOR_URIS, "uriValue", "microorganism", "chemicalSubstance",
                     "coordinateReferenceSystem"):
            out[key] = _uri(item, sub)
        elif key == "uom":
            out[key] = _uom(item, sub)
        elif key == "stringValue":
            out[key] = _string(item, sub)
        elif key == "booleanValue":
            if not isinstance(item, bool):
                raise _fail("bad_sensor", "booleanValue must be true or false", sub)
            out[key] = item
        elif key == "hexBinaryValue":
            text = _string(item, sub)
            if not _HEX.fullmatch(text):
                raise _fail("bad_sensor", "hexBinaryValue must be hex octets", sub)
            out[key] = text
        else:
            _extension(key, item, sub, out)
    if "type" not in out and "exception" not in out:
        raise _fail("bad_sensor", "a sensor report needs a type (or an exception)", path)
    if "minValue" in out and "maxValue" in out and \
            _number(out["minValue"]) > _number(out["maxValue"]):
        raise _fail("bad_sensor", "minValue is greater than maxValue", path)
    if "percRank" in out and not 0 <= _number(out["percRank"]) <= 100:
        raise _fail("bad_sensor", "percRank must be within 0..100", f"{path}.percRank")
    if "sDev" in out and _number(out["sDev"]) < 0:
        raise _fail("bad_sensor", "sDev must not be negative", f"{path}.sDev")
    return out


def _sensor_element_list(value: Any, path: str, opts: _Options) -> list[dict[str, Any]]:
    out = []
    for i, element in enumerate(_list(value, path)):
        sub = f"{path}[{i}]"
        item: dict[str, Any] = {}
        for key, v in _object(element, sub).items():
            if key == "sensorMetadata":
                item[key] = _sensor_metadata(v, f"{sub}.sensorMetadata")
            elif key == "sensorReport":
                item[key] = [_sensor_report(r, f"{sub}.sensorReport[{j}]", opts)
                             for j, r in enumerate(_list(v, f"{sub}.sensorReport"))]
            else:
                _extension(key, v, f"{sub}.{key}", item)
        if "sensorReport" not in item:
            raise _fail("bad_sensor", "sensorReport is required", sub)
        out.append(item)
    return out


def _error_declaration(value: Any, path: str, opts: _Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in _object(value, path).items():
        sub = f"{path}.{key}"
        if key == "declarationTime":
            out[key] = _time(item, sub)
        elif key == "reason":
            out[key] = normalize_vocabulary(item, "er",
                                            allow_private_vocabulary=opts.allow_private_vocabulary,
                                            path=sub)
        elif key == "correctiveEventIDs":
            out[key] = [_uri(v, f"{sub}[{i}]") for i, v in enumerate(_list(item, sub))]
        else:
            _extension(key, item, sub, out)
    if "declarationTime" not in out:
        raise _fail("missing_field", "declarationTime is required", path)
    return out


def _ilmd(value: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in _object(value, path).items():
        _extension(key, item, f"{path}.{key}", out)
    return out


# --------------------------------------------------------------------------- #
# Events
# --------------------------------------------------------------------------- #

_COMMON = frozenset({"type", "eventTime", "eventTimeZoneOffset", "recordTime", "eventID",
                     "certificationInfo", "errorDeclaration", "bizStep", "disposition",
                     "persistentDisposition", "readPoint", "bizLocation", "bizTransactionList",
                     "sourceList", "destinationList", "sensorElementList"})
_FIELDS = {
    "ObjectEvent": _COMMON | {"action", "epcList", "quantityList", "ilmd"},
    "AggregationEvent": _COMMON | {"action", "parentID", "childEPCs", "childQuantityList"},
    "TransactionEvent": _COMMON | {"action", "parentID", "epcList", "quantityList"},
    "TransformationEvent": _COMMON | {"inputEPCList", "inputQuantityList", "outputEPCList",
                                      "outputQuantityList", "transformationID", "ilmd"},
    "AssociationEvent": _COMMON | {"action", "parentID", "childEPCs", "childQuantityList"},
}


def _field_value(key: str, value: Any, path: str, opts: _Options) -> Any:
    private = opts.allow_private_vocabulary
    if key in ("eventTime", "recordTime"):
        return _time(value, path)
    if key == "eventTimeZoneOffset":
        if not isinstance(value, str) or not _OFFSET.fullmatch(value):
            raise _fail("bad_time", "eventTimeZoneOffset must be ±HH:MM", path)
        return value
    if key == "eventID":
        return _uri(value, path)
    if key == "certificationInfo":
        if isinstance(value, list):
            return [_uri(v, f"{path}[{i}]") for i, v in enumerate(_list(value, path))]
        return _uri(value, path)
    if key == "action":
        if value not in ACTIONS:
            raise _fail("bad_action", "action must be ADD, OBSERVE or DELETE", path)
        return value
    if key in ("epcList", "childEPCs", "inputEPCList", "outputEPCList"):
        return _epc_list(value, path)
    if key in ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"):
        return _quantity_list(value, path)
    if key == "parentID":
        return _identifier(value, path, _INSTANCE)
    if key == "transformationID":
        return _uri(value, path)
    if key == "bizStep":
        return normalize_vocabulary(value, "bizStep", allow_private_vocabulary=private, path=path)
    if key == "disposition":
        return normalize_vocabulary(value, "disposition", allow_private_vocabulary=private,
                                    path=path)
    if key == "persistentDisposition":
        return _persistent_disposition(value, path, opts)
    if key in ("readPoint", "bizLocation"):
        return _location(value, path, opts)
    if key == "bizTransactionList":
        return _pair_list(value, path, "bizTransaction", "btt", opts, _any_uri)
    if key == "sourceList":
        return _pair_list(value, path, "source", "sdt", opts, _party_kinds)
    if key == "destinationList":
        return _pair_list(value, path, "destination", "sdt", opts, _party_kinds)
    if key == "sensorElementList":
        return _sensor_element_list(value, path, opts)
    if key == "errorDeclaration":
        return _error_declaration(value, path, opts)
    if key == "ilmd":
        return _ilmd(value, path)
    raise AssertionError(key)  # pragma: no cover - keys come from _FIELDS


def _type_rules(event: Mapping[str, Any], kind: str, path: str) -> None:
    def has(key: str) -> bool:
        value = event.get(key)
        return bool(value) if isinstance(value, list) else value is not None

    def missing(what: str) -> EpcisError:
        return _fail("missing_field", f"{kind} needs {what}", path)

    action = event.get("action")
    if kind != "TransformationEvent" and action is None:
        raise _fail("missing_field", f"{kind} needs an action", path)
    if kind == "ObjectEvent":
        if not (has("epcList") or has("quantityList")
                or (has("sensorElementList") and has("readPoint"))):
            raise missing("epcList or quantityList (or sensor data with a readPoint)")
        if "ilmd" in event and action != "ADD":
            raise _fail("field_not_allowed", "ilmd is only allowed with action ADD",
                        f"{path}.ilmd")
    elif kind == "AggregationEvent":
        if action in ("ADD", "DELETE") and not has("parentID"):
            raise missing("a parentID with action ADD or DELETE")
        if action == "ADD" and not (has("childEPCs") or has("childQuantityList")):
            raise missing("childEPCs or childQuantityList with action ADD")
    elif kind == "AssociationEvent":
        if not has("parentID"):
            raise missing("a parentID")
        if action == "ADD" and not (has("childEPCs") or has("childQuantityList")):
            raise missing("childEPCs or childQuantityList with action ADD")
    elif kind == "TransactionEvent":
        if not has("bizTransactionList"):
            raise missing("a bizTransactionList")
        if not (has("epcList") or has("quantityList") or has("parentID")):
            raise missing("epcList, quantityList or parentID")
    else:  # TransformationEvent
        inputs = has("inputEPCList") or has("inputQuantityList")
        outputs = has("outputEPCList") or has("outputQuantityList")
        if not ((inputs and outputs) or has("transformationID")):
            raise missing("inputs and outputs, or a transformationID")


def validate_event(event: Any, *, allow_private_vocabulary: bool = True,
                   allow_private_identifiers: bool = False, path: str = "") -> dict[str, Any]:
    """Validate one EPCIS 2.0 event (JSON-LD form) and return its normalised form.

    ``allow_private_vocabulary``: accept absolute URIs outside CBV as bizStep, disposition,
    transaction/source/destination types and sensor types (never bare unknown words).
    ``allow_private_identifiers``: accept non-GS1 URIs (e.g. ``geo:``) as readPoint and
    bizLocation ids. Raises :class:`EpcisError`; never any other exception.
    """
    opts = _Options(allow_private_vocabulary, allow_private_identifiers)
    obj = _object(event, path)
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        if "type" not in obj:
            raise _fail("missing_field", "type is required", path)
        raise _fail("unknown_type", f"unknown event type {str(kind)[:80]!r}", f"{path}.type")
    if kind == "TransformationEvent" and "action" in obj:
        raise _fail("bad_action", "a TransformationEvent has no action", f"{path}.action")
    for required in ("eventTime", "eventTimeZoneOffset"):
        if required not in obj:
            raise _fail("missing_field", f"{required} is required", path)
    allowed = _FIELDS[kind]
    out: dict[str, Any] = {}
    for key, value in obj.items():
        sub = f"{path}.{key}" if path else str(key)
        if key == "type":
            out[key] = kind
        elif isinstance(key, str) and key in allowed:
            out[key] = _field_value(key, value, sub, opts)
        elif isinstance(key, str) and key in _FIELDS["ObjectEvent"] | _FIELDS[
                "TransformationEvent"] | _FIELDS["AggregationEvent"]:
            raise _fail("field_not_allowed", f"{kind} has no {key}", sub)
        else:
            _extension(key, value, sub, out)
    _type_rules(out, kind, path)
    return out


def validate_document(document: Any, **options: bool) -> list[dict[str, Any]]:
    """Validate an ``EPCISDocument`` and return its normalised events, in order.

    Checks ``@context`` (must name an EPCIS 2.0 JSON-LD context), ``type``,
    ``schemaVersion`` ``"2.0"``, ``creationDate`` and ``epcisBody.eventList``; each event
    goes through :func:`validate_event` with ``options``.
    """
    doc = _object(document, "")
    context = doc.get("@context")
    entries = context if isinstance(context, list) else [context]
    if not any(isinstance(e, str) and e in _eh.KNOWN_EPCIS_CONTEXTS for e in entries):
        raise _fail("bad_document", "@context must name the EPCIS 2.0 JSON-LD context",
                    "@context")
    if doc.get("type") != "EPCISDocument":
        raise _fail("bad_document", "type must be EPCISDocument", "type")
    if doc.get("schemaVersion") != "2.0":
        raise _fail("bad_document", "schemaVersion must be \"2.0\"", "schemaVersion")
    if "creationDate" not in doc:
        raise _fail("missing_field", "creationDate is required", "")
    parse_time(doc["creationDate"], "creationDate")
    body = doc.get("epcisBody")
    if not isinstance(body, Mapping) or not isinstance(body.get("eventList"), list):
        raise _fail("bad_document", "epcisBody.eventList is required", "epcisBody")
    events = _list(body["eventList"], "epcisBody.eventList", allow_empty=True)
    return [validate_event(e, path=f"epcisBody.eventList[{i}]", **options)
            for i, e in enumerate(events)]


# --------------------------------------------------------------------------- #
# Helpers for the contract
# --------------------------------------------------------------------------- #

def _canonical(identifier: str) -> str:
    try:
        return parse_identifier(identifier).to_digital_link()
    except IdentifierError:
        return identifier


def epcs_of(event: Mapping[str, Any]) -> set[str]:
    """Every GS1 identifier a (validated) event mentions, as canonical Digital Links.

    epcList, childEPCs, parentID, inputEPCList, outputEPCList and the epcClass of every
    quantity list (URN and Digital Link inputs map to the same ``https://id.gs1.org/…``).
    """
    found: set[str] = set()
    for key in ("epcList", "childEPCs", "inputEPCList", "outputEPCList"):
        found.update(_canonical(e) for e in event.get(key) or ())
    if isinstance(event.get("parentID"), str):
        found.add(_canonical(event["parentID"]))
    for key in ("quantityList", "childQuantityList", "inputQuantityList",
                "outputQuantityList"):
        found.update(_canonical(q["epcClass"]) for q in event.get(key) or ())
    return found


def biz_location(event: Mapping[str, Any]) -> str | None:
    """The bizLocation id of a (validated) event, or None."""
    location = event.get("bizLocation")
    return location.get("id") if isinstance(location, Mapping) else None


def read_point(event: Mapping[str, Any]) -> str | None:
    """The readPoint id of a (validated) event, or None."""
    location = event.get("readPoint")
    return location.get("id") if isinstance(location, Mapping) else None


def sensor_readings(event: Mapping[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
    """``(type, value, uom, time)`` of every sensor report with a value, in event order.

    ``value`` is a canonical decimal string (integers too); ``time`` is the report's time,
    else its sensorMetadata time, else None.
    """
    readings: list[tuple[str, str, str | None, str | None]] = []
    for element in event.get("sensorElementList") or ():
        meta_time = (element.get("sensorMetadata") or {}).get("time")
        for report in element.get("sensorReport") or ():
            if "value" in report:
                readings.append((report.get("type", ""), str(report["value"]),
                                 report.get("uom"), report.get("time", meta_time)))
    return readings


__all__ = [
    "ACTIONS",
    "BIZ_STEPS",
    "BIZ_TRANSACTION_TYPES",
    "DISPOSITIONS",
    "ERROR_REASONS",
    "EVENT_TYPES",
    "parse_json",
    "SENSOR_COMPONENTS",
    "SENSOR_EXCEPTIONS",
    "SENSOR_TYPES",
    "SOURCE_DESTINATION_TYPES",
    "UNITS",
    "EpcisError",
    "biz_location",
    "decimal_string",
    "epcs_of",
    "format_time",
    "normalize_vocabulary",
    "parse_time",
    "read_point",
    "sensor_readings",
    "validate_document",
    "validate_event",
]
