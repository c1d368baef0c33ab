"""The views' reads: every item exactly once, in order, through small pages; filters; cursors."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from services.gateway.views import queries
from services.gateway.views.projector import CHECKPOINT_COLLECTION, CHECKPOINT_ID, Projector
from services.gateway.views.queries import (
    LIMIT_MAX,
    clamp_limit,
    decode_cursor,
    encode_cursor,
    get_transaction,
    list_blocks,
    list_events,
    list_transactions,
)

from . import chain_events, chain_txs, notary_chain


async def projected(db: Any) -> None:
    await Projector(notary_chain(), db).catch_up()


async def walk(fn: Any, db: Any, limit: int, **filters: Any) -> list[dict[str, Any]]:
    """Every item of a list, page by page, checking the page sizes on the way."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(500):
        page = await fn(db, cursor=cursor, limit=limit, **filters)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["items"]) == limit
    raise AssertionError("pagination does not end")


def tx_keys(items: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    return [(t["height"], t["index"], t["hash"]) for t in items]


def expected_txs(pick: Any = None) -> list[tuple[int, int, str]]:
    rows = [(h, i, tx.hash.hex()) for h, i, tx in chain_txs(notary_chain())
            if pick is None or pick(h, tx)]
    return sorted(rows, reverse=True)


@pytest.mark.asyncio
async def test_blocks_newest_first_each_once(mongo_db):
    store = notary_chain()

    await projected(mongo_db)
    listings = [await walk(list_blocks, mongo_db, limit) for limit in (1, 7, 50, 1_000)]
    for items in listings:  # one per page size
        assert [b["height"] for b in items] == list(range(store.height(), 0, -1))
        stored = store.block(1)
        assert stored is not None
        assert items[-1]["hash"] == stored.block.hash.hex()
        assert "_id" not in items[-1]


@pytest.mark.asyncio
async def test_transactions_newest_first_each_once(mongo_db):
    await projected(mongo_db)
    listings = [await walk(list_transactions, mongo_db, limit) for limit in (1, 7, 200)]
    for items in listings:  # one per page size
        assert tx_keys(items) == expected_txs()
        assert len(items) == 60
        assert all("_id" not in t and "pos" not in t for t in items)


@pytest.mark.asyncio
async def test_transaction_filters(mongo_db):
    store = notary_chain()
    txs = chain_txs(store)
    sender = txs[0][2].sender
    busy = max({h for h, _, _ in txs}, key=lambda h: sum(1 for x, _, _ in txs if x == h))

    await projected(mongo_db)
    got = {
        "sender": await walk(list_transactions, mongo_db, 4, sender=sender),
        "kind": await walk(list_transactions, mongo_db, 9, kind="notary.anchor"),
        "contract": await walk(list_transactions, mongo_db, 9, contract="notary"),
        "height": await walk(list_transactions, mongo_db, 1, height=busy),
        "sender+height": await walk(list_transactions, mongo_db, 2, sender=sender,
                                    height=busy),
        "no kind": await walk(list_transactions, mongo_db, 5, kind="notary.other"),
        "no sender": await walk(list_transactions, mongo_db, 5, sender="0" * 32),
        "past tip": await walk(list_transactions, mongo_db, 5, height=store.height() + 1),
    }
    assert tx_keys(got["sender"]) == expected_txs(lambda h, tx: tx.sender == sender)
    assert all(t["sender"] == sender for t in got["sender"])
    assert tx_keys(got["kind"]) == tx_keys(got["contract"]) == expected_txs()
    assert tx_keys(got["height"]) == expected_txs(lambda h, tx: h == busy)
    assert len(got["height"]) >= 2
    assert tx_keys(got["sender+height"]) == expected_txs(
        lambda h, tx: h == busy and tx.sender == sender)
    assert got["no kind"] == got["no sender"] == got["past tip"] == []


@pytest.mark.asyncio
async def test_get_transaction(mongo_db):
    height, index, tx = chain_txs(notary_chain())[17]

    await projected(mongo_db)
    got = await get_transaction(mongo_db, tx.hash.hex())
    upper = await get_transaction(mongo_db, tx.hash.hex().upper())
    unknown = await get_transaction(mongo_db, "ab" * 32)
    malformed = await get_transaction(mongo_db, "not a hash")
    assert got is not None and got == upper
    assert got["hash"] == tx.hash.hex()
    assert (got["height"], got["index"], got["sender"], got["nonce"]) == (
        height, index, tx.sender, tx.nonce)
    assert got["payload"] == dict(tx.payload)
    assert unknown is None and malformed is None


@pytest.mark.asyncio
async def test_events_in_chain_order_each_once(mongo_db):
    events = chain_events(notary_chain())
    expected = [(h, e.index) for h, e in events]

    await projected(mongo_db)
    listings = [await walk(list_events, mongo_db, limit) for limit in (1, 7, 200)]
    for items in listings:  # one per page size
        assert [(e["height"], e["index"]) for e in items] == expected
        assert all("_id" not in e and "pos" not in e and e["id"] for e in items)


@pytest.mark.asyncio
async def test_event_filters(mongo_db):
    store = notary_chain()
    txs = chain_txs(store)
    events = chain_events(store)
    h, i, tx = txs[30]
    middle = events[len(events) // 2][0]

    await projected(mongo_db)
    got = {
        "type": await walk(list_events, mongo_db, 8, type="notary.document.anchored"),
        "domain": await walk(list_events, mongo_db, 8, domain="notary"),
        "tx": await walk(list_events, mongo_db, 8, tx_hash=tx.hash.hex()),
        "from": await walk(list_events, mongo_db, 3, from_height=middle),
        "none": await walk(list_events, mongo_db, 3, type="credit.report.issued"),
    }
    everything = [(hh, e.index) for hh, e in events]
    assert [(e["height"], e["index"]) for e in got["type"]] == everything
    assert [(e["height"], e["index"]) for e in got["domain"]] == everything
    assert [(e["tx_hash"], e["height"], e["tx_index"]) for e in got["tx"]] == [
        (tx.hash.hex(), h, i)]
    assert got["tx"][0]["id"] == f"{tx.hash.hex()}:{got['tx'][0]['index']}"
    assert [(e["height"], e["index"]) for e in got["from"]] == [
        (hh, e.index) for hh, e in events if hh >= middle]
    assert got["none"] == []


@pytest.mark.asyncio
async def test_partner_reads_forward_from_a_cursor_as_the_chain_grows(mongo_db):
    store = notary_chain()
    tip = store.height()

    async def walk_from(db: Any, cursor: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        next_cursor: str | None = cursor
        while next_cursor is not None:
            page = await list_events(db, cursor=next_cursor, limit=5)
            items += page["items"]
            next_cursor = page["next_cursor"]
        return items

    await projected(mongo_db)
    # Pretend only half the chain is projected: lists stop at the checkpoint.
    await mongo_db[CHECKPOINT_COLLECTION].replace_one({"_id": CHECKPOINT_ID},
                                                      {"height": tip // 2})
    first = await walk(list_events, mongo_db, 4)
    blocks = await walk(list_blocks, mongo_db, 4)
    txs = await walk(list_transactions, mongo_db, 4)
    page = await list_events(mongo_db, limit=200)
    assert page["next_cursor"] is None
    last = page["items"][-1]
    cursor = encode_cursor("events", last["height"], last["index"])
    await mongo_db[CHECKPOINT_COLLECTION].replace_one({"_id": CHECKPOINT_ID}, {"height": tip})
    rest = await walk_from(mongo_db, cursor)
    events = [(h, e.index) for h, e in chain_events(store)]
    assert [(e["height"], e["index"]) for e in first + rest] == events
    assert all(e["height"] <= tip // 2 for e in first)
    assert [b["height"] for b in blocks] == list(range(tip // 2, 0, -1))
    assert tx_keys(txs) == expected_txs(lambda h, tx: h <= tip // 2)


@pytest.mark.asyncio
async def test_windowed_reads_give_the_same_pages(mongo_db, monkeypatch):
    async def pages(db: Any) -> tuple[list[dict[str, Any]], ...]:
        await projected(db)
        return (await walk(list_transactions, db, 6), await walk(list_events, db, 6),
                await walk(list_transactions, db, 3, sender=chain_txs(notary_chain())[5][2]
                           .sender))

    wide = await pages(mongo_db)
    monkeypatch.setattr(queries, "WINDOW_BLOCKS_FIRST", 1)
    monkeypatch.setattr(queries, "WINDOW_GROWTH", 2)
    monkeypatch.setattr(queries, "WINDOW_GROWTH_MAX", 2)
    narrow = await pages(mongo_db)
    assert narrow == wide
    assert len(wide[0]) == len(wide[1]) == 60


@pytest.mark.parametrize("bad", [
    "", "!!!", "e30", "bm90IGpzb24", encode_cursor("blocks", 3),
    encode_cursor("transactions", 3), encode_cursor("events", 3, 1),
    base64.urlsafe_b64encode(b'["transactions",-1,0]').decode().rstrip("="),
    base64.urlsafe_b64encode(b'["transactions", 1, 0]').decode().rstrip("="),
    base64.urlsafe_b64encode(b'["transactions",1.5,0]').decode().rstrip("="),
    base64.urlsafe_b64encode(b'["transactions",true,0]').decode().rstrip("="),
    "A" * 1_000,
])
@pytest.mark.asyncio
async def test_bad_cursor_raises_value_error(mongo_db, bad):
    with pytest.raises(ValueError, match="bad cursor"):
        await list_transactions(mongo_db, cursor=bad)


@pytest.mark.asyncio
async def test_bad_cursor_for_each_list(mongo_db):
    for fn in (list_blocks, list_transactions, list_events):
        with pytest.raises(ValueError, match="bad cursor"):
            await fn(mongo_db, cursor="%%%")


@pytest.mark.asyncio
async def test_cursor_round_trip_and_limits(mongo_db):
    assert decode_cursor(encode_cursor("transactions", 7, 3), "transactions", 2) == [7, 3]
    assert (clamp_limit(0), clamp_limit(-5), clamp_limit(10_000), clamp_limit(13)) == (
        1, 1, LIMIT_MAX, 13)

    await projected(mongo_db)
    one = await list_transactions(mongo_db, limit=0)
    many = await list_events(mongo_db, limit=10_000)
    block = await list_blocks(mongo_db, limit=-1)
    assert len(one["items"]) == 1 and one["next_cursor"] is not None
    assert len(many["items"]) == 60 and many["next_cursor"] is None
    assert len(block["items"]) == 1


@pytest.mark.asyncio
async def test_empty_views(mongo_db):
    for page in (await list_blocks(mongo_db), await list_transactions(mongo_db),
                 await list_events(mongo_db)):
        assert page == {"items": [], "next_cursor": None}
