"""Provenance walks (containment and transformation windows, limits, one query per level)
and the provenance cache (invalidated by the identifiers a walk read)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.trace.edge.provenance import (
    ProvenanceCache,
    ProvenanceLimits,
    Walk,
    walk,
)

TIN, TIN2, CASE, PALLET, LOT, LEAF = "tin", "tin2", "case", "pallet", "lot", "leaf"


class View:
    """An in-memory ``epcis_events`` with the view's fields, counting the queries."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.queries: list[list[str]] = []

    def add(self, t: int, kind: str = "ObjectEvent", *, epcs: list[str],
            parent: str | None = None, action: str | None = "OBSERVE",
            inputs: list[str] = (), outputs: list[str] = (),  # type: ignore[assignment]
            step: str = "observing") -> str:
        name = f"e{len(self.docs)}"
        names = set(epcs) | set(inputs) | set(outputs) | ({parent} if parent else set())
        self.docs.append({"_id": name, "type": kind, "action": action, "bizStep": step,
                          "eventTime": t, "pos": len(self.docs), "height": 1 + len(self.docs),
                          "tx_hash": "ab" * 32, "parentID": parent, "epcs": sorted(names),
                          "inputs": list(inputs), "outputs": list(outputs)})
        return name

    async def fetch(self, spans: list[tuple[str, int, int]],
                    limit: int) -> list[dict[str, Any]]:
        """What the view answers (services.trace.edge.api._span_query's semantics)."""
        if any(high < low for _, low, high in spans):
            found = [d for d in self.docs for i, low, _ in spans
                     if i in d["epcs"] and d["type"] == "AggregationEvent"
                     and d["eventTime"] < low]
            return sorted(found, key=lambda d: -d["eventTime"])[:limit]
        self.queries.append(sorted({i for i, _, _ in spans}))
        return [d for d in self.docs
                if any(i in d["epcs"] and low <= d["eventTime"] <= high
                       for i, low, high in spans)][:limit]

    def walk(self, start: str, limits: ProvenanceLimits | None = None) -> Walk:
        return asyncio.run(walk(start, self.fetch, limits or ProvenanceLimits()))


def names(answer: Walk) -> list[str]:
    return [s["event_hash"] for s in answer.steps]


def supply_chain() -> tuple[View, dict[str, str]]:
    v = View()
    e = {}
    e["lot_made"] = v.add(1, epcs=[LOT], action="ADD", step="commissioning")
    e["lot_stored"] = v.add(2, epcs=[LOT], step="storing")
    e["made"] = v.add(3, "TransformationEvent", epcs=[], action=None, inputs=[LOT],
                      outputs=[TIN, TIN2], step="commissioning")
    e["lot_later"] = v.add(4, epcs=[LOT], step="storing")  # the lot after it was used
    e["case_before"] = v.add(5, epcs=[CASE], step="receiving")  # the case's last trip
    e["packed"] = v.add(6, "AggregationEvent", epcs=[TIN, TIN2], parent=CASE, action="ADD",
                        step="packing")
    e["palletised"] = v.add(7, "AggregationEvent", epcs=[CASE], parent=PALLET, action="ADD",
                            step="packing")
    e["shipped"] = v.add(8, epcs=[PALLET], step="departing")
    e["depalletised"] = v.add(9, "AggregationEvent", epcs=[], parent=PALLET, action="DELETE",
                              step="unpacking")  # unpack-all: names no child
    e["pallet_next_trip"] = v.add(10, epcs=[PALLET], step="departing")
    e["tin2_out"] = v.add(11, "AggregationEvent", epcs=[TIN2], parent=CASE, action="DELETE",
                          step="unpacking")
    e["case_received"] = v.add(12, epcs=[CASE], step="receiving")
    e["unpacked"] = v.add(13, "AggregationEvent", epcs=[TIN], parent=CASE, action="DELETE",
                          step="unpacking")
    e["case_reused"] = v.add(14, epcs=[CASE], step="departing")
    e["sold"] = v.add(15, epcs=[TIN], step="retail_selling")
    return v, e


def test_an_item_inherits_its_containers_events_only_while_inside_them() -> None:
    v, e = supply_chain()
    answer = v.walk(TIN)
    assert names(answer) == [e[k] for k in (
        "lot_made", "lot_stored", "made", "packed", "palletised", "shipped", "depalletised",
        "tin2_out", "case_received", "unpacked", "sold")]
    assert not answer.truncated
    via = {s["event_hash"]: s["via"] for s in answer.steps}
    assert via[e["lot_made"]] == f"input:{LOT}" and via[e["shipped"]] == f"parent:{PALLET}"
    assert via[e["sold"]] == "item"
    assert answer.identifiers == {TIN, CASE, PALLET, LOT}
    # One query per level: the tin; its case and lot; the case's pallet.
    assert v.queries == [[TIN], [CASE, LOT], [PALLET]]


def test_a_sibling_taken_out_early_does_not_inherit_the_later_case_events() -> None:
    v, e = supply_chain()
    got = names(v.walk(TIN2))
    assert e["tin2_out"] in got and e["case_received"] not in got
    assert e["unpacked"] not in got and e["shipped"] in got


def test_a_container_asked_about_directly_keeps_its_whole_history() -> None:
    v, e = supply_chain()
    got = names(v.walk(PALLET))
    assert got == [e["palletised"], e["shipped"], e["depalletised"], e["pallet_next_trip"]]
    assert e["case_reused"] in names(v.walk(CASE))


def test_transformations_are_followed_back_up_to_the_depth_limit() -> None:
    v = View()
    leaf_made = v.add(1, epcs=[LEAF], action="ADD", step="commissioning")
    v.add(2, "TransformationEvent", epcs=[], action=None, inputs=[LEAF], outputs=[LOT])
    v.add(3, "TransformationEvent", epcs=[], action=None, inputs=[LOT], outputs=[TIN])
    assert leaf_made in names(v.walk(TIN))
    shallow = v.walk(TIN, ProvenanceLimits(depth_max=1))
    assert leaf_made not in names(shallow) and len(shallow.steps) == 2


def test_limits_truncate_the_answer_and_say_so() -> None:
    v, _ = supply_chain()
    few = v.walk(TIN, ProvenanceLimits(events_max=3))
    assert few.truncated and len(few.steps) == 3
    narrow = v.walk(TIN, ProvenanceLimits(ids_max=2))
    assert narrow.truncated and len(narrow.identifiers) == 2


def test_cycles_and_repeated_containment_terminate() -> None:
    v = View()
    v.add(1, "AggregationEvent", epcs=[TIN], parent=CASE, action="ADD")
    v.add(2, "AggregationEvent", epcs=[CASE], parent=TIN, action="ADD")  # nonsense, recorded
    v.add(3, "AggregationEvent", epcs=[TIN], parent=CASE, action="DELETE")
    v.add(4, "AggregationEvent", epcs=[TIN], parent=CASE, action="ADD")
    answer = v.walk(TIN)
    assert len(answer.steps) == 4 and len(v.queries) <= 3


def _walk(steps: int, ids: set[str]) -> Walk:
    return Walk([{"event_hash": str(n)} for n in range(steps)], False, frozenset(ids))


def test_the_cache_drops_answers_whose_identifiers_get_new_events() -> None:
    cache = ProvenanceCache(ProvenanceLimits())
    cache.put(TIN, _walk(5, {TIN, CASE}), cache.generation)
    cache.put(TIN2, _walk(5, {TIN2, CASE}), cache.generation)
    cache.put(LOT, _walk(2, {LOT}), cache.generation)
    assert cache.get(TIN) is not None and len(cache) == 3
    cache.invalidate({PALLET})
    assert len(cache) == 3
    cache.invalidate({CASE})
    assert cache.get(TIN) is None and cache.get(TIN2) is None and cache.get(LOT) is not None
    cache.invalidate(None)
    assert len(cache) == 0 and cache.get(LOT) is None


def test_a_walk_that_raced_with_new_events_is_not_cached() -> None:
    cache = ProvenanceCache(ProvenanceLimits())
    started = cache.generation
    cache.invalidate({"unrelated"})
    cache.put(TIN, _walk(5, {TIN}), started)
    assert cache.get(TIN) is None


def test_the_cache_is_bounded_by_entries_and_steps() -> None:
    cache = ProvenanceCache(ProvenanceLimits(cache_entries=3, cache_steps=25))
    for n in range(5):
        cache.put(f"item{n}", _walk(5, {f"item{n}"}), cache.generation)
    assert len(cache) == 3 and cache.get("item0") is None and cache.get("item4") is not None
    cache.put("big", _walk(20, {"big"}), cache.generation)  # 5 + 20 steps fit, 3 entries
    assert cache.get("big") is not None and len(cache) <= 3
    assert sum(len(w.steps) for w in cache._entries.values()) <= 25
    cache.put("huge", _walk(26, {"huge"}), cache.generation)
    assert cache.get("huge") is None


# --- found in review (each once lost or leaked steps) ---------------------------------------


def test_a_container_reused_after_being_emptied_counts_again() -> None:
    v = View()
    v.add(1, "AggregationEvent", epcs=[TIN], parent=PALLET, action="ADD")
    emptied = v.add(2, "AggregationEvent", epcs=[], parent=PALLET, action="DELETE")
    without = v.add(3, epcs=[PALLET], step="departing")  # its trip without the tin
    v.add(4, "AggregationEvent", epcs=[TIN], parent=PALLET, action="ADD")
    shipped = v.add(5, epcs=[PALLET], step="shipping")
    got = names(v.walk(TIN))
    assert shipped in got and emptied in got and without not in got


def test_windows_of_two_inputs_are_closed_each_at_its_own_unpack() -> None:
    v = View()
    a, b = "input-a", "input-b"
    v.add(1, "AggregationEvent", epcs=[a], parent=PALLET, action="ADD")
    v.add(2, "AggregationEvent", epcs=[], parent=PALLET, action="DELETE")
    v.add(3, "AggregationEvent", epcs=[b], parent=PALLET, action="ADD")
    shipped_b = v.add(4, epcs=[PALLET], step="shipping")
    v.add(6, "TransformationEvent", epcs=[], action=None, inputs=[a, b], outputs=[TIN])
    assert shipped_b in names(v.walk(TIN))


def test_a_container_that_is_also_an_input_stops_at_its_unpack() -> None:
    v = View()
    v.add(1, "AggregationEvent", epcs=[TIN], parent=CASE, action="ADD")
    v.add(2, "AggregationEvent", epcs=[], parent=CASE, action="DELETE")
    v.add(3, "TransformationEvent", epcs=[], action=None, inputs=[CASE], outputs=[TIN])
    later = v.add(9, epcs=[CASE], step="departing")
    assert later not in names(v.walk(TIN))


def test_a_busy_containers_past_does_not_crowd_out_the_items_period() -> None:
    v = View()
    for t in range(600):
        v.add(t, epcs=[PALLET], step="transporting")
    v.add(1_000, "AggregationEvent", epcs=[TIN], parent=PALLET, action="ADD")
    shipped = v.add(2_000, epcs=[PALLET], step="shipping")
    answer = v.walk(TIN)
    assert shipped in names(answer) and not answer.truncated and len(answer.steps) == 2


def test_a_container_entered_before_the_item_was_packed_still_carries_it() -> None:
    """The case was on the pallet before the tin went into the case: the tin rides the
    pallet from then on (found with the look-back)."""
    v = View()
    v.add(1, "AggregationEvent", epcs=[CASE], parent=PALLET, action="ADD")
    v.add(2, "AggregationEvent", epcs=[TIN], parent=CASE, action="ADD")
    shipped = v.add(3, epcs=[PALLET], step="shipping")
    assert shipped in names(v.walk(TIN))


def test_a_history_of_exactly_the_limit_is_complete() -> None:
    v = View()
    for t in range(5):
        v.add(t, epcs=[TIN])
    answer = v.walk(TIN, ProvenanceLimits(events_max=5))
    assert len(answer.steps) == 5 and not answer.truncated
