"""Who reads the privacy domain's chain data on the gateway's generic routes
(services/privacy/edge/read_policy.py), judged on a hand-made state: the subject and
the parties an item names read it; an unrelated key, an expired or revoked grantee and
anyone anonymous do not; accesses stay between the subject and the accessing party;
encryption keys stay public. The routes themselves: tests/gateway/."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.read_policy import (
    EventItem,
    ReadGuard,
    ReadItem,
    StateItem,
    TransactionItem,
)
from services.ledger.core.state import StateView
from services.ledger.core.statetree import StateTree
from services.privacy.edge import EDGE
from services.privacy.edge.read_policy import PRIVACY_READ_POLICY

NOW = 1_800_000_000_000
HOUR = 3_600_000
R = "aa" * 32  # the subject's record (an address)
R2 = "bb" * 32  # another record of the subject
R3 = "cc" * 32  # someone else's record
TX = "dd" * 32  # a transaction hash that is no record
SUBJECT, OTHER_PERSON = "51" * 16, "52" * 16
CARRIER, CARRIER_MEMBER = "c1" * 16, "c2" * 16  # org carrier: an active grantee
HOLDER = "b1" * 16  # org holderco: holds a wrapped copy
OLD = "01" * 16  # org old: its grant was revoked
LATE = "02" * 16  # org late: its grant expired
CUSTOMS = "c3" * 16  # org customs (customs_eu: a legal basis)
SHOP = "5b" * 16  # org shop: nothing to do with the record
PLATFORM = "9f" * 16  # org operator (platform: acts for the vault)

ORGS = {"people": ["consumer"], "carrier": ["carrier"], "holderco": ["merchant"],
        "old": ["carrier"], "late": ["carrier"], "customs": ["customs_eu"],
        "shop": ["retailer"], "operator": ["platform"]}
KEYS = {SUBJECT: "people", OTHER_PERSON: "people", CARRIER: "carrier",
        CARRIER_MEMBER: "carrier", HOLDER: "holderco", OLD: "old", LATE: "late",
        CUSTOMS: "customs", SHOP: "shop", PLATFORM: "operator"}


def record(record_id: str, subject: str, category: str = "address",
           **extra: Any) -> dict[str, Any]:
    return {"record_id": record_id, "subject": subject, "category": category,
            "jurisdiction": "FR", "commitment": "00" * 32, "ciphertext_hash": "11" * 32,
            "holders": {f"key:{subject}": "k1", "org:holderco": "k2"},
            "grantees": {"org:carrier": ["delivery"], "org:old": ["dispute"],
                         "org:late": ["returns"]},
            "created": NOW - HOUR, "status": "active", **extra}


def grant(record_id: str, grantee: str, purpose: str, *, status: str = "active",
          until: int = NOW + HOUR) -> dict[str, Any]:
    return {"record_id": record_id, "grantee": grantee, "purpose": purpose, "until": until,
            "granted": NOW - HOUR, "status": status, "wrap_hash": "22" * 32,
            "key_id": "k3", "cross_border_consent": False, "by": SUBJECT}


def state() -> StateView:
    view = StateView(StateTree.empty())
    for org, roles in ORGS.items():
        view.put(f"consortium/org/{org}", {"id": org, "roles": roles, "status": "active"})
    for key_id, org in KEYS.items():
        view.put(f"consortium/key/{key_id}", {"org": org, "status": "active"})
    view.put(f"privacy/record/{R}", record(R, SUBJECT))
    view.put(f"privacy/record/{R2}", record(R2, SUBJECT, "name"))
    view.put(f"privacy/record/{R3}", record(R3, OTHER_PERSON, "email"))
    view.put(f"privacy/subject/{SUBJECT}", [R, R2])
    view.put(f"privacy/grant/{R}/org:carrier/delivery", grant(R, "org:carrier", "delivery"))
    view.put(f"privacy/grant/{R}/org:old/dispute",
             grant(R, "org:old", "dispute", status="revoked"))
    view.put(f"privacy/grant/{R}/org:late/returns",
             grant(R, "org:late", "returns", until=NOW - 1))
    view.put(f"privacy/accessed/{R}/org:carrier/delivery", NOW - 5)
    view.put(f"privacy/match/{R}/{R2}/org:customs/customs_clearance",
             {"records": [R, R2], "party": "org:customs", "by": CUSTOMS})
    view.put("privacy/deadline/29000000", [[NOW, R, None]])
    return view


VIEW = state()
GUARD = ReadGuard([PRIVACY_READ_POLICY])
EVERYONE = [None, SUBJECT, OTHER_PERSON, CARRIER, CARRIER_MEMBER, HOLDER, OLD, LATE,
            CUSTOMS, SHOP, PLATFORM]


def readers(item: ReadItem, view: StateView = VIEW) -> set[str | None]:
    return {who for who in EVERYONE if GUARD.reader(who, view, NOW).may_read(item)}


def value(key: str) -> Any:
    return VIEW.get(key)


def at(key: str) -> StateItem:
    return StateItem(key, value(key))


def test_the_edge_declares_the_policy():
    assert EDGE.read_policy is PRIVACY_READ_POLICY


# --- state --------------------------------------------------------------------------------

def test_a_record_is_read_by_its_subject_holders_active_grantees_and_legal_readers():
    assert readers(at(f"privacy/record/{R}")) == {
        SUBJECT, HOLDER, CARRIER, CARRIER_MEMBER,  # the org's every key acts for it
        CUSTOMS}  # customs_eu holds a legal basis for addresses
    # not: anonymous, another person, a revoked or expired grantee, an unrelated shop,
    # the platform (the vault is no party of a record not being erased)


def test_a_legal_basis_covers_only_its_categories():
    assert CUSTOMS not in readers(at(f"privacy/record/{R3}"))  # an e-mail address
    assert CUSTOMS in readers(at(f"privacy/record/{R2}"))  # a name


def test_an_absent_record_is_nobodys():
    assert readers(StateItem("privacy/record/" + "ee" * 32, None)) == set()


def test_an_erasure_names_its_parties_the_vault_included():
    erasing = record(R, SUBJECT, status="erasing", erasure={
        "pending": ["org:carrier", "vault"], "acknowledged": [f"key:{SUBJECT}", "org:old"]})
    item = StateItem(f"privacy/record/{R}", erasing)
    assert readers(item) == {SUBJECT, HOLDER, CARRIER, CARRIER_MEMBER, CUSTOMS, PLATFORM,
                             OLD}


def test_the_subject_index_is_the_subjects_alone():
    assert readers(at(f"privacy/subject/{SUBJECT}")) == {SUBJECT}
    assert readers(StateItem(f"privacy/subject/{OTHER_PERSON}", None)) == {OTHER_PERSON}


def test_a_grant_and_an_access_time_are_the_subjects_and_the_grantees():
    for key in (f"privacy/grant/{R}/org:carrier/delivery",
                f"privacy/accessed/{R}/org:carrier/delivery"):
        assert readers(at(key)) == {SUBJECT, CARRIER, CARRIER_MEMBER}, key
    assert readers(at(f"privacy/grant/{R}/org:old/dispute")) == {SUBJECT, OLD}


def test_a_match_is_the_subjects_and_the_attesting_party():
    assert readers(at(f"privacy/match/{R}/{R2}/org:customs/customs_clearance")) == {
        SUBJECT, CUSTOMS}


@pytest.mark.parametrize("key", ["privacy/deadline/29000000", "privacy/deadline/cursor",
                                 "privacy/unknown/x", "privacy/record", "privacy/"])
def test_bookkeeping_and_unknown_keys_are_nobodys(key):
    assert readers(StateItem(key, value(key) if key.count("/") > 1 else None)) == set()


def test_encryption_keys_stay_public():
    assert not PRIVACY_READ_POLICY.restricts(StateItem("privacy/enckey/org:carrier", {}))
    item = StateItem("privacy/enckey/key:" + SUBJECT, {"public_key": "00" * 32})
    assert readers(item) == set(EVERYONE)


# --- events -------------------------------------------------------------------------------

ACCESS = {"record_id": R, "subject": SUBJECT, "party": "org:carrier", "purpose": "delivery",
          "basis": "grant", "by": CARRIER_MEMBER}


def test_an_access_is_the_subjects_and_the_accessing_partys_only():
    for kind in ("privacy.access.granted", "privacy.access.refused"):
        assert readers(EventItem(kind, ACCESS)) == {SUBJECT, CARRIER, CARRIER_MEMBER}
    refused = {**ACCESS, "subject": None, "party": f"key:{SHOP}", "by": SHOP,
               "reason": "record_not_found"}
    assert readers(EventItem("privacy.access.refused", refused)) == {SHOP}


def test_record_events_are_read_by_the_records_parties():
    created = {"record_id": R, "subject": SUBJECT, "category": "address",
               "jurisdiction": "FR", "commitment": "00" * 32,
               "holders": [f"key:{SUBJECT}", "org:holderco"]}
    assert readers(EventItem("privacy.record.created", created)) == {
        SUBJECT, HOLDER, CARRIER, CARRIER_MEMBER}
    granted = {"record_id": R, "subject": SUBJECT, "grantee": "org:old",
               "purpose": "dispute", "until": NOW, "cross_border_consent": False}
    assert readers(EventItem("privacy.grant.created", granted)) == {
        SUBJECT, HOLDER, CARRIER, CARRIER_MEMBER, OLD}  # the grantee it names, revoked now
    acknowledged = {"record_id": R, "party": "vault", "by": PLATFORM, "late": False}
    assert readers(EventItem("privacy.erasure.acknowledged", acknowledged)) == {
        SUBJECT, HOLDER, CARRIER, CARRIER_MEMBER, PLATFORM}
    overdue = {"record_id": R3, "subject": OTHER_PERSON, "missing": ["org:shop"]}
    # R3's carrier grant was never made: only its subject, holder and the party named
    assert readers(EventItem("privacy.erasure.overdue", overdue)) == {OTHER_PERSON, SHOP,
                                                                      HOLDER}


def test_a_match_attestation_is_the_subjects_and_the_partys():
    attested = {"records": [R, R3], "category": "address", "equal": True,
                "party": "org:customs", "purpose": "customs_clearance", "at": NOW,
                "by": CUSTOMS}
    assert readers(EventItem("privacy.match.attested", attested)) == {SUBJECT, OTHER_PERSON,
                                                                      CUSTOMS}


def test_key_events_stay_public():
    registered = {"party": "org:carrier", "key_id": "03" * 16, "country": "FR",
                  "by": CARRIER, "rotated": False}
    assert readers(EventItem("privacy.key.registered", registered)) == set(EVERYONE)


# --- transactions --------------------------------------------------------------------------

def tx(kind: str, sender: str, payload: dict[str, Any], tx_hash: str = TX) -> TransactionItem:
    return TransactionItem(f"privacy.{kind}", sender, payload, tx_hash)


def test_a_records_creation_is_read_by_its_parties():
    creation = tx("create_record", SUBJECT, {"holders": [f"key:{SUBJECT}", "org:holderco"],
                                              "category": "address"}, tx_hash=R)
    assert readers(creation) == {SUBJECT, HOLDER, CARRIER, CARRIER_MEMBER}
    rectified = tx("rectify", SUBJECT, {"record_id": R, "holders": [f"key:{SUBJECT}"]})
    assert readers(rectified) == {SUBJECT, HOLDER, CARRIER, CARRIER_MEMBER}


def test_an_access_transaction_is_the_subjects_and_the_acting_partys():
    as_org = tx("access", CARRIER_MEMBER, {"record_id": R, "purpose": "delivery",
                                           "basis": "grant", "as": "org"})
    assert readers(as_org) == {SUBJECT, CARRIER, CARRIER_MEMBER}
    as_self = tx("access", CARRIER_MEMBER, {"record_id": R, "purpose": "delivery",
                                            "basis": "grant", "as": "self"})
    assert readers(as_self) == {SUBJECT, CARRIER_MEMBER}
    by_default = tx("access", CUSTOMS, {"record_id": R, "purpose": "customs_clearance",
                                        "basis": "legal_basis"})
    assert readers(by_default) == {SUBJECT, CUSTOMS}


def test_grants_and_erasures_are_read_by_the_records_parties():
    granted = tx("grant", SUBJECT, {"record_id": R, "grantee": "org:shop",
                                    "purpose": "returns"})
    assert readers(granted) == {SUBJECT, SHOP, HOLDER, CARRIER, CARRIER_MEMBER}
    request = tx("request_erasure", SUBJECT, {"record_id": R})
    assert readers(request) == {SUBJECT, HOLDER, CARRIER, CARRIER_MEMBER}
    ack = tx("ack_erasure", PLATFORM, {"record_id": R, "as": "vault"})
    assert readers(ack) == {SUBJECT, HOLDER, CARRIER, CARRIER_MEMBER, PLATFORM}


def test_a_match_transaction_is_the_subjects_and_the_attesting_orgs():
    attest = tx("attest_match", CUSTOMS, {"record_a": R, "record_b": R3,
                                          "purpose": "customs_clearance", "equal": True})
    assert readers(attest) == {SUBJECT, OTHER_PERSON, CUSTOMS}


def test_key_registrations_stay_public_and_unknown_kinds_are_the_senders():
    assert readers(tx("register_key", SHOP, {"scope": "org"})) == set(EVERYONE)
    assert readers(tx("revoke_key", SHOP, {"scope": "org"})) == set(EVERYONE)
    assert readers(tx("someday", SHOP, {})) == {SHOP}


def test_nothing_restricted_is_anyones_anonymously():
    items: list[ReadItem] = [at(f"privacy/record/{R}"), EventItem("privacy.access.granted",
                                                                  ACCESS),
                             tx("access", CARRIER, {"record_id": R})]
    for item in items:
        assert GUARD.reader(None, VIEW, NOW).may_read(item) is False
