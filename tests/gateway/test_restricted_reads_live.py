"""Every generic route of the gateway on a live network, against the privacy domain's read
policy: a stranger — anonymous, or signed with a key that is no party — gets nothing of a
subject's privacy state, transactions or events (a single item is a 404 whether it exists
or not, lists leave it out, a block shows its Merkle leaf only); the subject and its
entitled grantee read all of it, signed, with proofs that verify against the genesis;
parties' public encryption keys stay public. (Security review: "anyone, unsigned, can read
every subject's privacy metadata through the platform routes".)"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from services.ledger.core import merkle
from services.ledger.core.crypto import PrivateKey
from services.sdk import proofs
from services.sdk.client import ApiError, Client
from services.sdk.privacy import PrivacyClient
from services.sdk.vault import EncryptionKey
from tests.live import LiveNetwork, live  # noqa: F401  (the module's network)

pytestmark = pytest.mark.functional
HOUR_MS = 3_600_000
TIMEOUT_S = 20.0


def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {TIMEOUT_S} s (last: {answer!r})")
        time.sleep(0.1)


@dataclass
class Scene:
    live: LiveNetwork
    anon: Client
    stranger: Client  # signed: the admin of an organisation with no part in the record
    subject: Client  # the person the record is about
    carrier: Client  # the admin of the grantee organisation
    carrier_member: Client  # another key of the grantee organisation
    record_id: str
    record_height: int
    grant_tx: str
    access_tx: str  # the carrier's granted access
    access_height: int

    @property
    def subject_id(self) -> str:
        assert self.subject.key is not None
        return self.subject.key.key_id

    @property
    def strangers(self) -> list[Client]:
        return [self.anon, self.stranger]


def organisation(net: LiveNetwork, operator: Client, name: str, role: str) -> Client:
    client = net.client(PrivateKey.from_seed(os.urandom(32)))
    assert client.key is not None
    result = operator.send("consortium.register_organisation", {
        "id": name, "name": name, "roles": [role],
        "admin_key": client.key.public.raw.hex()})
    assert result["status"] == "committed", result
    return client


@pytest.fixture(scope="module")
def scene(live: LiveNetwork) -> Scene:  # noqa: F811
    operator = live.client(live.admin_key("ledger"))
    run = uuid.uuid4().hex[:8]
    subject = organisation(live, operator, f"people-{run}", "consumer")
    carrier = organisation(live, operator, f"carrier-{run}", "carrier")
    stranger = organisation(live, operator, f"shop-{run}", "retailer")
    member = live.client(PrivateKey.from_seed(os.urandom(32)))
    assert member.key is not None
    carrier.send("consortium.add_key", {"public_key": member.key.public.raw.hex(),
                                        "permissions": ["member"]})
    me, them = EncryptionKey.generate(), EncryptionKey.generate()
    person, grantee = PrivacyClient(subject), PrivacyClient(carrier)
    person.register_key(me, scope="self", country="FR")
    grantee.register_key(them, scope="org", country="FR")
    PrivacyClient(stranger).register_key(EncryptionKey.generate(), scope="org", country="FR")
    eventually(lambda: _views_up(live), "the views")
    stored = person.put_record("address", "12 Rue de Rivoli, Paris", jurisdiction="FR",
                               key=me)
    party = f"org:carrier-{run}"
    grant = person.grant(stored.record_id, party, "delivery",
                         int(time.time() * 1000) + HOUR_MS, key=me)
    value = grantee.read(stored.record_id, purpose="delivery", basis="grant", key=them)
    assert value == "12 Rue de Rivoli, Paris"  # signed state proofs and replay: the SDK's
    access = str(grantee.last_access)
    found = eventually(lambda: _try(lambda: carrier.transaction(access, signed=True)),
                       "the access in the views")
    return Scene(live, live.client(), stranger, subject, carrier, member, stored.record_id,
                 stored.height, str(grant.get("tx_hash", "")), access, int(found["height"]))


def _views_up(net: LiveNetwork) -> bool:
    try:
        net.client().call("GET", "/v1/events", query={"limit": 1})
        return True
    except ApiError:
        return False


def _try(fetch: Callable[[], Any]) -> Any:
    try:
        return fetch()
    except ApiError as exc:
        if exc.status in (404, 503):
            return None
        raise


def refused(fetch: Callable[[], Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fetch()
    return caught.value


def keys_of(scene: Scene) -> dict[str, str]:
    r, carrier = scene.record_id, scene.carrier
    assert carrier.key is not None
    party = "org:" + str(carrier.me()["key"]["org"])
    return {"record": f"privacy/record/{r}",
            "subject index": f"privacy/subject/{scene.subject_id}",
            "grant": f"privacy/grant/{r}/{party}/delivery",
            "access time": f"privacy/accessed/{r}/{party}/delivery"}


# --- GET /v1/state/{key} ----------------------------------------------------------------------

def test_strangers_get_no_privacy_state(scene: Scene):
    for name, key in keys_of(scene).items():
        for who in scene.strangers:
            err = refused(functools.partial(who.state, key, signed=who.key is not None))
            assert (err.status, err.code) == (404, "state_restricted"), (name, err)
    # present or absent: the same answer (existence is not confirmed)
    absent = refused(lambda: scene.anon.state("privacy/record/" + "ab" * 32))
    present = refused(lambda: scene.anon.state(f"privacy/record/{scene.record_id}"))
    assert (absent.status, absent.code) == (present.status, present.code)


def test_the_subject_and_the_grantee_read_their_state_with_proofs(scene: Scene):
    keys = keys_of(scene)
    for key in keys.values():
        assert scene.subject.state(key, verify=True, signed=True) is not None, key
    for reader in (scene.carrier, scene.carrier_member):
        for name in ("record", "grant", "access time"):
            assert reader.state(keys[name], verify=True, signed=True) is not None, name
        err = refused(functools.partial(reader.state, keys["subject index"], signed=True))
        assert err.status == 404
    record = scene.subject.state(keys["record"], verify=True, signed=True)
    assert record["subject"] == scene.subject_id


def test_an_answer_for_its_parties_is_private(scene: Scene):
    import urllib.request

    request = scene.subject._request("GET", f"/v1/state/privacy/record/{scene.record_id}",
                                     signed=True)
    with urllib.request.urlopen(urllib.request.Request(
            request.url, headers=request.headers), timeout=30) as answer:
        assert answer.headers["Cache-Control"] == "private, no-store"
    with urllib.request.urlopen(f"{scene.live.url}/v1/status", timeout=30) as answer:
        assert answer.headers.get("Cache-Control") is None


def test_encryption_keys_stay_public(scene: Scene):
    assert scene.subject.key is not None
    for party in (f"key:{scene.subject_id}", "org:" + str(scene.carrier.me()["key"]["org"])):
        key = scene.anon.state(f"privacy/enckey/{party}", verify=True)
        assert key["status"] == "active" and key["party"] == party


# --- GET /v1/transactions/{hash} and /v1/transactions --------------------------------------

def test_strangers_get_no_privacy_transaction(scene: Scene):
    unknown = refused(lambda: scene.anon.transaction("ef" * 32))
    for tx_hash in (scene.record_id, scene.access_tx, scene.grant_tx):
        for who in scene.strangers:
            err = refused(functools.partial(who.transaction, tx_hash,
                                            signed=who.key is not None))
            assert (err.status, err.code) == (unknown.status, unknown.code) \
                == (404, "tx_not_found")


def test_the_parties_read_privacy_transactions_with_proofs(scene: Scene):
    for tx_hash in (scene.record_id, scene.grant_tx, scene.access_tx):
        answer = scene.subject.transaction(tx_hash, verify=True, signed=True)
        assert answer["tx_hash"] == tx_hash
    # the accessing organisation (any of its keys), and the grantee for the grant
    for reader in (scene.carrier, scene.carrier_member):
        reader.transaction(scene.access_tx, verify=True, signed=True)
        reader.transaction(scene.grant_tx, verify=True, signed=True)
        reader.transaction(scene.record_id, verify=True, signed=True)  # an active grantee


def walk_transactions(client: Client, **query: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1_000):
        page = client.call("GET", "/v1/transactions", signed=client.key is not None,
                           query={**query, "cursor": cursor, "limit": 200})
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the list does not end")


def test_transaction_lists_leave_out_what_the_caller_may_not_read(scene: Scene):
    mine = {scene.record_id, scene.grant_tx, scene.access_tx}
    for who in scene.strangers:
        listed = walk_transactions(who, contract="privacy")
        assert {t["kind"] for t in listed} <= {"privacy.register_key"}
        assert not mine & {t["tx_hash"] for t in listed}
        by_subject = walk_transactions(who, sender=scene.subject_id)
        assert [t["kind"] for t in by_subject] == ["privacy.register_key"]
    seen = {t["tx_hash"] for t in walk_transactions(scene.subject, contract="privacy")}
    assert mine <= seen
    carrier_seen = walk_transactions(scene.carrier, kind="privacy.access")
    assert scene.access_tx in {t["tx_hash"] for t in carrier_seen}


# --- GET /v1/events and /v1/events/replay ------------------------------------------------------

def walk_events(client: Client, **query: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1_000):
        page = client.events(signed=client.key is not None,
                             **{**query, "cursor": cursor, "limit": 200})
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the list does not end")


def about(items: list[dict[str, Any]], record_id: str) -> list[dict[str, Any]]:
    return [e for e in items if (e.get("attributes") or e.get("data") or {}).get(
        "record_id") == record_id]


def test_strangers_list_no_privacy_event_but_public_keys(scene: Scene):
    # the subject sees them: the views hold them
    eventually(lambda: about(walk_events(scene.subject, domain="privacy"), scene.record_id),
               "the record's events in the views")
    for who in scene.strangers:
        events = walk_events(who, domain="privacy")
        assert {e["type"] for e in events} <= {"privacy.key.registered",
                                              "privacy.key.revoked"}
        assert about(events, scene.record_id) == []
        assert walk_events(who, tx_hash=scene.access_tx) == []
        assert walk_events(who, type="privacy.access.granted") == []
        assert any(e["attributes"]["party"] == f"key:{scene.subject_id}" for e in events)


def test_the_parties_list_their_events(scene: Scene):
    subject = {e["type"] for e in about(walk_events(scene.subject, domain="privacy"),
                                        scene.record_id)}
    assert {"privacy.record.created", "privacy.grant.created",
            "privacy.access.granted"} <= subject
    for reader in (scene.carrier, scene.carrier_member):
        granted = walk_events(reader, tx_hash=scene.access_tx)
        assert [e["type"] for e in granted] == ["privacy.access.granted"]
    # another holder's or grantee's access is not the carrier's to see: the subject's
    # own access (when it granted) is listed to the subject only
    own = [e for e in about(walk_events(scene.subject, type="privacy.access.granted"),
                            scene.record_id) if e["attributes"]["basis"] == "subject"]
    assert own
    carrier_view = walk_events(scene.carrier, type="privacy.access.granted")
    assert not {e["id"] for e in own} & {e["id"] for e in carrier_view}


def replay_all(client: Client, from_height: int) -> tuple[list[dict[str, Any]], list[str]]:
    items: list[dict[str, Any]] = []
    cursors: list[str] = []
    after = None
    tip = client.status()["height"]
    for _ in range(10_000):
        page = client.replay(from_height=from_height, after=after, limit=50,
                             signed=client.key is not None)
        items += page["items"]
        if page["next_cursor"] is not None:
            cursors.append(page["next_cursor"])
        if page["next_cursor"] in (None, after) or (
                not page["items"] and int(str(page["next_cursor"]).split("/")[0]) >= tip):
            return items, cursors
        after = page["next_cursor"]
    raise AssertionError("the replay does not end")


def test_strangers_replay_no_privacy_event(scene: Scene):
    hidden = {scene.record_id, scene.grant_tx, scene.access_tx}
    for who in scene.strangers:
        items, cursors = replay_all(who, scene.record_height)
        # it went past them all (its cursor is beyond the access), naming none
        assert cursors and int(cursors[-1].split("/")[0]) >= scene.access_height
        assert {e["type"] for e in items if e["type"].startswith("privacy.")} <= {
            "privacy.key.registered", "privacy.key.revoked"}
        for cursor in cursors:  # no cursor names a hidden transaction
            assert not any(h in cursor for h in hidden), cursor


def test_the_parties_replay_their_events(scene: Scene):
    items, _ = replay_all(scene.subject, scene.record_height)
    assert {"privacy.record.created", "privacy.grant.created",
            "privacy.access.granted"} <= {e["type"] for e in about(items, scene.record_id)}
    carrier, _ = replay_all(scene.carrier, scene.access_height)
    assert any(e["txhash"] == scene.access_tx and e["type"] == "privacy.access.granted"
               for e in carrier)


# --- GET /v1/blocks/{height} -------------------------------------------------------------------

def test_a_block_shows_strangers_only_the_leaf_of_a_privacy_transaction(scene: Scene):
    for who in scene.strangers:
        answer = who.call("GET", f"/v1/blocks/{scene.access_height}",
                          signed=who.key is not None)
        block = answer["block"]
        redacted = [t for t in block["txs"] if t.get("redacted")]
        assert redacted, "the access is shown"
        assert all(set(t) == {"redacted", "leaf"} for t in redacted)
        assert scene.access_tx not in str(answer)
        # the header is certified, and its tx_root is the root of the leaves shown
        header = block["header"]
        proofs.verify_certified_header(header, answer["certificate"],
                                       who.trusted_for({"header": header}),
                                       chain_id=scene.live.genesis.chain_id)
        leaves = [bytes.fromhex(t["leaf"]) if t.get("redacted") else
                  merkle.leaf_hash(_wire_bytes(t)) for t in block["txs"]]
        assert merkle.merkle_root_from_hashes(leaves).hex() == header["tx_root"]
        assert len(leaves) == header["tx_count"]


def _wire_bytes(tx: dict[str, Any]) -> bytes:
    from services.ledger.core.transactions import Transaction

    return Transaction.from_wire(tx).wire_bytes


def test_a_party_reads_the_whole_block_and_verifies_it(scene: Scene):
    for reader in (scene.subject, scene.carrier):
        answer = reader.call("GET", f"/v1/blocks/{scene.access_height}", signed=True)
        assert not any(t.get("redacted") for t in answer["block"]["txs"])
        proofs.verify_block(answer, reader.trusted_for(answer["block"]),
                            chain_id=scene.live.genesis.chain_id)


# --- the host's wiring ----------------------------------------------------------------------

def test_the_host_enforces_the_policy_and_withholds_restricted_partner_events(scene: Scene):
    node = scene.live.network.nodes["gateway"]
    host = node.gateway
    assert host is not None
    assert host.api.reads is host.reads and host.reads.restricts_kind("privacy.access")
    assert {"privacy.access.granted", "privacy.record.created"} <= host.catalogue.withheld
    assert "privacy.key.registered" not in host.catalogue.withheld
    document = scene.anon.call("GET", "/openapi.json")
    for path in ("/v1/state/{key}", "/v1/transactions/{tx_hash}", "/v1/transactions",
                 "/v1/events", "/v1/events/replay", "/v1/blocks/{height}"):
        assert document["paths"][path]["get"]["security"] == [
            {}, {"httpMessageSignature": []}], path


# --- the reviewer's reproduction, as it reads once fixed ---------------------------------------

def test_a_stranger_cannot_read_metadata_or_access_log(scene: Scene):
    """/tmp/rv2/test_live_attacks.py::test_a_stranger_cannot_read_metadata_or_access_log,
    with a 404 read as "nothing leaked" and the events looked for once the views hold
    them (the subject sees them): the anonymous client reads nothing."""
    anon, r = scene.anon, scene.record_id
    party = "org:" + str(scene.carrier.me()["key"]["org"])

    def value(path: str) -> Any:
        try:
            return anon.call("GET", path)["value"]
        except ApiError as exc:
            assert (exc.status, exc.code) == (404, "state_restricted")
            return None

    eventually(lambda: about(walk_events(scene.subject, type="privacy.access.granted"), r),
               "the access event in the views")
    leaked = {
        "record": value(f"/v1/state/privacy/record/{r}") is not None,
        "subject_index": bool(value(f"/v1/state/privacy/subject/{scene.subject_id}")),
        "grant": value(f"/v1/state/privacy/grant/{r}/{party}/delivery") is not None,
        "access_log": bool(about(anon.call("GET", "/v1/events", query={
            "type": "privacy.access.granted", "limit": 200})["items"], r)),
    }
    assert not any(leaked.values()), f"anonymous client read: {leaked}"
