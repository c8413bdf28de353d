"""Storage benchmark: bytes per sample raw vs compacted, compaction throughput, and a 7-day query
from raw samples vs from rollups. It drives the storage layer directly (no server).

    python bench/storage.py --backend sqlite --path /tmp/rtpm-bench.db
    python bench/storage.py --backend postgres --dsn postgresql://root@127.0.0.1/test --schema bench_storage

Defaults: 1,000 series x 7 days at 15 s (about 40 M samples), written time-major (every series'
sample of one instant together, as agents send them), then rolled up, then compacted. The query is
one metric over 7 days at step 1 h across 100 series (avg per hour), timed from raw/chunk samples
(bucketed in numpy) and from the 1h rollups. `--series` and `--days` shrink the run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from rtpm.jobs.maintenance import rollup
from rtpm.model.labels import Matcher, make_labels
from rtpm.model.samples import WriteBatch
from rtpm.query.rollup_reads import RollupAggregation, aggregated
from rtpm.settings import MaintenanceSettings

HOUR = 3_600_000
DAY = 86_400_000


def make_storage(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if args.backend == "sqlite":
        from rtpm.storage.sqlite import SqliteStorage

        path = Path(args.path)
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return SqliteStorage(path, synchronous="NORMAL")
    from rtpm.storage.postgres import PostgresStorage

    return PostgresStorage(args.dsn, schema=args.schema, partition_days_ahead=1)


async def reset_postgres(args: argparse.Namespace) -> None:
    import asyncpg

    conn = await asyncpg.connect(args.dsn)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
    await conn.close()


async def bytes_of(storage, table_names: list[str]) -> int:  # type: ignore[no-untyped-def]
    st = await storage.maintenance.status(None)
    return sum(st.bytes_by_table.get(t, 0) for t in table_names)


async def run(args: argparse.Namespace) -> None:
    if args.backend == "postgres":
        await reset_postgres(args)
    storage = make_storage(args)
    await storage.open()
    maint = storage.maintenance
    step = 15_000
    now = int(time.time() * 1000)
    end = now - now % HOUR - 3 * HOUR
    start = end - args.days * DAY
    rng = np.random.default_rng(7)
    labels = []
    for i in range(args.series):
        kind = "gauge" if i % 2 else "counter"
        labels.append(
            make_labels(f"node_{kind}", {"instance": f"host-{i:04d}:9100", "job": "node", "dc": f"dc{i % 4}"})
        )
    gauges = rng.normal(50, 10, args.series)
    counters = rng.integers(0, 1_000_000, args.series).astype(np.float64)
    total = 0
    t0 = time.perf_counter()
    print(f"loading {args.series} series x {args.days} d at 15 s ...", flush=True)
    for hour_start in range(start, end, HOUR):
        b = WriteBatch("default")
        for ts in range(hour_start, hour_start + HOUR, step):
            gauges += rng.normal(0, 0.5, args.series)
            counters += rng.integers(0, 100, args.series)
            for i, lb in enumerate(labels):
                b.add(lb, ts, round(float(gauges[i]), 1) if i % 2 else float(counters[i]))
        await storage.write([b])
        total += len(b)
    load_s = time.perf_counter() - t0
    raw_bytes = await bytes_of(storage, ["samples"])
    print(f"loaded {total:,} samples in {load_s:.1f} s = {total / load_s:,.0f} samples/s")
    print(f"raw rows: {raw_bytes / total:.1f} bytes/sample on disk (table + indexes)")

    matchers = [Matcher.equal("__name__", "node_gauge")]
    sel_start, sel_end = end - 7 * DAY, end - 1

    async def query_raw() -> float:
        t = time.perf_counter()
        found = await storage.querier("default", sel_start, sel_end).select(matchers)
        for s in found[: args.query_series]:  # hourly means, as the rollups hold them
            idx = (s.ts_ms - sel_start) // HOUR
            np.bincount(idx, weights=s.values) / np.maximum(np.bincount(idx), 1)
        return time.perf_counter() - t

    async def query_rollups() -> float:
        t = time.perf_counter()
        await aggregated(
            maint,
            tenant="default",
            matchers=matchers,
            start_ms=sel_start,
            end_ms=sel_end,
            width_ms=HOUR,
            aggregation=RollupAggregation.AVG,
        )
        return time.perf_counter() - t

    # the gauge metric has series/2 series; --query-series (100) of them are bucketed
    raw_times = [await query_raw() for _ in range(args.runs)]
    print(f"7-day query, step 1h, raw rows:  median {statistics.median(raw_times) * 1000:.0f} ms")

    opts = MaintenanceSettings()
    t0 = time.perf_counter()
    while (await rollup(maint, now_ms=int(time.time() * 1000), opts=opts)).details["late_marks"]:
        pass
    print(f"rollups (1m, 5m, 1h, 1d) built in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    window = opts.chunk_window_seconds * 1000
    moved = 0
    for w in range(start - start % window, end, window):
        moved += (await maint.compact_window(w, w + window, None))[1]
    compact_s = time.perf_counter() - t0
    await maint.clear_late_writes("compact", await maint.late_writes("compact", 10**9))
    await maint.reclaim_space()
    st = await maint.status(None)
    chunk_bytes = st.bytes_by_table.get("chunks", 0)
    print(f"compacted {moved:,} samples in {compact_s:.1f} s = {moved / compact_s:,.0f} samples/s")
    print(
        f"compacted chunks: {chunk_bytes / max(1, st.chunk_samples):.2f} bytes/sample on disk (table + indexes), "
        f"{st.chunks:,} chunks; raw rows left: {st.raw_samples}; raw table now {st.bytes_by_table.get('samples', 0):,} bytes"
    )
    print(
        f"rollups: {st.bytes_by_table.get('rollups', 0) / max(1, sum(st.rollup_rows.values())):.1f} bytes/row, "
        f"rows {st.rollup_rows}"
    )

    chunk_times = [await query_raw() for _ in range(args.runs)]
    rollup_times = [await query_rollups() for _ in range(args.runs)]
    print(f"7-day query, step 1h, compressed chunks: median {statistics.median(chunk_times) * 1000:.0f} ms")
    print(
        f"7-day query, step 1h, 1h rollups ({args.series // 2} series): median {statistics.median(rollup_times) * 1000:.0f} ms"
    )
    await storage.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--path", default="/tmp/rtpm-bench-storage.db")
    ap.add_argument("--dsn", default="postgresql://root@127.0.0.1:5432/test")
    ap.add_argument("--schema", default="bench_storage")
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--query-series", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
