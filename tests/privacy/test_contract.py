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
from services.privacy.vocabulary import (
    ERASURE_ACK_MS,
    GRANT_MS_MAX,
    GRANTEES_PER_RECORD_MAX,
    MATCH_WINDOW_MS,
)
from tests.ledger.core.conftest import Chain, event_types, rejected_codes

DAY_MS = 86_400_000


def pub(label: str) -> str:
    """A usable X25519 public key's hex (any 32 bytes not of small order will do here)."""
    return hashlib.sha256(label.encode()).hexdigest()


def h(label: str) -> str:
    return hashlib.sha256(f"hash/{label}".encode()).hexdigest()


def wraps(holders: list[str]) -> dict[str, str]:
    """The ``wrap_hashes`` of a record for ``holders`` (one made-up wrap each)."""
    return {party: h(f"wrap-of/{party}") for party in holders}


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
        self.chain.check_static(self.chain.tx(key, f"privacy.{action}", payload, nonce=0))
        result = self.run(key, action, payload, time)
        assert not result.rejected, rejected_codes(result)
        return result

    def static_code(self, key: PrivateKey, action: str, payload: dict[str, Any]) -> str:
        """The code the static checks (mempool, gateway, every replica on a proposed
        block) refuse ``payload`` with."""
        tx = self.chain.tx(key, f"privacy.{action}", payload, nonce=0)
        with pytest.raises(InvalidTransaction) as refused:
            self.chain.check_static(tx)
        return refused.value.code

    def code(self, key: PrivateKey, action: str, payload: dict[str, Any],
             time: int | None = None) -> str:
        result = self.run(key, action, payload, time)
        assert len(result.rejected) == 1, "expected a refusal"
        return result.rejected[0].code

    def record(self, key: PrivateKey, *, holders: list[str] | None = None,
               category: str = "address", jurisdiction: str = "DE",
               **extra: Any) -> str:
        holders = holders or [f"key:{key.key_id}"]
        tx = self.chain.tx(key, "privacy.create_record", {
            "category": category, "commitment": h(f"c/{key.key_id}/{self.chain.height}"),
            "ciphertext_hash": h(f"x/{key.key_id}/{self.chain.height}"),
            "jurisdiction": jurisdiction, "holders": holders,
            "wrap_hashes": wraps(holders), **extra})
        self.chain.check_static(tx)
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
        "wrap_hashes": wraps([alice_party(w)]), "note": "Hauptstrasse 1, Berlin"})
    with pytest.raises(InvalidTransaction) as refused:
        w.chain.check_static(tx)
    assert refused.value.code == "bad_payload"
    assert "unknown payload fields ['note']" in str(refused.value)


def held_by(payload: dict[str, Any], holders: list[str]) -> dict[str, Any]:
    return {**payload, "holders": holders, "wrap_hashes": wraps(holders)}


def test_record_refusals(w: World) -> None:
    base = {"category": "address", "commitment": h("c"), "ciphertext_hash": h("x"),
            "jurisdiction": "DE", "holders": [alice_party(w)],
            "wrap_hashes": wraps([alice_party(w)])}
    me = alice_party(w)
    cases = [
        ({**base, "category": "shoe_size"}, "bad_payload"),
        ({**base, "commitment": "nothex"}, "bad_payload"),
        ({**base, "jurisdiction": "Germany"}, "bad_payload"),
        (held_by(base, []), "bad_payload"),
        (held_by(base, ["org:customs-joint"]), "bad_payload"),  # not the subject's
        ({**base, "holders": [me, me]}, "bad_payload"),
        (held_by(base, [me, "vault"]), "bad_payload"),
        (held_by(base, [me, "org:nobody"]), "no_encryption_key"),
        (held_by(base, [me] + [f"org:x{i}" for i in range(9)]), "bad_payload"),
        # every holder's wrap is bound on chain, and only the holders'
        ({k: v for k, v in base.items() if k != "wrap_hashes"}, "bad_payload"),
        ({**base, "wrap_hashes": {}}, "bad_payload"),
        ({**base, "wrap_hashes": {**wraps([me]), "org:customs-joint": h("w")}},
         "bad_payload"),
        ({**base, "holders": [me, "org:customs-joint"]}, "bad_payload"),  # customs' missing
        ({**base, "wrap_hashes": {me: "AB" * 32}}, "bad_payload"),
        ({**base, "wrap_hashes": [h("w")]}, "bad_payload"),
    ]
    for payload, code in cases:
        assert w.code(w.alice, "create_record", payload) == code, payload
    stranger = PrivateKey.derive("privacy/no-key")
    tx = w.chain.tx(w.operator, "consortium.add_key", {"public_key": stranger.public.hex(),
                                                       "permissions": ["member"]})
    assert not w.chain.block([tx]).rejected
    assert w.code(stranger, "create_record", held_by(
        base, [f"key:{stranger.key_id}"])) == "no_encryption_key"


def test_pipl_a_chinese_subjects_record_leaves_china_only_with_consent(w: World) -> None:
    li = f"key:{w.li.key_id}"
    refused = w.code(w.li, "create_record", {
        "category": "name", "commitment": h("n"), "ciphertext_hash": h("nx"),
        "jurisdiction": "CN", "holders": [li, "org:customs-joint"],
        "wrap_hashes": wraps([li, "org:customs-joint"])})
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
              "category": "address", "jurisdiction": "DE"}
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
               "jurisdiction": "DE", "holders": [alice_party(w)],
               "wrap_hashes": wraps([alice_party(w)])}
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
                                       "holders": [alice_party(w)],
                                       "wrap_hashes": wraps([alice_party(w)])})
    (rectified,) = w.events(result, "privacy.record.rectified")
    new = rectified["record_id"]
    assert rectified["supersedes"] == old
    assert w.get(f"record/{old}")["status"] == "erasing"
    assert w.get(f"record/{old}")["superseded_by"] == new
    assert w.events(result, "privacy.erasure.requested")[0]["reason"] == "rectified"
    assert w.get(f"record/{new}")["status"] == "active"
    assert w.get(f"record/{new}")["wrap_hashes"] == wraps([alice_party(w)])
    assert w.code(w.carrier, "rectify", {"record_id": new, "commitment": h("n2"),
                                         "ciphertext_hash": h("n2x"),
                                         "holders": [alice_party(w)],
                                         "wrap_hashes": wraps([alice_party(w)])}) == (
        "forbidden")


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
    found = verdict(w.chain.view().get, payer, buyer, "org:customs-joint",
                    "customs_clearance")
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


# --- found in review (2026-12-02) ---------------------------------------------------------
PII = "Anna Schmidt, Lindenstrasse 5, 10969 Berlin"


def li_grant(w: World, record_id: str, grantee: str, **extra: Any) -> BlockExecution:
    return w.run(w.li, "grant", {"record_id": record_id, "grantee": grantee,
                                 "purpose": "delivery", "until": w.chain.next_time + DAY_MS,
                                 "wrap_hash": h(f"wrap/{grantee}"), **extra})


def test_the_handlers_refuse_a_non_boolean_consent_too(w: World) -> None:
    """Checked twice (statically: test_payload_shapes.py; and here, in the handlers that
    run every block): a name in ``cross_border_consent`` never reads as "no"."""
    me = alice_party(w)
    payload = {"category": "address", "commitment": h("c"), "ciphertext_hash": h("x"),
               "jurisdiction": "DE", "holders": [me], "wrap_hashes": wraps([me])}
    for value in (PII, "true", 1, None, {"yes": True}):
        assert w.code(w.alice, "create_record",
                      {**payload, "cross_border_consent": value}) == "bad_payload"
        assert w.static_code(w.alice, "create_record",
                             {**payload, "cross_border_consent": value}) == "bad_payload"
    record_id = w.record(w.alice)
    assert w.code(w.alice, "rectify", {"record_id": record_id, "commitment": h("c2"),
                                       "ciphertext_hash": h("x2"), "holders": [me],
                                       "wrap_hashes": wraps([me]),
                                       "cross_border_consent": PII}) == "bad_payload"
    assert rejected_codes(grant(w, record_id, cross_border_consent=PII)) == ["bad_payload"]
    assert w.get(f"grant/{record_id}/org:org-carrier/delivery") is None
    assert w.get(f"record/{record_id}")["status"] == "active"  # not rectified
    made = grant(w, record_id, cross_border_consent=False)  # what absent means
    assert w.events(made, "privacy.grant.created")[0]["cross_border_consent"] is False


def test_pipl_consent_is_judged_again_at_every_access(w: World) -> None:
    """Found in review: a grantee in China moved abroad by rotating its key and kept
    reading a Chinese subject's record without consent."""
    li = f"key:{w.li.key_id}"
    w.ok(w.carrier, "register_key", {"scope": "org", "public_key": pub("carrier-cn"),
                                     "country": "CN"})
    record_id = w.record(w.li, holders=[li], jurisdiction="CN")
    assert not li_grant(w, record_id, "org:org-carrier").rejected  # no transfer: no consent
    assert access(w, w.carrier, record_id)["granted"]
    w.ok(w.carrier, "register_key", {"scope": "org", "public_key": pub("carrier-us"),
                                     "country": "US"})
    refused = access(w, w.carrier, record_id)
    assert not refused["granted"] and refused["reason"] == "cross_border_consent_required"
    # revoking its key moves no one back: the country last declared stands
    w.ok(w.carrier, "revoke_key", {"scope": "org"})
    assert access(w, w.carrier, record_id)["reason"] == "cross_border_consent_required"
    # the subject's consent, on a new grant, lets it read again
    w.ok(w.carrier, "register_key", {"scope": "org", "public_key": pub("carrier-us2"),
                                     "country": "US"})
    assert not li_grant(w, record_id, "org:org-carrier", cross_border_consent=True).rejected
    assert access(w, w.carrier, record_id)["granted"]


def test_pipl_consent_on_the_record_covers_its_grants_and_legal_bases(w: World) -> None:
    li = f"key:{w.li.key_id}"
    plain = w.record(w.li, holders=[li], category="name", jurisdiction="CN")
    # customs (in DE) reads a Chinese subject's name under its legal basis only with
    # the subject's consent on the record
    out = access(w, w.customs, plain, purpose="customs_clearance", basis="legal_basis")
    assert out["reason"] == "cross_border_consent_required"
    consented = w.record(w.li, holders=[li], category="name", jurisdiction="CN",
                         cross_border_consent=True)
    assert access(w, w.customs, consented, purpose="customs_clearance",
                  basis="legal_basis")["granted"]
    # a grant made inside China, of a record carrying consent, survives a move abroad
    w.ok(w.carrier, "register_key", {"scope": "org", "public_key": pub("carrier-cn"),
                                     "country": "CN"})
    assert not li_grant(w, consented, "org:org-carrier").rejected
    w.ok(w.carrier, "register_key", {"scope": "org", "public_key": pub("carrier-us"),
                                     "country": "US"})
    assert access(w, w.carrier, consented)["granted"]
    # the subject reading its own record is no transfer
    assert access(w, w.li, plain, basis="subject", **{"as": "self"})["granted"]


def test_judge_access_judges_the_partys_country_now() -> None:
    record = {"record_id": h("r"), "subject": "ab" * 16, "status": "active",
              "category": "name", "jurisdiction": "CN", "cross_border_consent": False}
    grant_key = f"privacy/grant/{h('r')}/org:c/delivery"
    state: dict[str, Any] = {grant_key: {"status": "active", "until": 100,
                                         "cross_border_consent": False}}

    def judge(**changes: Any) -> str:
        return judge_access(state.get, {**record, **changes}, "org:c", "delivery", "grant",
                            frozenset(), 1).reason

    assert judge() == "cross_border_consent_required"  # no key ever: not known inside
    state["privacy/enckey/org:c"] = {"country": "CN", "status": "revoked"}
    assert judge() == "grant"
    state["privacy/enckey/org:c"] = {"country": "US", "status": "active"}
    assert judge() == "cross_border_consent_required"
    assert judge(cross_border_consent=True) == "grant"
    assert judge(jurisdiction="DE") == "grant"
    state[grant_key] = {**state[grant_key], "cross_border_consent": True}
    assert judge() == "grant"


def test_a_records_grantees_are_bounded(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: grantees (and so an erasure's pending list) grew without bound."""
    from services.privacy import grants as grants_module

    assert GRANTEES_PER_RECORD_MAX == 64
    monkeypatch.setattr(grants_module, "GRANTEES_PER_RECORD_MAX", 2)
    record_id = w.record(w.alice)
    assert not grant(w, record_id, "org:org-carrier").rejected
    assert not grant(w, record_id, "org:org-shop").rejected
    refused = grant(w, record_id, "org:customs-joint", purpose="customs_clearance")
    assert rejected_codes(refused) == ["too_many_grantees"]
    # a revoked grantee still counts: it may hold a copy, and must acknowledge erasure
    w.ok(w.alice, "revoke_grant", {"record_id": record_id, "grantee": "org:org-shop",
                                   "purpose": "delivery"})
    assert rejected_codes(grant(w, record_id, "org:customs-joint",
                                purpose="customs_clearance")) == ["too_many_grantees"]
    # a grantee already counted may be granted again, or for another purpose
    assert not grant(w, record_id, "org:org-shop").rejected
    assert not grant(w, record_id, "org:org-carrier", purpose="returns").rejected
    # a new version starts with none
    new = w.events(w.ok(w.alice, "rectify", {
        "record_id": record_id, "commitment": h("c2"), "ciphertext_hash": h("x2"),
        "holders": [alice_party(w)], "wrap_hashes": wraps([alice_party(w)])}),
        "privacy.record.rectified")[0]["record_id"]
    assert not grant(w, new, "org:customs-joint", purpose="customs_clearance").rejected


def test_each_holders_wrap_is_bound_on_chain(w: World) -> None:
    holders = [alice_party(w), "org:customs-joint"]
    record_id = w.record(w.alice, holders=holders)
    assert w.get(f"record/{record_id}")["wrap_hashes"] == wraps(holders)
    base = {"record_id": record_id, "commitment": h("c2"), "ciphertext_hash": h("x2"),
            "holders": holders}
    for bad in (None, {}, wraps(holders[:1]), {**wraps(holders), "org:org-shop": h("s")},
                {**wraps(holders), "org:customs-joint": "x"}):
        payload = base if bad is None else {**base, "wrap_hashes": bad}
        assert w.code(w.alice, "rectify", payload) == "bad_payload", bad
        assert w.static_code(w.alice, "rectify", payload) == "bad_payload", bad
    assert w.get(f"record/{record_id}")["status"] == "active"


def match_world(w: World) -> tuple[str, str]:
    """Two name records of alice, each read by the carrier (delivery) and the shop
    (payment)."""
    a, b = w.record(w.alice, category="name"), w.record(w.alice, category="name")
    for record_id in (a, b):
        assert not grant(w, record_id, "org:org-carrier").rejected
        assert not grant(w, record_id, "org:org-shop", purpose="payment").rejected
        assert access(w, w.carrier, record_id)["granted"]
        assert access(w, w.shop, record_id, purpose="payment")["granted"]
    return a, b


def test_a_match_verdict_is_the_attesting_partys_own(w: World) -> None:
    """Found in review: any entitled party overwrote another's verdict, and readers got
    whichever came last."""
    a, b = match_world(w)
    w.ok(w.carrier, "attest_match", {"record_a": a, "record_b": b, "purpose": "delivery",
                                     "equal": True})
    w.ok(w.shop, "attest_match", {"record_a": b, "record_b": a, "purpose": "payment",
                                  "equal": False})
    read = w.chain.view().get
    carrier = verdict(read, a, b, "org:org-carrier", "delivery")
    assert carrier is not None and carrier["equal"] is True
    shop = verdict(read, b, a, "org:org-shop", "payment")
    assert shop is not None and shop["equal"] is False and shop["by"] == w.shop.key_id
    assert verdict(read, a, b, "org:org-carrier", "payment") is None
    assert verdict(read, a, b, "org:customs-joint", "delivery") is None
    low, high = sorted((a, b))
    assert w.get(f"match/{low}/{high}/org:org-carrier/delivery") == carrier
    assert w.get(f"match/{low}/{high}") is None


def test_a_match_verdict_dies_with_its_records(w: World) -> None:
    a, b = match_world(w)
    w.ok(w.carrier, "attest_match", {"record_a": a, "record_b": b, "purpose": "delivery",
                                     "equal": True})
    assert verdict(w.chain.view().get, a, b, "org:org-carrier", "delivery") is not None
    w.ok(w.alice, "request_erasure", {"record_id": b})
    assert verdict(w.chain.view().get, a, b, "org:org-carrier", "delivery") is None
    # and a record that is not live is compared no more
    assert w.code(w.carrier, "attest_match", {"record_a": a, "record_b": b,
                                              "purpose": "delivery", "equal": True}) == (
        "record_not_active")


def test_attest_match_refusals(w: World) -> None:
    a, b = match_world(w)
    phone = w.record(w.alice, category="phone")
    assert not grant(w, phone, "org:org-carrier").rejected
    assert access(w, w.carrier, phone)["granted"]
    base = {"record_a": a, "record_b": b, "purpose": "delivery", "equal": True}
    cases: list[tuple[dict[str, Any], str, bool]] = [  # change, code, refused statically
        ({"record_b": phone}, "bad_payload", False),  # two categories
        ({"record_b": a}, "bad_payload", True),  # the same record twice
        ({"equal": "yes"}, "bad_payload", True),
        ({"equal": 1}, "bad_payload", True),
        ({"equal": None}, "bad_payload", True),
        ({"record_b": h("nothing")}, "record_not_found", False),
        ({"purpose": "marketing"}, "bad_payload", True),
        ({"purpose": "payment"}, "no_recorded_access", False),  # the shop's purpose
    ]
    for change, code, static in cases:
        payload = {**base, **change}
        assert w.code(w.carrier, "attest_match", payload) == code, change
        if static:
            assert w.static_code(w.carrier, "attest_match", payload) == "bad_payload"
    # a person (not an organisation) attests nothing it did not read as its organisation
    assert w.code(w.li, "attest_match", base) == "no_recorded_access"


def test_the_contract_never_normalizes(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """``matching.normalize`` depends on the Python's Unicode tables: off the consensus
    path. A full run of every action, with it (and the Unicode tables) unusable."""
    from services.privacy import matching

    class Unusable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the contract used unicodedata.{name}")

    def never(*_: Any) -> str:
        raise AssertionError("the contract called normalize")

    monkeypatch.setattr(matching, "normalize", never)
    monkeypatch.setattr(matching, "unicodedata", Unusable())
    a, b = match_world(w)
    w.ok(w.carrier, "attest_match", {"record_a": a, "record_b": b, "purpose": "delivery",
                                     "equal": True})
    erased_world(w)
    w.ok(w.alice, "rectify", {"record_id": a, "commitment": h("c2"),
                              "ciphertext_hash": h("x2"), "holders": [alice_party(w)],
                              "wrap_hashes": wraps([alice_party(w)])})


# --- refusals the review found without a test ------------------------------------------------

def test_access_refuses_a_bad_as_or_basis(w: World) -> None:
    record_id = w.record(w.alice)
    base = {"record_id": record_id, "purpose": "delivery", "basis": "grant"}
    for change in ({"as": "vault"}, {"as": "customs"}, {"as": True}, {"as": PII},
                   {"basis": "curiosity"}, {"basis": None}, {"basis": ["grant"]}):
        assert w.code(w.carrier, "access", {**base, **change}) == "bad_payload", change
        assert w.static_code(w.carrier, "access", {**base, **change}) == "bad_payload"


def test_ack_erasure_refuses_a_bad_as(w: World) -> None:
    record_id, _ = erased_world(w)
    for acting in ("platform", "", None, True, PII):
        payload = {"record_id": record_id, "as": acting}
        assert w.code(w.carrier, "ack_erasure", payload) == "bad_payload", acting
        assert w.static_code(w.carrier, "ack_erasure", payload) == "bad_payload"
    assert w.get(f"record/{record_id}")["erasure"]["pending"] == [
        "org:customs-joint", "org:org-carrier", "vault"]


def test_revoke_key_without_an_active_key(w: World) -> None:
    assert w.code(w.shop, "revoke_key", {"scope": "self"}) == "not_found"  # never had one
    assert w.code(w.li, "revoke_key", {"scope": "org"}) == "not_found"  # org-li has none
    assert w.code(w.alice, "revoke_key", {"scope": "org"}) == "not_found"
    assert w.static_code(w.alice, "revoke_key", {"scope": "everyone"}) == "bad_payload"


def test_rectify_only_an_active_record(w: World) -> None:
    me = alice_party(w)
    change = {"commitment": h("c2"), "ciphertext_hash": h("x2"), "holders": [me],
              "wrap_hashes": wraps([me])}
    erasing, _ = erased_world(w)
    assert w.code(w.alice, "rectify", {"record_id": erasing, **change}) == (
        "record_not_active")
    old = w.record(w.alice)
    w.ok(w.alice, "rectify", {"record_id": old, **change})  # old is superseded now
    assert w.code(w.alice, "rectify", {"record_id": old, **change}) == "record_not_active"
    assert w.code(w.alice, "rectify", {"record_id": h("nothing"), **change}) == (
        "record_not_found")
