"""The privacy contract's rules on a hand-driven chain (composition version 2): keys,
records, grants on block time, purposes, legal bases, PIPL consent, every access
recorded, erasure with acknowledgements and deadlines, match attestations — each
rule with its negative."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import InvalidTransaction
from services.ledger.core.execution import BlockExecution
from services.ledger.sim.testnet import make_testnet
from services.privacy.grants import judge_access
from services.privacy.keys import is_exchange_key
from services.privacy.matching import normalize, verdict
from services.privacy.vocabulary import ERASURE_ACK_MS, GRANT_MS_MAX, MATCH_WINDOW_MS
from tests.ledger.core.conftest import Chain, event_types, rejected_codes

DAY_MS = 86_400_000


def pub(label: str) -> str:
    """A usable X25519 public key's hex (any 32 bytes not of small order will do here)."""
    return hashlib.sha256(label.encode()).hexdigest()


def h(label: str) -> str:
    return hashlib.sha256(f"hash/{label}".encode()).hexdigest()


@dataclass
class World:
    chain: Chain
    operator: PrivateKey  # platform org admin (also the vault custodian's org)
    customs: PrivateKey  # customs-joint admin (customs_cn, customs_eu)
    carrier: PrivateKey  # a carrier org admin
    shop: PrivateKey  # a merchant org admin (no legal basis)
    alice: PrivateKey  # a consumer (subject), in DE
    li: PrivateKey  # a consumer (subject), in CN

    def run(self, key: PrivateKey, action: str, payload: dict[str, Any],
            time: int | None = None) -> BlockExecution:
        tx = self.chain.tx(key, f"privacy.{action}", payload, created_at=time)
        return self.chain.block([tx], time=time)

    def ok(self, key: PrivateKey, action: str, payload: dict[str, Any],
           time: int | None = None) -> BlockExecution:
        result = self.run(key, action, payload, time)
        assert not result.rejected, rejected_codes(result)
        return result

    def code(self, key: PrivateKey, action: str, payload: dict[str, Any],
             time: int | None = None) -> str:
        result = self.run(key, action, payload, time)
        assert len(result.rejected) == 1, "expected a refusal"
        return result.rejected[0].code

    def record(self, key: PrivateKey, *, holders: list[str] | None = None,
               category: str = "address", jurisdiction: str = "DE",
               **extra: Any) -> str:
        tx = self.chain.tx(key, "privacy.create_record", {
            "category": category, "commitment": h(f"c/{key.key_id}/{self.chain.height}"),
            "ciphertext_hash": h(f"x/{key.key_id}/{self.chain.height}"),
            "jurisdiction": jurisdiction,
            "holders": holders or [f"key:{key.key_id}"], **extra})
        result = self.chain.block([tx])
        assert not result.rejected, rejected_codes(result)
        return tx.hash.hex()

    def get(self, key: str) -> Any:
        return self.chain.get(f"privacy/{key}")

    def events(self, result: BlockExecution, kind: str) -> list[dict[str, Any]]:
        return [dict(e.attributes) for e in result.events if e.type == kind]


@pytest.fixture
def w() -> World:
    net = make_testnet(composition=2)
    chain = Chain(net.genesis)
    operator = net.admin_keys[0]  # "operator", role platform
    customs = net.admin_keys[2]  # "customs-joint", customs_cn and customs_eu
    keys = {name: PrivateKey.derive(f"privacy/{name}") for name in
            ("carrier", "shop", "alice", "li")}
    roles = {"carrier": "carrier", "shop": "merchant", "alice": "consumer", "li": "consumer"}
    for name, key in keys.items():
        tx = chain.tx(operator, "consortium.register_organisation",
                      {"id": f"org-{name}", "name": name, "roles": [roles[name]],
                       "admin_key": key.public.hex()})
        assert not chain.block([tx]).rejected
    world = World(chain, operator, customs, keys["carrier"], keys["shop"], keys["alice"],
                  keys["li"])
    world.ok(customs, "register_key", {"scope": "org", "public_key": pub("customs"),
                                       "country": "DE"})
    world.ok(world.carrier, "register_key", {"scope": "org", "public_key": pub("carrier"),
                                             "country": "PL"})
    world.ok(world.shop, "register_key", {"scope": "org", "public_key": pub("shop"),
                                          "country": "NL"})
    world.ok(world.alice, "register_key", {"scope": "self", "public_key": pub("alice"),
                                           "country": "DE"})
    world.ok(world.li, "register_key", {"scope": "self", "public_key": pub("li"),
                                        "country": "CN"})
    return world


def alice_party(w: World) -> str:
    return f"key:{w.alice.key_id}"


def grant(w: World, record: str, grantee: str = "org:org-carrier", purpose: str = "delivery",
          until: int | None = None, **extra: Any) -> BlockExecution:
    return w.run(w.alice, "grant", {
        "record_id": record, "grantee": grantee, "purpose": purpose,
        "until": w.chain.next_time + DAY_MS if until is None else until,
        "wrap_hash": h(f"wrap/{grantee}"), **extra})


def access(w: World, key: PrivateKey, record: str, purpose: str = "delivery",
           basis: str = "grant", **extra: Any) -> dict[str, Any]:
    result = w.ok(key, "access", {"record_id": record, "purpose": purpose, "basis": basis,
                                  **extra})
    granted = w.events(result, "privacy.access.granted")
    if granted:
        return {"granted": True, **granted[0]}
    (refused,) = w.events(result, "privacy.access.refused")
    return {"granted": False, **refused}


# --- the composition ---------------------------------------------------------------------------

def test_the_vault_exists_from_composition_2_only() -> None:
    old = Chain(make_testnet().genesis)
    tx = old.tx(make_testnet().admin_keys[0], "privacy.register_key",
                {"scope": "org", "public_key": pub("x"), "country": "DE"})
    assert rejected_codes(old.block([tx])) == ["unknown_kind"]


# --- encryption keys ----------------------------------------------------------------------------

def test_keys_are_registered_rotated_and_revoked(w: World) -> None:
    first = w.get(f"enckey/{alice_party(w)}")
    assert first["status"] == "active" and first["country"] == "DE"
    assert first["key_id"] == hashlib.sha256(bytes.fromhex(pub("alice"))).hexdigest()[:32]
    rotated = w.ok(w.alice, "register_key", {"scope": "self", "public_key": pub("alice2"),
                                             "country": "DE"})
    assert w.events(rotated, "privacy.key.registered")[0]["rotated"] is True
    record = w.get(f"enckey/{alice_party(w)}")
    assert record["public_key"] == pub("alice2")
    assert record["previous"][-1]["public_key"] == pub("alice")
    w.ok(w.alice, "revoke_key", {"scope": "self"})
    assert w.get(f"enckey/{alice_party(w)}")["status"] == "revoked"
    assert w.code(w.alice, "revoke_key", {"scope": "self"}) == "not_found"


def test_key_registration_refusals(w: World) -> None:
    small_order = "00" * 32
    cases = [
        (w.alice, {"scope": "self", "public_key": small_order, "country": "DE"},
         "bad_encryption_key"),
        (w.alice, {"scope": "self", "public_key": "AB" * 32, "country": "DE"}, "bad_payload"),
        (w.alice, {"scope": "self", "public_key": pub("z"), "country": "de"}, "bad_payload"),
        (w.alice, {"scope": "nobody", "public_key": pub("z"), "country": "DE"},
         "bad_payload"),
        (w.alice, {"scope": "self", "public_key": pub("alice"), "country": "DE"}, "conflict"),
    ]
    for key, payload, code in cases:
        assert w.code(key, "register_key", payload) == code, payload
    assert not is_exchange_key(bytes(32)) and not is_exchange_key(b"\x01" * 31)
    assert not is_exchange_key(bytes.fromhex("ed" + "ff" * 30 + "ff"))  # high bit ignored


def test_only_an_admin_registers_its_organisations_key(w: World) -> None:
    member = PrivateKey.derive("privacy/carrier-member")
    w.ok(w.carrier, "register_key", {"scope": "org", "public_key": pub("carrier2"),
                                     "country": "PL"})  # its admin may (a rotation)
    tx = w.chain.tx(w.carrier, "consortium.add_key", {"public_key": member.public.hex(),
                                                      "permissions": ["member"]})
    assert not w.chain.block([tx]).rejected
    assert w.code(member, "register_key", {"scope": "org", "public_key": pub("m"),
                                           "country": "PL"}) == "forbidden"


# --- records ---------------------------------------------------------------------------------

def test_a_record_holds_commitments_never_values(w: World) -> None:
    record_id = w.record(w.alice, holders=[alice_party(w), "org:customs-joint"])
    record = w.get(f"record/{record_id}")
    assert record["subject"] == w.alice.key_id and record["status"] == "active"
    assert set(record["holders"]) == {alice_party(w), "org:customs-joint"}
    assert w.get(f"subject/{w.alice.key_id}") == [record_id]


def test_no_free_text_reaches_the_chain(w: World) -> None:
    tx = w.chain.tx(w.alice, "privacy.create_record", {
        "category": "address", "commitment": h("c"), "ciphertext_hash": h("x"),
        "jurisdiction": "DE", "holders": [alice_party(w)],
        "note": "Hauptstrasse 1, Berlin"})
    with pytest.raises(InvalidTransaction) as refused:
        w.chain.check_static(tx)
    assert refused.value.code == "bad_payload"
    assert "unknown payload fields ['note']" in str(refused.value)


def test_record_refusals(w: World) -> None:
    base = {"category": "address", "commitment": h("c"), "ciphertext_hash": h("x"),
            "jurisdiction": "DE", "holders": [alice_party(w)]}
    cases = [
        ({**base, "category": "shoe_size"}, "bad_payload"),
        ({**base, "commitment": "nothex"}, "bad_payload"),
        ({**base, "jurisdiction": "Germany"}, "bad_payload"),
        ({**base, "holders": []}, "bad_payload"),
        ({**base, "holders": ["org:customs-joint"]}, "bad_payload"),  # not the subject's
        ({**base, "holders": [alice_party(w), alice_party(w)]}, "bad_payload"),
        ({**base, "holders": [alice_party(w), "vault"]}, "bad_payload"),
        ({**base, "holders": [alice_party(w), "org:nobody"]}, "no_encryption_key"),
        ({**base, "holders": [alice_party(w)] + [f"org:x{i}" for i in range(9)]},
         "bad_payload"),
    ]
    for payload, code in cases:
        assert w.code(w.alice, "create_record", payload) == code, payload
    stranger = PrivateKey.derive("privacy/no-key")
    tx = w.chain.tx(w.operator, "consortium.add_key", {"public_key": stranger.public.hex(),
                                                       "permissions": ["member"]})
    assert not w.chain.block([tx]).rejected
    assert w.code(stranger, "create_record", {
        **base, "holders": [f"key:{stranger.key_id}"]}) == "no_encryption_key"


def test_pipl_a_chinese_subjects_record_leaves_china_only_with_consent(w: World) -> None:
    li = f"key:{w.li.key_id}"
    refused = w.code(w.li, "create_record", {
        "category": "name", "commitment": h("n"), "ciphertext_hash": h("nx"),
        "jurisdiction": "CN", "holders": [li, "org:customs-joint"]})
    assert refused == "cross_border_consent_required"
    record_id = w.record(w.li, holders=[li], category="name", jurisdiction="CN")
    assert w.run(w.li, "grant", {"record_id": record_id, "grantee": "org:org-carrier",
                                 "purpose": "delivery", "until": w.chain.next_time + DAY_MS,
                                 "wrap_hash": h("w")}).rejected[0].code == (
        "cross_border_consent_required")
    consented = w.ok(w.li, "grant", {"record_id": record_id, "grantee": "org:org-carrier",
                                     "purpose": "delivery",
                                     "until": w.chain.next_time + DAY_MS,
                                     "wrap_hash": h("w"), "cross_border_consent": True})
    assert w.events(consented, "privacy.grant.created")[0]["cross_border_consent"] is True


# --- grants and accesses -------------------------------------------------------------------

def test_a_grant_lets_its_party_read_for_its_purpose_until_its_time(w: World) -> None:
    record_id = w.record(w.alice)
    until = w.chain.next_time + 5 * DAY_MS
    assert not grant(w, record_id, until=until).rejected
    seen = access(w, w.carrier, record_id)
    assert seen["granted"] and seen["party"] == "org:org-carrier" and seen["basis"] == "grant"
    assert w.get(f"accessed/{record_id}/org:org-carrier/delivery") == w.chain.time
    other_purpose = access(w, w.carrier, record_id, purpose="dispute")
    assert not other_purpose["granted"] and other_purpose["reason"] == "no_grant"
    late = w.ok(w.carrier, "access", {"record_id": record_id, "purpose": "delivery",
                                      "basis": "grant"}, time=until)
    assert w.events(late, "privacy.access.refused")[0]["reason"] == "grant_expired"


def test_refused_accesses_are_recorded_and_change_nothing(w: World) -> None:
    record_id = w.record(w.alice)
    before = w.chain.state.root
    refused = access(w, w.shop, record_id)
    assert not refused["granted"] and refused["reason"] == "no_grant"
    assert refused["subject"] == w.alice.key_id and refused["by"] == w.shop.key_id
    assert w.get(f"accessed/{record_id}/org:org-shop/delivery") is None
    assert before != w.chain.state.root  # only the nonce moved
    unknown = access(w, w.shop, h("nothing"))
    assert unknown["reason"] == "record_not_found" and unknown["subject"] is None


def test_a_revoked_grant_reads_nothing_and_a_forged_one_cannot_be_made(w: World) -> None:
    record_id = w.record(w.alice)
    assert not grant(w, record_id).rejected
    w.ok(w.alice, "revoke_grant", {"record_id": record_id, "grantee": "org:org-carrier",
                                   "purpose": "delivery"})
    assert access(w, w.carrier, record_id)["reason"] == "grant_revoked"
    # nobody but the subject grants, revokes or erases
    forged = w.run(w.carrier, "grant", {"record_id": record_id, "grantee": "org:org-carrier",
                                        "purpose": "delivery",
                                        "until": w.chain.next_time + DAY_MS,
                                        "wrap_hash": h("w")})
    assert rejected_codes(forged) == ["forbidden"]
    assert w.code(w.carrier, "revoke_grant", {"record_id": record_id,
                                              "grantee": "org:org-carrier",
                                              "purpose": "delivery"}) == "forbidden"
    assert w.code(w.alice, "revoke_grant", {"record_id": record_id,
                                            "grantee": "org:org-carrier",
                                            "purpose": "delivery"}) == "grant_not_found"


def test_grant_refusals(w: World) -> None:
    record_id = w.record(w.alice)
    base = {"record_id": record_id, "grantee": "org:org-carrier", "purpose": "delivery",
            "until": w.chain.next_time + 30 * DAY_MS, "wrap_hash": h("w")}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"until": -1}, "bad_payload"),  # relative to the block's time, below
        ({"until": GRANT_MS_MAX + 1}, "bad_payload"),
        ({"purpose": "marketing"}, "bad_payload"),
        ({"grantee": alice_party(w)}, "bad_payload"),  # oneself
        ({"grantee": "vault"}, "bad_payload"),
        ({"grantee": "org:nobody"}, "no_encryption_key"),
        ({"wrap_hash": "x"}, "bad_payload"),
        ({"record_id": h("nothing")}, "record_not_found"),
    ]
    for change, code in cases:
        payload = {**base, **change}
        if "until" in change:
            payload["until"] = w.chain.next_time + change["until"]
        assert w.code(w.alice, "grant", payload) == code, change


def test_customs_reads_under_its_legal_basis_within_its_categories(w: World) -> None:
    address = w.record(w.alice, holders=[alice_party(w), "org:customs-joint"])
    assert access(w, w.customs, address, purpose="customs_clearance",
                  basis="legal_basis")["granted"]
    payment = w.record(w.alice, category="payment_account")
    out = access(w, w.customs, payment, purpose="customs_clearance", basis="legal_basis")
    assert out["reason"] == "category_outside_legal_basis"
    # a carrier holds no legal basis; customs none for another purpose
    assert access(w, w.carrier, address, purpose="customs_clearance",
                  basis="legal_basis")["reason"] == "no_legal_basis"
    assert access(w, w.customs, address, purpose="credit_inquiry",
                  basis="legal_basis")["reason"] == "no_legal_basis"


def test_the_subject_reads_its_own_records_and_only_those(w: World) -> None:
    record_id = w.record(w.alice)
    assert access(w, w.alice, record_id, basis="subject", **{"as": "self"})["granted"]
    assert access(w, w.li, record_id, basis="subject", **{"as": "self"})["reason"] == (
        "not_the_subject")
    assert access(w, w.alice, record_id, basis="subject")["reason"] == "not_the_subject"


def test_judge_access_is_pure() -> None:
    record = {"record_id": h("r"), "subject": "ab" * 16, "status": "active",
              "category": "address"}
    grants = {f"privacy/grant/{h('r')}/org:c/delivery": {"status": "active", "until": 100}}
    read = grants.get
    assert judge_access(read, record, "org:c", "delivery", "grant", frozenset(), 99).granted
    assert judge_access(read, record, "org:c", "delivery", "grant", frozenset(),
                        100).reason == "grant_expired"
    assert judge_access(read, {**record, "status": "erased"}, "org:c", "delivery", "grant",
                        frozenset(), 1).reason == "record_erased"


# --- erasure ------------------------------------------------------------------------------------

def erased_world(w: World) -> tuple[str, BlockExecution]:
    record_id = w.record(w.alice, holders=[alice_party(w), "org:customs-joint"])
    assert not grant(w, record_id).rejected
    return record_id, w.ok(w.alice, "request_erasure", {"record_id": record_id})


def test_erasure_makes_the_record_unreadable_at_once_and_waits_for_every_holder(
        w: World) -> None:
    record_id, requested = erased_world(w)
    (event,) = w.events(requested, "privacy.erasure.requested")
    assert event["pending"] == ["org:customs-joint", "org:org-carrier", "vault"]
    assert access(w, w.carrier, record_id)["reason"] == "record_erasing"
    assert access(w, w.customs, record_id, purpose="customs_clearance",
                  basis="legal_basis")["reason"] == "record_erasing"
    w.ok(w.carrier, "ack_erasure", {"record_id": record_id})
    w.ok(w.customs, "ack_erasure", {"record_id": record_id})
    assert w.get(f"record/{record_id}")["status"] == "erasing"
    done = w.ok(w.operator, "ack_erasure", {"record_id": record_id, "as": "vault"})
    assert w.events(done, "privacy.erasure.completed")[0]["late"] is False
    record = w.get(f"record/{record_id}")
    assert record["status"] == "erased" and record["erasure"]["pending"] == []
    assert access(w, w.carrier, record_id)["reason"] == "record_erased"


def test_a_subjects_records_are_bounded_and_an_erased_one_frees_its_place(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: every record ever made counted against the bound, so erasing
    (or rectifying) never made room again."""
    from services.privacy import records as records_module

    monkeypatch.setattr(records_module, "RECORDS_PER_SUBJECT_MAX", 2)
    first, second = w.record(w.alice), w.record(w.alice)
    payload = {"category": "phone", "commitment": h("c3"), "ciphertext_hash": h("x3"),
               "jurisdiction": "DE", "holders": [alice_party(w)]}
    assert w.code(w.alice, "create_record", payload) == "too_many_records"
    w.ok(w.alice, "request_erasure", {"record_id": first})
    # erasing, not erased: the vault has not acknowledged yet, so still no room
    assert w.code(w.alice, "create_record", payload) == "too_many_records"
    w.ok(w.operator, "ack_erasure", {"record_id": first, "as": "vault"})
    assert w.get(f"record/{first}")["status"] == "erased"
    assert w.get(f"subject/{w.alice.key_id}") == [second]
    w.ok(w.alice, "create_record", payload)
    assert len(w.get(f"subject/{w.alice.key_id}")) == 2


def test_a_party_that_never_acknowledges_is_named_at_the_deadline(w: World) -> None:
    record_id, requested = erased_world(w)
    deadline = w.events(requested, "privacy.erasure.requested")[0]["deadline"]
    w.ok(w.carrier, "ack_erasure", {"record_id": record_id})
    w.ok(w.operator, "ack_erasure", {"record_id": record_id, "as": "vault"})
    found: list[dict[str, Any]] = []
    for step in range(30):  # the deadline walk goes at most a day of buckets per block
        block = w.chain.block([], time=deadline + 1 + step)
        found += [dict(e.attributes) for e in block.events
                  if e.type == "privacy.erasure.overdue"]
    (event,) = found
    assert event["missing"] == ["org:customs-joint"]
    late = w.ok(w.customs, "ack_erasure", {"record_id": record_id})
    assert w.events(late, "privacy.erasure.completed")[0]["late"] is True
    assert deadline == w.get(f"record/{record_id}")["erasure"]["deadline"]
    assert ERASURE_ACK_MS == 14 * DAY_MS


def test_erasure_refusals(w: World) -> None:
    record_id, _ = erased_world(w)
    assert w.code(w.carrier, "request_erasure", {"record_id": record_id}) == "forbidden"
    assert w.code(w.alice, "request_erasure", {"record_id": record_id}) == (
        "record_not_active")
    assert w.code(w.shop, "ack_erasure", {"record_id": record_id}) == "not_pending"
    assert w.code(w.carrier, "ack_erasure", {"record_id": record_id, "as": "vault"}) == (
        "forbidden")
    w.ok(w.carrier, "ack_erasure", {"record_id": record_id})
    assert w.code(w.carrier, "ack_erasure", {"record_id": record_id}) == "not_pending"
    other = w.record(w.alice)
    assert w.code(w.carrier, "ack_erasure", {"record_id": other}) == "not_erasing"


def test_rectification_makes_a_new_version_and_shreds_the_old(w: World) -> None:
    old = w.record(w.alice, holders=[alice_party(w), "org:customs-joint"])
    result = w.ok(w.alice, "rectify", {"record_id": old, "commitment": h("new"),
                                       "ciphertext_hash": h("newx"),
                                       "holders": [alice_party(w)]})
    (rectified,) = w.events(result, "privacy.record.rectified")
    new = rectified["record_id"]
    assert rectified["supersedes"] == old
    assert w.get(f"record/{old}")["status"] == "erasing"
    assert w.get(f"record/{old}")["superseded_by"] == new
    assert w.events(result, "privacy.erasure.requested")[0]["reason"] == "rectified"
    assert w.get(f"record/{new}")["status"] == "active"
    assert w.code(w.carrier, "rectify", {"record_id": new, "commitment": h("n2"),
                                         "ciphertext_hash": h("n2x"),
                                         "holders": [alice_party(w)]}) == "forbidden"


# --- matching -------------------------------------------------------------------------------------

def test_customs_attests_a_match_only_of_records_it_read(w: World) -> None:
    buyer = w.record(w.alice, holders=[alice_party(w), "org:customs-joint"], category="name")
    payer = w.record(w.alice, holders=[alice_party(w), "org:customs-joint"], category="name")
    payload = {"record_a": buyer, "record_b": payer, "purpose": "customs_clearance",
               "equal": True}
    assert w.code(w.customs, "attest_match", payload) == "no_recorded_access"
    for record_id in (buyer, payer):
        assert access(w, w.customs, record_id, purpose="customs_clearance",
                      basis="legal_basis")["granted"]
    result = w.ok(w.customs, "attest_match", payload)
    assert w.events(result, "privacy.match.attested")[0]["equal"] is True
    found = verdict(w.chain.view().get, payer, buyer)
    assert found is not None and found["party"] == "org:customs-joint"
    later = w.chain.time + MATCH_WINDOW_MS + 1
    w.chain.block([], time=later)
    assert w.code(w.customs, "attest_match", payload, time=later + 1000) == (
        "no_recorded_access")


def test_normalize_makes_two_spellings_of_one_fact_equal() -> None:
    assert normalize("name", "  Zhang  WEI ") == normalize("name", "zhang wei")
    assert normalize("address", "Hauptstraße 1,  Berlin") == normalize(
        "address", "HAUPTSTRASSE 1 berlin")  # casefold: ß is ss
    assert normalize("phone", "+49 (30) 123-45") == "+493012345"
    assert normalize("id_document", "ab-12 345") == normalize("id_document", "AB12345")
    assert normalize("name", "Ｚｈａｎｇ") == "zhang"  # full-width folds (NFKC)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_normalize_is_idempotent(value: str) -> None:
    for category in ("name", "address", "phone", "id_document"):
        once = normalize(category, value)
        assert normalize(category, once) == once


def test_every_event_of_the_domain_is_emitted_by_these_rules(w: World) -> None:
    """The partner-event schemas (the edge) cover exactly these types."""
    seen: set[str] = set()
    _, requested = erased_world(w)
    seen.update(event_types(requested))
    assert {"privacy.erasure.requested"} <= seen
