"""The trace domain's budgeted queue that batches consumer scans onto the gateway's relay
(services.trace.edge.scans)."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from services.gateway.problems import Problem
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import MempoolRejected
from services.trace.edge.api import TraceApi
from services.trace.edge.scans import ScanLimits, ScanRecorder
from services.trace.edge.settings import TraceSettings
from services.trace.scans import PROOF_VALID, SCANS_PER_BATCH_MAX, Scan, TagCode, tag_code

# --- the anonymous scan budget (services.trace.edge.scans) ----------------------------------


class FakeRelay:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.refuse = False

    def send(self, kind: str, payload: dict[str, Any]) -> None:
        if self.refuse:
            raise MempoolRejected("mempool full", code="mempool_full")
        self.sent.append((kind, payload))


def recorder(relay: FakeRelay | None, clock: list[float], **limits: Any) -> ScanRecorder:
    return ScanRecorder(lambda: relay, ScanLimits(**limits), clock=lambda: clock[0])


def scan(serial: str, country: str = "DE", code: TagCode | None = None) -> Scan:
    return Scan(f"https://id.gs1.org/01/06901234000016/21/{serial}", country, code)


def test_anonymous_scans_beyond_the_bucket_are_not_recorded() -> None:
    relay, clock = FakeRelay(), [0.0]
    scans = recorder(relay, clock, rate_per_s=2.0, burst=3.0)
    assert [scans.offer(scan(str(n)), proven=False) for n in range(5)] == [
        None, None, None, "budget_exhausted", "budget_exhausted"]
    clock[0] = 1.0  # two more tokens a second later
    assert [scans.offer(scan(str(n)), proven=False) for n in range(5, 8)] == [
        None, None, "budget_exhausted"]
    # a fresh tag code is no anonymous scan: it does not draw on the bucket
    assert scans.offer(scan("9", code=TagCode(1, b"\1" * 64)), proven=True) is None
    assert scans.counters.over_budget == 3 and scans.queued == 6


def test_one_batch_per_flush_identical_scans_merged_and_the_queue_bounded() -> None:
    relay, clock = FakeRelay(), [0.0]
    scans = recorder(relay, clock, burst=1_000.0, batch_max=4, queue_max=6)
    for n in range(4):
        assert scans.offer(scan(str(n)), proven=False) is None
        assert scans.offer(scan(str(n)), proven=False) is None  # merged, not queued
    assert scans.offer(scan("0", "PL"), proven=False) is None  # another country: a scan
    assert scans.offer(scan("4"), proven=False) is None
    assert scans.offer(scan("5"), proven=False) == "queue_full"
    assert scans.counters.merged == 4 and scans.queued == 6
    assert scans.flush() == 4
    assert len(relay.sent) == 1
    kind, payload = relay.sent[0]
    assert kind == "trace.record_scans"
    assert [s["epc"][-1] for s in payload["scans"]] == ["0", "1", "2", "3"]  # oldest first
    assert scans.flush() == 2 and len(relay.sent) == 2
    assert scans.flush() == 0 and len(relay.sent) == 2  # nothing queued: no transaction


def test_a_refused_batch_is_dropped_and_counted() -> None:
    relay, clock = FakeRelay(), [0.0]
    scans = recorder(relay, clock)
    scans.offer(scan("1"), proven=False)
    relay.refuse = True
    assert scans.flush() == 1
    assert scans.counters.dropped == 1 and scans.queued == 0 and not relay.sent


def test_a_queued_code_is_remembered_until_its_batch_commits() -> None:
    scans = recorder(FakeRelay(), [0.0])
    assert scans.counter_seen(scan("1").epc) == 0
    scans.offer(scan("1", code=TagCode(17, b"\1" * 64)), proven=True)
    scans.offer(scan("1", code=TagCode(12, b"\2" * 64)), proven=True)
    assert scans.counter_seen(scan("1").epc) == 17


@pytest.mark.asyncio
async def test_the_flusher_sends_at_most_one_transaction_per_interval() -> None:
    class TimedRelay(FakeRelay):
        def __init__(self) -> None:
            super().__init__()
            self.at: list[float] = []

        def send(self, kind: str, payload: dict[str, Any]) -> None:
            self.at.append(asyncio.get_running_loop().time())
            super().send(kind, payload)

    relay = TimedRelay()
    scans = ScanRecorder(lambda: relay, ScanLimits(burst=1_000.0, batch_max=10,
                                                    batch_interval_ms=100))
    for n in range(25):  # started lazily by the first scan, on the running loop
        scans.offer(scan(str(n)), proven=False)
    assert not relay.sent
    for _ in range(100):
        if not scans.queued:
            break
        await asyncio.sleep(0.02)
    await scans.close()
    assert scans.offer(scan("late"), proven=False) == "closing"
    assert [len(p["scans"]) for _, p in relay.sent] == [10, 10, 5]
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(relay.at)), relay.at


def test_scan_batches_fit_the_contract() -> None:
    with pytest.raises(ValidationError):
        TraceSettings(scan_batch_max=SCANS_PER_BATCH_MAX + 1)
    with pytest.raises(ValueError):
        ScanLimits(batch_max=SCANS_PER_BATCH_MAX + 1)
    options = TraceSettings(scan_rate_per_s=5, scan_burst=7, scan_batch_max=9,
                             scan_batch_interval_ms=300, scan_queue_max=11)
    assert ScanLimits.from_settings(options) == ScanLimits(
        rate_per_s=5, burst=7, batch_max=9, batch_interval_ms=300, queue_max=11)


# --- the per-item budget of valid tag codes ----------------------------------------------


def tapped(serial: str, counter: int) -> Scan:
    return scan(serial, code=TagCode(counter, bytes([counter % 256]) * 64))


def test_one_items_valid_codes_draw_on_a_bucket_of_its_own() -> None:
    relay, clock = FakeRelay(), [0.0]
    scans = recorder(relay, clock, item_rate_per_s=0.5, item_burst=3.0)
    assert [scans.offer(tapped("1", n), proven=True) for n in (1, 2, 3)] == [None] * 3
    with pytest.raises(Problem) as refused:
        scans.offer(tapped("1", 4), proven=True)
    problem = refused.value
    assert (problem.status, problem.code, problem.extra["retry_after_s"]) == (
        429, "item_scan_rate", 2)
    answer = problem.response("/v1/trace/verify")
    assert answer.content_type == "application/problem+json"
    assert answer.headers["Retry-After"] == "2"
    assert scans.counter_seen(tapped("1", 4).epc) == 3  # the refused code stays unused
    assert scans.offer(tapped("2", 1), proven=True) is None  # another item: its own bucket
    assert scans.offer(scan("3"), proven=False) is None  # anonymous scans: their own budget
    clock[0] = 2.0  # one token back
    assert scans.offer(tapped("1", 4), proven=True) is None
    assert scans.counters.item_rate_limited == 1 and scans.queued == 6


def test_the_item_buckets_are_bounded() -> None:
    clock = [0.0]
    scans = recorder(FakeRelay(), clock, item_rate_per_s=0.001, item_burst=1.0, items_max=2)
    assert scans.offer(tapped("1", 1), proven=True) is None
    with pytest.raises(Problem):
        scans.offer(tapped("1", 2), proven=True)
    for serial in ("2", "3"):  # two other items push item 1's bucket out: forgotten ...
        assert scans.offer(tapped(serial, 1), proven=True) is None
    assert scans.offer(tapped("1", 2), proven=True) is None  # ... so it starts full again


def test_one_tags_harvested_codes_cannot_fill_the_shared_queue() -> None:
    """Found in review: 5,000 codes of one tag, tapped offline and sent at once, filled
    the queue; every other consumer's scan was then refused as queue_full."""
    link = "https://id.gs1.org/01/06901234000016/21/777"
    key = PrivateKey.derive("test/harvested-tag")
    item = {"epc": link, "state": "sold", "brand_owner": "maker",
            "tag_key": key.public.hex(), "tag_counter": 0, "clone_suspected": False}
    gateway = SimpleNamespace(relay=FakeRelay(), chain=SimpleNamespace(view=lambda: {}))
    api = TraceApi(gateway, scan_limits=ScanLimits(queue_max=100, item_burst=10.0))
    refused = 0
    for counter in range(1, 201):
        harvested = Scan(link, "DE", tag_code(key, link, counter))
        judgement = api._judge(item, harvested)
        assert judgement.proof == PROOF_VALID
        try:
            assert api._record(harvested, judgement, True) is None
        except Problem as exc:
            assert exc.status == 429
            refused += 1
    assert refused == 190 and api.scans.queued == 10
    other = Scan("https://id.gs1.org/01/06901234000016/21/778", "FR")
    assert api._record(other, api._judge(None, other), True) is None  # still queued


def test_the_item_budget_comes_from_the_settings() -> None:
    options = TraceSettings(scan_item_rate_per_s=0.2, scan_item_burst=4, scan_items_max=50)
    limits = ScanLimits.from_settings(options)
    assert (limits.item_rate_per_s, limits.item_burst, limits.items_max) == (0.2, 4, 50)
    with pytest.raises(ValueError):
        ScanLimits(items_max=0)
