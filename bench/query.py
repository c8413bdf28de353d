"""PromQL query benchmark: RTPM's engine over SQLite (or PostgreSQL) next to a real Prometheus.

Data: 1,000 counter series (`bench_requests_total{job="j0".."j9", instance="i0".."i99"}`) over the
last 24 h at 15 s (5.76 M samples). Queries:

  (a) sum by (job) (rate(bench_requests_total[5m]))  range, last 1 h,  step 15 s
  (b) the same                                        range, last 24 h, step 5 m
  (c) rate(bench_requests_total[5m])                  instant, now (all 1,000 series)

For each it prints the median and p99 of the total time in RTPM's engine (storage load +
evaluation), of the evaluation alone, of the same query through `rtpm serve` over HTTP (--serve),
and of the same query against Prometheus over HTTP, runs interleaved.

Usage:
  python bench/query.py --db /tmp/bench.db --load            # create the SQLite data (once, ~1-2 min)
  python bench/query.py --db /tmp/bench.db                    # RTPM only
  python bench/query.py --db /tmp/bench.db --start-prometheus # also load + start /usr/bin/prometheus
  python bench/query.py --db /tmp/bench.db --prometheus http://127.0.0.1:9090  # a Prometheus you run
  python bench/query.py --dsn postgresql://... --load         # PostgreSQL instead of SQLite
  python bench/query.py --db /tmp/bench.db --compact          # first run the jobs a server would have run
  python bench/query.py --dsn postgresql://... --serve        # also through `rtpm serve` over HTTP
Options: --runs N (default 30). Nothing is started except, with --start-prometheus, one Prometheus on
a free loopback port with a temporary data dir, stopped at exit. The data's "now" is stored next to
the database (`<db>.now`) so later runs query the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
    from tests.e2e.promql.difftest_data import encode_write_request

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
    wait_ready(proc, f"{url}/-/ready", "prometheus")
    return proc, url, tmp


def wait_ready(proc: subprocess.Popen[bytes], probe: str, what: str) -> None:
    for _ in range(150):
        try:
            if httpx.get(probe, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{what} did not start")


def start_rtpm(dsn: str, schema: str, engine: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`rtpm serve` over the same PostgreSQL schema and storage engine: auth off (the default tenant
    is the bench's), query cache off (every request is evaluated), jobs off."""
    from tests._server import free_port

    tmp = Path(tempfile.mkdtemp(prefix="rtpm-bench-serve-"))
    port = free_port()
    env = {
        **os.environ,
        "RTPM_DATABASE_URL": dsn,
        "RTPM_DATABASE_SCHEMA": schema,
        "RTPM_DEFAULT_TENANT": TENANT,
        "RTPM_AUTH__ENABLED": "false",
        "RTPM_AUTH__RATE_LIMIT__ENABLED": "false",
        "RTPM_QUERY__CACHE_ENABLED": "false",
        "RTPM_JOBS": "off",
        "RTPM_DATA_DIR": str(tmp),
        "RTPM_LOG_LEVEL": "warning",
        "RTPM_STORAGE_ENGINE": engine,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtpm", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, f"{url}/api/v1/status/buildinfo", "rtpm serve")
    return proc, url, tmp


async def timed_get(c: httpx.AsyncClient, base: str, q: str, start: int, end: int, step: int) -> float:
    t0 = time.perf_counter()
    if step:
        params = {"query": q, "start": start / 1000, "end": end / 1000, "step": step / 1000}
        resp = await c.get(f"{base}/api/v1/query_range", params=params)
    else:
        resp = await c.get(f"{base}/api/v1/query", params={"query": q, "time": end / 1000})
    elapsed = time.perf_counter() - t0
    resp.raise_for_status()
    return elapsed


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, p))


def p50_p99(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:7.1f} / {pct(xs, 99):7.1f}" if xs else "-"


async def bench(storage: Storage, now_ms: int, runs: int, prom: str | None, rtpm_url: str | None) -> None:
    engine = Engine(storage)
    cases = [
        ("(a) 1h step 15s", Q_RATE, now_ms - 3_600_000, now_ms, 15_000),
        ("(b) 24h step 5m", Q_RATE, now_ms - DAY_MS + 300_000, now_ms, 300_000),
        ("(c) instant", Q_INSTANT, now_ms, now_ms, 0),
    ]
    print("ms, p50 / p99. engine: RTPM's engine in this process (storage read + evaluation); eval: evaluation")
    print("alone; RTPM HTTP: the same query through `rtpm serve` (cache off); Prometheus: its HTTP API.")
    print(
        f"{'query':16} {'engine':>17} {'eval':>17} {'RTPM HTTP':>17} {'Prometheus':>17}"
        f" {'engine/Prom':>11} {'HTTP/Prom':>9}"
    )
    async with httpx.AsyncClient(timeout=60) as c:
        for name, q, start, end, step in cases:
            total: list[float] = []
            evals: list[float] = []
            http_t: list[float] = []
            prom_t: list[float] = []
            for _ in range(runs):  # interleaved: every side sees the same machine
                t0 = time.perf_counter()
                if step:
                    r = await engine.range(TENANT, q, start, end, step)
                else:
                    r = await engine.instant(TENANT, q, end)
                total.append(time.perf_counter() - t0)
                evals.append(r.eval_seconds)
                if rtpm_url:
                    http_t.append(await timed_get(c, rtpm_url, q, start, end, step))
                if prom:
                    prom_t.append(await timed_get(c, prom, q, start, end, step))
            ratio = f"{statistics.median(total) / statistics.median(prom_t):10.2f}x" if prom_t else ""
            hratio = f"{statistics.median(http_t) / statistics.median(prom_t):8.2f}x" if prom_t and http_t else ""
            print(
                f"{name:16} {p50_p99(total):>17} {p50_p99(evals):>17} {p50_p99(http_t):>17} {p50_p99(prom_t):>17}"
                f" {ratio:>11} {hratio:>9}"
            )


def wait_until_settled(url: str, timeout_s: float = 120.0) -> None:
    """Prometheus compacts its head into blocks after a load like this one; wait for that to end
    (no new compaction for 10 s) so neither side is measured next to it."""

    def compactions() -> float:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(("prometheus_tsdb_compactions_total", "prometheus_tsdb_head_gc_duration_seconds_count"))
        )

    deadline = time.monotonic() + timeout_s
    last, quiet_since = compactions(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 10:
        time.sleep(1)
        now = compactions()
        if now != last:
            last, quiet_since = now, time.monotonic()


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
    ap.add_argument(
        "--serve",
        action="store_true",
        help="also start `rtpm serve` on the same PostgreSQL data and time the queries over HTTP (with --dsn)",
    )
    ap.add_argument(
        "--engine",
        choices=["rows", "head"],
        default="rows",
        help="storage engine of the loading process and of `rtpm serve` (head: the current window is in "
        "the head and its WAL, older samples are back-fill; load into a fresh --schema or --db per engine)",
    )
    args = ap.parse_args()
    if args.serve and not args.dsn:
        ap.error("--serve needs --dsn")
    tune_allocator()  # as every rtpm process does (see rtpm/runtime.py)
    if args.dsn:
        from rtpm.storage.postgres import PostgresStorage

        storage: Storage = PostgresStorage(args.dsn, schema=args.schema, engine=args.engine)
        now_file = Path(tempfile.gettempdir()) / f"rtpm-bench-pg-{args.schema}.now"
    else:
        if args.db is None:
            ap.error("give --db or --dsn")
        from rtpm.storage.sqlite import SqliteStorage

        storage = SqliteStorage(args.db, synchronous="NORMAL", engine=args.engine)
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
    served = None
    prom = args.prometheus
    try:
        if args.start_prometheus:
            proc, prom, tmp = start_prometheus()
            t0 = time.perf_counter()
            load_prometheus(prom, now_ms)
            print(f"loaded Prometheus in {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            wait_until_settled(prom)
            print(f"Prometheus settled (head compaction done) in {time.perf_counter() - t0:.1f} s")
        rtpm_url = None
        if args.serve:
            served, rtpm_url, served_tmp = start_rtpm(args.dsn, args.schema, args.engine)
        await bench(storage, now_ms, args.runs, prom, rtpm_url)
    finally:
        if served is not None:
            served.terminate()
            served.wait(10)
            shutil.rmtree(served_tmp, ignore_errors=True)
        await storage.close()
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
