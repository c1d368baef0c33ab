"""The privacy domain through the gateway, end to end: real signed transactions on a live
network, the vault over HTTP, the views, the vault custodian's crypto-shredding.

Values are sealed and keys wrapped here, client side: the gateway only ever stores and
hands out bytes it cannot read."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from services.composition import event_catalogue
from services.privacy.vocabulary import VAULT
from services.sdk.client import ApiError
from services.sdk.httpsig import sign_request
from services.sdk.privacy import PrivacyClient
from services.sdk.vault import EncryptionKey
from tests.live import LiveNetwork
from tests.privacy.edge.vault_helpers import (
    HOUR_MS,
    World,
    b64,
    eventually,
    now_ms,
    onboard,
    open_envelope,
    seal,
    unb64,
    wrap,
)

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def world(live: LiveNetwork) -> Iterator[World]:
    yield onboard(live)


def refused(call: Any, status: int, code: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (status, code), caught.value
    return caught.value


def test_a_party_s_encryption_key_is_public(world: World) -> None:
    client = world.live.client()
    subject = world.subject
    key = client.call("GET", f"/v1/privacy/keys/{subject.party}")
    assert key["party"] == subject.party and key["public_key"] == subject.public_hex
    assert key["country"] == "FR" and len(key["key_id"]) == 32 and key["since"] > 0
    carrier = client.call("GET", f"/v1/privacy/keys/{world.carrier.party}")
    assert carrier["public_key"] == world.carrier.public_hex
    refused(lambda: client.call("GET", "/v1/privacy/keys/org:nobody-here"), 404,
            "no_encryption_key")
    refused(lambda: client.call("GET", "/v1/privacy/keys/nobody"), 400, "bad_party")


def test_the_subject_stores_the_ciphertext_once_and_idempotently(world: World) -> None:
    record_id, sealed = world.record()
    path = f"/v1/privacy/records/{record_id}/ciphertext"
    own = b64(wrap(sealed.data_key, world.subject.public))
    body = {"ciphertext": b64(sealed.ciphertext), "wraps": {world.subject.party: own}}
    refused(lambda: world.subject.call("PUT", path, body={**body, "ciphertext": b64(
        os.urandom(len(sealed.ciphertext)))}), 422, "ciphertext_mismatch")
    refused(lambda: world.carrier.call("PUT", path, body=body), 403, "not_the_subject")
    refused(lambda: world.live.client(world.subject.key).call("PUT", path, body=body), 401,
            "signature_required")
    refused(lambda: world.subject.call("PUT", path, body={**body, "ciphertext": b64(
        os.urandom(65_537))}), 413, "ciphertext_too_large")
    refused(lambda: world.subject.call("PUT", path, body={**body, "wraps": {
        world.carrier.party: own}}), 422, "not_a_holder")
    refused(lambda: world.subject.call("PUT", path, body={**body, "wraps": {
        world.subject.party: b64(os.urandom(257))}}), 413, "wrap_too_large")
    refused(lambda: world.subject.call("PUT", path, body={**body, "ciphertext": "a=="}), 422,
            "bad_payload")
    refused(lambda: world.subject.call("PUT", f"/v1/privacy/records/{'0' * 64}/ciphertext",
                                       body=body), 404, "record_not_found")
    first = world.subject.call("PUT", path, body=body)
    assert first == {"record_id": record_id, "stored": True, "wraps": [world.subject.party]}
    assert world.subject.call("PUT", path, body=body) == first  # the same bytes: 200
    refused(lambda: world.subject.call("PUT", path, body={
        "ciphertext": b64(sealed.ciphertext[:-1] + b"\x00")}), 422, "ciphertext_mismatch")
    other, _ = world.record()
    refused(lambda: world.subject.call("PUT", f"/v1/privacy/records/{other}/ciphertext",
                                       body=body), 422, "ciphertext_mismatch")


def test_a_grantee_reads_against_its_granted_access_only(world: World) -> None:
    record_id, sealed = world.stored_record(b"Jane Doe, 7 Main Street")
    wrapped = world.grant(record_id, sealed, world.carrier, upload=False)
    wraps = f"/v1/privacy/records/{record_id}/wraps/{world.carrier.party}"
    refused(lambda: world.subject.call("PUT", wraps, body={"wrapped_key": b64(
        wrap(sealed.data_key, world.carrier.public, fresh=True))}), 422, "wrap_mismatch")
    refused(lambda: world.subject.call(
        "PUT", f"/v1/privacy/records/{record_id}/wraps/{world.shop.party}",
        body={"wrapped_key": b64(wrapped)}), 404, "grant_not_found")
    refused(lambda: world.carrier.call("PUT", wraps, body={"wrapped_key": b64(wrapped)}),
            403, "not_the_subject")
    stored = world.subject.call("PUT", wraps, body={"wrapped_key": b64(wrapped)})
    assert stored == {"record_id": record_id, "party": world.carrier.party, "stored": True}
    assert world.subject.call("PUT", wraps, body={"wrapped_key": b64(wrapped)}) == stored

    access = world.access(world.carrier, record_id)
    envelope = world.envelope(world.carrier, record_id, access)
    assert envelope["party"] == world.carrier.party
    assert envelope["commitment"] == sealed.commitment.hex()
    assert unb64(envelope["wrapped_key"]) == wrapped
    assert open_envelope(envelope, world.carrier.exchange) == b"Jane Doe, 7 Main Street"

    # another key of the same organisation presents the admin's access
    refused(lambda: world.envelope(world.carrier_member, record_id, access), 403,
            "access_not_granted")
    # the access of the member's own key opens it for the member
    mine = world.access(world.carrier_member, record_id)
    assert open_envelope(world.envelope(world.carrier_member, record_id, mine),
                         world.carrier.exchange) == b"Jane Doe, 7 Main Street"
    # no access named, an unknown one, a transaction that is no access to this record
    refused(lambda: world.carrier.call("GET", f"/v1/privacy/records/{record_id}/envelope"),
            400, "bad_query")
    refused(lambda: world.envelope(world.carrier, record_id, "ab" * 32), 404,
            "access_not_found")
    other, _ = world.stored_record()
    refused(lambda: world.envelope(world.carrier, other, access), 403, "access_not_granted")
    refused(lambda: world.live.client().call(
        "GET", f"/v1/privacy/records/{record_id}/envelope", query={"access": access}), 401,
        "signature_required")


def test_refused_accesses_open_nothing(world: World) -> None:
    record_id, sealed = world.stored_record()
    no_grant = world.access(world.shop, record_id)
    refused(lambda: world.envelope(world.shop, record_id, no_grant), 403, "access_not_granted")
    world.grant(record_id, sealed, world.carrier, purpose="delivery")
    other_purpose = world.access(world.carrier, record_id, purpose="returns")
    refused(lambda: world.envelope(world.carrier, record_id, other_purpose), 403,
            "access_not_granted")
    world.subject.send("privacy.revoke_grant", {"record_id": record_id,
                                                "grantee": world.carrier.party,
                                                "purpose": "delivery"})
    revoked = world.access(world.carrier, record_id)
    refused(lambda: world.envelope(world.carrier, record_id, revoked), 403,
            "access_not_granted")
    world.grant(record_id, sealed, world.shop, purpose="payment", until=now_ms() + 2_500)
    until = world.subject.client.state(
        f"privacy/grant/{record_id}/{world.shop.party}/payment", signed=True)["until"]
    eventually(lambda: world.live.client().status()["time"] > until, timeout_s=30,
               what="block time past the grant's end")
    expired = world.access(world.shop, record_id, purpose="payment")
    refused(lambda: world.envelope(world.shop, record_id, expired), 403,
            "access_not_granted")

    def logged() -> list[dict[str, Any]] | None:
        found = [e for e in _access_log(world) if e["record_id"] == record_id]
        return found if len(found) >= 4 else None

    log = eventually(logged, what="the refusals in the access log")
    assert {(e["party"], e["outcome"], e["reason"]) for e in log} == {
        (world.shop.party, "refused", "no_grant"),
        (world.carrier.party, "refused", "no_grant"),
        (world.carrier.party, "refused", "grant_revoked"),
        (world.shop.party, "refused", "grant_expired")}


def test_an_access_opens_the_vault_for_a_while_of_block_time(world: World) -> None:
    record_id, sealed = world.stored_record()
    world.grant(record_id, sealed, world.carrier)
    access = world.access(world.carrier, record_id)
    limits = world.plugin.api.limits
    valid_ms = limits.access_valid_ms
    try:
        limits.access_valid_ms = 1
        height = world.live.client().status()["height"]
        eventually(lambda: world.live.client().status()["height"] > height + 1,
                   what="a later block")
        refused(lambda: world.envelope(world.carrier, record_id, access), 403,
                "access_expired")
    finally:
        limits.access_valid_ms = valid_ms
    assert world.envelope(world.carrier, record_id, access)["record_id"] == record_id


def test_the_subject_reads_and_sees_their_own_records(world: World) -> None:
    record_id, sealed = world.stored_record(b"+33 6 12 34 56 78")
    access = world.access(world.subject, record_id, basis="subject", acting="self")
    envelope = world.envelope(world.subject, record_id, access)
    assert envelope["party"] == world.subject.party
    assert open_envelope(envelope, world.subject.exchange) == b"+33 6 12 34 56 78"

    metadata = world.subject.call("GET", f"/v1/privacy/records/{record_id}")
    assert metadata["status"] == "active" and metadata["subject"] == world.subject.key.key_id
    assert metadata["ciphertext_hash"] == sealed.ciphertext_hash
    refused(lambda: world.carrier.call("GET", f"/v1/privacy/records/{record_id}"), 403,
            "not_entitled")
    world.grant(record_id, sealed, world.carrier)
    granted = world.carrier.call("GET", f"/v1/privacy/records/{record_id}")
    assert granted["grantees"] == {world.carrier.party: ["delivery"]}
    assert world.carrier_member.call("GET", f"/v1/privacy/records/{record_id}",
                                     signed=True)["record_id"] == record_id
    refused(lambda: world.carrier.call("GET", "/v1/privacy/records/xyz"), 400,
            "bad_record_id")

    mine = world.subject.call("GET", "/v1/privacy/me/records")
    assert mine["subject"] == world.subject.key.key_id
    assert record_id in {r["record_id"] for r in mine["items"]}
    assert world.shop.call("GET", "/v1/privacy/me/records")["items"] == []


def test_erasure_shreds_the_vault_and_the_custodian_acknowledges(world: World) -> None:
    record_id, sealed = world.stored_record(b"to be forgotten")
    world.grant(record_id, sealed, world.carrier)
    before = world.access(world.carrier, record_id)
    own = world.access(world.subject, record_id, basis="subject", acting="self")
    custodian = world.plugin.custodian
    acknowledged = custodian.stats.acknowledgements
    world.subject.send("privacy.request_erasure", {"record_id": record_id})

    def vault_acknowledged() -> dict[str, Any] | None:
        record = world.subject.client.state(f"privacy/record/{record_id}", signed=True)
        erasure = record.get("erasure") or {}
        return record if VAULT in erasure.get("acknowledged", []) else None

    record = eventually(vault_acknowledged, what="the vault's acknowledgement")
    assert record["status"] == "erasing"
    assert record["erasure"]["pending"] == [world.carrier.party]
    assert world.live.run(world.plugin.vault.get(record_id)) is None
    assert custodian.stats.acknowledgements == acknowledged + 1
    assert custodian.stats.deletions >= 1

    refused(lambda: world.envelope(world.carrier, record_id, before), 410, "record_erased")
    refused(lambda: world.envelope(world.subject, record_id, own), 410, "record_erased")
    refused(lambda: world.subject.call("PUT", f"/v1/privacy/records/{record_id}/ciphertext",
                                       body={"ciphertext": b64(sealed.ciphertext)}),
            409, "record_not_active")
    after = world.access(world.carrier, record_id)
    refused(lambda: world.envelope(world.carrier, record_id, after), 403,
            "access_not_granted")

    # shredding again acknowledges nothing: the vault is no longer pending
    world.live.run(custodian.shred(record_id))
    assert custodian.stats.acknowledgements == acknowledged + 1
    world.carrier.send("privacy.ack_erasure", {"record_id": record_id})
    erased = world.subject.client.state(f"privacy/record/{record_id}", signed=True)
    assert erased["status"] == "erased" and erased["erasure"]["pending"] == []


def test_rectification_shreds_the_old_version(world: World) -> None:
    old, _ = world.stored_record(b"old address")
    sealed_new = seal("address", b"new address")
    holders = [world.subject.party]
    result = world.subject.send("privacy.rectify", {
        "record_id": old, "commitment": sealed_new.commitment.hex(),
        "ciphertext_hash": sealed_new.ciphertext_hash, "holders": holders,
        "wrap_hashes": world.wrap_hashes(sealed_new, holders)})
    new = result["tx_hash"]
    eventually(lambda: world.live.run(world.plugin.vault.get(old)) is None and VAULT not in
               world.subject.client.state(f"privacy/record/{old}",
                                          signed=True)["erasure"]["pending"],
               what="the old version shredded")
    world.subject.call("PUT", f"/v1/privacy/records/{new}/ciphertext",
                       body={"ciphertext": b64(sealed_new.ciphertext)})
    assert world.live.run(world.plugin.vault.get(new)) is not None


def _access_log(world: World, **query: Any) -> list[dict[str, Any]]:
    page = world.subject.call("GET", "/v1/privacy/me/access-log", query=query or None)
    return list(page["items"])


def test_access_log_pages_newest_first(world: World) -> None:
    record_id, sealed = world.stored_record()
    world.grant(record_id, sealed, world.carrier)
    hashes = [world.access(world.carrier, record_id) for _ in range(3)]
    eventually(lambda: {e["tx_hash"] for e in _access_log(world, limit=200)} >= set(hashes),
               what="the accesses in the view")
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = world.subject.call("GET", "/v1/privacy/me/access-log",
                                  query={"limit": 2, "cursor": cursor})
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    positions = [(e["height"], e["time"]) for e in seen]
    assert positions == sorted(positions, reverse=True)
    mine = [e for e in seen if e["tx_hash"] in hashes]
    assert [e["tx_hash"] for e in mine] == hashes[::-1]
    assert all(e["outcome"] == "granted" and e["reason"] is None and
               e["party"] == world.carrier.party and e["purpose"] == "delivery" and
               e["basis"] == "grant" and e["by"] == world.carrier.key.key_id for e in mine)
    refused(lambda: world.subject.call("GET", "/v1/privacy/me/access-log",
                                       query={"cursor": "bm9wZQ"}), 400, "bad_cursor")
    assert world.shop.call("GET", "/v1/privacy/me/access-log")["items"] == []


def test_the_export_holds_everything_about_the_subject(world: World) -> None:
    record_id, sealed = world.stored_record(b"export me")
    world.grant(record_id, sealed, world.carrier)
    access = world.access(world.carrier, record_id)
    erased_id, _ = world.stored_record(b"erase me")
    world.subject.send("privacy.request_erasure", {"record_id": erased_id})

    def exported() -> dict[str, Any] | None:
        export = dict(world.subject.call("GET", "/v1/privacy/me/export"))
        logged = {e["tx_hash"] for e in export["access_log"]}
        gone = [r for r in export["records"] if r["record_id"] == erased_id]
        # only the vault held a copy besides the subject: its acknowledgement completes it
        shredded = gone and gone[0]["ciphertext"] is None and gone[0]["status"] == "erased"
        return export if access in logged and shredded else None

    export = eventually(exported, what="the access and the shredding in the export")
    assert export["subject"] == world.subject.key.key_id and not export["truncated"]
    assert export["encryption_key"]["public_key"] == world.subject.public_hex
    records = {r["record_id"]: r for r in export["records"]}
    mine = records[record_id]
    assert open_envelope(mine, world.subject.exchange) == b"export me"
    assert [h["event"] for h in mine["history"]] == ["record.created"]
    assert {(g["record_id"], g["grantee"], g["purpose"], g["status"])
            for g in export["grants"]} >= {
        (record_id, world.carrier.party, "delivery", "active")}
    gone = records[erased_id]
    assert gone["wrapped_key"] is None
    erasures = {e["record_id"]: e for e in export["erasures"]}
    assert erasures[erased_id]["reason"] == "requested"
    assert erasures[erased_id]["acknowledged"] == sorted([world.subject.party, VAULT])
    assert erasures[erased_id]["completed"] >= erasures[erased_id]["requested"]

    def history() -> list[str] | None:
        export = dict(world.subject.call("GET", "/v1/privacy/me/export"))
        found = next(r for r in export["records"] if r["record_id"] == erased_id)["history"]
        events = [h["event"] for h in found]
        return events if "erasure.completed" in events else None

    assert eventually(history, what="the erasure's history") == [
        "record.created", "erasure.requested", "erasure.acknowledged", "erasure.completed"]
    assert access in {e["tx_hash"] for e in export["access_log"]}


def test_every_privacy_event_matches_its_partner_schema(world: World) -> None:
    catalogue = event_catalogue()
    client = world.subject.client  # privacy events are their parties': the subject's here
    seen: set[str] = set()
    after = None
    while True:
        page = client.replay(from_height=1, after=after, limit=500, signed=True)
        for item in page["items"]:
            if item["type"].startswith("privacy."):
                catalogue.validate(item["type"], item["data"])
                seen.add(item["type"])
        after = page["next_cursor"]
        if after is None or not page["items"]:
            break
    assert {"privacy.key.registered", "privacy.record.created", "privacy.grant.created",
            "privacy.access.granted", "privacy.access.refused"} <= seen


def test_the_privacy_routes_are_documented(world: World) -> None:
    doc = world.live.client().call("GET", "/openapi.json")
    paths = doc["paths"]
    assert "put" in paths["/v1/privacy/records/{record_id}/ciphertext"]
    assert "get" in paths["/v1/privacy/records/{record_id}/envelope"]
    assert paths["/v1/privacy/me/export"]["get"]["security"]
    assert {"/v1/privacy/keys/{party}", "/v1/privacy/me/access-log",
            "/v1/privacy/me/records"} <= set(paths)


def test_wraps_hash_binds_what_the_grant_names(world: World) -> None:
    """The wrap a grantee receives is the one whose SHA-256 the subject put on chain."""
    record_id, sealed = world.stored_record()
    wrapped = world.grant(record_id, sealed, world.carrier)
    grant = world.subject.client.state(
        f"privacy/grant/{record_id}/{world.carrier.party}/delivery", signed=True)
    assert grant["wrap_hash"] == hashlib.sha256(wrapped).hexdigest()
    assert grant["until"] <= now_ms() + HOUR_MS


# --- an access is judged again when it opens the vault ------------------------------------


def test_a_grant_revoked_after_the_access_closes_the_vault(world: World) -> None:
    record_id, sealed = world.stored_record(b"Jane Doe, 7 Main Street")
    world.grant(record_id, sealed, world.carrier)
    access = world.access(world.carrier, record_id)
    assert world.envelope(world.carrier, record_id, access)["record_id"] == record_id
    world.subject.send("privacy.revoke_grant", {"record_id": record_id,
                                                "grantee": world.carrier.party,
                                                "purpose": "delivery"})
    error = refused(lambda: world.envelope(world.carrier, record_id, access), 403,
                    "access_no_longer_granted")
    assert error.body["reason"] == "grant_revoked"


def test_a_grant_expired_since_the_access_closes_the_vault(world: World) -> None:
    record_id, sealed = world.stored_record()
    world.grant(record_id, sealed, world.shop, purpose="payment", until=now_ms() + 2_500)
    access = world.access(world.shop, record_id, purpose="payment")
    assert world.envelope(world.shop, record_id, access)["record_id"] == record_id
    until = world.subject.client.state(
        f"privacy/grant/{record_id}/{world.shop.party}/payment", signed=True)["until"]
    eventually(lambda: world.live.client().status()["time"] > until, timeout_s=30,
               what="block time past the grant's end")
    error = refused(lambda: world.envelope(world.shop, record_id, access), 403,
                    "access_no_longer_granted")
    assert error.body["reason"] == "grant_expired"


def test_a_party_whose_encryption_key_was_revoked_gets_no_wrap(world: World) -> None:
    rail = world.organisation("rail", "carrier")
    record_id, sealed = world.stored_record()
    world.grant(record_id, sealed, rail)
    access = world.access(rail, record_id)
    assert world.envelope(rail, record_id, access)["party"] == rail.party
    rail.send("privacy.revoke_key", {"scope": "org"})
    refused(lambda: world.envelope(rail, record_id, access), 403, "no_encryption_key")


def test_the_envelope_is_never_cached(world: World) -> None:
    record_id, _ = world.stored_record()
    access = world.access(world.subject, record_id, basis="subject", acting="self")
    url = f"{world.live.url}/v1/privacy/records/{record_id}/envelope?access={access}"
    headers = {"Accept": "application/json"}
    headers.update(sign_request(world.subject.key, method="GET", url=url, headers=headers,
                                body=None, now=int(time.time()), nonce=os.urandom(12).hex()))
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=10) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"


# --- a party other than the subject sees its own entries only ----------------------------


def test_a_party_sees_only_its_own_entries_of_a_record(world: World) -> None:
    holders = [world.subject.party, world.carrier.party]
    record_id, sealed = world.record(holders=holders)
    world.grant(record_id, sealed, world.shop, purpose="payment", upload=False)
    mine = world.subject.call("GET", f"/v1/privacy/records/{record_id}")
    assert set(mine["holders"]) == set(holders) == set(mine["wrap_hashes"])
    assert mine["grantees"] == {world.shop.party: ["payment"]}
    shop = world.shop.call("GET", f"/v1/privacy/records/{record_id}")
    assert (shop["holders"], shop["wrap_hashes"]) == ({}, {})
    assert shop["grantees"] == {world.shop.party: ["payment"]}
    carrier = world.carrier.call("GET", f"/v1/privacy/records/{record_id}")
    assert set(carrier["holders"]) == {world.carrier.party} == set(carrier["wrap_hashes"])
    assert carrier["grantees"] == {}
    world.subject.send("privacy.request_erasure", {"record_id": record_id})
    erasing = world.carrier.call("GET", f"/v1/privacy/records/{record_id}")
    assert set(erasing["erasure"]["pending"]) <= {world.carrier.party, VAULT}
    assert world.shop.party not in erasing["erasure"]["pending"]


# --- a holder's wrap is the one the chain binds -------------------------------------------


def test_a_holder_s_wrap_is_the_one_the_record_binds(world: World) -> None:
    record_id, sealed = world.record()
    path = f"/v1/privacy/records/{record_id}/ciphertext"
    other = wrap(sealed.data_key, world.subject.public, fresh=True)  # opens all the same
    refused(lambda: world.subject.call("PUT", path, body={
        "ciphertext": b64(sealed.ciphertext), "wraps": {world.subject.party: b64(other)}}),
        422, "wrap_mismatch")
    bound = wrap(sealed.data_key, world.subject.public)
    world.subject.call("PUT", path, body={"ciphertext": b64(sealed.ciphertext),
                                          "wraps": {world.subject.party: b64(bound)}})
    entry = world.live.run(world.plugin.vault.get(record_id))
    assert entry.wraps == {world.subject.party: bound}  # type: ignore[attr-defined]


# --- the export, page by page, through the SDK ---------------------------------------------


def test_the_sdk_follows_the_export_s_pages(world: World) -> None:
    record_id, _ = world.stored_record(b"paged export")
    limits = world.plugin.api.limits
    whole = dict(world.subject.call("GET", "/v1/privacy/me/export"))
    assert whole["next_cursor"] is None
    everything = [r["record_id"] for r in whole["records"]]
    assert record_id in everything and everything == sorted(everything)
    bytes_max = limits.export_bytes_max
    try:
        limits.export_bytes_max = 1  # one record a page
        first = dict(world.subject.call("GET", "/v1/privacy/me/export"))
        assert [r["record_id"] for r in first["records"]] == everything[:1]
        assert first["next_cursor"] == everything[0] and first["truncated"]
        exported = PrivacyClient(world.subject.client).export(
            EncryptionKey(world.subject.exchange))
    finally:
        limits.export_bytes_max = bytes_max
    assert [r["record_id"] for r in exported["records"]] == everything
    values = {r["record_id"]: r["value"] for r in exported["records"]}
    assert values[record_id] == "paged export"
    assert {g["record_id"] for g in exported["grants"]} == {
        g["record_id"] for g in whole["grants"]}
