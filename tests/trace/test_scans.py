"""Scans, secure tags and clone verdicts (docs/adr/0005-clone-verdicts.md, amended): a
verdict rests on evidence that a second copy exists which no stranger can make out of
genuine material — two registered retailers' shelves in two countries within a day, or
two different codes of the item's tag for one tap. Anything after decommissioning, and
anonymous scans, raise anomaly signals for the brand owner; they never decide."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from nacl.bindings import (
    crypto_core_ed25519_scalar_add,
    crypto_core_ed25519_scalar_mul,
    crypto_core_ed25519_scalar_reduce,
    crypto_scalarmult_ed25519_base_noclamp,
)

from services.ledger.core import crypto
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import InvalidTransaction
from services.ledger.sim.testnet import make_testnet
from services.trace.items import item_key
from services.trace.scans import (
    CLONE_WINDOW_MS,
    SCANS_PER_BATCH_MAX,
    TAG_CODES_KEPT,
    TAGS_PER_REGISTRATION_MAX,
    Scan,
    TagCode,
    judge_scan,
    tag_code,
    tag_message,
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


def anomalies(result: Any) -> list[dict[str, Any]]:
    return [dict(e.attributes) for e in result.events if e.type == "trace.anomaly.raised"]


def test_evidence_after_decommissioning_is_an_anomaly_never_a_verdict(s: Scenario) -> None:
    """A reader seeing a decommissioned item, or its genuine tag answering: the genuine
    goods or tag are still about (a recall, goods diverted instead of destroyed, a tag
    moved onto other goods) — a signal for the brand owner, not proof of a copy."""
    commission(s, "7004", "7005")
    decommission(s, "7004")
    seen = s.scan(s.retailer.key, "7004", "DE")
    assert "trace.clone.suspected" not in event_types(seen)
    assert anomalies(seen) == [{
        "epc": link("7004"), "brand_owner": "shenzhen-maker", "country": "DE",
        "code": "after_decommissioning", "evidence": "reader",
        "reason": "scanned in DE by registered reader eu-retail after it was "
                  "decommissioned"}]
    assert item(s, "7004")["clone_suspected"] is False
    tag = s.tag("7005")
    decommission(s, "7005")
    tapped = s.scan(s.operator, "7005", "FR", proof=s.tap(tag, "7005", 1))
    assert recorded(tapped)["evidence"] == "possession"
    assert "trace.clone.suspected" not in event_types(tapped)
    [signal] = anomalies(tapped)
    assert (signal["code"], signal["evidence"]) == ("after_decommissioning", "possession")
    assert "its own tag" in signal["reason"]
    assert item(s, "7005")["clone_suspected"] is False


def test_a_code_harvested_before_decommissioning_brands_nothing(s: Scenario) -> None:
    """Review finding 1: a tag code carries no time. A stranger taps the tin in the shop
    with an NFC app (code 2, never sent); once the tin is decommissioned, the harvested
    code is fresh to the chain. It used to brand the item a clone for good."""
    commission(s, "7011")
    tag = s.tag("7011")
    s.scan(s.operator, "7011", "DE", proof=s.tap(tag, "7011", 1))
    harvested = s.tap(tag, "7011", 2)
    decommission(s, "7011")
    late = s.scan(s.operator, "7011", "CN", proof=harvested)
    assert recorded(late)["proof"] == "valid"
    assert "trace.clone.suspected" not in event_types(late)
    assert [a["code"] for a in anomalies(late)] == ["after_decommissioning"]
    assert item(s, "7011")["clone_suspected"] is False


def test_a_recall_of_goods_in_consumers_hands_brands_nothing(s: Scenario) -> None:
    """The brand owner recalls (decommissions) a batch still in kitchens: consumers
    tapping their genuine tins afterwards see a decommissioned item, not a clone."""
    commission(s, "7012")
    tag = s.tag("7012")
    s.scan(s.operator, "7012", "DE", proof=s.tap(tag, "7012", 1))
    decommission(s, "7012")
    for counter in (2, 3):
        tap = s.scan(s.operator, "7012", "DE", proof=s.tap(tag, "7012", counter),
                     time=s.chain.time + 2 * CLONE_WINDOW_MS)
        assert "trace.clone.suspected" not in event_types(tap)
        assert [a["code"] for a in anomalies(tap)] == ["after_decommissioning"]
    record = item(s, "7012")
    assert record["clone_suspected"] is False and record["anomalies"] == 2
    assert record["state"] == "decommissioned"


def test_made_up_scans_cannot_hide_evidence_after_decommissioning(s: Scenario) -> None:
    """One anomaly per item per window holds a flood of made-up scans to one signal;
    but an anonymous scan must not silence the genuine tag answering after
    decommissioning (nor may the tag, tapped again and again, raise more than one)."""
    commission(s, "7013")
    tag = s.tag("7013")
    decommission(s, "7013")
    first = s.scan(s.operator, "7013", "DE")
    assert [(a["code"], a["evidence"]) for a in anomalies(first)] == [
        ("after_decommissioning", "anonymous")]
    assert anomalies(s.scan(s.operator, "7013", "FR")) == []
    tapped = s.scan(s.operator, "7013", "DE", proof=s.tap(tag, "7013", 1))
    assert [(a["code"], a["evidence"]) for a in anomalies(tapped)] == [
        ("after_decommissioning", "possession")]
    assert anomalies(s.scan(s.operator, "7013", "DE", proof=s.tap(tag, "7013", 2))) == []
    assert anomalies(s.scan(s.retailer.key, "7013", "DE")) == []
    assert item(s, "7013")["anomalies"] == 2


# --- a cloned tag: two different codes for one tap ---------------------------------------


def hedged_code(key: PrivateKey, link_: str, counter: int, nonce: bytes) -> TagCode:
    """A valid code signed with the tag's key but not as RFC 8032 signs (its nonce drawn
    rather than derived): what a chip emulator holding an extracted key may answer.
    The genuine chip signs each counter once, deterministically."""
    message = tag_message(link_, counter)
    digest = hashlib.sha512(key.seed).digest()
    clamped = bytearray(digest[:32])
    clamped[0] &= 248
    clamped[31] &= 127
    clamped[31] |= 64
    secret = crypto_core_ed25519_scalar_reduce(bytes(clamped) + bytes(32))
    r = crypto_core_ed25519_scalar_reduce(hashlib.sha512(nonce + message).digest())
    big_r = crypto_scalarmult_ed25519_base_noclamp(r)
    k = crypto_core_ed25519_scalar_reduce(
        hashlib.sha512(big_r + key.public.raw + message).digest())
    signature = big_r + crypto_core_ed25519_scalar_add(
        r, crypto_core_ed25519_scalar_mul(k, secret))
    assert crypto.verify(key.public.raw, signature, message)
    return TagCode(counter, signature)


def test_two_codes_for_one_tap_show_a_cloned_tag(s: Scenario) -> None:
    """No stranger can make a second valid signature (strict Ed25519 is strongly
    unforgeable), and the genuine chip signs each counter once: a second, different
    code for a counter the chain accepted shows the key signing outside the chip."""
    commission(s, "7014")
    tag = s.tag("7014")
    s.scan(s.operator, "7014", "DE", proof=s.tap(tag, "7014", 5))
    other = hedged_code(tag, link("7014"), 5, b"clone")
    assert other.signature != tag_code(tag, link("7014"), 5).signature
    caught = s.scan(s.operator, "7014", "CN", proof=other.to_payload())
    assert recorded(caught)["proof"] == "replayed"
    suspected = [dict(e.attributes) for e in caught.events
                 if e.type == "trace.clone.suspected"]
    assert suspected == [{
        "epc": link("7014"), "brand_owner": "shenzhen-maker", "country": "CN",
        "code": "cloned_tag",
        "reason": "two different codes of its tag for tap 5: its key signs outside the "
                  "genuine chip"}]
    assert item(s, "7014")["clone_suspected"] is True


def test_a_code_below_the_counter_is_no_evidence(s: Scenario) -> None:
    """A lower counter alone proves nothing: a genuine tap nobody sent (code 3, from a
    shopper's NFC app) presented after a later one (code 4), or a recorded code copied,
    is the genuine tag's. Neither brands the item."""
    commission(s, "7015")
    tag = s.tag("7015")
    unsent = s.tap(tag, "7015", 3)
    s.scan(s.operator, "7015", "DE", proof=s.tap(tag, "7015", 4))
    for proof in (unsent, s.tap(tag, "7015", 4)):
        late = s.scan(s.operator, "7015", "DE", proof=proof)
        assert recorded(late)["proof"] == "replayed"
        assert "trace.clone.suspected" not in event_types(late)
    assert item(s, "7015")["clone_suspected"] is False


def test_the_item_keeps_its_last_accepted_codes(s: Scenario) -> None:
    commission(s, "7016")
    tag = s.tag("7016")
    for counter in range(1, TAG_CODES_KEPT + 3):
        s.scan(s.operator, "7016", "DE", proof=s.tap(tag, "7016", counter))
    kept = item(s, "7016")["tag_codes"]
    assert [c for c, _ in kept] == list(range(3, TAG_CODES_KEPT + 3))
    assert kept[-1][1] == tag_code(tag, link("7016"), TAG_CODES_KEPT + 2).signature.hex()


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


def test_only_the_platform_relays_anonymous_scans(s: Scenario) -> None:
    """Review finding 3: SCANNER_ROLES held "observer", which any member organisation
    may have (the trace-center validator's in the shipped genesis): such an organisation
    sent trace.record_scans itself, 500 anonymous scans a transaction, past the
    gateway's scan budget, and raised an anomaly on every item it named."""
    trace_center = s.chain.genesis.organisations[1]
    assert (trace_center.id, trace_center.roles) == ("trace-center", ("observer",))
    center_admin = make_testnet().admin_keys[1]  # the scenario's testnet, same keys
    commission(s, "7007")
    scan = {"epc": sgtin("7007"), "country": "DE"}
    assert s.code(center_admin, "trace.record_scans", {"scans": [scan]}) == "forbidden"
    assert s.code(center_admin, "trace.record_scan", scan) == "forbidden"
    watchdog = PrivateKey.derive("trace/watchdog")
    s.ok(s.operator, "consortium.register_organisation",
         {"id": "watchdog", "name": "watchdog", "roles": ["observer"],
          "admin_key": watchdog.public.hex()})
    assert s.code(watchdog, "trace.record_scans", {"scans": [scan]}) == "forbidden"
    assert item(s, "7007")["scans"] == 0
    # the gateway's relay key is a member key of the platform operator: it still relays
    assert recorded(s.ok(s.operator, "trace.record_scans", {"scans": [scan]}))[
        "evidence"] == "anonymous"


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
    assert anomalies(first) == [{"epc": link("7201"), "brand_owner": "shenzhen-maker",
                          "country": "CN", "code": "country_conflict",
                          "evidence": "anonymous",
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
    assert (anonymous.anomaly_code, reader.clone_code) == ("country_conflict",
                                                           "shelf_conflict")


def test_judge_scan_never_brands_on_decommissioning() -> None:
    """Whatever answers after decommissioning — a reader, a fresh tag code, anyone — the
    judgement is an anomaly (the gateway's verify endpoint tells the consumer
    "decommissioned" with a warning), never a clone verdict."""
    key = PrivateKey.derive("trace/tag/pure")
    gone = {"epc": link("2"), "state": "decommissioned", "brand_owner": "maker",
            "clone_suspected": False, "tag_key": key.public.hex(), "tag_counter": 1,
            "tag_codes": [[1, tag_code(key, link("2"), 1).signature.hex()]]}
    for scan, reader in ((Scan(link("2"), "DE"), "retailer"),
                         (Scan(link("2"), "DE", tag_code(key, link("2"), 9)), None),
                         (Scan(link("2"), "DE", tag_code(key, link("2"), 1)), None),
                         (Scan(link("2"), "DE"), None)):
        judgement = judge_scan(gone, scan, DAY_MS, reader=reader)
        assert judgement.clone_reason is None and judgement.clone_code is None
        assert judgement.anomaly_code == "after_decommissioning"
