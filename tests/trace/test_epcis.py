"""EPCIS 2.0 event validation (services/trace/epcis.py, epcis_values.py and
epcis_fields.py): the five event types, CBV vocabularies, every error code."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.trace import epcis, epcis_values
from services.trace.epcis_values import EpcisError

SGTIN = "urn:epc:id:sgtin:0614141.107346.2018"
SGTIN_DL = "https://id.gs1.org/01/10614141073464/21/2018"
SSCC = "urn:epc:id:sscc:0614141.1234567890"
SGLN = "urn:epc:id:sgln:0614141.00777.0"
LGTIN = "urn:epc:class:lgtin:4012345.012345.998877"

BASE: dict[str, Any] = {"eventTime": "2024-03-01T09:00:00.000+01:00",
                        "eventTimeZoneOffset": "+01:00"}


def object_event(**fields: Any) -> dict[str, Any]:
    return {"type": "ObjectEvent", **BASE, "action": "OBSERVE", "epcList": [SGTIN], **fields}


SENSOR = {
    "sensorMetadata": {"time": "2024-03-01T09:00:00+01:00",
                       "deviceID": "urn:epc:id:giai:4000001.111",
                       "ex:calibrated": "2024-01-01"},
    "sensorReport": [
        {"type": "Temperature", "value": "4.50", "minValue": 2, "maxValue": "8.0", "uom": "CEL"},
        {"type": "gs1:RelativeHumidity", "value": 55, "uom": "P1",
         "time": "2024-03-01T08:30:00Z"},
        {"type": "https://gs1.org/voc/Temperature", "exception": "ALARM_CONDITION"},
    ],
}

VALID: dict[str, dict[str, Any]] = {
    "ObjectEvent": object_event(
        bizStep="urn:epcglobal:cbv:bizstep:shipping",
        disposition="https://ref.gs1.org/cbv/Disp-in_transit",
        readPoint={"id": SGLN}, bizLocation={"id": "https://id.gs1.org/414/0614141007776"},
        quantityList=[{"epcClass": LGTIN, "quantity": "12.50", "uom": "KGM"}],
        bizTransactionList=[{"type": "po",
                             "bizTransaction": "urn:epcglobal:cbv:bt:0614141000005:PO1"}],
        sourceList=[{"type": "owning_party", "source": "urn:epc:id:pgln:0614141.00777"}],
        destinationList=[{"type": "location", "destination": SGLN}],
        sensorElementList=[SENSOR],
        persistentDisposition={"set": ["completeness_verified"],
                               "unset": ["urn:epcglobal:cbv:disp:active"]},
        certificationInfo="https://cert.example.com/c/1", eventID="urn:uuid:8d1c7b8a-1",
        recordTime="2024-03-01T08:00:01.5Z",
        errorDeclaration={"declarationTime": "2024-03-02T00:00:00Z", "reason": "incorrect_data",
                          "correctiveEventIDs": ["urn:uuid:2"]},
        **{"ex:note": {"ex:a": [1, "x", True, None]}}),
    "AggregationEvent": {"type": "AggregationEvent", **BASE, "action": "ADD", "parentID": SSCC,
                         "childEPCs": [SGTIN], "childQuantityList": [{"epcClass": LGTIN}],
                         "bizStep": "packing"},
    "TransactionEvent": {"type": "TransactionEvent", **BASE, "action": "ADD", "epcList": [SGTIN],
                         "bizTransactionList": [{"type": "inv", "bizTransaction": "urn:x:inv:1"}]},
    "TransformationEvent": {"type": "TransformationEvent", **BASE, "inputEPCList": [SGTIN],
                            "outputQuantityList": [{"epcClass": LGTIN, "quantity": 3}],
                            "ilmd": {"cbvmda:lotNumber": "998877"}, "bizStep": "commissioning"},
    "AssociationEvent": {"type": "AssociationEvent", **BASE, "action": "ADD",
                         "parentID": "urn:epc:id:grai:4012345.55555.987",
                         "childEPCs": ["urn:epc:id:giai:4000001.12345"]},
}


@pytest.mark.parametrize("kind", epcis.EVENT_TYPES)
def test_valid_events(kind: str) -> None:
    event = VALID[kind]
    normalised = epcis.validate_event(event)
    assert normalised["type"] == kind
    assert normalised["eventTime"] == "2024-03-01T08:00:00.000Z"
    assert normalised["eventTimeZoneOffset"] == "+01:00"
    json.dumps(normalised)  # JSON-serialisable
    assert epcis.validate_event(copy.deepcopy(event)) == normalised  # deterministic
    assert epcis.validate_event(normalised) == normalised  # idempotent


def test_normalisation() -> None:
    out = epcis.validate_event(VALID["ObjectEvent"])
    assert out["bizStep"] == "shipping"
    assert out["disposition"] == "in_transit"
    assert out["persistentDisposition"] == {"set": ["completeness_verified"], "unset": ["active"]}
    assert out["quantityList"] == [{"epcClass": LGTIN, "quantity": "12.5", "uom": "KGM"}]
    assert out["recordTime"] == "2024-03-01T08:00:01.500Z"
    reports = out["sensorElementList"][0]["sensorReport"]
    assert reports[0] == {"type": "Temperature", "value": "4.5", "minValue": 2, "maxValue": "8",
                          "uom": "CEL"}
    assert reports[1]["type"] == "RelativeHumidity"
    assert reports[1]["time"] == "2024-03-01T08:30:00.000Z"
    assert reports[2] == {"type": "Temperature", "exception": "ALARM_CONDITION"}
    assert out["epcList"] == [SGTIN]  # identifiers are kept as given


def test_private_vocabulary() -> None:
    private = "https://vocab.example.com/bizstep/customs_clearing"
    assert epcis.validate_event(object_event(bizStep=private))["bizStep"] == private
    with pytest.raises(EpcisError) as err:
        epcis.validate_event(object_event(bizStep=private), allow_private_vocabulary=False)
    assert err.value.code == "unknown_bizstep"
    for bad in ("customs_clearing", "urn:epcglobal:cbv:bizstep:customs_clearing",
                "https://ref.gs1.org/cbv/BizStep-customs"):
        with pytest.raises(EpcisError) as err:
            epcis.validate_event(object_event(bizStep=bad))
        assert err.value.code == "unknown_bizstep"
    assert epcis_values.normalize_vocabulary("cbv:BTT-po", "btt") == "po"


def test_helpers() -> None:
    out = epcis.validate_event(VALID["ObjectEvent"])
    assert epcis.epcs_of(out) == {SGTIN_DL, "https://id.gs1.org/01/04012345123456/10/998877"}
    dl_event = epcis.validate_event(object_event(epcList=[SGTIN_DL]))
    assert epcis.epcs_of(dl_event) == {SGTIN_DL}  # URN and Digital Link index alike
    agg = epcis.validate_event(VALID["AggregationEvent"])
    assert "https://id.gs1.org/00/106141412345678908" in epcis.epcs_of(agg)
    transformation = epcis.validate_event(VALID["TransformationEvent"])
    assert len(epcis.epcs_of(transformation)) == 2
    assert epcis.read_point(out) == SGLN
    assert epcis.biz_location(out) == "https://id.gs1.org/414/0614141007776"
    assert epcis.read_point(agg) is None and epcis.biz_location(agg) is None
    assert epcis.sensor_readings(out) == [
        ("Temperature", "4.5", "CEL", "2024-03-01T08:00:00.000Z"),
        ("RelativeHumidity", "55", "P1", "2024-03-01T08:30:00.000Z"),
    ]


def test_parse_time() -> None:
    assert epcis_values.parse_time("1970-01-01T00:00:00Z") == 0
    assert epcis_values.parse_time("1970-01-01T01:00:00.0015+01:00") == 2
    assert epcis_values.parse_time("2024-03-01T08:00:00.000Z") == 1_709_280_000_000
    assert epcis_values.format_time(1_709_280_000_000) == "2024-03-01T08:00:00.000Z"
    for bad in ("2024-03-01T08:00:00", "2024-13-01T00:00:00Z", 5, "x" * 100):
        with pytest.raises(EpcisError) as err:
            epcis_values.parse_time(bad)
        assert err.value.code == "bad_time"


def mutate(kind: str, **changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(VALID[kind])
    for key, value in changes.items():
        if value is DROP:
            event.pop(key, None)
        else:
            event[key] = value
    return event


DROP = object()
ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("missing type", {"type": DROP}, "missing_field"),
    ("unknown type", {"type": "QuantityEvent"}, "unknown_type"),
    ("no eventTime", {"eventTime": DROP}, "missing_field"),
    ("no offset", {"eventTimeZoneOffset": DROP}, "missing_field"),
    ("bad offset", {"eventTimeZoneOffset": "+1:00"}, "bad_time"),
    ("bad time", {"eventTime": "2024-03-01T09:00:00"}, "bad_time"),
    ("no action", {"action": DROP}, "missing_field"),
    ("bad action", {"action": "UPDATE"}, "bad_action"),
    ("bizstep", {"bizStep": "teleporting"}, "unknown_bizstep"),
    ("disposition", {"disposition": "lost"}, "unknown_disposition"),
    ("btt", {"bizTransactionList": [{"type": "order", "bizTransaction": "urn:x:1"}]},
     "unknown_biztransaction_type"),
    ("sdt", {"sourceList": [{"type": "seller", "source": SGLN}]},
     "unknown_source_destination_type"),
    ("sdt missing", {"sourceList": [{"source": SGLN}]}, "missing_field"),
    ("party kind", {"sourceList": [{"type": "owning_party", "source": SGTIN}]}, "bad_identifier"),
    ("bad epc", {"epcList": ["urn:epc:id:sgtin:0614141.107346"]}, "bad_identifier"),
    ("class in epcList", {"epcList": [LGTIN]}, "bad_identifier"),
    ("bad check digit", {"epcList": ["https://id.gs1.org/01/10614141073465/21/1"]},
     "bad_identifier"),
    ("bad readPoint", {"readPoint": {"id": "geo:1,2"}}, "bad_identifier"),
    ("readPoint without id", {"readPoint": {}}, "missing_field"),
    ("float quantity", {"quantityList": [{"epcClass": LGTIN, "quantity": 1.5}]},
     "float_not_allowed"),
    ("negative quantity", {"quantityList": [{"epcClass": LGTIN, "quantity": -1}]},
     "bad_quantity"),
    ("uom without quantity", {"quantityList": [{"epcClass": LGTIN, "uom": "KGM"}]},
     "bad_quantity"),
    ("bad quantity", {"quantityList": [{"epcClass": LGTIN, "quantity": "1e3"}]},
     "bad_quantity"),
    ("no epcClass", {"quantityList": [{"quantity": 1}]}, "missing_field"),
    ("float sensor", {"sensorElementList": [{"sensorReport": [{"type": "Temperature",
                                                               "value": 4.5}]}]},
     "float_not_allowed"),
    ("sensor type", {"sensorElementList": [{"sensorReport": [{"type": "Warmth"}]}]},
     "unknown_sensor_type"),
    ("sensor no report", {"sensorElementList": [{"sensorMetadata": {}}]}, "bad_sensor"),
    ("sensor no type", {"sensorElementList": [{"sensorReport": [{"value": 1}]}]}, "bad_sensor"),
    ("sensor min>max", {"sensorElementList": [{"sensorReport": [
        {"type": "Temperature", "minValue": "5", "maxValue": "4.9"}]}]}, "bad_sensor"),
    ("sensor value text", {"sensorElementList": [{"sensorReport": [
        {"type": "Temperature", "value": "warm"}]}]}, "bad_sensor"),
    ("sensor uom", {"sensorElementList": [{"sensorReport": [
        {"type": "Temperature", "uom": "celsius"}]}]}, "bad_field"),
    ("sensor times", {"sensorElementList": [{"sensorMetadata": {
        "startTime": "2024-01-02T00:00:00Z", "endTime": "2024-01-01T00:00:00Z"},
        "sensorReport": [{"type": "Time"}]}]}, "bad_sensor"),
    ("error reason", {"errorDeclaration": {"declarationTime": "2024-01-01T00:00:00Z",
                                           "reason": "oops"}}, "unknown_error_reason"),
    ("error no time", {"errorDeclaration": {"reason": "did_not_occur"}}, "missing_field"),
    ("unknown field", {"colour": "red"}, "unknown_field"),
    ("field of another type", {"childEPCs": [SGTIN]}, "field_not_allowed"),
    ("ilmd with OBSERVE", {"ilmd": {"ex:a": "1"}}, "field_not_allowed"),
    ("nothing observed", {"epcList": [], "quantityList": DROP, "sensorElementList": DROP},
     "missing_field"),
    ("bad uri", {"eventID": "not a uri"}, "bad_uri"),
    ("bad list", {"epcList": "urn:epc:id:sgtin:0614141.107346.2018"}, "bad_field"),
    ("empty string", {"bizStep": ""}, "bad_field"),
    ("too long", {"bizStep": "https://x/" + "a" * 3000}, "too_large"),
    ("ext float", {"ex:x": {"ex:y": 0.5}}, "float_not_allowed"),
    ("ext bad key", {"ex:x": {"plain": "1"}}, "unknown_field"),
]


@pytest.mark.parametrize(("changes", "code"), [(c, k) for _, c, k in ERRORS],
                         ids=[n for n, _, _ in ERRORS])
def test_object_event_errors(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(EpcisError) as err:
        epcis.validate_event(mutate("ObjectEvent", **changes))
    assert err.value.code == code
    assert isinstance(err.value.path, str)


@pytest.mark.parametrize(("kind", "changes", "code"), [
    ("AggregationEvent", {"parentID": DROP}, "missing_field"),
    ("AggregationEvent", {"childEPCs": DROP, "childQuantityList": DROP}, "missing_field"),
    ("AggregationEvent", {"parentID": LGTIN}, "bad_identifier"),
    ("AssociationEvent", {"parentID": DROP}, "missing_field"),
    ("AssociationEvent", {"childEPCs": []}, "missing_field"),
    ("TransactionEvent", {"bizTransactionList": DROP}, "missing_field"),
    ("TransactionEvent", {"epcList": DROP}, "missing_field"),
    ("TransformationEvent", {"action": "ADD"}, "bad_action"),
    ("TransformationEvent", {"outputQuantityList": DROP}, "missing_field"),
    ("TransformationEvent", {"epcList": [SGTIN]}, "field_not_allowed"),
])
def test_type_rules(kind: str, changes: dict[str, Any], code: str) -> None:
    with pytest.raises(EpcisError) as err:
        epcis.validate_event(mutate(kind, **changes))
    assert err.value.code == code


def test_aggregation_delete_and_observe() -> None:
    epcis.validate_event(mutate("AggregationEvent", action="DELETE", childEPCs=DROP,
                                childQuantityList=DROP))
    epcis.validate_event(mutate("AggregationEvent", action="OBSERVE", parentID=DROP))
    epcis.validate_event(mutate("TransformationEvent", inputEPCList=DROP,
                                outputQuantityList=DROP, transformationID="urn:x:t:1"))
    epcis.validate_event(mutate("ObjectEvent", epcList=DROP, quantityList=DROP,
                                readPoint={"id": SGLN}))


def test_private_identifiers_for_locations() -> None:
    event = mutate("ObjectEvent", readPoint={"id": "geo:47.5,11.1"})
    out = epcis.validate_event(event, allow_private_identifiers=True)
    assert out["readPoint"] == {"id": "geo:47.5,11.1"}


def document(events: list[Any], **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
                     {"ex": "https://ns.example.com/"}],
        "type": "EPCISDocument", "schemaVersion": "2.0",
        "creationDate": "2024-03-01T10:00:00Z", "epcisBody": {"eventList": events}}
    doc.update(changes)
    return doc


def test_document() -> None:
    events = epcis.validate_document(document([VALID[k] for k in epcis.EVENT_TYPES]))
    assert [e["type"] for e in events] == list(epcis.EVENT_TYPES)
    assert epcis.validate_document(document([])) == []


@pytest.mark.parametrize(("changes", "code", "path"), [
    ({"@context": "https://example.com/ctx"}, "bad_document", "@context"),
    ({"type": "EPCISQueryDocument"}, "bad_document", "type"),
    ({"schemaVersion": "1.2"}, "bad_document", "schemaVersion"),
    ({"creationDate": "yesterday"}, "bad_time", "creationDate"),
    ({"epcisBody": {}}, "bad_document", "epcisBody"),
])
def test_document_errors(changes: dict[str, Any], code: str, path: str) -> None:
    with pytest.raises(EpcisError) as err:
        epcis.validate_document(document([], **changes))
    assert (err.value.code, err.value.path) == (code, path)


def test_document_error_path() -> None:
    bad = mutate("ObjectEvent", epcList=[SGTIN, "urn:epc:id:sgtin:1.2.3"])
    with pytest.raises(EpcisError) as err:
        epcis.validate_document(document([VALID["ObjectEvent"], bad]))
    assert err.value.path == "epcisBody.eventList[1].epcList[1]"
    with pytest.raises(EpcisError) as err:
        epcis.validate_document(document([], creationDate=DROP) | {"creationDate": None})
    assert err.value.code == "bad_time"


def test_every_error_code_is_exercised() -> None:
    codes = {k for _, _, k in ERRORS} | {"unknown_type", "bad_document"}
    documented = {"bad_document", "bad_field", "unknown_field", "missing_field", "unknown_type",
                  "bad_action", "field_not_allowed", "unknown_bizstep", "unknown_disposition",
                  "unknown_biztransaction_type", "unknown_source_destination_type",
                  "unknown_error_reason", "unknown_sensor_type", "bad_identifier", "bad_uri",
                  "bad_time", "bad_quantity", "bad_sensor", "float_not_allowed", "too_large"}
    assert documented <= codes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from([SGTIN, SGLN, LGTIN, "ADD", "shipping", "2024-01-01T00:00:00Z", "+01:00",
                       "Temperature", "4.5", "ObjectEvent", "ex:a"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(sorted(epcis.EVENT_FIELDS["ObjectEvent"]
                                             | {"sensorReport", "sensorMetadata", "id", "value",
                                                "epcClass", "quantity", "source", "ex:a"})),
                      children, max_size=5),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fuzz_random_json(value: Any) -> None:
    with contextlib.suppress(EpcisError):
        epcis.validate_event(value)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(epcis.EVENT_TYPES), st.data())
def test_fuzz_mutated_valid_events(kind: str, data: st.DataObject) -> None:
    event = copy.deepcopy(VALID[kind])
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from([*sorted(event), "ex:z", "epcList", "sensorElementList"]))
        event[key] = data.draw(json_values)
    try:
        out = epcis.validate_event(event)
    except EpcisError:
        return
    json.dumps(out)
    assert epcis.validate_event(out) == out
