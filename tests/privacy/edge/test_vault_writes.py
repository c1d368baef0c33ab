"""The vault's endpoints over a scripted chain and a real MongoDB-wire server, where the
chain's state can change between two reads of one request: a write racing an erasure
keeps nothing, whoever wins the race; a holder's wrap is the one the chain binds; the
export is paged, bounded in records and bytes, and never cached."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pymongo.asynchronous.database import AsyncDatabase

from services.gateway.policies import PRINCIPAL, Handler
from services.gateway.problems import problem_middleware
from services.privacy.edge.api import CIPHERTEXT_BYTES_MAX, PrivacyApi, PrivacyLimits
from services.privacy.edge.models import b64url
from services.privacy.edge.settings import PrivacySettings
from services.privacy.edge.vault import Tombstone, Vault, VaultEntry
from services.privacy.edge.views import RECORDS
from services.sdk import vault as sdk_vault

SUBJECT = "cd" * 16
OWN = f"key:{SUBJECT}"
CIPHERTEXT = b"\x00sealed value"
WRAP = b"w" * 80


def record_id(n: int) -> str:
    return f"{n:064x}"


@dataclass
class ScriptedGateway:
    """What the privacy API reads of a gateway: the chain's state at its tip, the views."""

    db: AsyncDatabase[dict[str, Any]]
    state: dict[str, Any] = field(default_factory=dict)
    time: int = 1_000

    @property
    def chain(self) -> Any:
        return SimpleNamespace(view=lambda: SimpleNamespace(get=self.state.get),
                               tip=SimpleNamespace(time=self.time, height=9))

    @property
    def views(self) -> Any:
        return SimpleNamespace(current=lambda: self.db,
                               database=SimpleNamespace(client=self.db.client))

    def put_record(self, rid: str, *, status: str = "active",
                   wrap: bytes = WRAP) -> dict[str, Any]:
        record = {"record_id": rid, "subject": SUBJECT, "status": status,
                  "category": "address", "commitment": "00" * 32, "jurisdiction": "FR",
                  "ciphertext_hash": hashlib.sha256(CIPHERTEXT).hexdigest(),
                  "holders": {OWN: "11" * 16},
                  "wrap_hashes": {OWN: hashlib.sha256(wrap).hexdigest()},
                  "grantees": {}, "created": 1}
        self.state[f"privacy/record/{rid}"] = record
        live = self.state.setdefault(f"privacy/subject/{SUBJECT}", [])
        if status != "erased":
            live.append(rid)
        return record


@web.middleware
async def _as_subject(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[PRINCIPAL] = SUBJECT  # what the signature policy sets once verified
    return await handler(request)


@dataclass
class Harness:
    gateway: ScriptedGateway
    api: PrivacyApi
    vault: Vault
    client: TestClient[Any, Any]

    async def put(self, rid: str, wrap: bytes = WRAP) -> tuple[int, dict[str, Any]]:
        response = await self.client.put(
            f"/v1/privacy/records/{rid}/ciphertext",
            json={"ciphertext": b64url(CIPHERTEXT), "wraps": {OWN: b64url(wrap)}})
        return response.status, await response.json(content_type=None)


@pytest_asyncio.fixture
async def harness(mongo_db: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[Harness]:
    gateway = ScriptedGateway(mongo_db)
    vault = Vault(gateway.views, mongo_db.name)
    api = PrivacyApi(gateway, vault)
    app = web.Application(middlewares=[problem_middleware, _as_subject])
    app.add_routes([web.route(e.method, e.path, e.handler) for e in api.endpoints()])
    async with TestClient(TestServer(app)) as client:
        yield Harness(gateway, api, vault, client)


def _before_insert(vault: Vault, act: Callable[[], Any]) -> None:
    """Run ``act`` in the window between the API's status check and its write."""
    original = vault.insert

    async def insert(entry: VaultEntry) -> bool:
        result = act()
        if hasattr(result, "__await__"):
            await result
        return await original(entry)

    vault.insert = insert  # type: ignore[method-assign]


# --- B: no ciphertext outlives an erasure ----------------------------------------------


@pytest.mark.asyncio
async def test_a_write_the_custodian_shredded_first_is_refused_by_the_tombstone(
        harness: Harness) -> None:
    """The erasure committed and the custodian shredded (and acknowledged) while the
    upload was on its way, or on a gateway sharing the vault whose chain lags: this
    gateway still sees the record active, and the tombstone refuses the write."""
    rid = record_id(1)
    harness.gateway.put_record(rid)
    assert not await harness.vault.shred(rid)  # nothing stored yet: a tombstone first
    status, problem = await harness.put(rid)
    assert (status, problem["code"]) == (409, "record_erased")
    assert isinstance(await harness.vault.lookup(rid), Tombstone)


@pytest.mark.asyncio
async def test_a_write_racing_the_erasure_is_undone(harness: Harness) -> None:
    """The erasure commits between the status check and the write, and no custodian
    has handled it yet: the write is read back against the chain and shredded."""
    rid = record_id(2)
    record = harness.gateway.put_record(rid)
    _before_insert(harness.vault, lambda: record.update(status="erasing"))
    status, problem = await harness.put(rid)
    assert (status, problem["code"]) == (409, "record_not_active")
    assert await harness.vault.get(rid) is None
    assert isinstance(await harness.vault.lookup(rid), Tombstone)


@pytest.mark.asyncio
async def test_stored_bytes_are_undone_when_a_later_upload_sees_the_erasure(
        harness: Harness) -> None:
    rid = record_id(3)
    record = harness.gateway.put_record(rid)
    assert (await harness.put(rid))[0] == 201
    _before_insert(harness.vault, lambda: record.update(status="erasing"))
    status, problem = await harness.put(rid)
    assert (status, problem["code"]) == (409, "record_not_active")
    assert await harness.vault.get(rid) is None


# --- H: a holder's wrap is the one the chain binds --------------------------------------


@pytest.mark.asyncio
async def test_a_holder_s_wrap_must_hash_to_what_the_record_binds(harness: Harness) -> None:
    rid = record_id(4)
    harness.gateway.put_record(rid, wrap=WRAP)
    status, problem = await harness.put(rid, wrap=b"x" * 80)
    assert (status, problem["code"]) == (422, "wrap_mismatch")
    assert await harness.vault.lookup(rid) is None
    assert (await harness.put(rid, wrap=WRAP))[0] == 201
    # stored: another wrap for the holder is refused all the same
    status, problem = await harness.put(rid, wrap=b"y" * 80)
    assert (status, problem["code"]) == (422, "wrap_mismatch")
    entry = await harness.vault.get(rid)
    assert entry is not None and entry.wraps == {OWN: WRAP}


# --- D: the export is paged, bounded, and never cached ----------------------------------


def test_the_vault_accepts_exactly_what_the_sdk_can_seal() -> None:
    """The largest sealed value the SDK makes is the vault's limit: nothing bigger is
    worth storing (no client makes it), nothing it makes is refused."""
    assert CIPHERTEXT_BYTES_MAX == sdk_vault.CIPHERTEXT_BYTES_MAX
    assert PrivacyLimits().ciphertext_bytes_max == CIPHERTEXT_BYTES_MAX
    assert PrivacySettings().ciphertext_bytes_max == CIPHERTEXT_BYTES_MAX
    for char in ("\x01", "\U0001f600", "é", "a"):  # 6, 4, 2, 1 bytes in the plaintext
        sealed = sdk_vault.seal(char * sdk_vault.CATEGORY_CHARS_MAX,
                                char * sdk_vault.VALUE_CHARS_MAX)
        assert len(sealed.ciphertext) <= CIPHERTEXT_BYTES_MAX


async def _erased_in_views(harness: Harness, rids: list[str]) -> None:
    """Records erased long ago: out of the state's index, in the views' history."""
    for n, rid in enumerate(rids):
        harness.gateway.put_record(rid, status="erased")
        await harness.gateway.db[RECORDS].insert_one({
            "_id": f"e{n}", "record_id": rid, "subject": SUBJECT, "status": "erased",
            "event": "erasure.completed", "pos": n, "height": 1, "index": n, "time": 1})


async def _export(harness: Harness, cursor: str | None = None) -> tuple[Any, dict[str, Any]]:
    response = await harness.client.get("/v1/privacy/me/export",
                                        params={"cursor": cursor} if cursor else None)
    return response, await response.json(content_type=None)


@pytest.mark.asyncio
async def test_the_export_pages_by_records_and_by_bytes(harness: Harness) -> None:
    live = [record_id(n) for n in (10, 12, 14)]
    for rid in live:
        harness.gateway.put_record(rid)
        assert (await harness.put(rid))[0] == 201
    erased = [record_id(n) for n in (11, 13)]
    await _erased_in_views(harness, erased)
    everything = sorted(live + erased)

    harness.api.limits.export_records_max = 2  # the views' erased ids too: bounded
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        response, page = await _export(harness, cursor)
        assert response.status == 200, page
        assert response.headers["Cache-Control"] == "no-store"
        assert len(page["records"]) <= 2
        seen += [r["record_id"] for r in page["records"]]
        assert page["truncated"] == (page["next_cursor"] is not None)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything
    stored = {r: (await harness.vault.get(r)) for r in live}
    assert all(e is not None and e.ciphertext == CIPHERTEXT for e in stored.values())

    harness.api.limits.export_records_max = 1_000
    harness.api.limits.export_bytes_max = 1  # a page always holds one record
    response, page = await _export(harness)
    assert [r["record_id"] for r in page["records"]] == everything[:1]
    assert page["next_cursor"] == everything[0] and page["truncated"]
    response, page = await _export(harness, everything[0])
    assert [r["record_id"] for r in page["records"]] == everything[1:2]
    assert page["access_log"] == [] and not page["access_log_truncated"]

    response, problem = await _export(harness, "not-a-record-id")
    assert (response.status, problem["code"]) == (400, "bad_cursor")
