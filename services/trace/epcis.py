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

Errors are :class:`~services.trace.epcis_values.EpcisError` ``(code, message, path)``
with stable codes:
``bad_document``, ``bad_field``, ``unknown_field``, ``missing_field``, ``unknown_type``,
``bad_action``, ``field_not_allowed``, ``unknown_bizstep``, ``unknown_disposition``,
``unknown_biztransaction_type``, ``unknown_source_destination_type``,
``unknown_error_reason``, ``unknown_sensor_type``, ``bad_identifier``, ``bad_uri``,
``bad_time``, ``bad_quantity``, ``bad_sensor``, ``float_not_allowed``, ``too_large``.

Single values are checked by :mod:`services.trace.epcis_values` (which also defines
:class:`~services.trace.epcis_values.EpcisError`), structured fields by
:mod:`services.trace.epcis_fields`; this module validates whole events and documents
and reads the facts the contract needs from a validated event.

This module is pure: it must never do I/O, read the clock, draw randomness or turn a
number into a float.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.trace import epcis_fields as fields
from services.trace.epcis_values import (
    INSTANCE_KINDS,
    EpcisError,
    as_identifier,
    as_list,
    as_object,
    as_time,
    as_uri,
    normalize_vocabulary,
    parse_time,
)
from services.trace.eventhash import KNOWN_EPCIS_CONTEXTS
from services.trace.identifiers import IdentifierError, parse_identifier

__all__ = [
    "ACTIONS",
    "EVENT_FIELDS",
    "EVENT_TYPES",
    "biz_location",
    "epcs_of",
    "read_point",
    "sensor_readings",
    "validate_document",
    "validate_event",
]

# --------------------------------------------------------------------------- #
# Events
# --------------------------------------------------------------------------- #

EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent",
               "AssociationEvent")
ACTIONS = ("ADD", "OBSERVE", "DELETE")
_OFFSET = re.compile(r"[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]", re.ASCII)


def _fail(code: str, message: str, path: str) -> EpcisError:
    return EpcisError(code, message, path)


_COMMON = frozenset({"type", "eventTime", "eventTimeZoneOffset", "recordTime", "eventID",
                     "certificationInfo", "errorDeclaration", "bizStep", "disposition",
                     "persistentDisposition", "readPoint", "bizLocation", "bizTransactionList",
                     "sourceList", "destinationList", "sensorElementList"})
#: the fields of each event type (any other key must be a user extension)
EVENT_FIELDS = {
    "ObjectEvent": _COMMON | {"action", "epcList", "quantityList", "ilmd"},
    "AggregationEvent": _COMMON | {"action", "parentID", "childEPCs", "childQuantityList"},
    "TransactionEvent": _COMMON | {"action", "parentID", "epcList", "quantityList"},
    "TransformationEvent": _COMMON | {"inputEPCList", "inputQuantityList", "outputEPCList",
                                      "outputQuantityList", "transformationID", "ilmd"},
    "AssociationEvent": _COMMON | {"action", "parentID", "childEPCs", "childQuantityList"},
}


def _field_value(key: str, value: Any, path: str, opts: fields.FieldOptions) -> Any:
    private = opts.allow_private_vocabulary
    if key in ("eventTime", "recordTime"):
        return as_time(value, path)
    if key == "eventTimeZoneOffset":
        if not isinstance(value, str) or not _OFFSET.fullmatch(value):
            raise _fail("bad_time", "eventTimeZoneOffset must be ±HH:MM", path)
        return value
    if key == "eventID":
        return as_uri(value, path)
    if key == "certificationInfo":
        if isinstance(value, list):
            return [as_uri(v, f"{path}[{i}]") for i, v in enumerate(as_list(value, path))]
        return as_uri(value, path)
    if key == "action":
        if value not in ACTIONS:
            raise _fail("bad_action", "action must be ADD, OBSERVE or DELETE", path)
        return value
    if key in ("epcList", "childEPCs", "inputEPCList", "outputEPCList"):
        return fields.epc_list(value, path)
    if key in ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"):
        return fields.quantity_list(value, path)
    if key == "parentID":
        return as_identifier(value, path, INSTANCE_KINDS)
    if key == "transformationID":
        return as_uri(value, path)
    if key == "bizStep":
        return normalize_vocabulary(value, "bizStep", allow_private_vocabulary=private, path=path)
    if key == "disposition":
        return normalize_vocabulary(value, "disposition", allow_private_vocabulary=private,
                                    path=path)
    if key == "persistentDisposition":
        return fields.persistent_disposition(value, path, opts)
    if key in ("readPoint", "bizLocation"):
        return fields.location(value, path, opts)
    if key == "bizTransactionList":
        return fields.pair_list(value, path, "bizTransaction", "btt", opts, fields.any_uri)
    if key == "sourceList":
        return fields.pair_list(value, path, "source", "sdt", opts, fields.party_kinds)
    if key == "destinationList":
        return fields.pair_list(value, path, "destination", "sdt", opts, fields.party_kinds)
    if key == "sensorElementList":
        return fields.sensor_element_list(value, path, opts)
    if key == "errorDeclaration":
        return fields.error_declaration(value, path, opts)
    if key == "ilmd":
        return fields.ilmd(value, path)
    raise AssertionError(key)  # pragma: no cover - keys come from EVENT_FIELDS


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
    opts = fields.FieldOptions(allow_private_vocabulary, allow_private_identifiers)
    obj = as_object(event, path)
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in EVENT_FIELDS:
        if "type" not in obj:
            raise _fail("missing_field", "type is required", path)
        raise _fail("unknown_type", f"unknown event type {str(kind)[:80]!r}", f"{path}.type")
    if kind == "TransformationEvent" and "action" in obj:
        raise _fail("bad_action", "a TransformationEvent has no action", f"{path}.action")
    for required in ("eventTime", "eventTimeZoneOffset"):
        if required not in obj:
            raise _fail("missing_field", f"{required} is required", path)
    allowed = EVENT_FIELDS[kind]
    out: dict[str, Any] = {}
    for key, value in obj.items():
        sub = f"{path}.{key}" if path else str(key)
        if key == "type":
            out[key] = kind
        elif isinstance(key, str) and key in allowed:
            out[key] = _field_value(key, value, sub, opts)
        elif isinstance(key, str) and key in EVENT_FIELDS["ObjectEvent"] | EVENT_FIELDS[
                "TransformationEvent"] | EVENT_FIELDS["AggregationEvent"]:
            raise _fail("field_not_allowed", f"{kind} has no {key}", sub)
        else:
            fields.extension(key, value, sub, out)
    _type_rules(out, kind, path)
    return out


def validate_document(document: Any, **options: bool) -> list[dict[str, Any]]:
    """Validate an ``EPCISDocument`` and return its normalised events, in order.

    Checks ``@context`` (must name an EPCIS 2.0 JSON-LD context), ``type``,
    ``schemaVersion`` ``"2.0"``, ``creationDate`` and ``epcisBody.eventList``; each event
    goes through :func:`validate_event` with ``options``.
    """
    doc = as_object(document, "")
    context = doc.get("@context")
    entries = context if isinstance(context, list) else [context]
    if not any(isinstance(e, str) and e in KNOWN_EPCIS_CONTEXTS for e in entries):
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
    events = as_list(body["eventList"], "epcisBody.eventList", allow_empty=True)
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

