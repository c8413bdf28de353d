"""Compaction, rollups and retention on every backend: reads give the same answers before and
after, late and duplicate samples around window edges included. Time is injected (`now_ms`)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rtpm.errors import TooManySamples
from rtpm.jobs.maintenance import compact, enforce_retention, rollup
from rtpm.model.labels import Matcher, make_labels
from rtpm.model.rollups import RESOLUTIONS_MS, compute
from rtpm.model.samples import STALE_NAN, WriteBatch
from rtpm.settings import MaintenanceSettings
from rtpm.storage.base import Storage

HOUR = 3_600_000
DAY = 86_400_000
OPTS = MaintenanceSettings()
NAME = Matcher.equal("__name__", "m")


def now_ms() -> int:
    return int(time.time() * 1000)


def series_batch(start: int, end: int, step: int, hosts: int = 3, tenant: str = "t") -> WriteBatch:
    b = WriteBatch(tenant)
    for h in range(hosts):
        labels = make_labels("m", {"host": f"h{h}"})
        for i, ts in enumerate(range(start, end, step)):
            value = float((i * (h + 1)) % 50) if h != 2 else float(i)  # h2 is a counter
            b.add(labels, ts, value)
    return b


async def snapshot(storage: Storage, start: int, end: int) -> dict[str, object]:
    q = storage.querier("t", start, end)
    # values as bit patterns: NaN equals NaN, and a staleness marker only equals itself
    sel = {
        dict(s.labels)["host"]: (s.ts_ms.tolist(), s.values.view(np.uint64).tolist()) for s in await q.select([NAME])
    }
    latest = {dict(x.labels)["host"]: (x.ts_ms, np.float64(x.value).view(np.uint64)) for x in await q.latest([NAME])}
    stats = {
        dict(x.labels)["host"]: (x.count, x.sum, x.min, x.max, x.first_ts_ms, x.last_ts_ms)
        for x in await q.stats([NAME])
    }
    return {
        "select": sel,
        "latest": latest,
        "stats": stats,
        "series": await q.series([NAME]),
        "values": await q.label_values("host"),
    }


async def test_reads_are_the_same_after_compaction_with_late_and_duplicate_samples(storage: Storage) -> None:
    maint = storage.maintenance
    base = now_ms() - 30 * 60_000
    start = base - base % (2 * HOUR)  # a window edge
    await storage.write([series_batch(start - HOUR, start + HOUR, 15_000)])
    later = now_ms() + 5 * HOUR  # every window so far is old enough
    before = await snapshot(storage, start - 2 * HOUR, start + 2 * HOUR)
    await rollup(maint, now_ms=later, opts=OPTS)
    first = await compact(maint, now_ms=later, opts=OPTS)
    assert first.samples > 0 and first.details.get("chunks", 0) + first.details.get("late_chunks", 0) > 0
    assert await snapshot(storage, start - 2 * HOUR, start + 2 * HOUR) == before
    # partial ranges cut through chunks the same way as through raw rows
    assert await snapshot(storage, start - 7 * 60_000, start + 11 * 60_000) is not None
    # late samples on both sides of the window edge, one overwriting a compacted sample, one stale marker
    late = WriteBatch("t")
    h0 = make_labels("m", {"host": "h0"})
    late.add(h0, start - 1, 1000.0)
    late.add(h0, start, 2000.0)  # existed: the last written wins
    late.add(h0, start + 7, STALE_NAN)
    await storage.write([late])
    expected = await snapshot(storage, start - 2 * HOUR, start + 2 * HOUR)
    assert expected != before
    again = await compact(maint, now_ms=later, opts=OPTS)
    assert again.details.get("late_chunks", 0) >= 2
    assert await snapshot(storage, start - 2 * HOUR, start + 2 * HOUR) == expected
    status = await maint.status("t")
    assert status.raw_samples == 0
    assert status.chunk_samples == sum(len(v[0]) for v in expected["select"].values())  # type: ignore[attr-defined]
    # running it again (or concurrently) changes nothing
    await compact(maint, now_ms=later, opts=OPTS)
    assert await snapshot(storage, start - 2 * HOUR, start + 2 * HOUR) == expected


async def test_rollups_equal_raw_aggregates_at_every_resolution(storage: Storage) -> None:
    maint = storage.maintenance
    t = now_ms()
    start = t - t % DAY + 3 * HOUR - 2 * DAY  # two days ago, early morning
    # written late on purpose (backfill): rolled up through the late-write marks
    await storage.write([series_batch(start, start + 26 * HOUR, 30_000)])
    result = await rollup(maint, now_ms=t + 10 * 60_000, opts=OPTS)
    assert result.details["late_marks"] > 0
    data = {dict(s.labels)["host"]: s for s in await storage.querier("t", start, start + 26 * HOUR).select([NAME])}
    found = await maint.find_series("t", [NAME])
    ids = {dict(labels)["host"]: sid for sid, labels in found}
    for width in RESOLUTIONS_MS:
        # every bucket of the data has closed (the job ran at now; the data ended yesterday)
        lo, hi = start - start % width, start + 26 * HOUR + width
        got = await maint.load_rollups(width, list(ids.values()), lo, hi)
        for host, sid in ids.items():
            want = compute(data[host].ts_ms, data[host].values, width)
            have = got[sid]
            for col in ("bucket", "count", "first_ts", "last_ts"):
                np.testing.assert_array_equal(getattr(have, col), getattr(want, col), err_msg=f"{width} {col}")
            for col in ("sum", "min", "max", "first_value", "last_value", "increase"):
                np.testing.assert_allclose(getattr(have, col), getattr(want, col), rtol=1e-9, err_msg=f"{width} {col}")
    # a late sample re-opens its bucket, at every resolution above it too
    h2 = make_labels("m", {"host": "h2"})
    fix = WriteBatch("t")
    fix.add(h2, start + 90_000 + 1, 500.0)
    await storage.write([fix])
    await rollup(maint, now_ms=t + 11 * 60_000, opts=OPTS)
    one_minute = (await maint.load_rollups(60_000, [ids["h2"]], start + 60_000, start + 120_000))[ids["h2"]]
    assert one_minute.count.tolist() == [3] and one_minute.max.tolist() == [500.0]
    hour = (await maint.load_rollups(HOUR, [ids["h2"]], start, start + HOUR))[ids["h2"]]
    assert hour.max.tolist() == [500.0] and hour.count.tolist() == [121]


async def test_recent_data_is_rolled_up_by_the_watermark(storage: Storage) -> None:
    maint = storage.maintenance
    t = now_ms()
    await storage.write([series_batch(t - 60_000, t, 5_000, hosts=2)])
    assert (await maint.late_writes("rollup", 10)) == []
    result = await rollup(maint, now_ms=t + 20 * 60_000, opts=OPTS)
    assert result.samples >= 24
    found = await maint.find_series("t", [NAME])
    got = await maint.load_rollups(60_000, [sid for sid, _ in found], t - 2 * 60_000, t + 60_000)
    assert sum(int(r.count.sum()) for r in got.values()) == 24


async def db_pages(storage: Storage) -> int:
    if storage.backend != "sqlite":
        return 0
    return int(await storage._read(lambda c: c.execute("PRAGMA page_count").fetchone()[0]))  # type: ignore[attr-defined]


async def test_retention_drops_old_data_and_keeps_new(storage: Storage) -> None:
    maint = storage.maintenance
    t = now_ms()
    old_day = t - t % DAY - 10 * DAY
    await storage.write([series_batch(old_day, old_day + 2 * HOUR, 1_000, hosts=5)])
    await storage.write([series_batch(t - HOUR, t, 60_000)])
    await rollup(maint, now_ms=t + HOUR, opts=OPTS)
    future = t + 6 * DAY  # the old day is now 16 days old, past the 15-day raw retention
    pages_before = await db_pages(storage)
    result = await enforce_retention(maint, now_ms=future, opts=OPTS)
    assert result.details["raw"] > 0
    q = storage.querier("t", old_day - DAY, t + DAY)
    kept = await q.select([NAME])
    assert all(s.ts_ms.min() >= t - HOUR for s in kept) and kept
    if storage.backend == "postgres":
        from rtpm.storage.postgres import partition_name

        assert partition_name(old_day // DAY) not in await storage.partitions()  # type: ignore[attr-defined]
    else:  # SQLite gives freed pages back to the file system
        assert await db_pages(storage) < pages_before
    status = await maint.status("t")
    assert status.raw_samples == 3 * 60
    # rollups of the old day are still there (1m keeps 30 days)...
    ids = [sid for sid, _ in await maint.find_series("t", [NAME])]
    assert await maint.load_rollups(60_000, ids, old_day, old_day + 2 * HOUR)
    # ...until their own horizon passes
    await enforce_retention(maint, now_ms=t + 40 * DAY, opts=OPTS)
    assert not await maint.load_rollups(60_000, ids, old_day, old_day + 2 * HOUR)


async def test_lease_has_one_holder_until_it_expires(storage: Storage) -> None:
    maint = storage.maintenance
    t = now_ms()
    assert await maint.try_lease("jobs", "a", 10_000, t)
    assert not await maint.try_lease("jobs", "b", 10_000, t + 1000)
    assert await maint.try_lease("jobs", "a", 10_000, t + 2000)  # renewal
    assert await maint.try_lease("jobs", "b", 10_000, t + 13_000)  # a's lease ran out
    assert not await maint.try_lease("jobs", "a", 10_000, t + 14_000)


async def test_sample_limit_counts_raw_rows_and_chunks_exactly(storage: Storage) -> None:
    """max_samples is enforced while loading (no counting pass): the exact total passes, one less
    is refused, whether the samples sit in raw rows, chunks or both, and for reads large enough to
    be split across connections."""
    maint = storage.maintenance
    base = now_ms() - 30 * 60_000
    start = base - base % (2 * HOUR)
    hosts = 250
    await storage.write([series_batch(start - HOUR, start + HOUR, 60_000, hosts=hosts)])

    async def check(total: int) -> None:
        q = storage.querier("t", start - 2 * HOUR, start + 2 * HOUR)
        found = await q.select([NAME], max_samples=total)
        assert len(found) == hosts
        assert sum(len(s.ts_ms) for s in found) == total
        with pytest.raises(TooManySamples):
            await q.select([NAME], max_samples=total - 1)

    await check(hosts * 120)  # raw rows only
    await compact(maint, now_ms=now_ms() + 5 * HOUR, opts=OPTS)
    assert (await maint.status("t")).raw_samples == 0
    await check(hosts * 120)  # chunks only
    await storage.write([series_batch(start + HOUR, start + HOUR + 30 * 60_000, 60_000, hosts=hosts)])
    await check(hosts * 150)  # both


async def test_delete_samples_cuts_chunks_and_rollups(storage: Storage) -> None:
    maint = storage.maintenance
    t = now_ms()
    start = t - t % DAY + 3 * HOUR - 2 * DAY  # two days ago, early morning: compacted and rolled up
    old = series_batch(start, start + 26 * HOUR, 60_000)
    await storage.write([old])
    await rollup(maint, now_ms=t, opts=OPTS)
    assert (await compact(maint, now_ms=t, opts=OPTS)).samples > 0
    ids = {dict(labels)["host"]: sid for sid, labels in await maint.find_series("t", [NAME])}
    want: dict[str, tuple[list[int], list[float]]] = {}
    for ref, ts, v in zip(old.refs, old.ts_ms, old.values, strict=True):
        got = want.setdefault(dict(old.series[ref])["host"], ([], []))
        got[0].append(ts)
        got[1].append(v)

    # through the middle of chunks (2 h windows) and of 1m..1d buckets, on two of three series
    lo, hi = start + 5 * HOUR + 7, start + 20 * HOUR + 30_013
    expected = 0
    for host in ("h0", "h1"):
        ts, vals = want[host]
        kept = [(x, v) for x, v in zip(ts, vals, strict=True) if not lo <= x <= hi]
        want[host] = ([x for x, _ in kept], [v for _, v in kept])
        expected += len(ts) - len(kept)
    assert await maint.delete_samples([ids["h0"], ids["h1"]], lo, hi) == expected > 0
    assert await maint.delete_samples([ids["h2"]], start - 2 * DAY, start - DAY) == 0  # nothing there
    q = storage.querier("t", start - DAY, t + DAY)
    assert {dict(s.labels)["host"]: (s.ts_ms.tolist(), s.values.tolist()) for s in await q.select([NAME])} == want

    # the rollup job redoes the buckets at the edges; those inside the range are gone
    await rollup(maint, now_ms=t + 60_000, opts=OPTS)
    for width in RESOLUTIONS_MS:
        have = await maint.load_rollups(width, list(ids.values()), start - start % width, start + 26 * HOUR + width)
        for host, sid in ids.items():
            expect = compute(np.array(want[host][0], dtype=np.int64), np.array(want[host][1]), width)
            np.testing.assert_array_equal(have[sid].bucket, expect.bucket, err_msg=f"{host} {width}")
            np.testing.assert_array_equal(have[sid].count, expect.count, err_msg=f"{host} {width}")
            np.testing.assert_allclose(have[sid].sum, expect.sum, rtol=1e-9, err_msg=f"{host} {width}")


async def test_delete_samples_of_recent_data(storage: Storage) -> None:
    maint = storage.maintenance
    t = now_ms()
    # newer than the late grace (5 min): raw rows on the rows engine, the head on the head engine
    await storage.write([series_batch(t - 4 * 60_000, t, 10_000, hosts=2)])
    ids = {dict(labels)["host"]: sid for sid, labels in await maint.find_series("t", [NAME])}
    lo, hi = t - 3 * 60_000, t - 60_000
    removed = await maint.delete_samples([ids["h0"]], lo, hi)
    assert removed == 13  # t-180 s .. t-60 s, both ends included
    got = {dict(s.labels)["host"]: s.ts_ms.tolist() for s in await storage.querier("t", t - HOUR, t).select([NAME])}
    assert got["h1"] == list(range(t - 4 * 60_000, t, 10_000))
    assert got["h0"] == [x for x in got["h1"] if not lo <= x <= hi]
