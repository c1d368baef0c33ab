"""Deadlines on block time, kept in state.

The state tree is keyed by hash, so it has no ordered scan; a contract that
needs "everything due by time T" keeps its deadlines in time buckets of
``BUCKET_MS`` under ``<ns>/deadline/<bucket>`` plus a cursor naming the first
bucket not yet drained. ``due`` walks the buckets from the cursor up to the
block's BFT time; a block after a long pause walks at most
``WALK_BUCKETS_MAX`` buckets and continues in the next block, so one block's
work stays bounded.

Items fire at the first block whose BFT time is ``>= due``, in (due, id)
order: the same order on every replica.

This module never does I/O.
"""

from __future__ import annotations

from typing import Any

from services.ledger.core.contract import _Scope

BUCKET_MS = 60_000
WALK_BUCKETS_MAX = 1_440


def _bucket_key(bucket: int) -> str:
    return f"deadline/{bucket}"


def schedule(ctx: _Scope, due: int, item_id: str, data: Any = None) -> int:
    """Schedule ``item_id`` at block time ``due``; returns the bucket to pass to ``cancel``."""
    cursor = ctx.get("deadline/cursor")
    if cursor is None:
        cursor = ctx.time // BUCKET_MS
        ctx.put("deadline/cursor", cursor)
    bucket = max(due // BUCKET_MS, cursor)  # a past bucket would never be walked again
    items = ctx.get(_bucket_key(bucket)) or []
    items.append([due, item_id, data])
    items.sort(key=lambda it: (it[0], it[1]))
    ctx.put(_bucket_key(bucket), items)
    return int(bucket)


def cancel(ctx: _Scope, bucket: int, item_id: str) -> bool:
    items = ctx.get(_bucket_key(bucket)) or []
    kept = [it for it in items if it[1] != item_id]
    if len(kept) == len(items):
        return False
    if kept:
        ctx.put(_bucket_key(bucket), kept)
    else:
        ctx.delete(_bucket_key(bucket))
    return True


def due(ctx: _Scope, now: int) -> list[tuple[int, str, Any]]:
    """Remove and return the items due by ``now``, in (due, id) order.

    Buckets before the one holding ``now`` are drained whole (everything in them
    is due) and the cursor moves past them; the bucket of ``now`` is only
    trimmed, because later items may still be scheduled into it.
    """
    cursor = ctx.get("deadline/cursor")
    if cursor is None:
        return []
    current = now // BUCKET_MS
    fired: list[tuple[int, str, Any]] = []
    bucket = cursor
    stop = min(current, cursor + WALK_BUCKETS_MAX - 1)
    while bucket <= stop:
        items = ctx.get(_bucket_key(bucket)) or []
        ready = [it for it in items if it[0] <= now]
        fired.extend((it[0], it[1], it[2]) for it in ready)
        if ready:
            rest = items[len(ready):]
            if rest:
                ctx.put(_bucket_key(bucket), rest)
            else:
                ctx.delete(_bucket_key(bucket))
        if bucket == current:
            break
        bucket += 1
    if bucket != cursor:
        ctx.put("deadline/cursor", bucket)
    return fired
