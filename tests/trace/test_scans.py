"""Scans, secure tags and clone verdicts (docs/adr/0005-clone-verdicts.md): a verdict
rests on evidence a stranger cannot forge — a registered reader's own scan, or a
fresh code of the item's tag — and anonymous scans never decide anything."""

from __future__ import annotations

from typing import Any

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import InvalidTransaction
from services.trace.items import item_key
from services.trace.scans import (
    CLONE_WINDOW_MS,
    SCANS_PER_BATCH_MAX,
    TAGS_PER_REGISTRATION_MAX,
    Scan,
    judge_scan,
    tag_code,
)
from tests.ledger.core.conftest import event_types
from tests.trace.scenario import DAY_MS, Scenario, build, link, sgtin

HOUR_MS = 3_600_000


@pytest.fixture
def s() -> Scenario:
    return build()


def item(s: Scenario, serial: str) -> dict[str, Any]:
    key = item_key(sgtin(serial))
    assert key is not None
    found: dict[str, Any] = s.chain.get(f"trace/{key}")
    return found


def commission(s: Scenario, *serials: str) -> None:
    result = s.capture(s.maker, s.event(s.maker, [sgtin(x) for x in serials],
                                        "commissioning"))
    assert not result.rejected


def decommission(s: Scenario, serial: str) -> None:
    result = s.capture(s.maker, s.event(s.maker, [sgtin(serial)], "decommissioning",
                                        disposition="destroyed"))
    assert not result.rejected


def recorded(result: Any) -> dict[str, Any]:
    found = [e for e in result.events if e.type == "trace.scan.recorded"]
    assert len(found) == 1
    return dict(found[0].attributes)


def static_code(s: Scenario, key: PrivateKey, kind: str, payload: dict[str, Any]) -> str:
    tx = s.chain.tx(key, kind, payload, nonce=s.chain.next_nonce(key.key_id))
    with pytest.raises(InvalidTransaction) as refused:
        s.chain.check_static(tx)
    return refused.value.code


# --- evidence of place: registered readers ----------------------------------------------------


def test_two_retailers_in_two_countries_within_the_window_flag_a_clone(
        s: Scenario) -> None:
    """One item is on one shelf: two shops in two countries the same day show a copy."""
    commission(s, "7001")
    first = s.scan(s.retailer.key, "7001", "DE")
    assert recorded(first) == {"epc": link("7001"), "country": "DE", "scans": 1,
                               "evidence": "reader", "proof": "absent",
                               "reader": "eu-retail"}
    second = s.scan(s.second_retailer.key, "7001", "FR", time=s.chain.time + 20 * HOUR_MS)
    suspected = [e for e in second.events if e.type == "trace.clone.suspected"]
    assert suspected and suspected[0].attributes["brand_owner"] == "shenzhen-maker"
    assert "eu-retail in DE and fr-retail in FR" in suspected[0].attributes["reason"]
    assert item(s, "7001")["clone_suspected"] is True


def test_custody_readers_across_borders_flag_nothing(s: Scenario) -> None:
    """The route itself: a rail carrier scans in PL, the retailer receives in DE hours
    later. Custody scans follow goods across borders; they never conflict."""
    commission(s, "7008")
    s.scan(s.carrier.key, "7008", "PL")
    arrival = s.scan(s.retailer.key, "7008", "DE", time=s.chain.time + 6 * HOUR_MS)
    assert "trace.clone.suspected" not in event_types(arrival)
    assert item(s, "7008")["clone_suspected"] is False


def test_retailers_outside_the_window_flag_nothing(s: Scenario) -> None:
    commission(s, "7002")
    s.scan(s.retailer.key, "7002", "DE")
    later = s.scan(s.second_retailer.key, "7002", "FR",
                   time=s.chain.time + CLONE_WINDOW_MS)
    assert "trace.clone.suspected" not in event_types(later)
    assert item(s, "7002")["clone_suspected"] is False


def test_one_reader_follows_its_goods_across_borders(s: Scenario) -> None:
    """A carrier's own scans at departure and arrival are hours and a border apart."""
    commission(s, "7003")
    s.scan(s.carrier.key, "7003", "PL")
    arrival = s.scan(s.carrier.key, "7003", "DE")
    assert "trace.clone.suspected" not in event_types(arrival)
    assert item(s, "7003")["clone_suspected"] is False


def test_an_evidence_scan_after_decommissioning_flags_a_clone(s: Scenario) -> None:
    commission(s, "7004", "7005")
    decommission(s, "7004")
    seen = s.scan(s.retailer.key, "7004", "DE")
    assert "trace.clone.suspected" in event_types(seen)
    assert item(s, "7004")["clone_suspected"] is True
    # the genuine tag answering after its item was destroyed: the tag was reused
    tag = s.tag("7005")
    decommission(s, "7005")
    reused = s.scan(s.operator, "7005", "FR", proof=s.tap(tag, "7005", 1))
    reasons = [e.attributes["reason"] for e in reused.events
               if e.type == "trace.clone.suspected"]
    assert reasons and "its own tag" in reasons[0]
    assert recorded(reused)["evidence"] == "possession"


def test_a_merchant_is_no_reader(s: Scenario) -> None:
    merchant = PrivateKey.derive("trace/merchant")
    s.ok(s.operator, "consortium.register_organisation",
         {"id": "a-merchant", "name": "a merchant", "roles": ["merchant"],
          "admin_key": merchant.public.hex()})
    commission(s, "7006")
    assert s.code(merchant, "trace.record_scan", {"epc": sgtin("7006"),
                                                  "country": "DE"}) == "forbidden"
    # and a reader sends its own scans one by one: the batch is the relay's
    assert s.code(s.carrier.key, "trace.record_scans", {"scans": [
        {"epc": sgtin("7006"), "country": "PL"}]}) == "forbidden"


# --- evidence of possession: secure tags ------------------------------------------------------


def test_a_fresh_tag_code_is_valid_and_advances_the_counter(s: Scenario) -> None:
    commission(s, "7101")
    tag = s.tag("7101")
    assert item(s, "7101")["tag_counter"] == 0
    first = s.scan(s.operator, "7101", "DE", proof=s.tap(tag, "7101", 17))
    assert recorded(first)["proof"] == "valid"
    assert recorded(first)["evidence"] == "possession"
    assert item(s, "7101")["tag_counter"] == 17
    assert s.scan(s.operator, "7101", "DE", proof=s.tap(tag, "7101", 18)).events
    assert item(s, "7101")["tag_counter"] == 18
    assert item(s, "7101").get("anonymous_scans", 0) == 0


def test_a_replayed_code_judges_the_scan_never_the_item(s: Scenario) -> None:
    """Every accepted code is public on the chain: anyone can present it again."""
    commission(s, "7102")
    tag = s.tag("7102")
    s.scan(s.operator, "7102", "DE", proof=s.tap(tag, "7102", 5))
    for counter in (5, 4):
        again = s.scan(s.operator, "7102", "CN", proof=s.tap(tag, "7102", counter))
        assert recorded(again)["proof"] == "replayed"
        assert recorded(again)["evidence"] == "anonymous"
        replayed = [e.attributes for e in again.events if e.type == "trace.scan.replayed"]
        assert replayed == [{"epc": link("7102"), "brand_owner": "shenzhen-maker",
                             "country": "CN", "counter": counter, "tag_counter": 5}]
        assert "trace.clone.suspected" not in event_types(again)
    record = item(s, "7102")
    assert record["replays"] == 2 and record["tag_counter"] == 5
    assert record["clone_suspected"] is False


def test_a_forged_code_is_invalid(s: Scenario) -> None:
    commission(s, "7103", "7104")
    tag = s.tag("7103")
    forger = PrivateKey.derive("trace/forger")
    forged = tag_code(forger, link("7103"), 99).to_payload()
    assert recorded(s.scan(s.operator, "7103", "DE", proof=forged))["proof"] == "invalid"
    # a genuine code of another item proves nothing about this one
    other = s.tap(tag, "7103", 1) | {}
    assert recorded(s.scan(s.operator, "7104", "DE", proof=other))["proof"] == "invalid"
    # a code for an item without a tag
    assert recorded(s.scan(s.operator, "7104", "DE", proof=s.tap(tag, "7104", 1))
                    )["proof"] == "invalid"
    record = item(s, "7103")
    assert record["tag_counter"] == 0 and record["anonymous_scans"] == 1


def test_possession_proves_the_tag_not_the_place(s: Scenario) -> None:
    """Whoever taps the genuine tin (on a shop shelf, say) chooses the country it
    claims: two fresh codes 'from' DE and CN are no clone, only a weak signal."""
    commission(s, "7105")
    tag = s.tag("7105")
    s.scan(s.operator, "7105", "DE", proof=s.tap(tag, "7105", 1))
    second = s.scan(s.operator, "7105", "CN", proof=s.tap(tag, "7105", 2))
    assert recorded(second)["proof"] == "valid"
    assert "trace.clone.suspected" not in event_types(second)
    assert "trace.anomaly.raised" in event_types(second)
    assert item(s, "7105")["clone_suspected"] is False


# --- anonymous scans: counted, at most one weak signal per window ---------------------------


def test_anonymous_conflicts_raise_one_anomaly_per_item_per_window(s: Scenario) -> None:
    commission(s, "7201")
    s.scan(s.operator, "7201", "DE")
    first = s.scan(s.operator, "7201", "CN")
    anomalies = [e.attributes for e in first.events if e.type == "trace.anomaly.raised"]
    assert anomalies == [{"epc": link("7201"), "brand_owner": "shenzhen-maker",
                          "country": "CN",
                          "reason": "unproven scans in DE and CN within 24 hours"}]
    for country in ("FR", "US", "DE"):
        assert "trace.anomaly.raised" not in event_types(s.scan(s.operator, "7201", country))
    s.scan(s.operator, "7201", "DE", time=s.chain.time + CLONE_WINDOW_MS)
    assert "trace.anomaly.raised" in event_types(s.scan(s.operator, "7201", "CN"))
    record = item(s, "7201")
    assert record["anomalies"] == 2 and record["anonymous_scans"] == 7
    assert record["clone_suspected"] is False


def test_a_batch_of_relayed_scans_is_judged_scan_by_scan(s: Scenario) -> None:
    commission(s, "7301", "7302")
    tag = s.tag("7301")
    code = s.tap(tag, "7301", 3)
    result = s.ok(s.operator, "trace.record_scans", {"scans": [
        {"epc": sgtin("7301"), "country": "DE", "proof": code},
        {"epc": link("7301"), "country": "DE", "proof": code},  # the same code again
        {"epc": sgtin("7302"), "country": "FR"},
        {"epc": sgtin("7399"), "country": "FR"}]})
    proofs = [e.attributes["proof"] for e in result.events
              if e.type == "trace.scan.recorded"]
    assert proofs == ["valid", "replayed", "absent"]
    assert "trace.scan.unknown" in event_types(result)
    assert item(s, "7301")["tag_counter"] == 3


def test_record_scans_bounds(s: Scenario) -> None:
    scan = {"epc": sgtin("7401"), "country": "DE"}
    for payload, code in (
            ({"scans": []}, "bad_payload"),
            ({"scans": [scan] * (SCANS_PER_BATCH_MAX + 1)}, "too_many_scans"),
            ({"scans": [scan], "more": 1}, "bad_payload"),
            ({"scans": [{**scan, "country": "de"}]}, "bad_payload"),
            ({"scans": [{**scan, "where": "x"}]}, "bad_payload"),
            ({"scans": [{**scan, "epc": "urn:epc:id:sscc:0614141.1234567890"}]},
             "bad_identifier"),
            ({"scans": [{**scan, "proof": {"counter": -1, "signature": "00" * 64}}]},
             "bad_proof"),
            ({"scans": [{**scan, "proof": {"counter": 1, "signature": "AB" * 64}}]},
             "bad_proof"),
            ({"scans": [{**scan, "proof": None}]}, "bad_proof")):
        assert static_code(s, s.operator, "trace.record_scans", payload) == code, payload
        assert s.code(s.operator, "trace.record_scans", payload) == code, payload
    assert s.ok(s.operator, "trace.record_scans", {"scans": [scan] * SCANS_PER_BATCH_MAX})


# --- registering tags ---------------------------------------------------------------------------


def tags(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"tags": [{"epc": epc, "public_key": key} for epc, key in pairs]}


def test_only_the_brand_owner_registers_one_tag_per_item(s: Scenario) -> None:
    commission(s, "7501", "7502")
    key = PrivateKey.derive("trace/tag/75").public.hex()
    assert s.code(s.retailer.key, "trace.register_tags",
                  tags((sgtin("7501"), key))) == "forbidden"
    assert s.code(s.maker.key, "trace.register_tags",
                  tags((sgtin("7599"), key))) == "unknown_item"
    result = s.ok(s.maker.key, "trace.register_tags", tags((sgtin("7501"), key)))
    assert [e.attributes for e in result.events if e.type == "trace.tag.registered"] == [
        {"epc": link("7501"), "brand_owner": "shenzhen-maker", "public_key": key}]
    again = PrivateKey.derive("trace/tag/other").public.hex()
    assert s.code(s.maker.key, "trace.register_tags",
                  tags((sgtin("7501"), again))) == "tag_registered"
    # all or nothing: the second item of a refused registration stays untagged
    assert s.code(s.maker.key, "trace.register_tags",
                  tags((sgtin("7502"), again), (sgtin("7501"), again))) == "tag_registered"
    assert "tag_key" not in item(s, "7502")
    decommission(s, "7502")
    assert s.code(s.maker.key, "trace.register_tags",
                  tags((sgtin("7502"), again))) == "decommissioned"


def test_register_tags_refuses_malformed_registrations(s: Scenario) -> None:
    good = PrivateKey.derive("trace/tag/76").public.hex()
    small_order = "01" + "00" * 31  # the identity point: no signature could be trusted
    off_curve = "02" + "00" * 31
    for payload, code in (
            ({"tags": []}, "bad_payload"),
            (tags(*[(sgtin(f"76{n:04d}"), good)
                    for n in range(TAGS_PER_REGISTRATION_MAX + 1)]), "too_many_tags"),
            (tags((sgtin("7601"), small_order)), "bad_tag_key"),
            (tags((sgtin("7601"), off_curve)), "bad_tag_key"),
            (tags((sgtin("7601"), good.upper())), "bad_tag_key"),
            (tags((sgtin("7601"), good[:-2])), "bad_tag_key"),
            (tags((sgtin("7601"), good), (link("7601"), good)), "duplicate_tag"),
            ({"tags": [{"epc": sgtin("7601")}]}, "bad_payload"),
            (tags(("urn:epc:id:sscc:0614141.1234567890", good)), "bad_identifier")):
        assert static_code(s, s.maker.key, "trace.register_tags", payload) == code
        assert s.code(s.maker.key, "trace.register_tags", payload) == code


# --- one judgement for the chain and the verify endpoint ---------------------------------------


def test_judge_scan_is_pure_and_anonymous_scans_never_decide() -> None:
    base = {"epc": link("1"), "state": "commissioned", "brand_owner": "maker",
            "clone_suspected": False, "last_scan_country": "DE", "last_scan_time": 0,
            "last_reader": "fr-shop", "last_reader_country": "FR", "last_reader_time": 0,
            "last_shelf": "fr-shop", "last_shelf_country": "FR", "last_shelf_time": 0}
    anonymous = judge_scan(base, Scan(link("1"), "CN"), DAY_MS // 2, reader=None)
    assert (anonymous.evidence, anonymous.proof, anonymous.clone_reason) == (
        "anonymous", "absent", None)
    assert anonymous.anomaly is not None
    for state in ("commissioned", "decommissioned"):
        assert judge_scan({**base, "state": state}, Scan(link("1"), "CN"), 1,
                          reader=None).clone_reason is None
    reader = judge_scan(base, Scan(link("1"), "DE"), DAY_MS // 2, reader="retailer",
                        shelf=True)
    assert reader.evidence == "reader" and reader.clone_reason is not None
    assert reader.anomaly is None
    custody = judge_scan(base, Scan(link("1"), "DE"), DAY_MS // 2, reader="carrier")
    assert custody.evidence == "reader" and custody.clone_reason is None
