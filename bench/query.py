"""PromQL query benchmark: RTPM's engine over SQLite (or PostgreSQL) next to a real Prometheus.

Data: 1,000 counter series (`bench_requests_total{job="j0".."j9", instance="i0".."i99"}`) over the
last 24 h at 15 s (5.76 M samples). Queries:

  (a) sum by (job) (rate(bench_requests_total[5m]))  range, last 1 h,  step 15 s
  (b) the same                                        range, last 24 h, step 5 m
  (c) rate(bench_requests_total[5m])                  instant, now (all 1,000 series)

For each it prints the median and p99 of the total time (storage load + evaluation), of the
evaluation alone, and of the same query against Prometheus over HTTP.

Usage:
  python bench/query.py --db /tmp/bench.db --load            # create the SQLite data (once, ~1-2 min)
  python bench/query.py --db /tmp/bench.db                    # RTPM only
  python bench/query.py --db /tmp/bench.db --start-prometheus # also load + start /usr/bin/prometheus
  python bench/query.py --db /tmp/bench.db --prometheus http://127.0.0.1:9090  # a Prometheus you run
  python bench/query.py --dsn postgresql://... --load         # PostgreSQL instead of SQLite
  python bench/query.py --db /tmp/bench.db --compact          # first run the jobs a server would have run
Options: --runs N (default 30). Nothing is started except, with --start-prometheus, one Prometheus on
a free loopback port with a temporary data dir, stopped at exit. The data's "now" is stored next to
the database (`<db>.now`) so later runs query the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtpm.model.labels import make_labels  # noqa: E402
from rtpm.model.samples import WriteBatch  # noqa: E402
from rtpm.query.promql.engine import Engine  # noqa: E402
from rtpm.runtime import tune_allocator  # noqa: E402
from rtpm.storage.base import Storage  # noqa: E402

SERIES = 1000
STEP_MS = 15_000
DAY_MS = 86_400_000
TENANT = "bench"
Q_RATE = "sum by (job) (rate(bench_requests_total[5m]))"
Q_INSTANT = "rate(bench_requests_total[5m])"


def series_data(now_ms: int) -> tuple[list[tuple[tuple[tuple[str, str], ...], np.ndarray]], np.ndarray]:
    ts = np.arange(now_ms - DAY_MS, now_ms + 1, STEP_MS, dtype=np.int64)
    rng = np.random.default_rng(1)
    out = []
    for i in range(SERIES):
        labels = make_labels("bench_requests_total", {"job": f"j{i % 10}", "instance": f"i{i // 10}"})
        out.append((labels, np.cumsum(rng.exponential(5.0, len(ts)))))
    return out, ts


async def load_rtpm(storage: Storage, now_ms: int) -> None:
    data, ts = series_data(now_ms)
    for labels, vals in data:
        b = WriteBatch(TENANT)
        for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
            b.add(labels, t, v)
        await storage.write([b])


def load_prometheus(url: str, now_ms: int) -> None:
    import cramjam

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.promql.difftest_data import encode_write_request

    data, ts = series_data(now_ms)
    slice_n = 40  # 10 minutes per request, every series
    with httpx.Client(timeout=60) as client:
        for lo in range(0, len(ts), slice_n):
            batch = [(lb, ts[lo : lo + slice_n].tolist(), v[lo : lo + slice_n].tolist()) for lb, v in data]
            body = bytes(cramjam.snappy.compress_raw(encode_write_request(batch)))
            r = client.post(
                f"{url}/api/v1/write",
                content=body,
                headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
            )
            r.raise_for_status()


def start_prometheus() -> tuple[subprocess.Popen[bytes], str, Path]:
    from tests._server import free_port

    tmp = Path(tempfile.mkdtemp(prefix="rtpm-bench-prom-"))
    (tmp / "p.yml").write_text("global:\n  evaluation_interval: 1m\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            "/usr/bin/prometheus",
            f"--config.file={tmp / 'p.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return proc, url, tmp
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("prometheus did not start")


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, p))


async def bench(storage: Storage, now_ms: int, runs: int, prom: str | None) -> None:
    engine = Engine(storage)
    cases = [
        ("(a) 1h step 15s", Q_RATE, now_ms - 3_600_000, now_ms, 15_000),
        ("(b) 24h step 5m", Q_RATE, now_ms - DAY_MS + 300_000, now_ms, 300_000),
        ("(c) instant", Q_INSTANT, now_ms, now_ms, 0),
    ]
    print(
        f"{'query':18} {'RTPM total ms (p50/p99)':>26} {'RTPM eval ms (p50/p99)':>24} {'Prometheus ms (p50/p99)':>25}"
    )
    for name, q, start, end, step in cases:
        total, evals, prom_t = [], [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            if step:
                r = await engine.range(TENANT, q, start, end, step)
            else:
                r = await engine.instant(TENANT, q, end)
            total.append(time.perf_counter() - t0)
            evals.append(r.eval_seconds)
        if prom:
            async with httpx.AsyncClient(timeout=60) as c:
                for _ in range(runs):
                    params = {"query": q, "start": start / 1000, "end": end / 1000, "step": step / 1000}
                    t0 = time.perf_counter()
                    if step:
                        resp = await c.get(f"{prom}/api/v1/query_range", params=params)
                    else:
                        resp = await c.get(f"{prom}/api/v1/query", params={"query": q, "time": end / 1000})
                    prom_t.append(time.perf_counter() - t0)
                    resp.raise_for_status()
        ptxt = f"{statistics.median(prom_t) * 1000:10.1f} / {pct(prom_t, 99):8.1f}" if prom_t else "-"
        print(
            f"{name:18} {statistics.median(total) * 1000:14.1f} / {pct(total, 99):8.1f} "
            f"{statistics.median(evals) * 1000:12.1f} / {pct(evals, 99):8.1f} {ptxt:>25}"
        )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, help="SQLite database file")
    ap.add_argument("--dsn", help="PostgreSQL DSN instead of SQLite")
    ap.add_argument("--load", action="store_true", help="write the benchmark data first")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--prometheus", help="URL of a Prometheus already holding the data")
    ap.add_argument("--start-prometheus", action="store_true", help="start /usr/bin/prometheus and load it")
    ap.add_argument("--schema", default="bench_query", help="PostgreSQL schema (with --dsn)")
    ap.add_argument(
        "--compact",
        action="store_true",
        help="after loading, run the rollup and compaction jobs as a running server would have "
        "(samples older than 2 h move into compressed chunks)",
    )
    args = ap.parse_args()
    tune_allocator()  # as every rtpm process does (see rtpm/runtime.py)
    if args.dsn:
        from rtpm.storage.postgres import PostgresStorage

        storage: Storage = PostgresStorage(args.dsn, schema=args.schema)
        now_file = Path(tempfile.gettempdir()) / "rtpm-bench-pg.now"
    else:
        if args.db is None:
            ap.error("give --db or --dsn")
        from rtpm.storage.sqlite import SqliteStorage

        storage = SqliteStorage(args.db, synchronous="NORMAL")
        now_file = Path(str(args.db) + ".now")
    await storage.open()
    if args.load or not now_file.exists():
        now_ms = int(time.time()) // 15 * 15 * 1000
        t0 = time.perf_counter()
        await load_rtpm(storage, now_ms)
        now_file.write_text(str(now_ms))
        print(f"loaded {SERIES} series x 1 day into RTPM in {time.perf_counter() - t0:.1f} s")
    now_ms = int(now_file.read_text())
    if args.compact:
        from rtpm.jobs.maintenance import compact, rollup
        from rtpm.settings import MaintenanceSettings

        t0 = time.perf_counter()
        store = storage.maintenance  # type: ignore[attr-defined]
        while (await rollup(store, now_ms=int(time.time() * 1000), opts=MaintenanceSettings())).details["late_marks"]:
            pass
        moved = step = 1
        while step:  # until a run finds nothing more to compact
            step = (await compact(store, now_ms=int(time.time() * 1000), opts=MaintenanceSettings())).samples
            moved += step
        moved -= 1
        await store.reclaim_space()
        print(f"rolled up and compacted {moved:,} samples in {time.perf_counter() - t0:.1f} s")
    proc = None
    prom = args.prometheus
    try:
        if args.start_prometheus:
            proc, prom, tmp = start_prometheus()
            t0 = time.perf_counter()
            load_prometheus(prom, now_ms)
            print(f"loaded Prometheus in {time.perf_counter() - t0:.1f} s")
        await bench(storage, now_ms, args.runs, prom)
    finally:
        await storage.close()
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
