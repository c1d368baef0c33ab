"""Regression (found by review, now fixed): due() walked WALK_BUCKETS_MAX + 1 buckets."""

from services.ledger.core.deadlines import BUCKET_MS, WALK_BUCKETS_MAX
from tests.ledger.core.test_deadlines import T0, Clock, ids


def test_long_pause_walk_is_bounded_by_walk_buckets_max():
    clock = Clock()
    start = T0 // BUCKET_MS
    clock.schedule(T0, T0 + 1, "first")
    edge = (start + WALK_BUCKETS_MAX) * BUCKET_MS  # first ms of the 1441st bucket
    clock.schedule(T0, edge, "edge")
    now = edge + 10 * BUCKET_MS
    assert ids(clock.due(now)) == ["first"]
    assert clock.cursor() == start + WALK_BUCKETS_MAX
    assert ids(clock.due(now)) == ["edge"]
