"""The structured fields of an EPCIS 2.0 event, each checked and normalised: readPoint
and bizLocation, EPC and quantity lists, business transaction and source/destination
lists, persistent dispositions, sensor elements, error declarations, ilmd, and the
user extensions (``prefix:localName`` keys) the EPCIS extension points allow.

:func:`services.trace.epcis.validate_event` calls these for the fields of an event;
single values go through :mod:`services.trace.epcis_values`. Every function returns
the normalised field or raises :class:`~services.trace.epcis_values.EpcisError`.

This module is pure: it must never do I/O, read the clock, draw randomness or turn a
number into a float.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.trace.epcis_values import (
    CLASS_KINDS,
    INSTANCE_KINDS,
    STRING_MAX,
    EpcisError,
    as_decimal,
    as_identifier,
    as_list,
    as_object,
    as_string,
    as_time,
    as_uri,
    decimal_string,
    normalize_vocabulary,
    parse_time,
)
from services.trace.identifiers import Pgln, Sgln

__all__ = [
    "EXTENSION_DEPTH_MAX",
    "FieldOptions",
    "any_uri",
    "epc_list",
    "error_declaration",
    "extension",
    "ilmd",
    "location",
    "pair_list",
    "party_kinds",
    "persistent_disposition",
    "quantity_list",
    "sensor_element_list",
]

EXTENSION_DEPTH_MAX = 16
_EXTENSION_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*:[A-Za-z_][A-Za-z0-9_.-]*", re.ASCII)
_UOM = re.compile(r"[A-Z0-9]{2,3}", re.ASCII)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*", re.ASCII)


def _fail(code: str, message: str, path: str) -> EpcisError:
    return EpcisError(code, message, path)


@dataclass(frozen=True, slots=True)
class FieldOptions:
    """What :func:`services.trace.epcis.validate_event` was asked to allow beyond CBV
    words and GS1 identifiers (see its docstring)."""

    allow_private_vocabulary: bool
    allow_private_identifiers: bool


# --------------------------------------------------------------------------- #
# Locations (readPoint, bizLocation)
# --------------------------------------------------------------------------- #

def location(value: Any, path: str, opts: FieldOptions) -> Mapping[str, Any]:
    obj = as_object(value, path)
    out: dict[str, Any] = {}
    for key, item in obj.items():
        sub = f"{path}.{key}"
        if key == "id":
            text = as_string(item, sub)
            if text.startswith(("urn:epc:", "https://", "http://")) or \
                    not opts.allow_private_identifiers:
                out["id"] = as_identifier(text, sub, (Sgln,))
            else:
                out["id"] = as_uri(text, sub)
        else:
            extension(key, item, sub, out)
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
                for i, v in enumerate(as_list(value, path, allow_empty=True))]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not _EXTENSION_KEY.fullmatch(key):
                raise _fail("unknown_field", f"extension keys are prefix:name, not {key!r}",
                            f"{path}.{key}")
            out[key] = _extension_value(item, f"{path}.{key}", depth + 1)
        return out
    raise _fail("bad_field", "not a JSON value", path)


def extension(key: Any, value: Any, path: str, out: dict[str, Any]) -> None:
    if not isinstance(key, str) or not _EXTENSION_KEY.fullmatch(key):
        raise _fail("unknown_field", f"unknown field {str(key)[:80]!r}", path)
    out[key] = _extension_value(value, path, 0)


# --------------------------------------------------------------------------- #
# Structured fields
# --------------------------------------------------------------------------- #

def epc_list(value: Any, path: str, *, allow_empty: bool = True) -> list[str]:
    return [as_identifier(v, f"{path}[{i}]", INSTANCE_KINDS)
            for i, v in enumerate(as_list(value, path, allow_empty=allow_empty))]


def quantity_list(value: Any, path: str) -> list[dict[str, Any]]:
    out = []
    for i, element in enumerate(as_list(value, path, allow_empty=True)):
        sub = f"{path}[{i}]"
        obj = as_object(element, sub)
        item: dict[str, Any] = {}
        for key, v in obj.items():
            if key == "epcClass":
                item[key] = as_identifier(v, f"{sub}.epcClass", CLASS_KINDS)
            elif key == "quantity":
                q = decimal_string(v, f"{sub}.quantity", code="bad_quantity")
                if as_decimal(q) < 0:
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
    text = as_string(value, path)
    if not _UOM.fullmatch(text):
        raise _fail("bad_field", "uom is a UN/CEFACT Rec 20 code", path)
    return text


def pair_list(value: Any, path: str, value_key: str, kind: str, opts: FieldOptions,
               kinds: Callable[[str], tuple[type, ...] | None]) -> list[dict[str, str]]:
    out = []
    for i, element in enumerate(as_list(value, path)):
        sub = f"{path}[{i}]"
        obj = as_object(element, sub)
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
            item[value_key] = as_uri(obj[value_key], f"{sub}.{value_key}")
        else:
            item[value_key] = as_identifier(obj[value_key], f"{sub}.{value_key}", allowed)
        out.append(item)
    return out


def party_kinds(word: str) -> tuple[type, ...] | None:
    if word == "location":
        return (Sgln,)
    if word in ("owning_party", "possessing_party"):
        return (Pgln, Sgln)
    return None  # private source/destination type: any URI


def any_uri(_: str) -> None:
    return None


def persistent_disposition(value: Any, path: str, opts: FieldOptions) -> dict[str, list[str]]:
    obj = as_object(value, path)
    out: dict[str, list[str]] = {}
    for key, items in obj.items():
        if key not in ("set", "unset"):
            raise _fail("unknown_field", f"unknown field {str(key)[:80]!r}", f"{path}.{key}")
        out[key] = [normalize_vocabulary(v, "disposition",
                                         allow_private_vocabulary=opts.allow_private_vocabulary,
                                         path=f"{path}.{key}[{i}]")
                    for i, v in enumerate(as_list(items, f"{path}.{key}"))]
    if not out:
        raise _fail("missing_field", "set or unset is required", path)
    return out


_SENSOR_URIS = ("deviceID", "deviceMetadata", "rawData", "dataProcessingMethod")
_SENSOR_NUMBERS = ("value", "minValue", "maxValue", "meanValue", "sDev", "percRank",
                   "percValue")


def _sensor_metadata(value: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in as_object(value, path).items():
        sub = f"{path}.{key}"
        if key in ("time", "startTime", "endTime"):
            out[key] = as_time(item, sub)
        elif key in (*_SENSOR_URIS, "bizRules"):
            out[key] = as_uri(item, sub)
        else:
            extension(key, item, sub, out)
    if "startTime" in out and "endTime" in out and \
            parse_time(out["startTime"]) > parse_time(out["endTime"]):
        raise _fail("bad_sensor", "startTime is after endTime", path)
    return out


def _sensor_report(value: Any, path: str, opts: FieldOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    private = opts.allow_private_vocabulary
    for key, item in as_object(value, path).items():
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
            out[key] = as_time(item, sub)
        elif key in (*_SENSOR_URIS, "uriValue", "microorganism", "chemicalSubstance",
                     "coordinateReferenceSystem"):
            out[key] = as_uri(item, sub)
        elif key == "uom":
            out[key] = _uom(item, sub)
        elif key == "stringValue":
            out[key] = as_string(item, sub)
        elif key == "booleanValue":
            if not isinstance(item, bool):
                raise _fail("bad_sensor", "booleanValue must be true or false", sub)
            out[key] = item
        elif key == "hexBinaryValue":
            text = as_string(item, sub)
            if not _HEX.fullmatch(text):
                raise _fail("bad_sensor", "hexBinaryValue must be hex octets", sub)
            out[key] = text
        else:
            extension(key, item, sub, out)
    if "type" not in out and "exception" not in out:
        raise _fail("bad_sensor", "a sensor report needs a type (or an exception)", path)
    if "minValue" in out and "maxValue" in out and \
            as_decimal(out["minValue"]) > as_decimal(out["maxValue"]):
        raise _fail("bad_sensor", "minValue is greater than maxValue", path)
    if "percRank" in out and not 0 <= as_decimal(out["percRank"]) <= 100:
        raise _fail("bad_sensor", "percRank must be within 0..100", f"{path}.percRank")
    if "sDev" in out and as_decimal(out["sDev"]) < 0:
        raise _fail("bad_sensor", "sDev must not be negative", f"{path}.sDev")
    return out


def sensor_element_list(value: Any, path: str, opts: FieldOptions) -> list[dict[str, Any]]:
    out = []
    for i, element in enumerate(as_list(value, path)):
        sub = f"{path}[{i}]"
        item: dict[str, Any] = {}
        for key, v in as_object(element, sub).items():
            if key == "sensorMetadata":
                item[key] = _sensor_metadata(v, f"{sub}.sensorMetadata")
            elif key == "sensorReport":
                item[key] = [_sensor_report(r, f"{sub}.sensorReport[{j}]", opts)
                             for j, r in enumerate(as_list(v, f"{sub}.sensorReport"))]
            else:
                extension(key, v, f"{sub}.{key}", item)
        if "sensorReport" not in item:
            raise _fail("bad_sensor", "sensorReport is required", sub)
        out.append(item)
    return out


def error_declaration(value: Any, path: str, opts: FieldOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in as_object(value, path).items():
        sub = f"{path}.{key}"
        if key == "declarationTime":
            out[key] = as_time(item, sub)
        elif key == "reason":
            out[key] = normalize_vocabulary(item, "er",
                                            allow_private_vocabulary=opts.allow_private_vocabulary,
                                            path=sub)
        elif key == "correctiveEventIDs":
            out[key] = [as_uri(v, f"{sub}[{i}]") for i, v in enumerate(as_list(item, sub))]
        else:
            extension(key, item, sub, out)
    if "declarationTime" not in out:
        raise _fail("missing_field", "declarationTime is required", path)
    return out


def ilmd(value: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in as_object(value, path).items():
        extension(key, item, f"{path}.{key}", out)
    return out
