"""The latest-value cache fed by committed write batches: the newest sample of each series wins,
whatever order the samples of a batch (or of successive batches) come in."""

from __future__ import annotations

from rtpm.cache.latest import LatestValueCache
from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch


def batch(tenant: str, samples: list[tuple[str, int, float]]) -> WriteBatch:
    b = WriteBatch(tenant)
    for name, ts, value in samples:
        b.add(make_labels(name), ts, value)
    return b


def test_newest_sample_of_each_series_wins_within_and_across_batches() -> None:
    cache = LatestValueCache(100)
    cache.on_commit([batch("t", [("a", 10, 1.0), ("b", 5, 2.0), ("a", 30, 3.0), ("a", 20, 4.0), ("a", 30, 5.0)])])
    a, b = make_labels("a"), make_labels("b")
    assert (cache.get("t", a).ts_ms, cache.get("t", a).value) == (30, 5.0)  # type: ignore[union-attr]
    assert (cache.get("t", b).ts_ms, cache.get("t", b).value) == (5, 2.0)  # type: ignore[union-attr]
    cache.on_commit([batch("t", [("a", 25, 6.0), ("b", 6, 7.0)]), batch("u", [("a", 1, 8.0)])])
    assert cache.get("t", a).value == 5.0  # type: ignore[union-attr]
    assert cache.get("t", b).value == 7.0  # type: ignore[union-attr]
    assert cache.get("u", a).value == 8.0  # type: ignore[union-attr]
    assert cache.get("u", b) is None
    assert len(cache) == 3


def test_the_cache_is_dropped_when_it_outgrows_its_bound() -> None:
    cache = LatestValueCache(2)
    cache.on_commit([batch("t", [("a", 1, 1.0), ("b", 1, 1.0)])])
    assert len(cache) == 2
    cache.on_commit([batch("t", [("c", 1, 1.0)])])
    assert len(cache) == 0 and cache.get("t", make_labels("a")) is None
