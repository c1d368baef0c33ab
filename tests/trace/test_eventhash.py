"""The CBV 2.0 event hash: published vectors byte for byte, normalisation rules, refusals."""

from __future__ import annotations

import copy
import hashlib
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.trace import epcis, eventhash
from services.trace.hashvalues import EventHashError

VECTORS = Path(__file__).parent / "vectors" / "eventhash"
VECTOR_FILES = sorted(VECTORS.glob("*.json"))


def load_vector(path: Path) -> dict[str, Any]:
    # Fractional JSON numbers are read as their decimal text: the chain has no floats.
    vector: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"), parse_float=str)
    return vector


def float_literals(value: Any) -> list[str]:
    found: list[str] = []

    def keep(literal: str) -> int:
        found.append(literal)
        return 0

    json.loads(json.dumps(value), parse_float=keep)
    return found


def test_vectors_exist() -> None:
    assert len(VECTOR_FILES) >= 12
    assert (VECTORS / "LICENSE.epcis-event-hash-generator").read_text().startswith("MIT")


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.stem)
def test_vector_prehashes_and_hashes(path: Path) -> None:
    vector = load_vector(path)
    document = vector["document"]
    expected = vector["expected"]
    assert vector["source"]["repository"].endswith("RalphTro/epcis-event-hash-generator")
    # every published pre-hash string hashes to its published hash id
    for item in expected:
        digest = hashlib.sha256(item["prehash"].encode("utf-8")).hexdigest()
        assert item["hash"] == f"ni:///sha-256;{digest}?ver=CBV2.0"
    assert eventhash.document_prehashes(document) == [e["prehash"] for e in expected]
    assert eventhash.document_hashes(document) == [e["hash"] for e in expected]


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.stem)
def test_vector_float_literals_read_as_the_reference_reads_them(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    for literal in float_literals(raw["document"]):
        # the reference reads a float and formats it with repr(); same decimal value
        assert Decimal(literal) == Decimal(repr(float(literal)))


SINGLE_EVENT_FILES = [p for p in VECTOR_FILES
                      if len(json.loads(p.read_text(encoding="utf-8"))["document"]
                             ["epcisBody"]["eventList"]) == 1]


# Only single-event documents: the reference expands bare words document-wide, so in a
# multi-event document one event's hash can depend on its neighbours.
@pytest.mark.parametrize("path", SINGLE_EVENT_FILES, ids=lambda p: p.stem)
def test_single_event_api_matches_document_api(path: Path) -> None:
    vector = load_vector(path)
    document = vector["document"]
    events = document["epcisBody"]["eventList"]
    context = [c for c in document["@context"] if c != {}]
    assert eventhash.event_hash(events[0], context=context) == vector["expected"][0]["hash"]


def test_validated_events_hash_like_the_published_ones() -> None:
    """The chain hashes normalised events: normalisation must keep the published hash."""
    vector = load_vector(VECTORS / "epcisDocWithVariousEventTypes.json")
    document = vector["document"]
    checked = 0
    for event, item in zip(document["epcisBody"]["eventList"], vector["expected"],
                           strict=True):
        normalised = epcis.validate_event(event)
        assert normalised != event or "Z" in event["eventTime"]
        assert eventhash.event_hash(normalised, context=document["@context"]) == item["hash"]
        checked += 1
    assert checked == 13


def test_refused_like_the_reference() -> None:
    # the stored epcisDocWithShippingAndTransportingEvent redefines the protected gs1 prefix
    document = {
        "@context": [eventhash.EPCIS_CONTEXT_2_0_0, {"gs1": "https://gs1.org/voc/"}],
        "type": "EPCISDocument", "schemaVersion": "2.0",
        "creationDate": "2022-02-17T11:30:47.0Z",
        "epcisBody": {"eventList": [SIMPLE]},
    }
    with pytest.raises(EventHashError) as err:
        eventhash.document_prehashes(document)
    assert err.value.code == "unsupported_context"


SIMPLE: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2024-03-01T09:00:00.000+01:00",
    "eventTimeZoneOffset": "+01:00",
    "epcList": ["urn:epc:id:sgtin:0614141.107346.2018"],
    "action": "OBSERVE",
    "bizStep": "shipping",
    "disposition": "in_transit",
    "readPoint": {"id": "urn:epc:id:sgln:0614141.00777.0"},
    "bizTransactionList": [{"type": "po",
                            "bizTransaction": "urn:epcglobal:cbv:bt:0614141000005:PO1"}],
}
SIMPLE_PREHASH = (
    "eventType=ObjectEventeventTime=2024-03-01T08:00:00.000ZeventTimeZoneOffset=+01:00"
    "epcListepc=https://id.gs1.org/01/10614141073464/21/2018action=OBSERVE"
    "bizStep=https://ref.gs1.org/cbv/BizStep-shipping"
    "disposition=https://ref.gs1.org/cbv/Disp-in_transit"
    "readPointid=https://id.gs1.org/414/0614141007776"
    "bizTransactionListtype=https://ref.gs1.org/cbv/BTT-po"
    "bizTransaction=urn:epcglobal:cbv:bt:0614141000005:PO1"
)


def test_simple_event_prehash_follows_the_rules() -> None:
    # composed from the published rules; the vectors pin the same behaviour
    assert eventhash.event_prehash(SIMPLE) == SIMPLE_PREHASH
    assert eventhash.event_hash(SIMPLE) == eventhash.hash_of_prehash(SIMPLE_PREHASH)
    assert eventhash.event_hash(SIMPLE).startswith("ni:///sha-256;")
    assert eventhash.event_hash(SIMPLE).endswith("?ver=CBV2.0")


def test_vocabulary_forms_hash_alike() -> None:
    urn = dict(SIMPLE, bizStep="urn:epcglobal:cbv:bizstep:shipping",
               disposition="https://ref.gs1.org/cbv/Disp-in_transit")
    assert eventhash.event_prehash(urn) == SIMPLE_PREHASH
    dl = dict(SIMPLE, epcList=["https://example.com/01/10614141073464/21/2018?x=1"])
    assert eventhash.event_prehash(dl) == SIMPLE_PREHASH


def test_not_hashed_fields() -> None:
    extra = dict(SIMPLE, eventID="urn:uuid:1", recordTime="2024-03-02T00:00:00Z",
                 certificationInfo="https://cert.example/1",
                 errorDeclaration={"declarationTime": "2024-03-02T00:00:00Z",
                                   "reason": "incorrect_data"})
    assert eventhash.event_prehash(extra) == SIMPLE_PREHASH


def test_key_and_list_order_do_not_matter() -> None:
    rng = random.Random(7)
    event = copy.deepcopy(SIMPLE)
    event["epcList"] = ["urn:epc:id:sgtin:0614141.107346.2018", "urn:epc:id:sgtin:0614141.107346.2"]
    event["bizTransactionList"].append({"type": "inv", "bizTransaction": "urn:x:inv:9"})
    reference = eventhash.event_hash(event)
    for _ in range(20):
        items = list(event.items())
        rng.shuffle(items)
        shuffled = {k: (list(reversed(v)) if isinstance(v, list) else v) for k, v in items}
        shuffled["bizTransactionList"] = [dict(reversed(list(b.items())))
                                          for b in shuffled["bizTransactionList"]]
        assert eventhash.event_hash(shuffled) == reference


def test_biz_transaction_without_type() -> None:
    event = dict(SIMPLE, bizTransactionList=[{"bizTransaction": "urn:x:bt:1"}])
    assert "bizTransactionListbizTransaction=urn:x:bt:1" in eventhash.event_prehash(event)


@pytest.mark.parametrize("bad", ["2023-02-02T11:04:03", "2023-02-30T00:00:00Z",
                                 "2023-02-02T24:00:00Z", "2023-02-02T11:04:60Z",
                                 "2023-02-02 11:04", "yesterday", "0000-01-01T00:00:00+01:00"])
def test_bad_times_are_refused(bad: str) -> None:
    with pytest.raises(EventHashError) as err:
        eventhash.event_prehash(dict(SIMPLE, eventTime=bad))
    assert err.value.code == "bad_time"


def test_user_extensions() -> None:
    event = dict(SIMPLE, **{"ex:batch": "B1", "ex:obj": {"ex:b": "2", "ex:a": "1"}},
                 readPoint={"id": "urn:epc:id:sgln:0614141.00777.0", "ex:door": "7"},
                 ilmd={"ex:best": "2025-01-01"})
    context = [eventhash.EPCIS_CONTEXT_2_0_0, {"ex": "https://ns.example.com/"}]
    prehash = eventhash.event_prehash(event, context=context)
    assert prehash.endswith(
        "ilmd{https://ns.example.com/}best=2025-01-01"
        "readPoint{https://ns.example.com/}door=7"
        "{https://ns.example.com/}batch=B1"
        "{https://ns.example.com/}obj{https://ns.example.com/}a=1{https://ns.example.com/}b=2")


@pytest.mark.parametrize(("event", "context", "code"), [
    (dict(SIMPLE, **{"ex:v": 1.5}), None, "float_not_allowed"),
    (dict(SIMPLE, **{"@context": {}}), None, "unsupported_structure"),
    (dict(SIMPLE, bizTransactionList=[{"type": "po", "bizTransaction": "x:1", "ex:a": "1"}]),
     None, "unsupported_structure"),
    (SIMPLE, ["https://example.com/ctx.jsonld"], "unsupported_context"),
    (SIMPLE, [eventhash.EPCIS_CONTEXT_2_0_0, {"cbvmda": "https://x/"}], "unsupported_context"),
    (SIMPLE, [eventhash.EPCIS_CONTEXT_2_0_0, {"bizStep": "https://x/"}], "unsupported_context"),
    (SIMPLE, 5, "unsupported_context"),
    ({"eventTime": "2024-01-01T00:00:00Z"}, None, "bad_value"),
])
def test_refusals(event: dict[str, Any], context: Any, code: str) -> None:
    with pytest.raises(EventHashError) as err:
        if context is None:
            eventhash.event_prehash(event)
        else:
            eventhash.event_prehash(event, context=context)
    assert err.value.code == code


def test_unversioned_context_allows_prefix_redefinition() -> None:
    context = [eventhash.EPCIS_CONTEXT_LATEST, {"cbvmda": "http://example.com/cbvmda/"}]
    event = dict(SIMPLE, ilmd={"cbvmda:lotNumber": "L1"})
    prehash = eventhash.event_prehash(event, context=context)
    assert "ilmd{http://example.com/cbvmda/}lotNumber=L1" in prehash


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                      st.text(max_size=12), st.sampled_from(["shipping", "Temperature", "1.50",
                                                             "urn:epc:id:sscc:0614141.1234567890"]))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.from_regex(r"ex:[a-z]{1,4}", fullmatch=True),
                       st.recursive(json_leaf, lambda c: st.lists(c, max_size=3)
                                    | st.dictionaries(st.from_regex(r"ex:[a-z]{1,3}",
                                                                    fullmatch=True), c,
                                                      max_size=3), max_leaves=8),
                       max_size=4))
def test_hash_is_deterministic_with_random_extensions(extensions: dict[str, Any]) -> None:
    event = dict(SIMPLE, **extensions)
    context = [eventhash.EPCIS_CONTEXT_2_0_0, {"ex": "https://ns.example.com/"}]
    first = eventhash.event_hash(event, context=context)
    assert eventhash.event_hash(copy.deepcopy(event), context=context) == first
    assert eventhash.event_hash(dict(reversed(list(event.items()))), context=context) == first
