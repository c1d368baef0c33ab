"""Reads of the views for the HTTP API: lists with opaque cursors, and lookups.

Every list returns a :class:`Page`: ``items`` (plain JSON-ready dicts) and
``next_cursor``, None on the last page. A cursor is the URL-safe base64
(unpadded) of the canonical JSON ``[kind, ...sort key of the last item]``; a
cursor that does not decode to that shape, or belongs to another list, raises
``ValueError("bad cursor")`` (the API answers 400). ``limit`` is clamped to
``1..LIMIT_MAX``. Pages are keyset pages: stable while the chain grows, and
each costs one indexed range read however deep the client has paged.

Orders:

* blocks and transactions: newest first (transactions by height, then index,
  both descending);
* events: chain order, oldest first, by height then position among the
  block's events. That position is the order the events were emitted in:
  begin-block events, then each transaction's in transaction order, then
  end-block events; it is the order a partner replaying the chain sees.

Only blocks up to the projector's checkpoint are listed: a block is listed
once all its views are written.

**Filtered lists.** Transactions and events may be listed through a ``visible``
predicate (the domains' read policies, ``services.gateway.read_policy``): a page then
holds the documents it keeps, looking at no more than ``scan_max`` of them (and the
rest of the last height it reached); its cursor is the last document shown, or — when
it stopped before filling the page — a bound between two heights, never the position
of a document it hid. A page may then be shorter than ``limit``, even empty, with a
``next_cursor``: follow it; pages never overlap, and never end before the list does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any, TypedDict

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.gateway.views.projector import CHECKPOINT_COLLECTION, CHECKPOINT_ID
from services.gateway.views.schema import BLOCKS, EVENTS, POS_STRIDE, TRANSACTIONS, pos_of
from services.ledger.core.encoding import INT_MAX, encode_unchecked

LIMIT_MAX = 200
LIMIT_DEFAULT = 50
#: documents a filtered page looks at, at most (beyond, the rest of that height), and
#: reads at once
SCAN_MAX = 5_000
_SCAN_BATCH_MAX = 1_000
CURSOR_CHARS_MAX = 256
WINDOW_BLOCKS_FIRST = 32
WINDOW_GROWTH = 4
WINDOW_GROWTH_MAX = 64
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")

Document = dict[str, Any]
#: which documents (as a list returns them) the caller may see
Visible = Callable[[Document], bool]


class Page(TypedDict):
    items: list[Document]
    next_cursor: str | None


def clamp_limit(limit: int) -> int:
    return max(1, min(LIMIT_MAX, int(limit)))


def encode_cursor(kind: str, *key: int) -> str:
    raw = encode_unchecked([kind, *key])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, kind: str, size: int) -> list[int]:
    """The sort key in ``cursor``, which must come from a ``kind`` list."""
    try:
        if len(cursor) > CURSOR_CHARS_MAX:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("bad cursor") from None
    if (not isinstance(value, list) or len(value) != size + 1 or value[0] != kind
            or not all(type(v) is int and 0 <= v <= INT_MAX for v in value[1:])
            or encode_cursor(kind, *value[1:]) != cursor):
        raise ValueError("bad cursor")
    return value[1:]


def _restore(doc: Document, field: str) -> None:
    """Undo ``schema.put_json_value``."""
    text = doc.pop(field + "_json", None)
    if text is not None:
        doc[field] = json.loads(text)


def block_out(doc: Document) -> Document:
    return {"height": doc.pop("_id"), **doc}


def transaction_out(doc: Document) -> Document:
    doc.pop("pos", None)
    _restore(doc, "payload")
    return {"hash": doc.pop("_id"), **doc}


def event_out(doc: Document) -> Document:
    doc.pop("pos", None)
    _restore(doc, "attributes")
    return {"id": doc.pop("_id"), **doc}


async def views_height(db: AsyncDatabase[Document]) -> int:
    """The projector's checkpoint: the last height whose views are complete."""
    doc = await db[CHECKPOINT_COLLECTION].find_one({"_id": CHECKPOINT_ID})
    return 0 if doc is None else int(doc["height"])


async def list_blocks(db: AsyncDatabase[Document], *, cursor: str | None = None,
                      limit: int = LIMIT_DEFAULT) -> Page:
    """Blocks, newest first.

    Heights are dense, so a page is the heights ``top - limit + 1 .. top`` below
    the cursor (or the checkpoint), read as ``_id`` point lookups (``$in``): some
    MongoDB-wire servers (the embedded one) scan the collection for an ``_id``
    range but not for ``$in``.
    """
    limit = clamp_limit(limit)
    if cursor is None:
        top = await views_height(db)
    else:
        (after,) = decode_cursor(cursor, BLOCKS, 1)
        top = after - 1
    if top < 1:
        return Page(items=[], next_cursor=None)
    low = max(1, top - limit + 1)
    docs = await db[BLOCKS].find({"_id": {"$in": list(range(low, top + 1))}}) \
        .sort("_id", DESCENDING).to_list()
    return Page(items=[block_out(d) for d in docs],
                next_cursor=encode_cursor(BLOCKS, low) if low > 1 else None)


async def list_transactions(db: AsyncDatabase[Document], *, sender: str | None = None,
                            kind: str | None = None, contract: str | None = None,
                            height: int | None = None, cursor: str | None = None,
                            limit: int = LIMIT_DEFAULT, visible: Visible | None = None,
                            scan_max: int = SCAN_MAX) -> Page:
    """Transactions, newest first (height, then index in the block, descending); only
    those ``visible`` keeps, when given (see the module's docstring)."""
    limit = clamp_limit(limit)
    query: Document = {}
    for name, value in (("sender", sender), ("kind", kind), ("contract", contract)):
        if value is not None:
            query[name] = value
    low, high = 0, (await views_height(db) + 1) * POS_STRIDE
    if height is not None:
        low, high = max(low, height * POS_STRIDE), min(high, (height + 1) * POS_STRIDE)
    if cursor is not None:
        last_height, last_index = decode_cursor(cursor, TRANSACTIONS, 2)
        high = min(high, pos_of(last_height, last_index))
    if visible is not None:
        return await _visible_page(db[TRANSACTIONS], query, low, high, limit,
                                   descending=True, kind=TRANSACTIONS, out=transaction_out,
                                   visible=visible, scan_max=scan_max)
    docs = await _windowed(db[TRANSACTIONS], query, low, high, limit + 1, descending=True)
    return _page(docs, limit, TRANSACTIONS, transaction_out)


async def get_transaction(db: AsyncDatabase[Document], tx_hash_hex: str) -> Document | None:
    """A projected transaction by its hash (64 hex digits), or None."""
    tx_hash = tx_hash_hex.lower()
    if not _HASH_RE.match(tx_hash):
        return None
    doc = await db[TRANSACTIONS].find_one({"_id": tx_hash})
    return None if doc is None else transaction_out(doc)


async def list_events(db: AsyncDatabase[Document], *, type: str | None = None,
                      domain: str | None = None, tx_hash: str | None = None,
                      from_height: int | None = None, cursor: str | None = None,
                      limit: int = LIMIT_DEFAULT, visible: Visible | None = None,
                      scan_max: int = SCAN_MAX) -> Page:
    """Events in chain order (height, then position in the block), oldest first; only
    those ``visible`` keeps, when given (see the module's docstring)."""
    limit = clamp_limit(limit)
    query: Document = {}
    for name, value in (("type", type), ("domain", domain),
                        ("tx_hash", None if tx_hash is None else tx_hash.lower())):
        if value is not None:
            query[name] = value
    low, high = 0, (await views_height(db) + 1) * POS_STRIDE
    if from_height is not None:
        low = max(low, from_height * POS_STRIDE)
    if cursor is not None:
        last_height, last_index = decode_cursor(cursor, EVENTS, 2)
        low = max(low, pos_of(last_height, last_index) + 1)
    if visible is not None:
        return await _visible_page(db[EVENTS], query, low, high, limit, descending=False,
                                   kind=EVENTS, out=event_out, visible=visible,
                                   scan_max=scan_max)
    docs = await _windowed(db[EVENTS], query, low, high, limit + 1, descending=False)
    return _page(docs, limit, EVENTS, event_out)


async def _windowed(coll: AsyncCollection[Document], query: Document, low: int, high: int,
                    want: int, *, descending: bool) -> list[Document]:
    """Up to ``want`` documents matching ``query`` with ``low <= pos < high``, in
    ``pos`` order from ``high`` down (``descending``) or from ``low`` up.

    Read in windows of ``WINDOW_BLOCKS_FIRST`` heights, each next one wider by
    ``WINDOW_GROWTH`` to ``WINDOW_GROWTH_MAX`` times (as the matches found so far
    suggest the rest of the page needs), rather than as one sorted, limited read of the whole range.
    On MongoDB the single read is as cheap (the index gives the order), and the
    windows add a few index probes for a sparse filter; on servers that fetch
    every match before applying the limit (the embedded SecantusDB does) the
    single read costs time in proportion to the chain, the windows in proportion
    to the page.
    """
    out: list[Document] = []
    width = WINDOW_BLOCKS_FIRST * POS_STRIDE
    direction = DESCENDING if descending else ASCENDING
    while low < high and len(out) < want:
        if descending:
            start, end = max(low, high - width), high
            high = start
        else:
            start, end = low, min(high, low + width)
            low = end
        window = {**query, "pos": {"$gte": start, "$lt": end}}
        found = await coll.find(window).sort("pos", direction).limit(want - len(out)) \
            .to_list()
        out += found
        # Grow by what the density seen so far suggests the rest needs, within bounds.
        need = 2 * (want - len(out))
        width *= max(WINDOW_GROWTH, min(WINDOW_GROWTH_MAX, need // max(1, len(found))))
    return out


def _page(docs: list[Document], limit: int, kind: str,
          out: Callable[[Document], Document]) -> Page:
    more = len(docs) > limit
    docs = docs[:limit]
    next_cursor = None
    if more:
        last = docs[-1]
        next_cursor = encode_cursor(kind, last["height"], last["index"])
    return Page(items=[out(d) for d in docs], next_cursor=next_cursor)


async def _visible_page(coll: AsyncCollection[Document], query: Document, low: int,
                        high: int, limit: int, *, descending: bool, kind: str,
                        out: Callable[[Document], Document], visible: Visible,
                        scan_max: int) -> Page:
    """One page of the documents of ``low <= pos < high`` that ``visible`` keeps, in the
    list's order, looking at about ``scan_max`` documents at most: past them it reads to
    the end of the height it reached and stops there, the cursor a bound between heights
    (``(h, 0)`` going down: below height ``h``; ``(h, POS_STRIDE - 1)`` going up: above
    it), so that no cursor ever names a hidden document's position."""
    shown: list[Document] = []
    scanned = 0

    def take(docs: list[Document]) -> bool:
        """Keep what is visible; True once the page is full (and one more is known)."""
        for doc in docs:
            item = out(doc)
            if visible(item):
                shown.append(item)
                if len(shown) > limit:
                    return True
        return False

    def full() -> Page:
        last = shown[limit - 1]
        return Page(items=shown[:limit],
                    next_cursor=encode_cursor(kind, last["height"], last["index"]))

    want = limit + 1
    while low < high:
        docs = await _windowed(coll, query, low, high, want, descending=descending)
        if not docs:
            break
        last_pos = int(docs[-1]["pos"])
        if take(docs):
            return full()
        if len(docs) < want:
            break  # the range holds no more
        want = min(2 * want, _SCAN_BATCH_MAX)  # mostly hidden so far: read more at once
        if descending:
            high = last_pos
        else:
            low = last_pos + 1
        scanned += len(docs)
        if scanned < scan_max:
            continue
        height = last_pos // POS_STRIDE  # finish it: the cursor is then a height bound
        if descending:
            rest_low, rest_high, bound = max(low, height * POS_STRIDE), high, (height, 0)
        else:
            rest_low, rest_high = low, min(high, (height + 1) * POS_STRIDE)
            bound = (height, POS_STRIDE - 1)
        if take(await _windowed(coll, query, rest_low, rest_high, 1 << 31,
                                descending=descending)):
            return full()
        last_height = rest_low <= low if descending else rest_high >= high
        if last_height:
            break  # that height was the last of the range
        return Page(items=shown, next_cursor=encode_cursor(kind, *bound))
    return Page(items=shown, next_cursor=None)
