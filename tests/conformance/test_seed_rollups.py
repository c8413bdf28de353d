"""The seed's JSON query answers from rollups exactly what it answers from samples, on every
backend: every aggregation that rollups can carry, per series and grouped, with a raw tail."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rtpm.jobs.maintenance import rollup
from rtpm.model.labels import Matcher, make_labels
from rtpm.model.samples import WriteBatch
from rtpm.query.rollup_reads import seed_query
from rtpm.query.seed import Aggregation, bucketize
from rtpm.settings import MaintenanceSettings
from rtpm.storage.base import Storage

HOUR = 3_600_000
MATCH = [Matcher.equal("__name__", "req_total")]


@pytest.fixture
def engine() -> str:
    """Nothing here depends on the storage engine (alert state; back-fill only): the rows engine."""
    return "rows"


async def answer_from_samples(storage: Storage, start: int, end: int, step: int, agg: Aggregation, group_by):  # type: ignore[no-untyped-def]
    found = await storage.querier("t", start, end).select(MATCH)
    return bucketize(found, start_ms=start, end_ms=end, step_ms=step, aggregation=agg, group_by=group_by)


@pytest.mark.parametrize(
    "agg", [Aggregation.AVG, Aggregation.SUM, Aggregation.MIN, Aggregation.MAX, Aggregation.COUNT, Aggregation.RATE]
)
@pytest.mark.parametrize("group_by", [None, ["dc"], []], ids=["per-series", "by-dc", "all"])
async def test_rollups_give_the_same_answer_as_samples(
    storage: Storage, agg: Aggregation, group_by: list[str] | None
) -> None:
    now = int(time.time() * 1000)
    start = now - now % HOUR - 26 * HOUR
    rng = np.random.default_rng(3)
    b = WriteBatch("t")
    for i in range(6):
        labels = make_labels("req_total", {"host": f"h{i}", "dc": f"dc{i % 2}"})
        value = 0.0
        for ts in range(start + 1234 * i, start + 24 * HOUR, 20_000 + 1000 * i):
            value = 0.0 if rng.random() < 0.002 else value + float(rng.integers(0, 10))  # a counter with resets
            b.add(labels, ts, value)
    await storage.write([b])
    await rollup(storage.maintenance, now_ms=now, opts=MaintenanceSettings())  # type: ignore[attr-defined]
    for step in (300_000, HOUR, 3 * HOUR):
        end = start + 20 * HOUR + 1_234_567  # not aligned: the last bucket comes from samples
        got, source = await seed_query(
            storage,
            tenant="t",
            matchers=MATCH,
            start_ms=start,
            end_ms=end,
            step_ms=step,
            aggregation=agg,
            group_by=group_by,
            max_samples=10**8,
            max_series=1000,
        )
        assert source == "rollup"
        want = await answer_from_samples(storage, start, end, step, agg, group_by)
        assert [g.labels for g in got] == [w.labels for w in want]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g.ts_ms, w.ts_ms)
            np.testing.assert_allclose(g.values, w.values, rtol=1e-9)


async def test_unaligned_buckets_and_pending_late_samples_use_the_samples(storage: Storage) -> None:
    now = int(time.time() * 1000)
    start = now - now % HOUR - 10 * HOUR
    b = WriteBatch("t")
    for ts in range(start, start + 5 * HOUR, 60_000):
        b.add(make_labels("req_total", {"host": "a"}), ts, float(ts % 7))
    await storage.write([b])
    args = {
        "tenant": "t",
        "matchers": MATCH,
        "end_ms": start + 5 * HOUR,
        "aggregation": Aggregation.MAX,
        "group_by": None,
        "max_samples": 10**8,
        "max_series": 1000,
    }
    # not rolled up yet
    _, source = await seed_query(storage, start_ms=start, step_ms=HOUR, **args)
    assert source == "raw"
    await rollup(storage.maintenance, now_ms=now, opts=MaintenanceSettings())  # type: ignore[attr-defined]
    _, source = await seed_query(storage, start_ms=start, step_ms=HOUR, **args)
    assert source == "rollup"
    _, source = await seed_query(storage, start_ms=start + 7_000, step_ms=HOUR, **args)  # not aligned
    assert source == "raw"
    _, source = await seed_query(storage, start_ms=start, step_ms=HOUR, **args | {"aggregation": Aggregation.P95})
    assert source == "raw"
    late = WriteBatch("t")
    late.add(make_labels("req_total", {"host": "a"}), start + 30_001, 1000.0)
    await storage.write([late])
    got, source = await seed_query(storage, start_ms=start, step_ms=HOUR, **args)
    assert source == "raw" and got[0].values[0] == 1000.0  # the late sample is seen before it is rolled up
