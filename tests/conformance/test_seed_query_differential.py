"""The seed's JSON query, old and new: the bucketizer that answered `POST /api/v1/metrics/query`
until issue 17 (`query/seed.py`, 154 lines, removed) against its translation to PromQL evaluated by
the engine (`query/seed_promql.py`), on both backends and both storage engines.

The old implementation is kept below as the reference (`old_bucketize`, its code unchanged but
for names), so this test keeps comparing after the removal. The data set has several series with
different intervals, a series without the group label, gaps, a staleness marker, counter resets,
samples on bucket edges, before the start and after the end.

What the comparison asserts, per aggregation (see the table in `query/seed_promql.py`):
- sum, min, max, count, avg, per series and per group, and the percentiles per series: equal to
  the old answers (float tolerance).
- avg: the two seed endpoints meant different things (`POST /api/v1/metrics/query`: the mean of
  the bucket's samples, pooled over a group's series; `GET /api/v1/metrics/query/range`: PromQL's
  `avg by (g) (s)`, the mean of each series' latest value at every step). The POST meaning is
  kept, for both endpoints: asserted equal to the old POST answer, and shown here to differ from
  the mean of the series' means on this data.
- percentiles per group: the old answer pooled the group's samples, which PromQL cannot express;
  the new one is the quantile across the group's series of each series' `quantile_over_time`
  (asserted against a reference computed here).
- rate: the old answer was the increase between the bucket's first and last sample divided by
  the time between them; the new one is Prometheus' `rate(s[step])` (extrapolated to the bucket's
  edges). Asserted equal to the old answer where a series is sampled regularly up to both edges of
  the bucket (there the two meanings agree), and to a reference of Prometheus' rate everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.model.labels import Labels, Matcher, make_labels
from rtpm.model.samples import STALE_NAN, Series, WriteBatch
from rtpm.query.promql.engine import Engine
from rtpm.query.seed_promql import (
    QUANTILES,
    Aggregation,
    BucketedSeries,
    buckets,
    series_of,
    sort_series,
)
from rtpm.settings import Settings
from rtpm.storage.base import Storage
from tests._auth import grant

HOUR = 3_600_000
MATCH = [Matcher.equal("__name__", "req")]

# ---- the old bucketizer (query/seed.py before issue 17), kept as the reference ---------------


def old_bucketize(
    series: Sequence[Series], *, start_ms: int, step_ms: int, aggregation: Aggregation, group_by: Sequence[str] | None
) -> list[BucketedSeries]:
    """Aggregate samples in buckets `[start + k*step, start + (k+1)*step)`, each reported at its
    start. Without `group_by` every series is its own group; with it, series sharing those label
    values are pooled. Stale markers (NaN) are ignored."""
    groups: dict[Labels, list[Series]] = {}
    for s in series:
        if group_by is None:
            key = s.labels
        else:
            d = dict(s.labels)
            key = tuple((k, d.get(k, "")) for k in group_by)
        groups.setdefault(key, []).append(s)
    out = []
    for key, members in sorted(groups.items()):
        ts, vals = _old_aggregate(members, start_ms, step_ms, aggregation)
        if len(ts):
            labels = {k: v for k, v in key if k != "__name__"}
            if group_by is not None:
                labels = {k: v for k, v in labels.items() if v != ""}
            out.append(BucketedSeries(labels, ts, vals))
    return out


def _old_aggregate(members: list[Series], start_ms: int, step_ms: int, agg: Aggregation) -> tuple[np.ndarray, ...]:
    if agg is Aggregation.RATE:
        return _old_rate(members, start_ms, step_ms)
    ts = np.concatenate([m.ts_ms for m in members])
    vals = np.concatenate([m.values for m in members])
    keep = ~np.isnan(vals)
    ts, vals = ts[keep], vals[keep]
    if not len(ts):
        return ts, vals
    idx = (ts - start_ms) // step_ms
    order = np.argsort(idx, kind="stable")
    idx, vals = idx[order], vals[order]
    bucket_ids, starts = np.unique(idx, return_index=True)
    sizes = np.diff(np.append(starts, len(vals)))
    if agg is Aggregation.SUM:
        res = np.add.reduceat(vals, starts)
    elif agg is Aggregation.AVG:
        res = np.add.reduceat(vals, starts) / sizes
    elif agg is Aggregation.MIN:
        res = np.minimum.reduceat(vals, starts)
    elif agg is Aggregation.MAX:
        res = np.maximum.reduceat(vals, starts)
    elif agg is Aggregation.COUNT:
        res = sizes.astype(np.float64)
    else:
        q = QUANTILES[agg] * 100
        res = np.array([np.percentile(part, q) for part in np.split(vals, starts[1:])])
    return start_ms + bucket_ids * step_ms, res


def _old_rate(members: list[Series], start_ms: int, step_ms: int) -> tuple[np.ndarray, ...]:
    """Per-second increase of a counter within each bucket (resets counted as restarts from 0),
    summed over the group's series. Buckets with fewer than two samples of a series give nothing."""
    per_bucket: dict[int, float] = {}
    for m in members:
        keep = ~np.isnan(m.values)
        ts, vals = m.ts_ms[keep], m.values[keep]
        idx = (ts - start_ms) // step_ms
        bucket_ids, starts = np.unique(idx, return_index=True)
        ends = np.append(starts[1:], len(ts))
        for b, lo, hi in zip(bucket_ids.tolist(), starts.tolist(), ends.tolist(), strict=True):
            if hi - lo < 2:
                continue
            v = vals[lo:hi]
            deltas = np.diff(v)
            increase = float(np.where(deltas < 0, v[1:], deltas).sum())
            per_bucket[b] = per_bucket.get(b, 0.0) + increase / ((int(ts[hi - 1]) - int(ts[lo])) / 1000.0)
    keys = sorted(per_bucket)
    return np.array([start_ms + k * step_ms for k in keys], dtype=np.int64), np.array([per_bucket[k] for k in keys])


# ---- references for the meanings that changed ---------------------------------------------------


def prometheus_rate(ts: np.ndarray, vs: np.ndarray, window_end: int, range_ms: int, until: int) -> float | None:
    """Prometheus 3's extrapolated rate of the samples in (window_end - range, window_end] read up
    to `until`."""
    keep = (ts > window_end - range_ms) & (ts <= min(window_end, until)) & ~np.isnan(vs)
    t, v = ts[keep], vs[keep]
    if len(t) < 2:
        return None
    d = np.diff(v)
    raw = float(np.where(d < 0, v[1:], d).sum())
    sampled = (int(t[-1]) - int(t[0])) / 1000
    avg = sampled / (len(t) - 1)
    to_start = (int(t[0]) - (window_end - range_ms)) / 1000
    to_end = (window_end - int(t[-1])) / 1000
    if to_start >= 1.1 * avg:
        to_start = avg / 2
    if raw > 0 and v[0] >= 0:
        to_start = min(to_start, sampled * float(v[0]) / raw)
    if to_end >= 1.1 * avg:
        to_end = avg / 2
    return raw * (sampled + to_start + to_end) / sampled / (range_ms / 1000)


def group_quantile(
    series: Sequence[Series], *, start_ms: int, step_ms: int, q: float, group_by: Sequence[str]
) -> list[BucketedSeries]:
    """The new grouped percentile: per bucket, the q-quantile across the group's series of each
    series' q-quantile of its samples (numpy's linear interpolation is PromQL's)."""
    per_series = old_bucketize(series, start_ms=start_ms, step_ms=step_ms, aggregation=_PCT[q], group_by=None)
    groups: dict[tuple[str, ...], dict[int, list[float]]] = {}
    for s in per_series:
        key = tuple(s.labels.get(k, "") for k in group_by)
        for t, v in zip(s.ts_ms.tolist(), s.values.tolist(), strict=True):
            groups.setdefault(key, {}).setdefault(t, []).append(v)
    out = []
    for key, by_t in sorted(groups.items()):
        ts = sorted(by_t)
        labels = {k: v for k, v in zip(group_by, key, strict=True) if v != ""}
        out.append(
            BucketedSeries(labels, np.array(ts, dtype=np.int64), np.array([np.quantile(by_t[t], q) for t in ts]))
        )
    return out


_PCT = {v: k for k, v in QUANTILES.items()}

# ---- the data set and the comparison ----------------------------------------------------------


def data_set(base: int) -> tuple[WriteBatch, set[str]]:
    """Six series of `req` (a counter with resets, a gauge-like wobble in the others), and which
    hosts are sampled regularly (every 15 s from before the start to after the end, no gaps)."""
    rng = np.random.default_rng(17)
    b = WriteBatch("t")
    regular = {"h0", "h1"}
    plans = {
        # host: (labels, first sample, interval, gaps [from, to) relative to base)
        "h0": ({"dc": "dc0"}, -HOUR, 15_000, []),
        "h1": ({"dc": "dc1"}, -HOUR, 15_000, []),
        "h2": ({"dc": "dc0"}, 1234, 20_000, [(HOUR + 600_000, 2 * HOUR + 60_000)]),
        "h3": ({"dc": "dc1"}, 7_000, 45_000, [(3 * HOUR, 3 * HOUR + 1_800_000)]),
        "h4": ({}, 0, 60_000, [(0, 30 * 60_000)]),  # no dc label: its own group
        "h5": ({"dc": "dc0"}, 59_999, 300_000, []),  # sparse: one sample in many buckets
    }
    for host, (extra, first, interval, gaps) in plans.items():
        labels = make_labels("req", {"host": host, **extra})
        value = 100.0 * (int(host[1]) + 1)
        for ts in range(base + first, base + 5 * HOUR, interval):
            if any(lo <= ts - base < hi for lo, hi in gaps):
                continue
            if host in ("h2", "h3") and rng.random() < 0.01:
                value = float(rng.integers(0, 5))  # a counter reset
            value += float(rng.integers(0, 20))
            b.add(labels, ts, value)
    b.add(make_labels("req", {"host": "h2", "dc": "dc0"}), base + 2 * HOUR + 60_001, STALE_NAN)  # after the gap
    return b, regular


async def new_answer(
    storage: Storage, agg: Aggregation, group_by: list[str] | None, start: int, end: int, step: int
) -> list[BucketedSeries]:
    ev = buckets("req", {}, agg, group_by, start_ms=start, end_ms=end, step_ms=step)
    result = await Engine(storage).range(
        "t", ev.promql, ev.start_ms, ev.end_ms, ev.step_ms, samples_until_ms=ev.samples_until_ms
    )
    return sort_series(series_of(result.value, result.steps, ev), group_by)


def assert_same(got: list[BucketedSeries], want: list[BucketedSeries], what: object) -> None:
    assert [g.labels for g in got] == [w.labels for w in want], what
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.ts_ms, w.ts_ms, err_msg=str(what))
        np.testing.assert_allclose(g.values, w.values, rtol=1e-9, atol=1e-12, err_msg=str(what))


GROUPINGS: list[list[str] | None] = [None, ["dc"], [], ["dc", "host"]]
KEPT = [Aggregation.SUM, Aggregation.MIN, Aggregation.MAX, Aggregation.COUNT, Aggregation.AVG]


@pytest.fixture
async def seeded(storage: Storage) -> tuple[Storage, int, set[str]]:
    now = int(time.time() * 1000)
    base = now - now % HOUR - 6 * HOUR
    batch, regular = data_set(base)
    await storage.write([batch])
    return storage, base, regular


# (start offset from base, end offset, step): aligned and not, partial last bucket, past the data
RANGES = [
    (0, 4 * HOUR, 300_000),
    (17_000, 4 * HOUR + 1_234, HOUR),
    (-HOUR + 5_000, 3 * HOUR, 420_000),
    (2 * HOUR, 2 * HOUR + 30 * 60_000, 61_000),
    (4 * HOUR, 6 * HOUR, 900_000),
]


async def test_kept_aggregations_answer_as_the_old_bucketizer(seeded: tuple[Storage, int, set[str]]) -> None:
    storage, base, _ = seeded
    for lo, hi, step in RANGES:
        start, end = base + lo, base + hi
        found = await storage.querier("t", start, end).select(MATCH)
        for agg in [*KEPT, *QUANTILES]:
            for group_by in GROUPINGS if agg in KEPT else [None]:
                want = old_bucketize(found, start_ms=start, step_ms=step, aggregation=agg, group_by=group_by)
                got = await new_answer(storage, agg, group_by, start, end, step)
                assert_same(got, want, (agg, group_by, lo, hi, step))
                assert got or hi > 5 * HOUR  # every range but the one past the data has answers


async def test_avg_keeps_the_pooled_mean_not_the_mean_of_means(seeded: tuple[Storage, int, set[str]]) -> None:
    storage, base, _ = seeded
    start, end, step = base, base + 4 * HOUR, HOUR
    found = await storage.querier("t", start, end).select(MATCH)
    got = await new_answer(storage, Aggregation.AVG, ["dc"], start, end, step)
    assert_same(
        got, old_bucketize(found, start_ms=start, step_ms=step, aggregation=Aggregation.AVG, group_by=["dc"]), "avg"
    )
    per_series = old_bucketize(found, start_ms=start, step_ms=step, aggregation=Aggregation.AVG, group_by=None)
    dc0_means = [s.values[0] for s in per_series if s.labels.get("dc") == "dc0" and s.ts_ms[0] == start]
    dc0 = next(g for g in got if g.labels == {"dc": "dc0"})
    assert len(dc0_means) > 1 and not np.isclose(dc0.values[0], np.mean(dc0_means))


async def test_grouped_percentiles_are_quantiles_of_the_series_quantiles(
    seeded: tuple[Storage, int, set[str]],
) -> None:
    storage, base, _ = seeded
    for lo, hi, step in RANGES[:3]:
        start, end = base + lo, base + hi
        found = await storage.querier("t", start, end).select(MATCH)
        for agg, q in QUANTILES.items():
            for group_by in (["dc"], []):
                want = group_quantile(found, start_ms=start, step_ms=step, q=q, group_by=group_by)
                got = await new_answer(storage, agg, group_by, start, end, step)
                assert_same(got, want, (agg, group_by, lo, step))


async def test_rate_is_prometheus_rate_and_the_old_rate_where_sampling_is_regular(
    seeded: tuple[Storage, int, set[str]],
) -> None:
    storage, base, regular = seeded
    for lo, hi, step in RANGES:
        start, end = base + lo, base + hi
        found = await storage.querier("t", start, end).select(MATCH)
        got = {
            tuple(sorted(s.labels.items())): s
            for s in await new_answer(storage, Aggregation.RATE, None, start, end, step)
        }
        old = {
            tuple(sorted(s.labels.items())): s
            for s in old_bucketize(found, start_ms=start, step_ms=step, aggregation=Aggregation.RATE, group_by=None)
        }
        for s in found:
            key = tuple((k, v) for k, v in s.labels if k != "__name__")
            want = []
            for k in range((end - start) // step + 1):
                r = prometheus_rate(s.ts_ms, s.values, start + (k + 1) * step - 1, step, end)
                if r is not None:
                    want.append((start + k * step, r))
            new = got.get(key)
            assert [t for t, _ in want] == (new.ts_ms.tolist() if new else []), key
            if new is None:
                continue
            np.testing.assert_allclose(new.values, [r for _, r in want], rtol=1e-9)
            full = new.ts_ms + step - 1 <= end  # whole buckets (the last one may stop at end)
            if dict(key)["host"] in regular:
                # regular samples up to both edges of every whole bucket: the old and new meanings agree
                o = old[key]
                np.testing.assert_array_equal(o.ts_ms, new.ts_ms)
                np.testing.assert_allclose(new.values[full], o.values[full], rtol=1e-9)
        grouped = await new_answer(storage, Aggregation.RATE, ["dc"], start, end, step)
        for g in grouped:
            members = [got[k] for k in got if dict(k).get("dc", "") == g.labels.get("dc", "")]
            totals: dict[int, float] = {}
            for m in members:
                for t, v in zip(m.ts_ms.tolist(), m.values.tolist(), strict=True):
                    totals[t] = totals.get(t, 0.0) + v
            np.testing.assert_array_equal(g.ts_ms, sorted(totals))
            np.testing.assert_allclose(g.values, [totals[t] for t in sorted(totals)], rtol=1e-9)


def test_both_seed_endpoints_answer_the_same_buckets(settings_factory: Callable[..., Settings]) -> None:
    """`POST /api/v1/metrics/query` and `GET /api/v1/metrics/query/range` with `metric_name` give
    each aggregation one meaning: the same buckets, timestamps and values."""
    now = int(time.time() * 1000)
    base = now - now % HOUR - 6 * HOUR
    batch, _ = data_set(base)
    with TestClient(create_app(settings_factory()), raise_server_exceptions=False) as c:
        grant(c)
        services = c.app.state.services  # type: ignore[attr-defined]
        batch.tenant = services.settings.default_tenant
        assert c.portal is not None
        c.portal.call(services.storage.write, [batch])
        start, end = (base + 17_000) / 1000, (base + 3 * HOUR + 1234) / 1000
        for agg in Aggregation:
            for group_by in (None, ["dc"], []):
                body: dict[str, Any] = {"metric_name": "req", "start_time": start, "end_time": end, "step": "15m"}
                body |= {"aggregation": agg.value} | ({} if group_by is None else {"group_by": group_by})
                posted = c.post("/api/v1/metrics/query", json=body)
                params = {k: v for k, v in body.items() if k != "group_by"}
                if group_by is not None:
                    params["group_by"] = ",".join(group_by)
                ranged = c.get("/api/v1/metrics/query/range", params=params)
                assert posted.status_code == ranged.status_code == 200, (posted.text, ranged.text)
                want = [(s["labels"], s["data_points"]) for s in posted.json()]
                got = [(s["labels"], s["data_points"]) for s in ranged.json()["series"]]
                assert got == want and want, (agg, group_by)
