"""The vault's MongoDB store (any party's wraps, compare-and-set, deletion), and the
vault endpoints while MongoDB is away: 503 ``vault_unavailable`` with Retry-After."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pymongo.asynchronous.database import AsyncDatabase

from services.gateway.policies import PRINCIPAL, Handler
from services.gateway.problems import Problem, problem_middleware
from services.privacy.edge.api import PrivacyApi
from services.privacy.edge.models import b64url, from_b64url
from services.privacy.edge.vault import Tombstone, Vault, VaultEntry, VaultUnavailable

RECORD = "ab" * 32
SUBJECT = "cd" * 16


def vault_on(db: AsyncDatabase[dict[str, Any]]) -> Vault:
    return Vault(SimpleNamespace(database=SimpleNamespace(client=db.client)), db.name)


@pytest.mark.asyncio
async def test_the_vault_keeps_any_party_s_wrap_and_never_loses_a_concurrent_one(
        mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    vault = vault_on(mongo_db)
    entry = VaultEntry(RECORD, SUBJECT, b"\x00sealed", {"org:acme.logistics": b"w1"}, 7)
    assert await vault.insert(entry)
    assert not await vault.insert(entry)  # the first store wins
    found = await vault.get(RECORD)
    assert found == entry
    more = {**found.wraps, f"key:{SUBJECT}": b"w2"}
    assert await vault.replace_wraps(found, more)
    assert not await vault.replace_wraps(found, {})  # read before the change: refused
    again = await vault.get(RECORD)
    assert again is not None and again.wraps == more and again.rev == 1
    assert (await vault.get_many([RECORD, "ef" * 32])).keys() == {RECORD}
    assert await vault.shred(RECORD) and not await vault.shred(RECORD)
    assert await vault.get(RECORD) is None


@pytest.mark.asyncio
async def test_a_shredded_record_leaves_a_tombstone_no_write_gets_past(
        mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    """Erasure leaves a tombstone: a write racing it (or from a gateway whose chain lags)
    cannot store bytes again, whichever of the two reaches MongoDB first."""
    vault = vault_on(mongo_db)
    entry = VaultEntry(RECORD, SUBJECT, b"sealed", {f"key:{SUBJECT}": b"w1"}, 7)
    assert await vault.insert(entry)
    assert await vault.shred(RECORD)  # bytes destroyed
    found = await vault.lookup(RECORD)
    assert isinstance(found, Tombstone) and found.record_id == RECORD and found.at > 0
    assert not await vault.insert(entry)  # the write that lost the race
    assert await vault.get(RECORD) is None and await vault.get_many([RECORD]) == {}
    assert not await vault.replace_wraps(entry, {"org:carrier": b"w2"})
    assert isinstance(await vault.lookup(RECORD), Tombstone)
    # erased before anything was stored: the tombstone is there first
    other = "ef" * 32
    assert not await vault.shred(other)
    assert not await vault.insert(VaultEntry(other, SUBJECT, b"late", {}, 8))
    assert isinstance(await vault.lookup(other), Tombstone)
    assert await vault.lookup("01" * 32) is None


@pytest.mark.asyncio
async def test_the_sweep_pages_through_stored_records_only(
        mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    vault = vault_on(mongo_db)
    ids = [f"{i:02x}" * 32 for i in range(1, 6)]
    for record_id in ids:
        assert await vault.insert(VaultEntry(record_id, SUBJECT, b"s", {}, 1))
    await vault.shred(ids[1])
    assert await vault.stored_after("", 2) == [ids[0], ids[2]]
    assert await vault.stored_after(ids[2], 2) == [ids[3], ids[4]]
    assert await vault.stored_after(ids[4], 2) == []


@pytest.mark.asyncio
async def test_a_vault_that_is_not_open_is_unavailable() -> None:
    vault = Vault(SimpleNamespace(database=None), "v")
    with pytest.raises(VaultUnavailable):
        await vault.get(RECORD)


def test_bytes_have_one_spelling() -> None:
    assert from_b64url(b64url(b"\xff\xfe"), "x") == b"\xff\xfe"
    for bad in ("a", "ab=", "a+b/", "AB"):  # "AB" sets unused bits: not canonical
        with pytest.raises(Problem):
            from_b64url(bad, "x")


def _gateway() -> Any:
    record = {"record_id": RECORD, "subject": SUBJECT, "status": "active",
              "category": "name", "commitment": "00" * 32,
              "ciphertext_hash": hashlib.sha256(b"sealed").hexdigest(),
              "holders": {f"key:{SUBJECT}": "11" * 16}, "grantees": {}}
    state = {f"privacy/record/{RECORD}": record, f"privacy/subject/{SUBJECT}": [RECORD]}
    chain = SimpleNamespace(view=lambda: SimpleNamespace(get=state.get),
                            tip=SimpleNamespace(time=1, height=1))
    views = SimpleNamespace(current=lambda: None, database=None)  # MongoDB away
    return SimpleNamespace(chain=chain, views=views)


@web.middleware
async def _as_subject(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[PRINCIPAL] = SUBJECT  # what the signature policy sets once verified
    return await handler(request)


@pytest.mark.asyncio
async def test_every_vault_endpoint_answers_503_while_mongodb_is_away() -> None:
    gateway = _gateway()
    api = PrivacyApi(gateway, Vault(gateway.views, "v"))
    app = web.Application(middlewares=[problem_middleware, _as_subject])
    app.add_routes([web.route(e.method, e.path, e.handler) for e in api.endpoints()])
    calls: list[tuple[str, str, Any]] = [
        ("PUT", f"/v1/privacy/records/{RECORD}/ciphertext", {"ciphertext": b64url(b"sealed")}),
        ("GET", f"/v1/privacy/records/{RECORD}/envelope?access={'ef' * 32}", None),
        ("GET", "/v1/privacy/me/access-log", None),
        ("GET", "/v1/privacy/me/export", None),
    ]
    async with TestClient(TestServer(app)) as client:
        for method, path, body in calls:
            response = await client.request(method, path, json=body)
            problem = await response.json(content_type=None)
            assert (response.status, problem["code"]) == (503, "vault_unavailable"), path
            assert response.headers["Retry-After"] == "5"
        # what reads the chain's state only is served all the same
        response = await client.get("/v1/privacy/me/records")
        assert response.status == 200
        assert [r["record_id"] for r in (await response.json())["items"]] == [RECORD]
