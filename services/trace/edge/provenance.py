"""Provenance: an item's or lot's history from the ``epcis_events`` view, and its cache.

The walk
--------
Start from one identifier (canonical GS1 Digital Link) with the whole time line
as its *window*. Each round asks the view once for every event naming any
identifier of the current frontier (``{"epcs": {"$in": frontier}}``), so a
history costs one query per level, not one per identifier. For an identifier
``x`` with window ``w``, an event at time ``t`` in ``w`` that names ``x`` is a
step, and it may extend the frontier:

* **containment** — an ``AggregationEvent`` naming ``x`` as a child of ``P``
  opens a window on ``P`` at ``t`` (``ADD`` or ``OBSERVE``) which the next
  ``DELETE`` of ``x`` from ``P`` closes; an ``AggregationEvent DELETE`` of ``P``
  that lists no children (EPCIS: everything unpacked) closes it too. So a tin
  inherits its case's journey only while it was in the case, and not the
  case's next trip with other goods;
* **transformation** — an event with ``x`` among its outputs adds its inputs with
  the window ``(-inf, t]`` (raw materials up to the moment they were used), up to
  ``depth_max`` hops back.

Windows are intersected with the window of the identifier they came from; steps
are returned in time order (then chain position) with the identifier that
brought each in (``via``). Every step names its transaction, whose inclusion
proof ``/v1/transactions/{tx_hash}`` returns.

Limits (:class:`ProvenanceLimits`): at most ``events_max`` steps and
``ids_max`` identifiers per walk (then ``truncated``), ``depth_max``
transformation hops.

The cache
---------
A popular product is scanned far more often than its history changes. Answers
are kept in a bounded LRU (``cache_entries`` answers, ``cache_steps`` steps in
all) under the start identifier, together with the set of identifiers the walk
read. The projector reports every batch of ``epcis_events`` it writes
(:meth:`ProvenanceCache.invalidate`); an answer is dropped as soon as a new event
names any identifier it read, which is exactly when it could change (a new
event can only join a history by naming one of its identifiers). A walk that
raced with an invalidation is not cached (generation check), and a views reset
clears everything. ``?fresh=true`` bypasses the cache.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: no lower / upper bound of a window
OPEN_LOW = -(2**63)
OPEN_HIGH = 2**63 - 1

Window = tuple[int, int]  # [low, high] inclusive, event-time milliseconds
#: ``fetch(spans, limit)``: spans are ``(identifier, low, high)``
Fetch = Callable[[list[tuple[str, int, int]], int], Awaitable[list[dict[str, Any]]]]
#: aggregation events looked back at, before a window opens (what it was inside then)
LOOKBACK_MAX = 64


@dataclass(frozen=True, slots=True)
class ProvenanceLimits:
    events_max: int = 500
    ids_max: int = 256
    depth_max: int = 4  # transformation hops back towards raw materials
    cache_entries: int = 2_048
    cache_steps: int = 200_000


@dataclass(slots=True)
class Walk:
    steps: list[dict[str, Any]]
    truncated: bool
    identifiers: frozenset[str]


def _merge(windows: list[Window]) -> list[Window]:
    out: list[Window] = []
    for low, high in sorted(windows):
        if out and low <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def _inside(t: int, windows: list[Window]) -> bool:
    return any(low <= t <= high for low, high in windows)


def _clip(windows: list[Window], low: int, high: int) -> list[Window]:
    return [(max(a, low), min(b, high)) for a, b in windows if max(a, low) <= min(b, high)]


def _containment(child: str, docs: list[dict[str, Any]],
                 windows: list[Window]) -> dict[str, list[Window]]:
    """Per parent, the windows in which ``child`` was inside it, as told by
    aggregation events naming ``child`` (in time order) and clipped to ``windows``."""
    opened: dict[str, int] = {}
    out: dict[str, list[Window]] = {}
    for doc in docs:
        parent = doc.get("parentID")
        if doc["type"] != "AggregationEvent" or not parent or parent == child:
            continue
        t = doc["eventTime"]
        if doc.get("action") == "DELETE":
            if parent in opened:
                out.setdefault(parent, []).append((opened.pop(parent), t))
        elif doc.get("action") == "ADD" and parent in opened:
            # packed again while "inside": it left in between (say the parent was
            # emptied without naming it); the parent's own unpacks will close the
            # earlier window, the new one starts here
            out.setdefault(parent, []).append((opened[parent], t))
            opened[parent] = t
        else:
            opened.setdefault(parent, t)
    for parent, since in opened.items():
        out.setdefault(parent, []).append((since, OPEN_HIGH))
    # raw windows, not merged: each is closed at the parent's next unpack on its own
    return {p: clipped for p, w in out.items()
            if (clipped := [c for low, high in windows for c in _clip(w, low, high)])}


def _unpacked_all(parent: str, docs: Iterable[dict[str, Any]]) -> list[int]:
    """Times at which ``parent`` was emptied (a DELETE naming no child)."""
    return sorted(d["eventTime"] for d in docs
                  if d["type"] == "AggregationEvent" and d.get("action") == "DELETE"
                  and d.get("parentID") == parent and d.get("epcs") == [parent])


def _close_at_unpack(windows: list[Window], unpacks: list[int]) -> list[Window]:
    out = []
    for low, high in windows:
        end = next((t for t in unpacks if t >= low), None)
        out.append((low, high if end is None else min(high, end)))
    return out


def step_of(doc: dict[str, Any], via: str) -> dict[str, Any]:
    return {"event_hash": doc["_id"], "type": doc["type"], "bizStep": doc.get("bizStep"),
            "disposition": doc.get("disposition"), "eventTime": doc["eventTime"],
            "location": doc.get("bizLocation"), "org": doc.get("org"), "via": via,
            "tx_hash": doc.get("tx_hash"), "height": doc["height"],
            "proof": f"/v1/transactions/{doc.get('tx_hash')}"}


async def walk(start: str, fetch: Fetch, limits: ProvenanceLimits) -> Walk:
    """The history of ``start`` (see the module's docs). ``fetch(spans, limit)`` returns
    the view's documents naming an identifier of ``spans`` (``[(id, low, high)]``, block
    event times inclusive; ``OPEN_LOW``/``OPEN_HIGH`` for no bound) inside its span, in
    chain order; with ``high`` below ``low`` (a look-back) it returns the latest
    aggregation events naming the identifier before ``low``."""
    # per identifier: raw windows (low, high, closes_at_unpack), via, depth
    frontier: dict[str, tuple[list[tuple[int, int, bool]], str, int]] = {
        start: ([(OPEN_LOW, OPEN_HIGH, False)], "item", 0)}
    windows_done: dict[str, list[Window]] = {}
    steps: dict[str, tuple[int, dict[str, Any]]] = {}
    truncated = ids_exhausted = False
    while frontier and not truncated:
        ids = sorted(frontier)
        spans = [(ident, low, high) for ident in ids for low, high, _ in frontier[ident][0]]
        # and what a window's identifier was already inside when the window opened
        lookback = [(ident, low, OPEN_LOW) for ident in ids
                    for low, _, _ in frontier[ident][0] if low != OPEN_LOW]
        if lookback:  # independent queries: one round trip's latency, not two
            docs, earlier = await asyncio.gather(fetch(spans, limits.events_max + 1),
                                                 fetch(lookback, LOOKBACK_MAX))
        else:
            docs, earlier = await fetch(spans, limits.events_max + 1), []
        if len(docs) > limits.events_max:
            truncated = True
        by_id: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        seen_docs: set[tuple[str, str]] = set()
        for doc in [*earlier, *docs]:
            for ident in doc.get("epcs", ()):
                if ident in by_id and (ident, doc["_id"]) not in seen_docs:
                    seen_docs.add((ident, doc["_id"]))
                    by_id[ident].append(doc)
        proposals: dict[str, tuple[list[tuple[int, int, bool]], str, int]] = {}
        for ident in ids:
            raw, via, depth = frontier[ident]
            mine = sorted(by_id[ident], key=lambda d: (d["eventTime"], d["pos"]))
            unpacks = _unpacked_all(ident, mine)
            closed = [(low, min(high, next((t for t in unpacks if t >= low), high)))
                      if container else (low, high) for low, high, container in raw]
            windows = _merge(closed)
            windows_done[ident] = _merge(windows_done.get(ident, []) + windows)
            for doc in mine:
                t = doc["eventTime"]
                if not _inside(t, windows):
                    continue
                if doc["_id"] not in steps:
                    steps[doc["_id"]] = (doc["pos"], step_of(doc, via))
                if ident in doc.get("outputs", ()) and depth < limits.depth_max:
                    for source in doc.get("inputs", ()):
                        _propose(proposals, source, [(OPEN_LOW, t, False)],
                                 f"input:{source}", depth + 1)
            for parent, inside in _containment(ident, mine, windows).items():
                _propose(proposals, parent, [(low, high, True) for low, high in inside],
                         f"parent:{parent}", depth)
        if len(steps) > limits.events_max:
            truncated = True
        frontier = {}
        for ident, (raw, via, depth) in proposals.items():
            known = windows_done.get(ident, [])
            new = [(low, high, container) for low0, high0, container in raw
                   for low, high in _subtract([(low0, high0)], known)]
            if not new:
                continue
            if ident not in windows_done and len(windows_done) + len(frontier) >= \
                    limits.ids_max:
                ids_exhausted = True  # the admitted ones are still walked
                continue
            frontier[ident] = (new, via, depth)
    ordered = sorted(steps.values(), key=lambda s: (s[1]["eventTime"], s[0]))
    return Walk([s for _, s in ordered[:limits.events_max]], truncated or ids_exhausted,
                frozenset(windows_done) | {start})


def _propose(proposals: dict[str, tuple[list[tuple[int, int, bool]], str, int]],
             ident: str, windows: list[tuple[int, int, bool]], via: str,
             depth: int) -> None:
    if ident in proposals:
        old, old_via, old_depth = proposals[ident]
        proposals[ident] = (sorted(set(old + windows)), old_via, min(old_depth, depth))
    else:
        proposals[ident] = (sorted(set(windows)), via, depth)


def _subtract(windows: list[Window], known: list[Window]) -> list[Window]:
    """The parts of ``windows`` not covered by ``known`` (both merged)."""
    out = []
    for low, high in windows:
        cursor = low
        for k_low, k_high in known:
            if k_high < cursor or k_low > high:
                continue
            if k_low > cursor:
                out.append((cursor, k_low - 1))
            cursor = max(cursor, k_high + 1)
            if cursor > high:
                break
        if cursor <= high:
            out.append((cursor, high))
    return out


class ProvenanceCache:
    """Answers by start identifier, dropped when an identifier they read gets a new
    event (see the module's docs). Not thread-safe: use from the event loop."""

    def __init__(self, limits: ProvenanceLimits) -> None:
        self.limits = limits
        self.generation = 0
        self._entries: OrderedDict[str, Walk] = OrderedDict()
        self._readers: dict[str, set[str]] = {}  # identifier -> starts whose walk read it
        self._steps = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def steps(self) -> int:
        return self._steps

    def get(self, start: str) -> Walk | None:
        found = self._entries.get(start)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(start)
        self.hits += 1
        return found

    def put(self, start: str, answer: Walk, generation: int) -> None:
        """Keep ``answer`` unless an invalidation happened since ``generation``."""
        if generation != self.generation or len(answer.steps) > self.limits.cache_steps:
            return
        self._drop(start)
        self._entries[start] = answer
        self._steps += len(answer.steps)
        for ident in answer.identifiers:
            self._readers.setdefault(ident, set()).add(start)
        while self._entries and (len(self._entries) > self.limits.cache_entries
                                 or self._steps > self.limits.cache_steps):
            self._drop(next(iter(self._entries)))

    def invalidate(self, identifiers: Iterable[str] | None) -> None:
        """New events name ``identifiers`` (``None``: the views were reset)."""
        self.generation += 1
        if identifiers is None:
            self._entries.clear()
            self._readers.clear()
            self._steps = 0
            return
        for ident in identifiers:
            for start in list(self._readers.get(ident, ())):
                self._drop(start)

    def _drop(self, start: str) -> None:
        answer = self._entries.pop(start, None)
        if answer is None:
            return
        self._steps -= len(answer.steps)
        for ident in answer.identifiers:
            readers = self._readers.get(ident)
            if readers is not None:
                readers.discard(start)
                if not readers:
                    del self._readers[ident]


class ProvenanceCacheCollector(Collector):
    """``/metrics``: the provenance cache's hits, misses and size."""

    def __init__(self, cache: ProvenanceCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        c = self.cache
        yield CounterMetricFamily("ecosphere_provenance_cache_hits",
                                  "Provenance answers served from the cache", value=c.hits)
        yield CounterMetricFamily("ecosphere_provenance_cache_misses",
                                  "Provenance answers walked from the views", value=c.misses)
        yield GaugeMetricFamily("ecosphere_provenance_cache_entries",
                                "Provenance answers held", value=len(c))
        yield GaugeMetricFamily("ecosphere_provenance_cache_steps",
                                "Steps held by the provenance cache", value=c.steps)
