"""Rollups as the engine's read hint (query/promql/rollup_hint.py, `Querier.rollups`): on every
backend and storage engine, `sum|count|avg|min|max_over_time` answers from rollups exactly what it
answers from samples (the same query evaluated before the rollup job ran), and the hint is not
taken where it could differ: windows off the rollup grid, data newer than the rollups, late
samples not rolled up yet, functions rollups cannot answer."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rtpm.errors import QueryError, TooManySamples
from rtpm.jobs.maintenance import enforce_retention, rollup
from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch
from rtpm.query.promql.engine import Engine, EngineOptions, Result
from rtpm.query.promql.values import Vector
from rtpm.query.seed_promql import Aggregation, buckets
from rtpm.settings import MaintenanceSettings
from rtpm.storage.base import Storage

HOUR = 3_600_000


@pytest.fixture
def engine() -> str:
    """The rows engine only: the hint reads rollups and the late-write marks, the same on both."""
    return "rows"


def _data(start: int) -> WriteBatch:
    rng = np.random.default_rng(3)
    b = WriteBatch("t")
    for i in range(6):
        labels = make_labels("req_total", {"host": f"h{i}", "dc": f"dc{i % 2}"})
        value = 0.0
        for ts in range(start + 1234 * i, start + 24 * HOUR, 20_000 + 1000 * i):
            if i == 5 and start + 5 * HOUR <= ts < start + 7 * HOUR:
                continue  # a gap
            value = 0.0 if rng.random() < 0.002 else value + float(rng.integers(0, 10))
            b.add(labels, ts, value)
    return b


def _rows(result: Result) -> dict[tuple[tuple[str, str], ...], tuple[list[int], list[float]]]:
    v = result.value
    assert isinstance(v, Vector)
    out = {}
    for i, lb in enumerate(v.labels):
        p = v.present[i]
        out[lb] = (result.steps[p].tolist(), v.values[i][p].tolist())
    return out


def assert_same(got: Result, want: Result, what: object) -> None:
    g, w = _rows(got), _rows(want)
    assert sorted(g) == sorted(w), what
    for k in w:
        assert g[k][0] == w[k][0], (what, k)
        np.testing.assert_allclose(g[k][1], w[k][1], rtol=1e-9, err_msg=str((what, k)))


QUERIES = [
    *(f"{fn}(req_total[{r}])" for fn in ("sum_over_time", "count_over_time", "avg_over_time") for r in ("1h", "3h")),
    "max_over_time(req_total[5m])",
    "min by (dc) (min_over_time(req_total[2h] offset 1h))",
    "sum by (dc) (sum_over_time(req_total[1h])) / sum by (dc) (count_over_time(req_total[1h]))",
]


async def test_rollups_answer_what_the_samples_answer(storage: Storage) -> None:
    now = int(time.time() * 1000)
    start = now - now % HOUR - 26 * HOUR
    await storage.write([_data(start)])
    eng = Engine(storage)
    # (query, first step, last step, step): windows on the grid; one range reaching past the rollups
    cases = [(q, start + 3 * HOUR - 1, start + 20 * HOUR - 1, HOUR) for q in QUERIES]
    cases += [("max_over_time(req_total[5m])", start + 5 * 60_000 - 1, start + 3 * HOUR - 1, 300_000)]
    cases += [("sum_over_time(req_total[1h])", start + HOUR - 1, now + HOUR - 1, HOUR)]  # into the head
    seed = [
        buckets("req_total", {}, agg, group_by, start_ms=start, end_ms=start + 20 * HOUR + 1_234_567, step_ms=step)
        for agg in (Aggregation.AVG, Aggregation.SUM, Aggregation.MIN, Aggregation.MAX, Aggregation.COUNT)
        for group_by in (None, ["dc"], [])
        for step in (300_000, HOUR, 3 * HOUR)
    ]

    async def answers() -> list[Result]:
        out = [await eng.range("t", q, lo, hi, step) for q, lo, hi, step in cases]
        for ev in seed:
            out.append(
                await eng.range(
                    "t", ev.promql, ev.start_ms, ev.end_ms, ev.step_ms, samples_until_ms=ev.samples_until_ms
                )
            )
        out.append(await eng.instant("t", "avg_over_time(req_total[1d])", start + 25 * HOUR - 1))
        return out

    before = await answers()
    assert all(r.rollup_rows == 0 for r in before)  # nothing rolled up yet
    await rollup(storage.maintenance, now_ms=now, opts=MaintenanceSettings())
    after = await answers()
    labels = [c[0] for c in cases] + [ev.promql for ev in seed] + ["instant"]
    for what, got, want in zip(labels, after, before, strict=True):
        assert_same(got, want, what)
        assert got.rollup_rows > 0, what  # from rollups, and fewer rows than samples
        assert got.samples_loaded < want.samples_loaded, what
    # the limits hold for rollup rows as for samples
    small = Engine(storage, EngineOptions(max_series=5))
    with pytest.raises(QueryError, match="max_query_series"):
        await small.range("t", "sum_over_time(req_total[1h])", start + 3 * HOUR - 1, start + 20 * HOUR - 1, HOUR)
    with pytest.raises(TooManySamples):
        await Engine(storage, EngineOptions(max_samples=50)).instant(
            "t", "count_over_time(req_total[1d])", start + 25 * HOUR - 1
        )


async def test_the_hint_is_not_taken_where_rollups_could_differ(storage: Storage) -> None:
    now = int(time.time() * 1000)
    start = now - now % HOUR - 10 * HOUR
    b = WriteBatch("t")
    for ts in range(start, start + 5 * HOUR, 60_000):  # a sample on every minute edge
        b.add(make_labels("req_total", {"host": "a"}), ts, float(ts % 7))
    await storage.write([b])
    eng = Engine(storage)
    await rollup(storage.maintenance, now_ms=now, opts=MaintenanceSettings())
    aligned = await eng.range("t", "max_over_time(req_total[1h])", start + HOUR - 1, start + 5 * HOUR - 1, HOUR)
    assert aligned.rollup_rows > 0
    # windows (t - 1h, t] at t on the hour hold the sample at t and not the one at t - 1h: no hint
    on_hour = await eng.range("t", "count_over_time(req_total[1h])", start + HOUR, start + 5 * HOUR, HOUR)
    assert on_hour.rollup_rows == 0
    assert _rows(on_hour)[(("host", "a"),)][1][:4] == [60.0, 60.0, 60.0, 60.0]
    assert (
        await eng.range("t", "max_over_time(req_total[90s])", start + HOUR - 1, start + 2 * HOUR, HOUR)
    ).rollup_rows == 0
    assert (
        await eng.range("t", "quantile_over_time(0.5, req_total[1h])", start + HOUR - 1, start + 2 * HOUR, HOUR)
    ).rollup_rows == 0
    assert (
        await eng.range("t", "max_over_time(req_total[1h:1m])", start + HOUR - 1, start + 2 * HOUR, HOUR)
    ).rollup_rows == 0
    # data newer than the rollups: a window on the grid past them comes from the samples
    fresh = WriteBatch("t")
    fresh.add(make_labels("req_total", {"host": "a"}), now - now % 60_000 + 1, 5.0)
    await storage.write([fresh])
    newest = await eng.instant("t", "count_over_time(req_total[1m])", now - now % 60_000 + 60_000 - 1)
    assert newest.rollup_rows == 0 and _rows(newest)[(("host", "a"),)][1] == [1.0]
    # a late sample, not rolled up yet: from the samples, and it is seen
    late = WriteBatch("t")
    late.add(make_labels("req_total", {"host": "a"}), start + 30_001, 1000.0)
    await storage.write([late])
    got = await eng.range("t", "max_over_time(req_total[1h])", start + HOUR - 1, start + 5 * HOUR - 1, HOUR)
    assert got.rollup_rows == 0 and _rows(got)[(("host", "a"),)][1][0] == 1000.0
    await rollup(storage.maintenance, now_ms=now, opts=MaintenanceSettings())
    again = await eng.range("t", "max_over_time(req_total[1h])", start + HOUR - 1, start + 5 * HOUR - 1, HOUR)
    assert again.rollup_rows > 0
    assert_same(again, got, "rolled up again")


async def test_no_hint_where_retention_deleted_rollups_that_samples_still_have(storage: Storage) -> None:
    now = int(time.time() * 1000)
    start = now - now % HOUR - 10 * HOUR
    b = WriteBatch("t")
    for ts in range(start, start + 5 * HOUR, 60_000):
        b.add(make_labels("req_total", {"host": "a"}), ts, float(ts % 7))
    await storage.write([b])
    eng = Engine(storage)
    query = ("max_over_time(req_total[1h])", start + HOUR - 1, start + 5 * HOUR - 1, HOUR)
    raw = await eng.range("t", *query)
    opts = MaintenanceSettings()
    await rollup(storage.maintenance, now_ms=now, opts=opts)
    assert (await eng.range("t", *query)).rollup_rows > 0
    # 1h rollups kept for 8 hours, samples for 15 days: the first hours are only in the samples
    short = opts.model_copy(update={"retention_1h_days": 8 / 24, "retention_1d_days": 8 / 24})
    await enforce_retention(storage.maintenance, now_ms=now, opts=short)
    after = await eng.range("t", *query)
    assert after.rollup_rows == 0
    assert_same(after, raw, "after rollup retention")
    later = await eng.range("t", "max_over_time(req_total[1h])", start + 4 * HOUR - 1, start + 5 * HOUR - 1, HOUR)
    assert later.rollup_rows > 0  # rollups still kept there
