"""Merchant onboarding (DSA Art. 30): trader information in the vault, granted to a
platform, read by it, verified by it; suspension — each rule with its negative."""

from __future__ import annotations

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import InvalidTransaction
from services.trade.merchants import PURPOSE, TRADER_CATEGORIES
from tests.trade.conftest import World
from tests.trade.market_world import (
    MERCHANT,
    PLATFORM,
    add_org,
    apply_merchant,
    certify,
    hexdigest,
    listing_payload,
    platform_reads,
    privacy_tx,
    publish_listing,
    trader_records,
    verify_merchant,
)


def test_the_platform_verifies_a_merchant_only_after_reading_its_records(world: World
                                                                        ) -> None:
    records = trader_records(world)
    result = world.ok(MERCHANT, "apply_merchant", {"platform": PLATFORM, "records": records})
    (applied,) = world.events(result, "trade.merchant.applied")
    assert applied == {"org": MERCHANT, "platform": PLATFORM,
                       "applicant": world.keys[MERCHANT].key_id, "records": records}
    assert world.get(f"merchant/{MERCHANT}")["status"] == "applied"
    verify = {"org": MERCHANT, "outcome": "verified"}
    assert world.code(PLATFORM, "verify_merchant", verify) == "records_not_accessed"
    platform_reads(world, dict(list(records.items())[:7]))
    assert world.code(PLATFORM, "verify_merchant", verify) == "records_not_accessed"
    platform_reads(world, records)
    result = world.ok(PLATFORM, "verify_merchant", verify)
    assert world.events(result, "trade.merchant.verified") == [
        {"org": MERCHANT, "platform": PLATFORM}]
    merchant = world.get(f"merchant/{MERCHANT}")
    assert merchant["status"] == "verified" and merchant["records"] == records
    assert set(merchant["records"]) == TRADER_CATEGORIES
    assert world.code(PLATFORM, "verify_merchant", verify) == "not_applied"
    assert world.code(MERCHANT, "apply_merchant", {"platform": PLATFORM,
                                                   "records": records}) == "already_verified"


def test_reads_before_the_application_do_not_count(world: World) -> None:
    records = trader_records(world)
    platform_reads(world, records)
    world.ok(MERCHANT, "apply_merchant", {"platform": PLATFORM, "records": records})
    assert world.code(PLATFORM, "verify_merchant", {"org": MERCHANT, "outcome": "verified"}
                      ) == "records_not_accessed"


def test_only_a_merchant_organisations_admin_applies(world: World) -> None:
    records = trader_records(world)
    payload = {"platform": PLATFORM, "records": records}
    assert world.code("anna", "apply_merchant", payload) == "forbidden"  # a consumer
    member = PrivateKey.derive("sim/client/0")  # a member key of "merchants" (no admin)
    tx = world.chain.tx(member, "trade.apply_merchant", payload)
    result = world.chain.block([tx])
    assert [r.code for r in result.rejected] == ["forbidden"]


def test_each_record_is_the_applicants_live_granted_record_of_its_category(world: World
                                                                          ) -> None:
    records = trader_records(world)
    apply = {"platform": PLATFORM, "records": records}

    def code(**changed: str) -> str:
        return world.code(MERCHANT, "apply_merchant",
                          {**apply, "records": {**records, **changed}})

    missing = {c: r for c, r in records.items() if c != "phone"}
    assert world.code(MERCHANT, "apply_merchant", {**apply, "records": missing}
                      ) == "bad_payload"
    assert world.code(MERCHANT, "apply_merchant", {
        **apply, "records": {**records, "date_of_birth": records["name"]}}) == "bad_payload"
    assert code(name="zz") == "bad_payload"
    assert code(name=hexdigest("nothing")) == "record_not_found"
    assert code(name=records["address"]) == "wrong_category"
    # a record of another key (a consumer's), even granted to the platform
    add_org(world, "li-shop", ("merchant",))
    others = trader_records(world, "li-shop")
    assert code(name=others["name"]) == "not_your_record"
    # not granted to the platform
    ungranted = trader_records(world, grant=False)
    assert code(email=ungranted["email"]) == "record_not_granted"
    # granted to another platform
    add_org(world, "other-platform", ("platform",))
    assert world.code(MERCHANT, "apply_merchant", {**apply, "platform": "other-platform"}
                      ) == "record_not_granted"
    assert world.code(MERCHANT, "apply_merchant", {**apply, "platform": "paybank"}
                      ) == "not_found"
    assert world.code(MERCHANT, "apply_merchant", {**apply, "platform": "Nobody"}
                      ) == "bad_payload"
    # granted, then revoked
    privacy_tx(world, MERCHANT, "revoke_grant", {
        "record_id": records["phone"], "grantee": f"org:{PLATFORM}", "purpose": PURPOSE})
    assert world.code(MERCHANT, "apply_merchant", apply) == "record_not_granted"


def test_a_record_rectified_or_a_grant_revoked_after_applying_blocks_verification(
        world: World) -> None:
    records = apply_merchant(world)
    platform_reads(world, records)
    subject = f"key:{world.keys[MERCHANT].key_id}"
    privacy_tx(world, MERCHANT, "revoke_grant", {
        "record_id": records["email"], "grantee": f"org:{PLATFORM}", "purpose": PURPOSE})
    verify = {"org": MERCHANT, "outcome": "verified"}
    assert world.code(PLATFORM, "verify_merchant", verify) == "record_not_granted"
    privacy_tx(world, MERCHANT, "rectify", {
        "record_id": records["address"], "commitment": hexdigest("c2"),
        "ciphertext_hash": hexdigest("x2"), "holders": [subject],
        "wrap_hashes": {subject: hexdigest("w2")}})
    assert world.code(PLATFORM, "verify_merchant", verify) == "record_not_active"
    # ...and the stale application may still be rejected, then made again
    world.ok(PLATFORM, "verify_merchant", {"org": MERCHANT, "outcome": "rejected"})
    assert world.get(f"merchant/{MERCHANT}")["status"] == "rejected"
    verify_merchant(world)
    assert world.get(f"merchant/{MERCHANT}")["status"] == "verified"


def test_only_the_platform_applied_to_decides(world: World) -> None:
    apply_merchant(world)
    add_org(world, "other-platform", ("platform",))
    verify = {"org": MERCHANT, "outcome": "verified"}
    assert world.code("other-platform", "verify_merchant", verify) == "forbidden"
    assert world.code(MERCHANT, "verify_merchant", verify) == "forbidden"
    assert world.code(PLATFORM, "verify_merchant", {"org": "anna", "outcome": "verified"}
                      ) == "not_found"
    assert world.code(PLATFORM, "verify_merchant", {"org": MERCHANT, "outcome": "maybe"}
                      ) == "bad_payload"
    result = world.ok(PLATFORM, "verify_merchant", {"org": MERCHANT, "outcome": "rejected"})
    assert world.events(result, "trade.merchant.rejected") == [
        {"org": MERCHANT, "platform": PLATFORM}]
    assert world.code(PLATFORM, "verify_merchant", {"org": MERCHANT, "outcome": "rejected"}
                      ) == "not_applied"


def test_an_unverified_or_rejected_merchant_does_not_list(world: World) -> None:
    certify(world)
    payload = listing_payload()
    assert world.code(MERCHANT, "publish_listing", payload) == "merchant_not_verified"
    apply_merchant(world)
    assert world.code(MERCHANT, "publish_listing", payload) == "merchant_not_verified"
    world.ok(PLATFORM, "verify_merchant", {"org": MERCHANT, "outcome": "rejected"})
    assert world.code(MERCHANT, "publish_listing", payload) == "merchant_not_verified"


def test_the_platform_suspends_a_verified_merchant(world: World) -> None:
    add_org(world, "other-platform", ("platform",))
    assert world.code(PLATFORM, "suspend_merchant", {"org": MERCHANT, "reason": "fraud"}
                      ) == "not_found"
    apply_merchant(world)
    assert world.code(PLATFORM, "suspend_merchant", {"org": MERCHANT, "reason": "fraud"}
                      ) == "not_verified"
    publish_listing(world)
    suspend = {"org": MERCHANT, "reason": "inaccurate_information"}
    assert world.code("other-platform", "suspend_merchant", suspend) == "forbidden"
    assert world.code(PLATFORM, "suspend_merchant", {"org": MERCHANT,
                                                     "reason": "he lied to us"}
                      ) == "bad_payload"
    result = world.ok(PLATFORM, "suspend_merchant", suspend)
    assert world.events(result, "trade.merchant.suspended") == [
        {"org": MERCHANT, "platform": PLATFORM, "reason": "inaccurate_information"}]
    assert world.get(f"merchant/{MERCHANT}")["status"] == "suspended"
    assert world.code(PLATFORM, "suspend_merchant", suspend) == "not_verified"
    assert world.code(MERCHANT, "publish_listing", listing_payload("tea-2")
                      ) == "merchant_not_verified"
    assert world.code(MERCHANT, "update_listing", {"listing": "tea-1", "stock": 5}
                      ) == "merchant_not_verified"
    world.ok(MERCHANT, "withdraw_listing", {"listing": "tea-1"})  # it may still withdraw
    elsewhere = trader_records(world, platform="other-platform")
    assert world.code(MERCHANT, "apply_merchant", {"platform": "other-platform",
                                                   "records": elsewhere}) == "forbidden"
    verify_merchant(world)  # a suspended merchant applies again, where it was suspended
    world.ok(MERCHANT, "publish_listing", listing_payload("tea-2"))


def test_trader_information_never_reaches_the_chain(world: World) -> None:
    records = trader_records(world)
    tx = world.chain.tx(world.keys[MERCHANT], "trade.apply_merchant", {
        "platform": PLATFORM, "records": records, "name": "Shenzhen Gadgets Ltd"})
    with pytest.raises(InvalidTransaction) as refused:
        world.chain.check_static(tx)
    assert refused.value.code == "bad_payload"
