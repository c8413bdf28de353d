"""Head engine restart: how long `open()` takes to rebuild the head from the WAL records not yet
in chunks, for `--series` series at one sample per `--step` seconds over `--hours` (defaults:
10,000 series, 2 h at 10 s = 7.2 M samples), written as the server would (one WAL record per
flush of `--flush` samples). Prints the load rate, the WAL's bytes per sample, the rebuild time
and the head's resident memory growth per series.

    flock /tmp/rtpm-bench.lock .venv/bin/python bench/head_rebuild.py --backend sqlite
    flock /tmp/rtpm-bench.lock .venv/bin/python bench/head_rebuild.py --backend postgres --series 100000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch

W = 7_200_000


def make_storage(args: argparse.Namespace, path: Path):  # type: ignore[no-untyped-def]
    opts = {"engine": "head", "head_max_series": 10**7, "wal_poll_seconds": 0}
    if args.backend == "sqlite":
        from rtpm.storage.sqlite import SqliteStorage

        return SqliteStorage(path, synchronous="NORMAL", **opts)
    from rtpm.storage.postgres import PostgresStorage

    return PostgresStorage(args.dsn, schema=args.schema, partition_days_ahead=1, **opts)


async def run(args: argparse.Namespace) -> None:
    if args.backend == "postgres":
        import asyncpg

        conn = await asyncpg.connect(args.dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
        await conn.close()
    path = Path(tempfile.mkdtemp(prefix="rtpm-rebuild-")) / "rtpm.db"
    storage = make_storage(args, path)
    await storage.open()
    labels = [make_labels("node_load", {"instance": f"host-{i:06d}:9100", "job": "node"}) for i in range(args.series)]
    start = (int(time.time() * 1000) // W + 1) * W  # a window ahead: every sample is the head's
    step = int(args.step * 1000)
    ticks = int(args.hours * 3600 / args.step)
    rng = np.random.default_rng(1)
    base = rng.normal(50, 10, args.series).round(1)
    per_flush = max(1, args.flush // args.series)  # ticks per flush (or series per flush below)
    total = 0
    t0 = time.perf_counter()
    for tick in range(0, ticks, per_flush):
        n_ticks = min(per_flush, ticks - tick)
        for lo in range(0, args.series, args.flush):
            hi = min(args.series, lo + args.flush)
            b = WriteBatch("default", series=labels[lo:hi])
            n = hi - lo
            b.refs = list(range(n)) * n_ticks
            b.ts_ms = [start + (tick + k) * step for k in range(n_ticks) for _ in range(n)]
            b.values = np.concatenate([base[lo:hi] + (tick + k) % 7 for k in range(n_ticks)]).tolist()
            total += await storage.write([b])
    load_s = time.perf_counter() - t0
    st = await storage.maintenance.status(None)
    wal_bytes = st.bytes_by_table.get("wal_records", 0)
    print(f"wrote {total:,} samples in {st.wal_records:,} WAL records in {load_s:.1f} s = {total / load_s:,.0f}/s")
    print(f"WAL: {wal_bytes / total:.2f} bytes/sample (table, indexes, TOAST)")
    await storage.close()
    del storage
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    again = make_storage(args, path)
    t0 = time.perf_counter()
    await again.open()
    rebuild = time.perf_counter() - t0
    head = again._headlog.head
    rss = psutil.Process().memory_info().rss - rss0
    print(
        f"restart: open() rebuilt the head in {rebuild:.2f} s ({head.samples:,} samples, {head.active_series:,} series); "
        f"RSS +{rss / 2**20:.0f} MiB = {rss / max(1, head.active_series) / 1024:.1f} KiB per series"
    )
    t0 = time.perf_counter()
    written, moved = await again.maintenance.cut_head(start + int(args.hours * 3_600_000) // W * W + W)
    print(f"cut: {written:,} chunks of {moved:,} samples in {time.perf_counter() - t0:.2f} s (one transaction)")
    st = await again.maintenance.status(None)
    print(f"after the cut: {st.bytes_by_table.get('chunks', 0) / max(1, st.chunk_samples):.2f} bytes/sample in chunks")
    await again.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--dsn", default="postgresql://root@127.0.0.1:5432/test")
    ap.add_argument("--schema", default="bench_head_rebuild")
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--step", type=float, default=10.0)
    ap.add_argument("--flush", type=int, default=10_000, help="samples per write (one WAL record each)")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
