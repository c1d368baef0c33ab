"""The trace contract: certificates, EPCIS capture and anti-counterfeiting, each rule
with its negative tests (a clear code, nothing recorded). Agreements and penalties moved
to the trade domain (tests/trade/test_agreements.py)."""

from __future__ import annotations

import json

import pytest

from services.ledger.core.execution import BlockExecution
from services.sdk import httpsig
from services.trace import certificate_schema, certificates, documents, identifiers, wrapping
from services.trace.items import item_key
from tests.ledger.core.conftest import event_types, rejected_codes
from tests.trace.scenario import DAY_MS, GTIN, Scenario, build, gln, sgtin


@pytest.fixture
def s() -> Scenario:
    return build()


def item(s: Scenario, serial: str) -> dict[str, object]:
    key = item_key(sgtin(serial))
    assert key is not None
    return s.chain.get(f"trace/{key}")  # type: ignore[no-any-return]


def commission(s: Scenario, *serials: str) -> None:
    result = s.capture(s.maker, s.event(s.maker, [sgtin(x) for x in serials],
                                        "commissioning"))
    assert not result.rejected, rejected_codes(result)


# --- accreditation and certificates -------------------------------------------------------


def test_certificate_issue_verify_and_revoke(s: Scenario) -> None:
    wrapped, result = s.certify()
    assert "trace.certificate.issued" in event_types(result)
    root = wrapped[0].merkle_root
    anchor = documents.AnchorRecord.from_state(s.chain.get(f"trace/anchor/{root}"))
    org = s.chain.get("consortium/org/cert-body")
    issuer = documents.IssuerRecord.from_state(
        {**s.chain.get("trace/accreditation/cert-body"), "roles": org["roles"]})
    now = s.chain.time
    assert documents.verify(wrapped[0], anchor=anchor, issuer=issuer, now_ms=now).valid
    # selective disclosure keeps it valid
    hidden = wrapping.obfuscate(wrapped[0], ["id"])
    assert documents.verify(hidden, anchor=anchor, issuer=issuer, now_ms=now).valid
    # a forged value breaks integrity only
    forged = wrapping.WrappedDocument.from_json(json.loads(json.dumps(
        wrapped[0].to_json()).replace(":string:cert-1", ":string:cert-2")))
    report = documents.verify(forged, anchor=anchor, issuer=issuer, now_ms=now)
    assert not report.integrity.ok and report.status.ok and report.issuer.ok
    # revocation by the issuer shows in the status check
    assert s.code(s.maker.key, "trace.revoke_certificate", {"merkle_root": root}) == \
        "forbidden"
    s.ok(s.certifier.key, "trace.revoke_certificate", {"merkle_root": root,
                                                       "reason": "withdrawn"})
    anchor = documents.AnchorRecord.from_state(s.chain.get(f"trace/anchor/{root}"))
    report = documents.verify(wrapped[0], anchor=anchor, issuer=issuer, now_ms=s.chain.time)
    assert report.status.code == "revoked" and not report.valid


def test_only_accredited_bodies_issue(s: Scenario) -> None:
    template = {"type": certificate_schema.CERTIFICATE_TEMPLATE}
    wrapped = wrapping.wrap_batch([{"$template": template, "id": "x", "type": "CE"}],
                                  salt=s.salt)
    payload = {"merkle_root": wrapped[0].merkle_root, "type": "CE",
               "subject": {"kind": "product", "id": GTIN}, "scope": "*",
               "valid_from": 0, "valid_until": s.chain.time + DAY_MS}
    assert s.code(s.maker.key, "trace.anchor_certificate", payload) == "forbidden"
    assert s.code(s.certifier.key, "trace.anchor_certificate",
                  {**payload, "type": "HALAL"}) == "not_accredited"
    assert s.code(s.maker.key, "trace.accredit",
                  {"org": "cert-body", "types": ["CE"], "valid_until": s.chain.time + 10}
                  ) == "forbidden"
    assert s.code(s.operator, "trace.accredit",
                  {"org": "shenzhen-maker", "types": ["CE"],
                   "valid_until": s.chain.time + DAY_MS}) == "forbidden"
    unknown = {**payload, "subject": {"kind": "product", "id": "04000000000013"}}
    assert s.code(s.certifier.key, "trace.anchor_certificate", unknown) == "not_found"


# --- capture -------------------------------------------------------------------------------


def test_capture_tracks_items_and_rejects_duplicates(s: Scenario) -> None:
    event = s.event(s.maker, [sgtin("1001")], "commissioning")
    result = s.capture(s.maker, event)
    assert not result.rejected and "trace.event.captured" in event_types(result)
    captured = next(e for e in result.events if e.type == "trace.event.captured")
    assert captured.attributes["event_hash"].startswith("ni:///sha-256;")
    state = item(s, "1001")
    assert state["state"] == "commissioned" and state["brand_owner"] == "shenzhen-maker"
    assert s.capture(s.maker, event).rejected[0].code == "duplicate_event"


@pytest.mark.parametrize(("mutate", "code"), [
    (lambda e: e.update(bizStep="flying"), "unknown_bizstep"),
    (lambda e: e.update(epcList=["urn:epc:id:sgtin:123"]), "bad_identifier"),
    (lambda e: e.update(action="MOVE"), "bad_action"),
    (lambda e: e.pop("eventTime"), "missing_field"),
])
def test_capture_refuses_bad_events(s: Scenario, mutate: object, code: str) -> None:
    event = s.event(s.maker, [sgtin("2001")], "commissioning")
    mutate(event)  # type: ignore[operator]
    result = s.capture(s.maker, event)
    assert len(result.rejected) == 1
    assert result.rejected[0].code in (code, "bad_epc", "bad_identifier"), \
        result.rejected[0].message
    assert item(s, "2001") is None


def test_capture_refuses_unauthorised_parties_and_skewed_clocks(s: Scenario) -> None:
    # the carrier cannot capture at the manufacturer's location
    foreign = s.event(s.carrier, [sgtin("3001")], "shipping", location=s.maker.location)
    assert s.capture(s.carrier, foreign).rejected[0].code == "forbidden"
    # only the brand owner commissions its serials
    assert s.capture(s.carrier, s.event(s.carrier, [sgtin("3002")], "commissioning")
                     ).rejected[0].code == "forbidden"
    # an unregistered location
    unknown = s.event(s.maker, [sgtin("3003")], "commissioning",
                      location="urn:epc:id:sgln:6901234.99999.0")
    assert s.capture(s.maker, unknown).rejected[0].code == "unknown_location"
    # an event from the future of block time (clock skew)
    future = s.event(s.maker, [sgtin("3004")], "commissioning",
                     at=s.chain.next_time + 3_600_000)
    assert s.capture(s.maker, future).rejected[0].code == "clock_skew"
    # the merchants of the testnet may not capture at all
    assert item(s, "3001") is None and item(s, "3004") is None


def test_capture_proceed_records_the_valid_events(s: Scenario) -> None:
    good = s.event(s.maker, [sgtin("4001")], "commissioning")
    bad = {**s.event(s.maker, [sgtin("4002")], "commissioning"), "bizStep": "nope"}
    result = s.capture(s.maker, good, bad, error_behaviour="proceed")
    assert not result.rejected
    assert event_types(result).count("trace.event.captured") == 1
    assert "trace.capture.rejected" in event_types(result)
    rollback = s.capture(s.maker, s.event(s.maker, [sgtin("4003")], "commissioning"),
                         bad)
    assert rollback.rejected and item(s, "4003") is None


def test_signed_http_capture_relayed_by_a_third_party(s: Scenario) -> None:
    """The party signs its EPCIS request; whoever relays it cannot alter it."""
    document = {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
                "type": "EPCISDocument", "schemaVersion": "2.0",
                "creationDate": "2026-01-01T00:00:00Z",
                "epcisBody": {"eventList": [s.event(s.maker, [sgtin("5001")],
                                                    "commissioning")]}}
    body = json.dumps(document)
    url = "https://gateway.example/epcis/capture"
    now_s = s.chain.next_time // 1000
    headers = {"Content-Type": "application/ld+json"}
    headers.update(httpsig.sign_request(s.maker.key, method="POST", url=url, headers=headers,
                                        body=body.encode(), now=now_s, nonce="n-5001"))
    request = {"method": "POST", "url": url, "headers": headers, "body": body}
    relay = s.operator  # anyone may relay; the contract checks the party's signature
    result = s.run(relay, "trace.capture", {"request": request})
    assert not result.rejected, rejected_codes(result)
    captured = next(e for e in result.events if e.type == "trace.event.captured")
    assert captured.attributes["org"] == "shenzhen-maker"
    tampered = {**request, "body": body.replace("5001", "5002")}
    # the relay's transaction commits (its nonce must not stall); the refusal is its outcome
    outcome = s.ok(relay, "trace.capture", {"request": tampered})
    refused = [e for e in outcome.events if e.type == "trace.capture.rejected"]
    assert refused and refused[0].attributes["code"].startswith("request_")
    assert "trace.event.captured" not in event_types(outcome)
    assert item(s, "5002") is None


# --- anti-counterfeiting ---------------------------------------------------------------------


def test_anonymous_scans_never_brand_a_genuine_item_a_clone(s: Scenario) -> None:
    """Issue 10: two anonymous verify calls ("from DE", then "from CN") turned an
    untouched genuine tin into a suspected clone, for everyone, for good."""
    commission(s, "6001", "6002")
    s.scan(s.operator, "6001", "DE")
    result = s.scan(s.operator, "6001", "CN")
    assert "trace.clone.suspected" not in event_types(result)
    assert item(s, "6001")["clone_suspected"] is False
    # not even after it was decommissioned: anyone can name a destroyed serial
    s.capture(s.maker, s.event(s.maker, [sgtin("6002")], "decommissioning",
                               disposition="destroyed"))
    after = s.scan(s.operator, "6002", "DE")
    assert "trace.clone.suspected" not in event_types(after)
    assert item(s, "6002")["clone_suspected"] is False
    # an organisation that is neither a reader nor the relay records no scan
    assert s.code(s.maker.key, "trace.record_scan", {"epc": sgtin("6001"),
                                                     "country": "DE"}) == "forbidden"


def test_every_trace_event_matches_its_partner_schema(s: Scenario) -> None:
    """The CloudEvents data partners receive is described exactly (AsyncAPI): every
    event the scenario makes the contract emit validates against its registered model."""
    from services.composition import event_catalogue

    catalogue = event_catalogue()
    validate_data = catalogue.validate
    emitted: set[str] = set()
    original = s.chain.block

    def recording(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)  # type: ignore[arg-type]
        for event in result.events:
            if event.type.startswith("trace."):
                validate_data(event.type, dict(event.attributes))
                emitted.add(event.type)
        return result

    s.chain.block = recording  # type: ignore[method-assign,assignment]
    s.ok(s.operator, "trace.assign_prefix", {"org": "eu-retail", "prefix": "4098766"})
    s.ok(s.operator, "trace.accredit", {"org": "cert-body", "types": ["CE"],
                                        "valid_until": s.chain.next_time + DAY_MS})
    s.ok(s.maker.key, "trace.register_product", {"gtin": "06901234000023", "name": "Tea 2",
                                                 "company_prefix_length": 7})
    s.ok(s.retailer.key, "trace.register_location",
         {"gln": gln("4098765", "00002"), "name": "second shop", "country": "FR"})
    wrapped, _ = s.certify()
    s.ok(s.certifier.key, "trace.revoke_certificate",
         {"merkle_root": wrapped[0].merkle_root, "target_hash": wrapped[0].target_hash})
    commission(s, "9901", "9902")
    s.capture(s.maker, s.event(s.maker, [sgtin("9903")], "commissioning"),
              {**s.event(s.maker, [sgtin("9904")], "commissioning"), "bizStep": "nope"},
              error_behaviour="proceed")
    s.capture(s.carrier, s.event(s.carrier, [sgtin("9901")], "shipping", action="OBSERVE",
                                 temperatures=["30"]))
    tag = s.tag("9902")
    s.scan(s.operator, "9902", "DE", proof=s.tap(tag, "9902", 1))
    s.ok(s.operator, "trace.record_scans", {"scans": [
        {"epc": sgtin("9902"), "country": "FR", "proof": s.tap(tag, "9902", 1)},
        {"epc": sgtin("9999"), "country": "DE"}]})
    s.scan(s.carrier.key, "9902", "PL")
    s.scan(s.retailer.key, "9902", "DE")
    s.scan(s.second_retailer.key, "9902", "FR")
    accreditation = s.chain.get("trace/accreditation/cert-body")["accreditations"][0]["id"]
    s.ok(s.operator, "trace.revoke_accreditation", {"org": "cert-body", "id": accreditation})
    trace_types = {t for t in catalogue.types() if t.startswith("trace.")}
    assert trace_types == emitted, trace_types - emitted


# --- hostile inputs (found in review: each once stopped every replica or misjudged) -----


def test_any_contract_exception_rejects_the_transaction_instead_of_stopping(
        s: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    from decimal import InvalidOperation

    def broken(*_: object) -> bool:
        raise InvalidOperation("a contract bug")

    monkeypatch.setattr(identifiers, "is_valid_gln", broken)
    assert s.code(s.retailer.key, "trace.register_location", {
        "gln": gln("4098765", "00003"), "name": "third shop", "country": "DE"}
    ) == "contract_error"


def test_a_deeply_nested_relayed_capture_is_refused(s: Scenario) -> None:
    body = "[" * 5_000 + "]" * 5_000
    url = "https://gateway.example/epcis/capture"
    headers = {"Content-Type": "application/json"}
    headers.update(httpsig.sign_request(s.maker.key, method="POST", url=url, headers=headers,
                                        body=body.encode(), now=s.chain.next_time // 1000,
                                        nonce="n-deep"))
    outcome = s.ok(s.operator, "trace.capture", {"request": {
        "method": "POST", "url": url, "headers": headers, "body": body}})
    refused = [e for e in outcome.events if e.type == "trace.capture.rejected"]
    assert refused and refused[0].attributes["code"] == "bad_payload"
    assert refused[0].attributes["reason"] == "the capture is malformed"  # a fixed text


def test_the_capture_mode_of_a_relayed_request_is_the_signed_one(s: Scenario) -> None:
    """Found in review: a relay could resubmit a refused all-or-nothing capture with
    error_behaviour "proceed" and record its valid part."""
    good = s.event(s.maker, [sgtin("5101")], "commissioning")
    bad = s.event(s.maker, [sgtin("5102")], "commissioning", location=s.carrier.location)
    body = json.dumps({"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/"
                                    "epcis-context.jsonld"],
                       "type": "EPCISDocument", "schemaVersion": "2.0",
                       "creationDate": "2026-01-01T00:00:00Z",
                       "epcisBody": {"eventList": [good, bad]}})
    url = "https://gateway.example/epcis/capture"

    def request(behaviour: str | None, *, signed_mode: bool = True) -> dict[str, object]:
        headers = {"Content-Type": "application/ld+json"}
        if behaviour is not None and signed_mode:
            headers["GS1-Capture-Error-Behaviour"] = behaviour
        headers.update(httpsig.sign_request(s.maker.key, method="POST", url=url,
                                            headers=headers, body=body.encode(),
                                            now=s.chain.next_time // 1000,
                                            nonce=f"n-{behaviour}-{signed_mode}"))
        if behaviour is not None and not signed_mode:
            headers["GS1-Capture-Error-Behaviour"] = behaviour  # added after signing
        return {"method": "POST", "url": url, "headers": headers, "body": body}

    def codes(outcome: BlockExecution) -> list[str]:
        return [e.attributes["code"] for e in outcome.events
                if e.type == "trace.capture.rejected"]

    atomic = s.ok(s.operator, "trace.capture", {"request": request(None)})
    assert codes(atomic) and "trace.event.captured" not in event_types(atomic)
    flipped = s.ok(s.operator, "trace.capture", {"request": request(None),
                                                  "error_behaviour": "proceed"})
    assert codes(flipped) == ["bad_payload"]
    unsigned = s.ok(s.operator, "trace.capture", {"request": request("proceed",
                                                                     signed_mode=False),
                                                   "error_behaviour": "proceed"})
    assert codes(unsigned)[0].startswith("request_")
    assert "trace.event.captured" not in event_types(unsigned)
    partial = s.ok(s.operator, "trace.capture", {"request": request("proceed"),
                                                  "error_behaviour": "proceed"})
    assert event_types(partial).count("trace.event.captured") == 1


# --- business rules found in review ----------------------------------------------------------


def test_a_certificate_may_not_outlast_its_accreditation(s: Scenario) -> None:
    now = s.chain.next_time
    assert s.code(s.certifier.key, "trace.anchor_certificate", {
        "merkle_root": "ab" * 32, "type": "ORGANIC", "scope": "*",
        "subject": {"kind": "product", "id": GTIN},
        "valid_from": now, "valid_until": now + 100 * 365 * DAY_MS}) == "beyond_accreditation"


def test_revoking_one_certificate_of_a_batch_stops_it_vouching(s: Scenario) -> None:
    wrapped, _ = s.certify()
    vouching = certificates.certificate_root(s.chain.get, GTIN, "ORGANIC", s.chain.time)
    assert vouching == wrapped[0].merkle_root
    s.ok(s.certifier.key, "trace.revoke_certificate",
         {"merkle_root": wrapped[0].merkle_root, "target_hash": wrapped[0].target_hash})
    assert certificates.certificate_root(s.chain.get, GTIN, "ORGANIC", s.chain.time) is None


def test_a_late_earlier_event_does_not_rewind_the_item(s: Scenario) -> None:
    commission(s, "9301")
    sold_at = s.chain.next_time
    s.capture(s.retailer, s.event(s.retailer, [sgtin("9301")], "retail_selling",
                                  action="OBSERVE", disposition="retail_sold", at=sold_at))
    state = item(s, "9301")["state"]
    late = s.capture(s.carrier, s.event(s.carrier, [sgtin("9301")], "shipping",
                                        action="OBSERVE", disposition="in_transit",
                                        at=sold_at - 60_000))
    assert "trace.event.captured" in event_types(late)  # recorded as history
    assert item(s, "9301")["state"] == state  # still sold


def test_a_buyer_travelling_with_the_product_is_no_clone(s: Scenario) -> None:
    """Found in review: sold and scanned in DE, scanned in FR a month later: flagged."""
    commission(s, "6101")
    s.capture(s.retailer, s.event(s.retailer, [sgtin("6101")], "retail_selling",
                                  action="OBSERVE", disposition="retail_sold"))
    s.scan(s.retailer.key, "6101", "DE")
    month = s.scan(s.carrier.key, "6101", "FR", time=s.chain.time + 30 * DAY_MS)
    assert "trace.clone.suspected" not in event_types(month)
    assert item(s, "6101")["clone_suspected"] is False


def test_only_a_prefix_licensee_registers_products_and_locations(s: Scenario) -> None:
    """Found in review: the retailer registered a GTIN (and a GLN) under the maker's GS1
    company prefix, became its brand owner and could commission "genuine" serials."""
    squatted = "06901234000030"  # under the maker's prefix 6901234
    assert s.code(s.retailer.key, "trace.register_product", {
        "gtin": squatted, "name": "fake tea", "company_prefix_length": 7}) == \
        "prefix_not_yours"
    assert s.code(s.retailer.key, "trace.register_location", {
        "gln": gln("6901234", "00009"), "name": "fake site", "country": "CN"}) == \
        "prefix_not_yours"
    unlicensed = "0501234500001" + identifiers.check_digit("0501234500001")
    assert s.code(s.retailer.key, "trace.register_product", {
        "gtin": unlicensed, "name": "no licence", "company_prefix_length": 7}) == \
        "unassigned_prefix"
    assert s.code(s.maker.key, "trace.register_product", {
        "gtin": squatted, "name": "tea", "company_prefix_length": 8}) == "bad_payload"
    s.ok(s.maker.key, "trace.register_product", {"gtin": squatted, "name": "tea",
                                                  "company_prefix_length": 7})


def test_prefixes_are_licensed_by_the_platform_and_never_nest(s: Scenario) -> None:
    assert s.code(s.maker.key, "trace.assign_prefix",
                  {"org": "shenzhen-maker", "prefix": "6911111"}) == "forbidden"
    for prefix in ("69012345", "690123", "6901234"):  # inside, around, equal to the maker's
        assert s.code(s.operator, "trace.assign_prefix",
                      {"org": "eu-retail", "prefix": prefix}) == "conflict", prefix
    for bad in ("12345", "1234567890123", "69O1234"):
        assert s.code(s.operator, "trace.assign_prefix",
                      {"org": "eu-retail", "prefix": bad}) == "bad_prefix", bad
    assert s.code(s.operator, "trace.assign_prefix",
                  {"org": "nobody", "prefix": "7000001"}) == "not_found"


def test_an_event_id_names_one_event(s: Scenario) -> None:
    """EPCIS 2.0: eventIDs are unique in a repository (found in review: a second,
    different event under a known ID was recorded and hidden behind the first)."""
    first = {**s.event(s.maker, [sgtin("9501")], "commissioning"), "eventID": "urn:uuid:e-1"}
    s.capture(s.maker, first)
    other = {**s.event(s.maker, [sgtin("9502")], "commissioning"), "eventID": "urn:uuid:e-1"}
    assert rejected_codes(s.capture(s.maker, other)) == ["duplicate_event_id"]
