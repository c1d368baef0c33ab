"""What the trace contract records may depend on the chain alone — never on the replica's
Python version, its Unicode tables or its interpreter's settings. Review findings 2, 4
and 5: each was a way for honest replicas to compute different events (a fork) or for
one bad value to sink a whole capture."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from services.ledger.core import blocks
from services.ledger.core.execution import BlockExecution
from services.sdk import httpsig
from services.trace import epcis_values, eventhash, hashvalues
from services.trace.capture import REJECTION_REASONS, rejection_reason
from tests.ledger.core.conftest import event_types, rejected_codes
from tests.trace.scenario import Scenario, build, gln, sgtin

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
URL = "https://gateway.example/epcis/capture"


@pytest.fixture
def s() -> Scenario:
    return build()


@pytest.fixture
def int_digits() -> Iterator[None]:
    old = sys.get_int_max_str_digits()
    yield
    sys.set_int_max_str_digits(old)


def relay(s: Scenario, body: str, *, behaviour: str | None = None,
          nonce: str = "n", sign_behaviour: bool = True) -> BlockExecution:
    """The maker's signed HTTP capture, relayed by the operator."""
    headers = {"Content-Type": "application/ld+json"}
    if behaviour is not None and sign_behaviour:
        headers["GS1-Capture-Error-Behaviour"] = behaviour
    headers.update(httpsig.sign_request(s.maker.key, method="POST", url=URL, headers=headers,
                                        body=body.encode(), now=s.chain.next_time // 1000,
                                        nonce=nonce))
    if behaviour is not None and not sign_behaviour:
        headers["GS1-Capture-Error-Behaviour"] = behaviour  # HTTP signs no such text
    payload: dict[str, Any] = {"request": {"method": "POST", "url": URL,
                                           "headers": headers, "body": body}}
    if behaviour is not None and behaviour.strip().lower() in ("rollback", "proceed"):
        payload["error_behaviour"] = behaviour.strip().lower()
    return s.ok(s.operator, "trace.capture", payload)


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {"@context": [CONTEXT, {"ex": "https://example.com/ex/"}],
            "type": "EPCISDocument", "schemaVersion": "2.0",
            "creationDate": "2026-01-01T00:00:00Z", "epcisBody": {"eventList": list(events)}}


def rejections(result: BlockExecution) -> list[dict[str, Any]]:
    return [dict(e.attributes) for e in result.events if e.type == "trace.capture.rejected"]


# --- finding 2: exception text in events -------------------------------------------------


@pytest.mark.usefixtures("int_digits")
def test_a_huge_integer_makes_the_same_events_whatever_the_int_digit_limit() -> None:
    """The limit of ``int("7" * 5000)`` is a per-process setting (PYTHONINTMAXSTRDIGITS):
    the parser's verdict, and its text in the event, differed between honest replicas."""
    body = '{"type": "EPCISDocument", "x": ' + "7" * 5_000 + "}"
    roots = set()
    for limit in (0, 640, 4_300, 100_000):
        s = build()
        sys.set_int_max_str_digits(limit)
        result = relay(s, body)
        assert rejections(result) == [{"position": None, "code": "bad_number",
                                       "reason": REJECTION_REASONS["bad_number"],
                                       "org": None}], limit
        roots.add(blocks.events_root(result.events).hex())
    assert len(roots) == 1


def test_a_json_integer_longer_than_the_limit_is_refused_by_the_parser() -> None:
    limit = epcis_values.JSON_NUMBER_CHARS_MAX
    assert epcis_values.parse_json("[" + "9" * limit + "]") == [int("9" * limit)]
    assert epcis_values.parse_json("[-" + "9" * (limit - 1) + "]") == [-int("9" * (limit - 1))]
    for text in ("[" + "9" * (limit + 1) + "]", "[-" + "9" * limit + "]",
                 "[" + "1" * 700 + "]"):
        with pytest.raises(epcis_values.EpcisError) as refused:
            epcis_values.parse_json(text)
        assert refused.value.code == "bad_number"


def test_a_body_that_is_not_json_gets_a_fixed_reason(s: Scenario) -> None:
    """The parser's message ("Expecting value: line 1 column 2 (char 1)") is the Python
    version's wording: it stays off the chain."""
    result = relay(s, '{"type": "EPCISDocument",,}')
    assert rejections(result) == [{"position": None, "code": "bad_json",
                                   "reason": "the capture body is not JSON", "org": None}]


def test_rejected_events_carry_their_codes_fixed_text(s: Scenario) -> None:
    """Per-event refusals in proceed mode: the reason is the code's fixed text, never
    the validator's message (which quotes the offending value by repr())."""
    good = s.event(s.maker, [sgtin("9601")], "commissioning")
    foreign = s.event(s.maker, [sgtin("9602")], "commissioning",
                      location=s.carrier.location)
    bad_step = {**s.event(s.maker, [sgtin("9603")], "commissioning"),
                "bizStep": "urn:epcglobal:cbv:bizstep:n\u00f6pe"}
    result = s.capture(s.maker, good, foreign, bad_step, good, error_behaviour="proceed")
    assert not result.rejected, rejected_codes(result)
    assert [(r["position"], r["code"], r["reason"]) for r in rejections(result)] == [
        (1, "forbidden", REJECTION_REASONS["forbidden"]),
        (2, "unknown_bizstep", "the event is not valid EPCIS 2.0"),
        (3, "duplicate_event", REJECTION_REASONS["duplicate_event"])]


def test_an_all_or_nothing_relayed_capture_names_the_refused_event(s: Scenario) -> None:
    good = s.event(s.maker, [sgtin("9604")], "commissioning")
    foreign = s.event(s.maker, [sgtin("9605")], "commissioning",
                      location=s.carrier.location)
    result = relay(s, json.dumps(document(good, foreign)))
    assert rejections(result) == [{
        "position": None, "code": "forbidden",
        "reason": "event 1: " + REJECTION_REASONS["forbidden"], "org": None}]
    assert "trace.event.captured" not in event_types(result)


def test_every_code_has_a_fixed_reason() -> None:
    assert rejection_reason("request_expired") == rejection_reason("request_bad_signature")
    assert rejection_reason("not_custodian") == REJECTION_REASONS["not_custodian"]
    assert rejection_reason("bad_gtin") == "the event is not valid EPCIS 2.0"
    assert all(0 < len(text) <= 256 and text.isascii() for text in REJECTION_REASONS.values())


# --- finding 4: a value the hash cannot take -----------------------------------------------


def test_a_value_the_hash_refuses_refuses_only_its_event(s: Scenario) -> None:
    """An extension value such as "1e999999" passes validation but not the event hash:
    the EventHashError escaped, and the whole capture failed as contract_error (for a
    relayed capture: the relay's transaction, stalling its later nonces)."""
    huge = {**s.event(s.maker, [sgtin("9611")], "commissioning"), "ex:x": "1e999999"}
    good = s.event(s.maker, [sgtin("9612")], "commissioning")
    own = s.capture(s.maker, huge, good, error_behaviour="proceed")
    assert not own.rejected, rejected_codes(own)
    assert [(r["position"], r["code"], r["reason"]) for r in rejections(own)] == [
        (0, "number_out_of_range", REJECTION_REASONS["number_out_of_range"])]
    assert event_types(own).count("trace.event.captured") == 1
    atomic = s.capture(s.maker, huge, error_behaviour="rollback")
    assert rejected_codes(atomic) == ["number_out_of_range"]
    relayed = relay(s, json.dumps(document(
        {**s.event(s.maker, [sgtin("9613")], "commissioning"), "ex:x": "1e999999"},
        s.event(s.maker, [sgtin("9614")], "commissioning"))), behaviour="proceed")
    assert [r["code"] for r in rejections(relayed)] == ["number_out_of_range"]
    assert event_types(relayed).count("trace.event.captured") == 1


# --- finding 5: Unicode tables -------------------------------------------------------------


def test_a_country_is_two_ascii_capitals(s: Scenario) -> None:
    """"ÄÖ" passed str.isalpha/isupper, whose tables change between Python versions."""
    for country in ("\u00c4\u00d6", "de", "D", "DEU", "\u0394\u0395", "D1"):
        assert s.code(s.retailer.key, "trace.register_location", {
            "gln": gln("4098765", "00009"), "name": "shop", "country": country}) == \
            "bad_payload", country
        assert s.code(s.operator, "trace.record_scan", {
            "epc": sgtin("1"), "country": country}) == "bad_payload", country
    assert not s.run(s.retailer.key, "trace.register_location", {
        "gln": gln("4098765", "00009"), "name": "shop", "country": "AT"}).rejected


def test_the_event_hash_reads_ascii_digits_only() -> None:
    """Decimal() and the regex \\d read other scripts' digits by the Python version's
    Unicode tables (Kawi digits are digits from Unicode 15, Python 3.12): such text is
    hashed as written, never as a number or a GS1 identifier."""
    kawi_one = "\U00011f51"
    arabic_indic = "\u0661\u0662"
    for text in (kawi_one, arabic_indic, "\uff11\uff12", "\u00a012"):
        assert hashvalues.canonical_number(text) == text
    assert hashvalues.canonical_number(" 12.50 ") == "12.5"  # ASCII as before
    urn = "urn:epc:id:sgtin:\u0660\u0666\u0661\u0664\u0661\u0664\u0661.107346.2018"
    assert hashvalues.canonical_digital_link(urn) is None
    assert hashvalues.canonical_digital_link("urn:epc:id:sgtin:0614141.107346.2018") == \
        "https://id.gs1.org/01/10614141073464/21/2018"


def test_the_event_hash_strips_a_fixed_set_of_spaces() -> None:
    """The pre-hash strips values with an explicit list, equal to what str.strip()
    strips on this Python, so that no later Unicode version changes a hash."""
    assert set(eventhash.WHITESPACE) == {chr(c) for c in range(sys.maxunicode + 1)
                                         if chr(c).isspace()}


def test_the_capture_mode_header_is_read_in_ascii(s: Scenario) -> None:
    """"ROLLBAC\\u212a".lower() is "rollback" (the Kelvin sign lowers to k): only ASCII
    case and HTTP's spaces are ignored in the signed capture mode."""
    body = json.dumps(document(s.event(s.maker, [sgtin("9621")], "commissioning")))
    odd = relay(s, body, behaviour="ROLLBAC\u212a", nonce="n-kelvin", sign_behaviour=False)
    assert [r["code"] for r in rejections(odd)] == ["bad_payload"]  # before its signature
    plain = relay(s, body, behaviour=" Rollback\t", nonce="n-plain")
    assert rejections(plain) == [] and "trace.event.captured" in event_types(plain)
