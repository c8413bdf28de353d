"""Head engine memory: a fresh `rtpm serve` (head engine, background jobs on at their defaults)
takes `--series` active series by remote write, one sample each, then a second round (one more
sample each); printed per backend: the server's RSS (the process and its children) at start,
after each round, and RSS per active series (the growth over the start, and the whole RSS).
Then `--over` new series past the head's limit (RTPM_STORAGE_HEAD_MAX_SERIES = series + headroom)
must be refused with a 4xx naming the limit, and the server must still answer and take samples
of the series it holds.

    flock /tmp/rtpm-bench.lock .venv/bin/python bench/memory.py --series 1000000

SQLite in a temporary data directory; PostgreSQL in a fresh schema, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
from engines import PASSWORD, Server
from ingest import encode_remote_write, make_series


def rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def push_round(url: str, key: str, series: list[tuple[str, dict[str, str]]], ts_s: float, batch: int) -> float:
    """One sample of every series at `ts_s`; returns the seconds taken. Any non-2xx is fatal."""
    headers = {"authorization": f"Bearer {key}"}
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120, headers=headers) as c:
        for i in range(0, len(series), batch):
            body, h, path = encode_remote_write(
                [(n, lb, ts_s, float(j)) for j, (n, lb) in enumerate(series[i : i + batch])]
            )
            r = c.post(path, content=body, headers=h)
            if r.status_code // 100 != 2:
                raise RuntimeError(f"batch at {i}: {r.status_code} {r.text[:300]}")
    return time.perf_counter() - t0


def settle(pid: int) -> int:
    time.sleep(3)
    return rss(pid)


def run_one(args: argparse.Namespace, backend: str) -> dict[str, object]:
    data = Path(tempfile.mkdtemp(prefix="rtpm-memory-"))
    schema = f"bench_memory_{uuid.uuid4().hex[:8]}"
    limit = args.series + args.headroom
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
    env |= {
        "RTPM_DATA_DIR": str(data),
        "RTPM_ADMIN_PASSWORD": PASSWORD,
        "RTPM_AUTH__RATE_LIMIT__ENABLED": "false",
        "RTPM_LOG_FORMAT": "json",
        "RTPM_STORAGE_ENGINE": "head",
        "RTPM_STORAGE_HEAD_MAX_SERIES": str(limit),
    }
    if backend == "postgres":
        env |= {"RTPM_DATABASE_URL": args.dsn, "RTPM_DATABASE_SCHEMA": schema}
    server = Server(env, args.port, data / "server.log")
    server.start()
    url = f"http://127.0.0.1:{args.port}"
    try:
        key = subprocess.run(
            [sys.executable, "-m", "rtpm", "keys", "create", "--name", "bench", "--scope", "metrics:write"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        assert server.proc is not None
        pid = server.proc.pid
        everything = make_series(args.series + args.headroom + args.over)
        series = everything[: args.series]
        now = time.time()
        # a few series first, so the pool, the first flush and the imports are in the start figure
        push_round(url, key, series[:100], now - 30, args.batch)
        r0 = settle(pid)
        s1 = push_round(url, key, series, now - 20, args.batch)
        r1 = settle(pid)
        s2 = push_round(url, key, series, now - 10, args.batch)
        r2 = settle(pid)
        hwm = int(
            next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmHWM")).split()[1]
        )
        # past the limit: the headroom fits, the next `over` new series are refused
        push_round(url, key, everything[args.series : limit], now - 10, args.batch)
        over = everything[limit:]
        body, h, path = encode_remote_write([(n, lb, now - 5, 1.0) for n, lb in over])
        r = httpx.post(url + path, content=body, headers=h | {"authorization": f"Bearer {key}"}, timeout=60)
        alive = httpx.get(url + "/health/live", timeout=10).status_code
        again = push_round(url, key, series[:1000], now - 5, args.batch)
        kib = 1024
        return {
            "backend": backend,
            "series": args.series,
            "round1_s": round(s1, 1),
            "round2_s": round(s2, 1),
            "rss_start_MiB": round(r0 / kib / kib),
            "rss_round1_MiB": round(r1 / kib / kib),
            "rss_round2_MiB": round(r2 / kib / kib),
            "peak_rss_MiB": round(hwm / kib),
            "growth_KiB_per_series": round((r2 - r0) / args.series / kib, 2),
            "total_KiB_per_series": round(r2 / args.series / kib, 2),
            "over_limit_status": r.status_code,
            "over_limit_body": r.text[:400],
            "alive_after": alive,
            "held_series_write_s": round(again, 2),
            "server_exit": server.proc.poll(),
        }
    finally:
        server.stop()
        if backend == "postgres":
            subprocess.run(["psql", "-q", args.dsn, "-c", f"DROP SCHEMA {schema} CASCADE"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1_000_000)
    ap.add_argument("--headroom", type=int, default=1000, help="limit = series + headroom")
    ap.add_argument("--over", type=int, default=5000, help="new series pushed past the limit")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--dsn", default="postgresql://root@127.0.0.1/test")
    ap.add_argument("--port", type=int, default=8192)
    args = ap.parse_args()
    for backend in args.backends.split(","):
        print(json.dumps(run_one(args, backend)), flush=True)


if __name__ == "__main__":
    main()
