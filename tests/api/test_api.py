"""The gateway's API end to end through the SDK, on a live embedded network with views.

Proofs are checked offline with the SDK against the pinned genesis only.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from typing import Any

import pytest

from services.ledger.core.transactions import sign_transaction
from services.sdk import proofs
from services.sdk.client import ApiError, Client
from tests.live import LiveNetwork, bench_client_key

pytestmark = pytest.mark.functional


def digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def raw(live: LiveNetwork, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    req = urllib.request.Request(live.url + path, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def wait_until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_status_and_openapi(live: LiveNetwork) -> None:
    from openapi_spec_validator import validate

    status = live.client().status()
    assert status["chain_id"] == live.genesis.chain_id
    assert status["genesis_hash"] == live.genesis.hash.hex()
    code, ctype, body = raw(live, "GET", "/openapi.json")
    assert code == 200 and ctype.startswith("application/json")
    doc = json.loads(body)
    validate(doc)  # OpenAPI 3.1, via openapi-spec-validator
    assert doc["openapi"] == "3.1.0"
    for path in ("/v1/transactions", "/v1/transactions/{tx_hash}", "/v1/state/{key}",
                 "/v1/blocks/{height}", "/v1/events/replay", "/v1/me", "/healthz"):
        assert path in doc["paths"], path
    code, ctype, page = raw(live, "GET", "/docs")
    assert code == 200 and "text/html" in ctype and b"/openapi.json" in page


def test_submit_wait_commit_and_verify_offline(live: LiveNetwork) -> None:
    client = live.client(live.demo_key)
    result = client.send("notary.anchor", {"digest": digest("invoice 1"), "label": "inv 1"},
                         verify=True)
    assert result["status"] == "committed"
    assert result["height"] >= 1
    # the same answer, fetched later, checks against the genesis alone
    fetched = wait_until(lambda: _try(lambda: client.transaction(result["tx_hash"],
                                                                  verify=True)))
    assert fetched["height"] == result["height"]
    # a tampered receipt does not verify
    bad = json.loads(json.dumps(fetched))
    bad["proof"]["path"] = [digest("x"), *bad["proof"]["path"][1:]]
    with pytest.raises(proofs.ProofError):
        proofs.verify_transaction(bad, live.genesis.validators, bad["transaction"])
    bad = json.loads(json.dumps(fetched))
    bad["certificate"]["votes"] = bad["certificate"]["votes"][:2]
    with pytest.raises(proofs.ProofError):
        proofs.verify_transaction(bad, live.genesis.validators, bad["transaction"])


def _try(fn: Any) -> Any:
    try:
        return fn()
    except ApiError as exc:
        if exc.status in (404, 503):
            return None
        raise


def test_state_value_and_absence_are_proven(live: LiveNetwork) -> None:
    client = live.client(live.demo_key)
    d = digest("state proof")
    client.send("notary.anchor", {"digest": d})
    value = wait_until(lambda: client.state(f"notary/anchor/{d}", verify=True))
    assert value["digest"] == d and value["by"] == live.demo_key.key_id
    assert client.state(f"notary/anchor/{digest('never anchored')}", verify=True) is None
    answer = client.call("GET", f"/v1/state/notary/anchor/{d}")
    answer["value"]["label"] = "forged"
    with pytest.raises(proofs.ProofError):
        proofs.verify_state_value(answer, live.genesis.validators)


def test_batches_and_per_item_errors(live: LiveNetwork) -> None:
    client = live.client(live.demo_key)
    good = [client.tx("notary.anchor", {"digest": digest(f"batch {i}")}) for i in range(5)]
    dup = good[0]
    results = client.submit_batch([*good, dup])
    assert [r["status"] for r in results[:5]] == ["committed"] * 5
    assert results[5]["status"] == "rejected" and results[5]["code"] == "duplicate"


def test_errors_are_problem_json_with_stable_codes(live: LiveNetwork) -> None:
    client = live.client(live.demo_key)
    # the views must be up, or a list answers 503 before it looks at its cursor
    wait_until(lambda: raw(live, "GET", "/v1/transactions")[0] == 200)
    cases = [
        ("POST", "/v1/transactions", b"{}", {"Content-Type": "text/plain"}, 415,
         "unsupported_media_type"),
        ("POST", "/v1/transactions", b"{nope", {"Content-Type": "application/json"}, 400,
         "bad_json"),
        ("POST", "/v1/transactions", b'{"x": 1.5}', {"Content-Type": "application/json"},
         400, "bad_encoding"),
        ("GET", "/v1/blocks/999999999", None, {}, 404, "block_not_found"),
        ("GET", "/v1/blocks/abc", None, {}, 400, "bad_height"),
        ("GET", "/v1/keys/zz", None, {}, 400, "bad_key_id"),
        ("GET", "/v1/transactions?limit=0", None, {}, 400, "bad_query"),
        ("GET", "/v1/nowhere", None, {}, 404, "not_found"),
        ("GET", "/v1/me", None, {}, 401, "signature_required"),
        # found in review: each of these was once a 500
        ("GET", "/v1/blocks/%C2%B2", None, {}, 400, "bad_height"),  # "²" is a digit
        ("POST", "/v1/transactions", b"[" * 100_000 + b"]" * 100_000,
         {"Content-Type": "application/json"}, 400, "bad_json"),
        ("POST", "/v1/trace/certificates/verify", b"[" * 100_000 + b"]" * 100_000,
         {"Content-Type": "application/json"}, 400, "bad_json"),
        # issue 10: formats the document states are the ones enforced, with their codes
        ("GET", "/v1/blocks?cursor=not%20base64", None, {}, 400, "bad_cursor"),
        ("GET", "/v1/events/replay?after=nope", None, {}, 400, "bad_cursor"),
        ("GET", "/v1/state/", None, {}, 404, "not_found"),
        ("PUT", "/v1/status", b"", {}, 405, "method_not_allowed"),
        ("POST", "/v1/transactions", b"{}", {"Content-Type": "application/json",
                                            "Idempotency-Key": "caf\u00e9"}, 400,
         "bad_idempotency_key"),
    ]
    for method, path, body, headers, status, code in cases:
        got, ctype, payload = raw(live, method, path, body, headers)
        assert got == status, (path, got, payload)
        assert ctype.startswith("application/problem+json"), (path, ctype)
        problem = json.loads(payload)
        assert problem["code"] == code and problem["status"] == status, (path, problem)
    big = b'{"transactions":[' + b",".join([b'{"a":"' + b"x" * 1000 + b'"}'] * 5000) + b"]}"
    got, ctype, payload = raw(live, "POST", "/v1/transactions", big,
                              {"Content-Type": "application/json"})
    assert got == 413 and json.loads(payload)["code"] == "body_too_large"
    # forged signature and replay of a committed transaction
    tx = client.tx("notary.anchor", {"digest": digest("forged")})
    wire = tx.to_wire()
    wire["signature"] = ("0" if wire["signature"][0] != "0" else "1") + wire["signature"][1:]
    with pytest.raises(ApiError) as forged:
        client.call("POST", "/v1/transactions", body=wire)
    assert (forged.value.status, forged.value.code) == (422, "bad_signature")
    client.resync_nonce()
    done = client.send("notary.anchor", {"digest": digest("replay me")})
    assert done["status"] == "committed"
    replayed = wait_until(lambda: _try(lambda: client.call(
        "GET", f"/v1/transactions/{done['tx_hash']}")))["transaction"]
    with pytest.raises(ApiError) as again:
        client.call("POST", "/v1/transactions", body=replayed)
    assert again.value.code == "bad_nonce" and again.value.status == 409


def test_idempotency_key(live: LiveNetwork) -> None:
    client = live.client(live.demo_key)
    tx = client.tx("notary.anchor", {"digest": digest("idempotent")})
    first = client.submit(tx, wait=True, idempotency_key="order-42")
    second = client.submit(tx, wait=True, idempotency_key="order-42")
    assert first == second and first["status"] == "committed"
    other = client.tx("notary.anchor", {"digest": digest("another")})
    with pytest.raises(ApiError) as reused:
        client.submit(other, idempotency_key="order-42")
    assert reused.value.code == "idempotency_key_reused"


def test_signed_private_read(live: LiveNetwork) -> None:
    me = live.client(live.demo_key).me()
    assert me["key"]["key_id"] == live.demo_key.key_id
    assert me["organisation"]["id"] == "demo-merchants"
    from services.ledger.core.crypto import PrivateKey

    stranger = Client(live.url, key=PrivateKey.derive("not registered"))
    with pytest.raises(ApiError) as unknown:
        stranger.me()
    assert (unknown.value.status, unknown.value.code) == (401, "unknown_key")


def test_views_search_pagination_and_replay(live: LiveNetwork) -> None:
    key = live.admin_key("trace")
    client = live.client(key)
    sent = [client.send("notary.anchor", {"digest": digest(f"views {i}")}) for i in range(7)]
    hashes = {r["tx_hash"] for r in sent}
    seen: list[str] = []

    def walk() -> bool:
        seen.clear()
        cursor = None
        while True:
            page = client.transactions(sender=key.key_id, limit=3, cursor=cursor)
            seen.extend(item["tx_hash"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return hashes <= set(seen)

    wait_until(walk)
    assert len(seen) == len(set(seen))
    heights = [t["height"] for t in client.transactions(sender=key.key_id)["items"]]
    assert heights == sorted(heights, reverse=True)
    events = client.events(type="notary.document.anchored", limit=200)
    assert any(e["attributes"]["by"] == key.key_id for e in events["items"])
    replayed: list[dict[str, Any]] = []
    after = None
    while True:
        page = client.replay(from_height=1, after=after, limit=5)
        replayed.extend(page["items"])
        after = page["next_cursor"]
        if len(page["items"]) < 5:  # a short page reached the tip
            break
    ids = [e["id"] for e in replayed]
    assert len(ids) == len(set(ids))
    ours = [e for e in replayed if e["type"] == "notary.document.anchored"
            and e["data"]["by"] == key.key_id]
    assert len(ours) == 7
    assert [e["height"] for e in replayed] == sorted(e["height"] for e in replayed)


def test_replayed_domain_events_carry_the_subject_they_are_published_with(
        live: LiveNetwork) -> None:
    """Found in review: the API's replay knew the platform's events only, so a domain's
    event (here privacy.key.registered) came back without the subject the publisher,
    which has the composition's catalogue, gives it."""
    from services import composition

    client = live.client(live.demo_key)
    public_key = hashlib.sha256(f"x25519 {time.time_ns()}".encode()).hexdigest()
    sent = client.send("privacy.register_key", {"scope": "self", "public_key": public_key,
                                                "country": "FR"})
    page = client.replay(from_height=sent["height"], limit=100)
    ours = [e for e in page["items"] if e.get("txhash") == sent["tx_hash"]]
    assert [e["type"] for e in ours] == ["privacy.key.registered"]
    published = composition.event_catalogue().subject_of(ours[0]["type"], ours[0]["data"])
    assert published is not None and published == ours[0]["data"]["party"]
    assert ours[0].get("subject") == published
    gateway = live.network.nodes["gateway"].gateway
    assert gateway is not None and gateway.api.catalogue is gateway.catalogue  # the publisher's


def test_validators_and_health(live: LiveNetwork) -> None:
    client = live.client()
    validators = client.validators()
    assert validators["quorum_power"] == 3
    assert len(validators["validators"]) == 4
    assert all(v["healthy"] for v in validators["validators"])
    code, _, body = raw(live, "GET", "/readyz")
    assert code == 200, body
    code, _, metrics = raw(live, "GET", "/metrics")
    assert b"ecosphere_height" in metrics


def test_transactions_from_unregistered_keys_are_refused(live: LiveNetwork) -> None:
    from services.ledger.core.crypto import PrivateKey

    stranger = PrivateKey.derive("stranger")
    tx = sign_transaction(stranger, chain_id=live.genesis.chain_id, kind="notary.anchor",
                          nonce=0, payload={"digest": digest("stranger")},
                          created_at=int(time.time() * 1000))
    with pytest.raises(ApiError) as refused:
        live.client().submit(tx)
    assert refused.value.code == "unknown_sender"


def test_a_transaction_the_chain_would_refuse_is_refused_at_once(live: LiveNetwork) -> None:
    """Dropped by the proposer, it would leave its client waiting for a commit that never
    comes: the gateway executes it on the tip first and answers with the contract's code."""
    client = live.client(live.demo_key)
    d = digest("anchored twice")
    assert client.send("notary.anchor", {"digest": d})["status"] == "committed"
    started = time.monotonic()
    with pytest.raises(ApiError) as twice:
        client.send("notary.anchor", {"digest": d})
    assert twice.value.code == "conflict" and twice.value.status == 409
    assert time.monotonic() - started < 5


def test_a_batch_beyond_the_waiter_limit_leaves_no_waiter_behind() -> None:
    import asyncio
    import types

    from services.gateway.api import CommitWaiters, GatewayApi
    from services.gateway.problems import Problem

    async def run() -> CommitWaiters:
        waiters = CommitWaiters(3)
        fake = types.SimpleNamespace(waiters=waiters,
                                     options=types.SimpleNamespace(wait_commit_ms=50))
        txs = [types.SimpleNamespace(hash=bytes([i]) * 32) for i in range(5)]
        with pytest.raises(Problem) as refused:
            await GatewayApi._wait_commit(fake, txs)  # type: ignore[arg-type]
        assert refused.value.code == "too_many_waiters"
        return waiters

    waiters = asyncio.run(run())
    assert waiters.count == 0 and not waiters._waiting


def test_a_refused_transaction_leaves_no_nonce_gap(live: LiveNetwork) -> None:
    """Found in review: after a refusal other than a nonce error the SDK kept counting,
    and every later transaction of the key waited behind the unused nonce for ever."""
    client = live.client(bench_client_key(11))
    d = digest("anchored once")
    assert client.send("notary.anchor", {"digest": d})["status"] == "committed"
    with pytest.raises(ApiError) as again:
        client.send("notary.anchor", {"digest": d})
    assert again.value.status in (409, 422)
    assert client.send("notary.anchor", {"digest": digest("next one")})["status"] == \
        "committed"


def test_one_client_shared_by_threads_hands_out_distinct_nonces() -> None:
    import threading

    from services.sdk.client import Client

    client = Client("http://gateway.invalid")
    barrier = threading.Barrier(8)

    def key_info(key_id: str | None = None) -> dict[str, Any]:
        return {"next_usable_nonce": 5}

    client.key_info = key_info  # type: ignore[method-assign]
    got: list[int] = []

    def take() -> None:
        barrier.wait()
        got.append(client.next_nonce())

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(5, 13))
