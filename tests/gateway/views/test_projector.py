"""The projector: complete, idempotent, checkpointed, rebuildable, and indifferent to outages."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pymongo import ASCENDING, IndexModel

from services.gateway.views import queries
from services.gateway.views.mongo import EmbeddedServer, connect, open_database
from services.gateway.views.projector import (
    CHECKPOINT_COLLECTION,
    CHECKPOINT_ID,
    Projector,
    ProjectorCollector,
    ProjectorLimits,
    ViewsDiverged,
)
from services.gateway.views.schema import (
    BLOCKS,
    EVENTS,
    PLATFORM_VIEWS,
    POS_STRIDE,
    TRANSACTIONS,
    BlockContext,
    Registry,
    ViewSpec,
    Write,
    project_events,
)
from services.ledger.core.contract import Event

from . import ListStore, Upto, chain_events, chain_txs, dump, notary_chain, signed

FAST = ProjectorLimits(poll_interval_s=0.05, retry_backoff_s=0.02, retry_backoff_max_s=0.1)


@pytest.mark.asyncio
async def test_projects_a_whole_chain_with_every_field(mongo_db):
    store = notary_chain()
    tip = store.height()

    projector = Projector(store, mongo_db)
    assert await projector.catch_up() == tip
    views = await dump(mongo_db)
    txs, events = chain_txs(store), chain_events(store)
    assert len(txs) == 60 and len(events) == 60
    assert len(views[BLOCKS]) == tip
    assert len(views[TRANSACTIONS]) == len(txs)
    assert len(views[EVENTS]) == len(events)
    assert views[CHECKPOINT_COLLECTION] == [{"_id": CHECKPOINT_ID, "height": tip}]
    assert projector.checkpoint == tip and projector.lag_blocks == 0 and projector.available
    assert projector.stats.blocks_projected == tip
    assert projector.stats.transactions_projected == 60
    assert projector.stats.writes == tip + 120

    blocks = {d["_id"]: d for d in views[BLOCKS]}
    for height in range(1, tip + 1):
        stored = store.block(height)
        assert stored is not None
        header = stored.block.header
        assert blocks[height] == {
            "_id": height, "hash": header.hash.hex(), "time": header.time,
            "proposer": header.proposer, "tx_count": header.tx_count,
            "round": stored.certificate.round,
            "events_count": len(store.events(height) or []),
        }

    by_hash = {d["_id"]: d for d in views[TRANSACTIONS]}
    for height, index, tx in txs:
        stored = store.block(height)
        assert stored is not None
        assert by_hash[tx.hash.hex()] == {
            "_id": tx.hash.hex(), "pos": height * POS_STRIDE + index, "height": height,
            "index": index, "sender": tx.sender, "kind": "notary.anchor",
            "contract": "notary", "nonce": tx.nonce, "created_at": tx.created_at,
            "time": stored.block.header.time, "payload": dict(tx.payload),
            "public_key": tx.public_key.hex(),
        }

    by_id = {d["_id"]: d for d in views[EVENTS]}
    for height, event in events:
        stored = store.block(height)
        assert stored is not None and event.tx_index is not None
        tx_hash = stored.block.txs[event.tx_index].hash.hex()
        assert by_id[f"{tx_hash}:{event.index}"] == {
            "_id": f"{tx_hash}:{event.index}", "pos": height * POS_STRIDE + event.index,
            "type": "notary.document.anchored", "domain": "notary", "height": height,
            "tx_hash": tx_hash, "tx_index": event.tx_index, "index": event.index,
            "time": stored.block.header.time, "attributes": dict(event.attributes),
        }


@pytest.mark.asyncio
async def test_projection_is_idempotent(mongo_db):
    store = notary_chain()
    tip = store.height()

    projector = Projector(store, mongo_db, limits=ProjectorLimits(batch_blocks_max=7))
    await projector.catch_up()
    first = await dump(mongo_db)
    # A second projector over the same views has nothing to do.
    assert await Projector(store, mongo_db).catch_up() == 0
    # Re-project a range, then everything, after resetting the checkpoint.
    dumps = []
    for reset in (tip // 2, 0):
        await mongo_db[CHECKPOINT_COLLECTION].replace_one({"_id": CHECKPOINT_ID},
                                                          {"height": reset})
        assert await projector.catch_up() == tip - reset
        dumps.append(await dump(mongo_db))
    assert all(d == first for d in dumps)
    assert projector.stats.blocks_projected == tip + tip - tip // 2 + tip


@pytest.mark.asyncio
async def test_checkpoint_advances_by_height_and_a_restart_continues_from_it(mongo_db):
    store = notary_chain()
    chain = Upto(store, 12)
    limits = ProjectorLimits(batch_blocks_max=5)

    projector = Projector(chain, mongo_db, limits=limits)
    seen = [await projector.step() for _ in range(4)]
    assert seen == [5, 5, 2, 0]
    assert (await mongo_db[CHECKPOINT_COLLECTION].find_one({}))["height"] == 12
    heights = sorted(d["_id"] for d in await mongo_db[BLOCKS].find({}).to_list())
    assert heights == list(range(1, 13))
    # A new process, a longer chain: it reads the checkpoint and goes on from 13.
    chain.limit = 20
    restarted = Projector(chain, mongo_db, limits=limits)
    assert restarted.checkpoint == 0
    assert await restarted.step() == 5
    assert restarted.checkpoint == 17
    heights = sorted(d["_id"] for d in await mongo_db[BLOCKS].find({}).to_list())
    assert heights == list(range(1, 18))
    assert restarted.stats.blocks_projected == 5


@pytest.mark.asyncio
async def test_rebuild_gives_exactly_the_incremental_views(mongo_db):
    store = notary_chain()

    projector = Projector(store, mongo_db, limits=ProjectorLimits(batch_blocks_max=3))
    await projector.catch_up()
    incremental = await dump(mongo_db)
    # Junk the views: a stray document, a lost one, a wrong checkpoint.
    await mongo_db[TRANSACTIONS].insert_one({"_id": "stray", "pos": 1})
    await mongo_db[EVENTS].delete_one({})
    await mongo_db[CHECKPOINT_COLLECTION].replace_one({"_id": CHECKPOINT_ID}, {"height": 3})
    rebuilder = Projector(store, mongo_db, limits=ProjectorLimits(batch_blocks_max=16))
    report = await rebuilder.rebuild()
    assert rebuilder.checkpoint == store.height() and rebuilder.lag_blocks == 0
    assert rebuilder.stats.blocks_projected == store.height()
    assert rebuilder.stats.transactions_projected == 60
    assert await rebuilder.step() == 0
    indexes = {name: [i["key"] async for i in await mongo_db[name].list_indexes()]
               for name in (BLOCKS, TRANSACTIONS, EVENTS)}
    rebuilt = await dump(mongo_db)
    assert rebuilt == incremental
    assert (report.blocks, report.transactions, report.events) == (store.height(), 60, 60)
    assert report.tx_per_s > 0
    for spec in PLATFORM_VIEWS:
        if spec.name not in indexes:
            continue  # a domain's view (registered when its package is imported)
        for model in spec.indexes:
            assert dict(model.document["key"]) in [dict(k) for k in indexes[spec.name]]


@pytest.mark.asyncio
async def test_indexes_are_created_at_start_up(mongo_db):
    projector = Projector(ListStore(), mongo_db)
    assert await projector.step() == 0
    found = {spec.name: [dict(i["key"]) async for i in await mongo_db[spec.name].list_indexes()]
             for spec in PLATFORM_VIEWS}
    for spec in PLATFORM_VIEWS:
        declared = [dict(m.document["key"]) for m in spec.indexes]
        assert declared and all(key in found[spec.name] for key in declared), spec.name
    assert {"hash": 1} in found[BLOCKS]
    assert {"sender": 1, "pos": -1} in found[TRANSACTIONS]
    assert {"type": 1, "pos": 1} in found[EVENTS]


@pytest.mark.asyncio
async def test_a_mongodb_that_comes_back_empty_is_filled_again(mongo_db):
    store = notary_chain()

    projector = Projector(store, mongo_db)
    await projector.catch_up()
    before = await dump(mongo_db)
    await mongo_db.client.drop_database(mongo_db.name)
    assert await projector.catch_up() == store.height()
    keys = [dict(i["key"]) async for i in await mongo_db[TRANSACTIONS].list_indexes()]
    after = await dump(mongo_db)
    assert after == before
    assert {"sender": 1, "pos": -1} in keys


def available(projector: Projector) -> bool:
    return projector.available


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_unreachable_mongo_marks_views_unavailable_and_nothing_escapes():
    store = notary_chain()

    client = connect(f"mongodb://127.0.0.1:{_free_port()}/",
                     server_selection_timeout_ms=100)
    projector = Projector(store, client["views"], limits=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    await _until(lambda: projector.stats.connection_errors >= 2)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    await client.close()
    assert not available(projector)
    assert projector.checkpoint == 0 and projector.lag_blocks == store.height()
    assert projector.stats.blocks_projected == 0
    assert "ServerSelectionTimeoutError" in (projector.stats.last_error or "")
    assert not projector.ready()


@pytest.mark.asyncio
async def test_mongo_outage_then_catch_up_loses_nothing(tmp_path: Path, mongo_db):
    store = notary_chain()
    chain = Upto(store, 10)
    data = tmp_path / "mongo"

    server: EmbeddedServer | None = await EmbeddedServer.start_async(data)
    assert server is not None
    port = server.port
    client = connect(server.uri, server_selection_timeout_ms=200)
    db = client["views"]
    projector = Projector(chain, db, limits=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        await _until(lambda: projector.checkpoint == 10)
        assert available(projector)

        await server.stop_async()  # MongoDB goes down; the chain goes on
        server = None
        chain.limit = store.height()
        projector.notify()
        await _until(lambda: projector.stats.connection_errors >= 2)
        assert not available(projector)
        assert not task.done()
        assert projector.lag_blocks >= store.height() - 10

        server = await EmbeddedServer.start_async(data, port=port)  # back, same disk
        await _until(lambda: projector.checkpoint == store.height())
        assert available(projector)
        stop.set()
        await asyncio.wait_for(task, 5)
        views = await dump(db)
    finally:
        stop.set()
        task.cancel()
        await client.close()
        if server is not None:
            await server.stop_async()

    await Projector(store, mongo_db).catch_up()  # the reference: one clean projection
    assert views == await dump(mongo_db)
    assert projector.stats.blocks_projected == store.height()


@pytest.mark.asyncio
async def test_run_follows_commits_when_notified(mongo_db):
    store = notary_chain()
    chain = Upto(store, 3)
    slow_poll = ProjectorLimits(poll_interval_s=30.0)

    projector = Projector(chain, mongo_db, limits=slow_poll)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    await _until(lambda: projector.checkpoint == 3, 10)
    for limit in (4, 9, store.height()):
        chain.limit = limit
        projector.notify()
        await _until(lambda: projector.checkpoint == chain.height(), 10)
    stop.set()
    await asyncio.wait_for(task, 5)  # stop wakes it from a 30 s poll


@pytest.mark.asyncio
async def test_lag_readiness_and_metrics(mongo_db):
    store = notary_chain()
    first = store.block(1)
    assert first is not None
    now = [first.block.header.time / 1000 + 100.0]
    limits = ProjectorLimits(ready_lag_blocks_max=5, ready_lag_s_max=60.0)

    projector = Projector(store, mongo_db, limits=limits, clock=lambda: now[0])
    assert projector.lag_blocks == store.height()
    assert projector.lag_seconds == pytest.approx(100.0)
    assert not projector.ready()
    registry = CollectorRegistry()
    registry.register(ProjectorCollector(projector))
    before = generate_latest(registry).decode()
    await projector.catch_up()
    assert projector.lag_blocks == 0 and projector.lag_seconds == 0.0
    assert projector.ready()
    after = generate_latest(registry).decode()
    tip = store.height()
    assert f"ecosphere_views_lag_blocks {float(tip)}" in before
    assert "ecosphere_views_lag_seconds 100.0" in before
    assert "ecosphere_views_available 0.0" in before
    assert "ecosphere_views_lag_blocks 0.0" in after
    assert f"ecosphere_views_checkpoint_height {float(tip)}" in after
    assert f"ecosphere_views_blocks_projected_total {float(tip)}" in after
    assert "ecosphere_views_available 1.0" in after


@pytest.mark.asyncio
async def test_block_level_events_and_unstorable_payload_keys(mongo_db):
    chain = ListStore()
    hostile = {"$where": "1", "a.b": {"": [1, {"$gt": 2}]}, "ok": True}
    tx = signed("hostile", 0, hostile)
    plain = signed("plain", 0, {"digest": "00" * 32})
    stored = chain.append([plain, tx], [
        Event("notary.block.begun", {"n": 1}, None, 0),
        Event("notary.document.anchored", {"x.y": 1}, 1, 1),
        Event("notary.block.ended", {}, None, 2),
    ])

    await Projector(chain, mongo_db).catch_up()
    got = await queries.get_transaction(mongo_db, tx.hash.hex())
    events = await queries.list_events(mongo_db)
    views = await dump(mongo_db)
    assert got is not None and got["payload"] == hostile and "payload_json" not in got
    raw = {d["_id"]: d for d in views[TRANSACTIONS]}
    assert raw[tx.hash.hex()]["payload"] is None
    assert raw[plain.hash.hex()]["payload"] == {"digest": "00" * 32}
    block_hash = stored.block.hash.hex()
    assert [(e["id"], e["tx_hash"], e["tx_index"]) for e in events["items"]] == [
        (f"{block_hash}:0", None, None),
        (f"{tx.hash.hex()}:1", tx.hash.hex(), 1),
        (f"{block_hash}:2", None, None),
    ]
    assert events["items"][1]["attributes"] == {"x.y": 1}


def test_event_ids_are_the_partner_event_ids():
    chain = ListStore()
    tx = signed("a", 0, {})
    stored = chain.append([tx], [Event("notary.x.y", {}, 0, 0), Event("notary.z", {}, None, 1)])
    ctx = BlockContext(stored.block, stored.certificate, chain.block_events[0])
    assert [w.id for w in project_events(ctx)] == [f"{tx.hash.hex()}:0",
                                                  f"{stored.block.hash.hex()}:1"]


@pytest.mark.asyncio
async def test_views_of_another_chain_are_refused(mongo_db):
    ours, theirs = ListStore(), ListStore()
    for i in range(4):
        ours.append([signed("o", i, {"i": i})])
        theirs.append([signed("o", i, {"i": i})], salt="-other")

    await Projector(Upto(theirs, 2), mongo_db).catch_up()
    with pytest.raises(ViewsDiverged):
        await Projector(ours, mongo_db).step()
    await Projector(ours, mongo_db).rebuild()
    page = await queries.list_blocks(mongo_db)
    assert [b["hash"] for b in page["items"]] == [ours.blocks[h].block.hash.hex()
                                                  for h in (3, 2, 1, 0)]


def _senders_view() -> ViewSpec:
    """A domain-style view that updates one document per sender across blocks."""

    def project(ctx: BlockContext) -> list[Write]:
        out = []
        for index, tx in enumerate(ctx.block.txs):
            doc: dict[str, Any] = {"last_height": ctx.height, "last_index": index,
                                   "last_nonce": tx.nonce}
            if tx.nonce == 0:
                doc["first_height"] = ctx.height
            out.append(Write("senders", tx.sender, doc))
        return out

    return ViewSpec("senders", (IndexModel([("last_height", ASCENDING)]),), project)


@pytest.mark.parametrize("batch", [1, 4, 1_000])
@pytest.mark.asyncio
async def test_writes_to_one_document_apply_in_chain_order(mongo_db, batch):
    store = notary_chain()
    registry = Registry(PLATFORM_VIEWS)
    registry.register(_senders_view())
    expected: dict[str, dict[str, Any]] = {}
    for height, index, tx in chain_txs(store):
        doc = expected.setdefault(tx.sender, {"_id": tx.sender})
        doc.update(last_height=height, last_index=index, last_nonce=tx.nonce)
        if tx.nonce == 0:
            doc["first_height"] = height

    projector = Projector(store, mongo_db, registry.specs(),
                          limits=ProjectorLimits(batch_blocks_max=batch))
    await projector.catch_up()
    once = await dump(mongo_db, ["senders"])
    await mongo_db[CHECKPOINT_COLLECTION].delete_many({})
    await projector.catch_up()
    twice = await dump(mongo_db, ["senders"])
    assert once == twice
    assert {d["_id"]: d for d in once["senders"]} == expected


@pytest.mark.asyncio
async def test_a_view_may_not_write_outside_the_registered_collections(mongo_db):
    def project(ctx: BlockContext) -> list[Write]:
        return [Write("elsewhere", ctx.height, {"x": 1})]

    chain = ListStore()
    chain.append()

    with pytest.raises(ValueError, match="unknown collection"):
        await Projector(chain, mongo_db, [ViewSpec("mine", (), project)]).step()


def test_registry_refuses_reserved_and_duplicate_names():
    registry = Registry()
    spec = ViewSpec("things", (), lambda ctx: [])
    registry.register(spec)
    registry.register(spec)  # the same spec again is a no-op
    with pytest.raises(ValueError):
        registry.register(ViewSpec("things", (), lambda ctx: []))
    for name in ("", "_checkpoint", "system.x", "a$b"):
        with pytest.raises(ValueError):
            registry.register(ViewSpec(name, (), lambda ctx: []))


@pytest.mark.asyncio
async def test_embedded_default_stores_under_the_data_dir(tmp_path: Path):
    views = await open_database(None, data_dir=tmp_path, db_name="v")
    try:
        await views.db["x"].insert_one({"_id": 1})
        uri, doc = views.uri, await views.db["x"].find_one({})
    finally:
        await views.close()
    assert uri.startswith("mongodb://127.0.0.1:") and doc == {"_id": 1}
    assert any((tmp_path / "views").iterdir())


@pytest.mark.slow
@pytest.mark.asyncio
async def test_rebuild_and_query_speed_on_5000_transactions(mongo_db):
    """Prints rebuild tx/s and query latencies (issue targets: >= 10,000 tx/s, p99 <= 20 ms)."""
    store = notary_chain(seed=5, txs=5_000, clients=50, load_ms=20_000)
    txs = chain_txs(store)
    senders = sorted({tx.sender for _, _, tx in txs})
    samples = 200

    report = await Projector(store, mongo_db).rebuild()
    by_sender, by_hash = [], []
    for i in range(samples):
        started = time.perf_counter()
        page = await queries.list_transactions(mongo_db, sender=senders[i % len(senders)])
        by_sender.append(time.perf_counter() - started)
        assert len(page["items"]) == 50
        started = time.perf_counter()
        got = await queries.get_transaction(mongo_db, txs[(i * 37) % len(txs)][2].hash.hex())
        by_hash.append(time.perf_counter() - started)
        assert got is not None
    assert report.transactions == 5_000

    def p(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    print(f"\nviews rebuild: {report.transactions} txs, {report.blocks} blocks in "
          f"{report.seconds:.2f} s = {report.tx_per_s:,.0f} tx/s")
    print(f"list_transactions(sender): p50 {p(by_sender, 50):.2f} ms, "
          f"p99 {p(by_sender, 99):.2f} ms")
    print(f"get_transaction: p50 {p(by_hash, 50):.2f} ms, p99 {p(by_hash, 99):.2f} ms")


@pytest.mark.asyncio
async def test_listeners_hear_every_batch_and_resets(mongo_db):
    store = notary_chain()
    heard: list[Any] = []

    def broken(_docs: Any) -> None:
        raise RuntimeError("a cache's bug")

    projector = Projector(store, mongo_db, limits=ProjectorLimits(batch_blocks_max=4))
    projector.listeners += [broken, heard.append]
    await projector.catch_up()
    batches = len(heard)
    await projector.rebuild()
    assert batches == -(-store.height() // 4)
    assert all(TRANSACTIONS in docs for docs in heard[:batches])
    assert sum(len(docs[TRANSACTIONS]) for docs in heard[:batches]) == 60
    assert heard[batches] is None  # the rebuild dropped every view
