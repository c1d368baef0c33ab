"""The host's side of the domains' read policies (services/gateway/read_policy.py): what a
policy restricts, how the guard combines policies, and how the generic lists (views,
replay) and the partner-event publisher obey them — pages of only the visible items,
every one once, in order, cursors that never name a hidden item, no loop, no early end.

The privacy domain's own judgement is tested in tests/privacy/edge/test_read_policy.py;
every route on a live network in tests/gateway/test_restricted_reads_live.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services import composition
from services.gateway import events as ev
from services.gateway.read_policy import (
    EventItem,
    ReadGuard,
    ReadItem,
    ReadPolicy,
    StateItem,
    TransactionItem,
)
from services.gateway.views import queries
from services.gateway.views.projector import Projector
from services.gateway.views.schema import EVENTS, POS_STRIDE, TRANSACTIONS
from services.ledger.core.contract import Event
from services.ledger.core.state import StateView
from services.ledger.core.statetree import StateTree

from .views import ListStore, chain_events, chain_txs, notary_chain, signed

CATALOGUE = composition.event_catalogue()
VIEW = StateView(StateTree.empty())


def only(allowed: str | None) -> Callable[[str | None, StateView, int],
                                          Callable[[ReadItem], bool]]:
    """A judge letting the key ``allowed`` (and nobody else) read everything."""
    def judge(principal: str | None, view: StateView, now: int) -> Callable[[ReadItem], bool]:
        return lambda item: principal is not None and principal == allowed
    return judge


SECRET = ReadPolicy(judge=only("alice"), state_prefixes=("secret/",),
                    public_state_prefixes=("secret/public/",), event_prefixes=("secret.",),
                    public_event_prefixes=("secret.key.",), kind_prefixes=("secret.",),
                    public_kind_prefixes=("secret.register",))


# --- the policy and the guard -----------------------------------------------------------------

def test_a_policy_restricts_its_prefixes_but_not_its_public_exceptions():
    assert SECRET.restricts(StateItem("secret/record/1", None))
    assert not SECRET.restricts(StateItem("secret/public/k", {"a": 1}))
    assert not SECRET.restricts(StateItem("notary/anchor/x", None))
    assert SECRET.restricts(EventItem("secret.access.granted", {}))
    assert not SECRET.restricts(EventItem("secret.key.registered", {}))
    assert SECRET.restricts(TransactionItem("secret.access", "k", {}, "00"))
    assert not SECRET.restricts(TransactionItem("secret.register_key", "k", {}, "00"))
    assert not SECRET.restricts(TransactionItem("notary.anchor", "k", {}, "00"))


def test_the_guard_shows_public_items_to_all_and_restricted_ones_to_their_readers():
    guard = ReadGuard([SECRET])
    item = StateItem("secret/record/1", {"v": 1})
    for who, sees in ((None, False), ("bob", False), ("alice", True)):
        reader = guard.reader(who, VIEW, 0)
        assert reader.may_read(item) is sees
        assert reader.showed_restricted is sees  # an answer shaped by the signer is private
        assert reader.may_read(StateItem("notary/anchor/x", None))
        assert reader.may_read(EventItem("secret.key.registered", {}))
    assert guard.restricts_state_key("secret/x") and not guard.restricts_state_key("x/y")
    assert guard.restricts_kind("secret.grant") and not guard.restricts_kind("secret.register")
    assert guard.kind_prefixes() == ("secret.",)


def test_every_policy_restricting_an_item_must_agree():
    other = ReadPolicy(judge=only("bob"), state_prefixes=("secret/shared/",))
    guard = ReadGuard([SECRET, other])
    shared, own = StateItem("secret/shared/1", 1), StateItem("secret/own/1", 1)
    assert not guard.reader("alice", VIEW, 0).may_read(shared)
    assert not guard.reader("bob", VIEW, 0).may_read(shared)
    assert guard.reader("alice", VIEW, 0).may_read(own)


def test_an_empty_guard_restricts_nothing():
    guard = ReadGuard()
    assert not guard
    reader = guard.reader(None, VIEW, 0)
    assert reader.may_read(StateItem("privacy/record/x", {"subject": "k"}))
    assert not reader.showed_restricted


def test_the_judge_is_built_once_per_request():
    built: list[str | None] = []

    def judge(principal: str | None, view: StateView, now: int) -> Callable[[ReadItem], bool]:
        built.append(principal)
        return lambda item: True

    reader = ReadGuard([ReadPolicy(judge=judge, event_prefixes=("x.",))]).reader("k", VIEW, 0)
    for _ in range(5):
        assert reader.may_read(EventItem("x.y.z", {}))
    assert built == ["k"]


def test_the_composition_registers_the_privacy_policy():
    policies = [e.read_policy for e in composition.edges() if e.read_policy is not None]
    guard = ReadGuard(policies)
    assert guard.restricts_state_key("privacy/record/" + "0" * 64)
    assert not guard.restricts_state_key("privacy/enckey/org:customs")
    assert guard.restricts_event_type("privacy.access.granted")
    assert not guard.restricts_event_type("privacy.key.registered")
    assert guard.restricts_kind("privacy.access")
    assert not guard.restricts_kind("privacy.register_key")
    assert not guard.restricts_kind("notary.anchor")
    assert CATALOGUE.withheld == {t for t in CATALOGUE.types()
                                  if guard.restricts_event_type(t)}


# --- the replay, filtered -----------------------------------------------------------------

def replay_all(store: Any, visible: Callable[[Event], bool] | None, *, limit: int,
               scan_max: int) -> tuple[list[dict[str, Any]], list[str | None]]:
    items: list[dict[str, Any]] = []
    cursors: list[str | None] = []
    after = None
    for _ in range(10_000):
        page, cursor = ev.replay(store, from_height=1, after=after, limit=limit,
                                 catalogue=CATALOGUE, visible=visible, scan_max=scan_max)
        items += page
        cursors.append(cursor)
        if cursor == after and not page:  # at the tip: the same cursor again
            return items, cursors
        after = cursor
        if after is None:
            return items, cursors
    raise AssertionError("the replay does not end")


@pytest.mark.parametrize(("limit", "scan_max"), [(1, 1), (2, 3), (5, 7), (100, 10_000)])
@pytest.mark.parametrize("keep", ["every third", "none", "all", "first half"])
def test_a_filtered_replay_gives_each_visible_event_once_and_names_no_hidden_one(
        limit, scan_max, keep):
    store = notary_chain()
    events = chain_events(store)
    tip = store.height()
    rules: dict[str, Callable[[int, Event], bool]] = {
        "every third": lambda h, e: (h + e.index) % 3 == 0,
        "none": lambda h, e: False,
        "all": lambda h, e: True,
        "first half": lambda h, e: h <= tip // 2,
    }
    rule = rules[keep]
    heights = {e.attributes["digest"]: h for h, e in events}  # one anchor each
    items, cursors = replay_all(store, lambda e: rule(heights[e.attributes["digest"]], e),
                                limit=limit, scan_max=scan_max)
    blocks = {h: stored.block for h in range(1, tip + 1)
              if (stored := store.block(h)) is not None}
    wanted = [ev.event_id(e, blocks[h]) for h, e in events if rule(h, e)]
    assert [i["id"] for i in items] == wanted
    shown = {i["id"] for i in items}
    for cursor in cursors:
        if cursor is None:
            continue
        height, _, ident = cursor.partition("/")
        # a cursor is a visible event's id, or the end of a height: never a hidden id
        assert ident == ev.HEIGHT_END or ident in shown, cursor
        assert 1 <= int(height) <= tip


def test_a_height_end_cursor_continues_after_that_height():
    store = notary_chain()
    page, cursor = ev.replay(store, from_height=1, limit=10, catalogue=CATALOGUE,
                             visible=lambda e: False, scan_max=1)
    assert page == [] and cursor == "1/end"
    later, _ = ev.replay(store, from_height=1, after=cursor, limit=1, catalogue=CATALOGUE)
    assert later[0]["height"] > 1
    with pytest.raises(ValueError, match="names no height"):
        ev.replay(store, from_height=1, after=f"{store.height() + 1}/end", limit=1,
                  catalogue=CATALOGUE)


def test_an_unfiltered_replay_is_unchanged():
    store = notary_chain()
    plain = ev.replay(store, from_height=1, limit=7, catalogue=CATALOGUE)
    assert ev.replay(store, from_height=1, limit=7, catalogue=CATALOGUE,
                     visible=lambda e: True) == plain


# --- the views' lists, filtered -------------------------------------------------------------

async def walk(fn: Any, db: Any, *, limit: int, scan_max: int,
               visible: Callable[[dict[str, Any]], bool],
               **filters: Any) -> tuple[list[dict[str, Any]], list[str]]:
    items: list[dict[str, Any]] = []
    cursors: list[str] = []
    cursor = None
    for _ in range(5_000):
        page = await fn(db, cursor=cursor, limit=limit, visible=visible, scan_max=scan_max,
                        **filters)
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items, cursors
        assert cursor not in cursors, "a cursor came back: the pages loop"
        cursors.append(cursor)
    raise AssertionError("pagination does not end")


def cursor_key(cursor: str) -> list[int]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    return list(json.loads(raw)[1:])


@pytest.mark.asyncio
@pytest.mark.parametrize(("limit", "scan_max"), [(1, 1), (2, 3), (4, 9), (200, 5_000)])
async def test_filtered_view_lists_give_each_visible_item_once_in_order(mongo_db, limit,
                                                                        scan_max):
    store = notary_chain()
    await Projector(store, mongo_db).catch_up()
    keep_tx = {tx.hash.hex() for n, (_, _, tx) in enumerate(chain_txs(store)) if n % 4 == 1}
    txs, tx_cursors = await walk(queries.list_transactions, mongo_db, limit=limit,
                                 scan_max=scan_max, visible=lambda d: d["hash"] in keep_tx)
    wanted = sorted(((h, i, tx.hash.hex()) for h, i, tx in chain_txs(store)
                     if tx.hash.hex() in keep_tx), reverse=True)
    assert [(t["height"], t["index"], t["hash"]) for t in txs] == wanted
    positions = {(t["height"], t["index"]) for t in txs}
    for cursor in tx_cursors:  # a shown item's position, or the bottom of a height
        height, index = cursor_key(cursor)
        assert (height, index) in positions or index == 0, cursor

    keep = {(h, e.index) for h, e in chain_events(store) if (h + e.index) % 5 == 0}
    events, ev_cursors = await walk(queries.list_events, mongo_db, limit=limit,
                                    scan_max=scan_max,
                                    visible=lambda d: (d["height"], d["index"]) in keep)
    assert [(e["height"], e["index"]) for e in events] == sorted(keep)
    for cursor in ev_cursors:  # a shown event's position, or the top of a height
        height, index = cursor_key(cursor)
        assert (height, index) in keep or index == POS_STRIDE - 1, cursor


@pytest.mark.asyncio
async def test_a_filtered_list_that_hides_everything_ends(mongo_db):
    await Projector(notary_chain(), mongo_db).catch_up()
    for fn in (queries.list_transactions, queries.list_events):
        items, cursors = await walk(fn, mongo_db, limit=3, scan_max=4,
                                    visible=lambda d: False)
        assert items == []
        assert len(cursors) < notary_chain().height()  # bounded pages, then the end
    page = await queries.list_events(mongo_db, limit=3, visible=lambda d: False,
                                     scan_max=10_000)
    assert page == {"items": [], "next_cursor": None}
    with pytest.raises(ValueError):  # a height bound is a cursor of its own list only
        await queries.list_transactions(
            mongo_db, cursor=queries.encode_cursor(EVENTS, 2, POS_STRIDE - 1))
    await queries.list_transactions(mongo_db, cursor=queries.encode_cursor(TRANSACTIONS, 2, 0))


# --- the partner exchange ------------------------------------------------------------------

class Exchange:
    def __init__(self) -> None:
        self.published: list[tuple[str, aio_pika.Message]] = []

    async def publish(self, message: aio_pika.Message, routing_key: str, *,
                      mandatory: bool, timeout: float | None) -> None:
        self.published.append((routing_key, message))


def privacy_chain() -> ListStore:
    """Blocks with privacy events among public ones; one block holds only restricted."""
    store = ListStore()
    record = "ab" * 32
    access = {"record_id": record, "subject": "01" * 16, "party": "org:carrier",
              "purpose": "delivery", "basis": "grant", "by": "02" * 16}
    key = {"party": "org:carrier", "key_id": "03" * 16, "country": "FR", "by": "02" * 16,
           "rotated": False}
    anchor = {"digest": "cd" * 32, "by": "02" * 16, "org": "carrier", "label": ""}
    tx = [signed("p", n, {"n": n}) for n in range(4)]
    store.append(tx[:2], [Event("privacy.key.registered", key, 0, 0),
                          Event("privacy.access.granted", access, 1, 1)])
    store.append(tx[2:3], [Event("privacy.access.refused", {**access, "reason": "no_grant"},
                                 0, 0)])
    store.append(tx[3:], [Event("notary.document.anchored", anchor, 0, 0)])
    return store


@pytest.mark.asyncio
async def test_the_publisher_withholds_restricted_events(tmp_path: Path):
    store = privacy_chain()
    publisher = ev.EventPublisher(store, url="unused", checkpoint_path=tmp_path / "cp",
                                  catalogue=CATALOGUE)  # the catalogue's withheld types
    publisher.load_checkpoint()
    publisher._exchange = exchange = Exchange()  # type: ignore[assignment]  # no broker
    assert await publisher.publish_pending() == store.height()
    assert [key for key, _ in exchange.published] == ["privacy.key.registered",
                                                      "notary.document.anchored"]
    assert publisher.stats.withheld == 2
    assert ev.read_checkpoint(tmp_path / "cp").height == 3  # past the restricted-only block
    # a guard's rule (by prefix) withholds types no catalogue lists too
    guarded = ev.EventPublisher(store, url="unused", checkpoint_path=tmp_path / "cp2",
                                catalogue=CATALOGUE,
                                withheld=lambda t: t.startswith(("privacy.", "notary.")))
    guarded.load_checkpoint()
    guarded._exchange = only_some = Exchange()  # type: ignore[assignment]
    await guarded.publish_pending()
    assert only_some.published == [] and guarded.stats.withheld == 4
    # the replay still serves them, to whom the caller's view lets see them
    everything, _ = ev.replay(store, from_height=1, limit=10, catalogue=CATALOGUE)
    assert [e["type"] for e in everything] == ["privacy.key.registered",
                                               "privacy.access.granted",
                                               "privacy.access.refused",
                                               "notary.document.anchored"]


def test_a_catalogue_withholds_only_types_it_knows():
    with pytest.raises(ValueError, match="not in the catalogue"):
        CATALOGUE.extended([], withheld=["nobody.knows.this"])
    assert CATALOGUE.extended([]).withheld == CATALOGUE.withheld
