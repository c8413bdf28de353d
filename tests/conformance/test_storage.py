"""One conformance suite for every Storage backend (the `storage` fixture is parametrized)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from rtpm.model.labels import Matcher, MatchType, make_labels
from rtpm.model.samples import STALE_NAN, MetricMetadata, MetricType, WriteBatch, is_stale_nan
from rtpm.storage.base import Storage

# The start of a chunk window a few hours ahead: storage accepts any time (the API edge limits
# it), and so every sample written here is one the head engine takes (none is back-fill).
T0 = (int(time.time() * 1000) // 7_200_000 + 2) * 7_200_000
NAME = Matcher.equal("__name__", "cpu")


def batch(tenant: str, *samples: tuple[str, dict[str, str], int, float]) -> WriteBatch:
    b = WriteBatch(tenant)
    for name, labels, ts, value in samples:
        b.add(make_labels(name, labels), ts, value)
    return b


async def select(storage: Storage, *matchers: Matcher, tenant: str = "t1", start: int = T0, end: int = T0 + 10**6):
    return await storage.querier(tenant, start, end).select(list(matchers))


async def test_written_samples_come_back_sorted_by_time(storage: Storage) -> None:
    b = batch(
        "t1",
        ("cpu", {"host": "a"}, T0 + 2000, 2.0),
        ("cpu", {"host": "a"}, T0, 0.0),
        ("cpu", {"host": "a"}, T0 + 1000, 1.0),
    )
    assert await storage.write([b]) == 3
    [s] = await select(storage, NAME)
    assert s.labels == make_labels("cpu", {"host": "a"})
    assert s.ts_ms.tolist() == [T0, T0 + 1000, T0 + 2000]
    assert s.values.tolist() == [0.0, 1.0, 2.0]


async def test_duplicate_timestamp_keeps_last_written(storage: Storage) -> None:
    await storage.write([batch("t1", ("cpu", {"host": "a"}, T0, 1.0))])
    await storage.write([batch("t1", ("cpu", {"host": "a"}, T0, 2.0))])
    # duplicates inside one flush too, across two batches of one group commit
    await storage.write(
        [batch("t1", ("cpu", {"host": "a"}, T0 + 5, 3.0)), batch("t1", ("cpu", {"host": "a"}, T0 + 5, 4.0))]
    )
    [s] = await select(storage, NAME)
    assert s.ts_ms.tolist() == [T0, T0 + 5]
    assert s.values.tolist() == [2.0, 4.0]


async def test_retried_batch_does_not_double_count(storage: Storage) -> None:
    b = batch("t1", *[("cpu", {"host": "a"}, T0 + i * 1000, float(i)) for i in range(50)])
    await storage.write([b])
    await storage.write([b])
    [st] = await storage.querier("t1", T0, T0 + 10**6).stats([NAME])
    assert st.count == 50
    assert st.sum == sum(range(50))


async def test_out_of_order_samples_are_accepted(storage: Storage) -> None:
    await storage.write([batch("t1", ("cpu", {"host": "a"}, T0 + 10_000, 10.0))])
    await storage.write([batch("t1", ("cpu", {"host": "a"}, T0 + 5_000, 5.0))])
    [s] = await select(storage, NAME)
    assert s.ts_ms.tolist() == [T0 + 5_000, T0 + 10_000]


async def test_time_range_is_closed_on_both_ends(storage: Storage) -> None:
    await storage.write([batch("t1", *[("cpu", {}, T0 + i * 1000, float(i)) for i in range(10)])])
    [s] = await select(storage, NAME, start=T0 + 2000, end=T0 + 5000)
    assert s.ts_ms.tolist() == [T0 + 2000, T0 + 3000, T0 + 4000, T0 + 5000]
    assert await select(storage, NAME, start=T0 + 20_000, end=T0 + 30_000) == []


@pytest.mark.parametrize(
    ("matcher", "hosts"),
    [
        pytest.param(Matcher("host", MatchType.EQUAL, "a"), ["a"], id="equal"),
        pytest.param(Matcher("host", MatchType.NOT_EQUAL, "a"), ["b", "c", ""], id="not-equal"),
        pytest.param(Matcher("host", MatchType.REGEX, "a|b"), ["a", "b"], id="regex-anchored"),
        pytest.param(Matcher("host", MatchType.REGEX, "b.*"), ["b"], id="regex-prefix"),
        pytest.param(Matcher("host", MatchType.NOT_REGEX, "a|c"), ["b", ""], id="not-regex"),
        pytest.param(Matcher("host", MatchType.EQUAL, ""), [""], id="equal-empty-means-missing"),
        pytest.param(Matcher("host", MatchType.REGEX, ".+"), ["a", "b", "c"], id="regex-nonempty"),
    ],
)
async def test_label_matchers(storage: Storage, matcher: Matcher, hosts: list[str]) -> None:
    samples = [("cpu", {"host": h}, T0, 1.0) for h in ("a", "b", "c")] + [("cpu", {"dc": "x"}, T0, 1.0)]
    await storage.write([batch("t1", *samples)])
    found = await select(storage, NAME, matcher)
    assert sorted(dict(s.labels).get("host", "") for s in found) == sorted(hosts)


async def test_select_without_name_matcher_spans_metrics(storage: Storage) -> None:
    await storage.write(
        [batch("t1", ("cpu", {"job": "x"}, T0, 1.0), ("mem", {"job": "x"}, T0, 2.0), ("mem", {"job": "y"}, T0, 3.0))]
    )
    found = await select(storage, Matcher.equal("job", "x"))
    assert [dict(s.labels)["__name__"] for s in found] == ["cpu", "mem"]
    found = await select(storage, Matcher("__name__", MatchType.REGEX, "c.*|m.*"), Matcher.equal("job", "y"))
    assert [s.values.tolist() for s in found] == [[3.0]]


async def test_tenants_are_kept_apart(storage: Storage) -> None:
    await storage.write([batch("t1", ("cpu", {"host": "a"}, T0, 1.0)), batch("t2", ("cpu", {"host": "a"}, T0, 2.0))])
    await storage.write([batch("t2", ("secret_metric", {"team": "red"}, T0, 7.0))])
    [s1] = await select(storage, NAME, tenant="t1")
    [s2] = await select(storage, NAME, tenant="t2")
    assert (s1.values.tolist(), s2.values.tolist()) == ([1.0], [2.0])
    q1 = storage.querier("t1", T0, T0 + 1000)
    assert await q1.label_values("__name__") == ["cpu"]
    assert "team" not in await q1.label_names()
    assert [m.name for m in await storage.metric_names("t1")] == ["cpu"]
    assert await q1.select([Matcher.equal("__name__", "secret_metric")]) == []
    assert await q1.latest([Matcher.equal("__name__", "secret_metric")]) == []
    assert await q1.stats([Matcher.equal("__name__", "secret_metric")]) == []
    assert await storage.querier("t3", T0, T0 + 1000).series([NAME]) == []


async def test_nan_and_staleness_markers_round_trip(storage: Storage) -> None:
    await storage.write(
        [
            batch(
                "t1",
                ("cpu", {}, T0, 1.0),
                ("cpu", {}, T0 + 1, float("nan")),
                ("cpu", {}, T0 + 2, STALE_NAN),
                ("cpu", {}, T0 + 3, math.inf),
            )
        ]
    )
    [s] = await select(storage, NAME)
    assert s.values[0] == 1.0
    assert math.isnan(s.values[1]) and not is_stale_nan(s.values[1])
    assert is_stale_nan(s.values[2])
    assert s.values[3] == math.inf
    assert s.values.dtype == np.float64 and s.ts_ms.dtype == np.int64


async def test_metadata_is_kept_per_metric_name(storage: Storage) -> None:
    b = batch(
        "t1", ("http_requests_total", {"code": "200"}, T0, 1.0), ("http_requests_total", {"code": "500"}, T0, 1.0)
    )
    b.metadata = [MetricMetadata("http_requests_total", MetricType.COUNTER, "requests", "Requests served")]
    await storage.write([b])
    later = batch("t1")
    later.metadata = [MetricMetadata("http_requests_total", MetricType.COUNTER, "", "Requests served, all")]
    await storage.write([later])
    [md] = await storage.metadata("t1", "http_requests_total")
    assert md == MetricMetadata("http_requests_total", MetricType.COUNTER, "", "Requests served, all")
    [info] = await storage.metric_names("t1")
    assert (info.name, info.type, info.series_count) == ("http_requests_total", MetricType.COUNTER, 2)
    assert await storage.metadata("t2") == []


async def test_series_label_names_and_values_respect_range_and_matchers(storage: Storage) -> None:
    await storage.write(
        [batch("t1", ("cpu", {"host": "a", "dc": "x"}, T0, 1.0), ("cpu", {"host": "b"}, T0 + 60_000, 1.0))]
    )
    q = storage.querier("t1", T0, T0 + 1000)
    assert await q.series([NAME]) == [make_labels("cpu", {"host": "a", "dc": "x"})]
    assert await q.label_names() == ["__name__", "dc", "host"]
    wide = storage.querier("t1", T0, T0 + 100_000)
    assert await wide.label_values("host") == ["a", "b"]
    assert await wide.label_values("host", [Matcher.equal("dc", "x")]) == ["a"]


async def test_latest_and_stats_per_series(storage: Storage) -> None:
    samples = [("cpu", {"host": "a"}, T0 + i * 1000, float(i)) for i in range(5)]
    samples += [("cpu", {"host": "b"}, T0 + 500, 10.0), ("cpu", {"host": "b"}, T0 + 1500, STALE_NAN)]
    await storage.write([batch("t1", *samples)])
    q = storage.querier("t1", T0, T0 + 3000)
    latest = {dict(x.labels)["host"]: (x.ts_ms, x.value) for x in await q.latest([NAME])}
    assert latest["a"] == (T0 + 3000, 3.0)
    assert latest["b"][0] == T0 + 1500
    stats = {dict(x.labels)["host"]: x for x in await q.stats([NAME])}
    a = stats["a"]
    assert (a.count, a.sum, a.min, a.max, a.first_ts_ms, a.last_ts_ms) == (4, 6.0, 0.0, 3.0, T0, T0 + 3000)
    b = stats["b"]  # NaN markers are not values
    assert (b.count, b.sum, b.min, b.max) == (1, 10.0, 10.0, 10.0)


async def test_one_write_commits_all_batches(storage: Storage) -> None:
    batches = [batch("t1", ("cpu", {"n": str(i)}, T0, float(i))) for i in range(20)]
    assert await storage.write(batches) == 20
    assert len(await select(storage, NAME)) == 20


async def test_many_series_in_one_write(storage: Storage) -> None:
    b = batch("t1", *[("cpu", {"host": f"h{i}", "dc": f"d{i % 7}"}, T0 + (i % 13), float(i)) for i in range(3000)])
    assert await storage.write([b]) == 3000
    found = await select(storage, NAME, Matcher.equal("dc", "d3"))
    assert len(found) == len([i for i in range(3000) if i % 7 == 3])


async def test_too_many_samples_is_refused(storage: Storage) -> None:
    from rtpm.errors import TooManySamples

    await storage.write([batch("t1", *[("cpu", {}, T0 + i, float(i)) for i in range(100)])])
    with pytest.raises(TooManySamples):
        await storage.querier("t1", T0, T0 + 1000).select([NAME], max_samples=50)


async def test_migrate_twice_is_a_no_op(storage: Storage) -> None:
    assert await storage.migrate() == []
    await storage.ping()
