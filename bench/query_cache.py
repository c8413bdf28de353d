"""Query-cache benchmark: the same PromQL range query against a RUNNING server, over HTTP.
The first answer is computed (a miss); the repeats are served from the query-result cache (Redis
when the server has RTPM_REDIS_URL). Prints the first time and the median / p99 of the repeats.
It starts nothing itself; the range ends an hour ago, so the answer is old enough to cache.

    RTPM_REDIS_URL=redis://127.0.0.1:6379/0 rtpm serve &
    python bench/query_cache.py --url http://127.0.0.1:8000 --token <api key> \\
        --query 'sum by (job) (rate(bench_requests_total[5m]))' --hours 1 --step 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--token", default=None)
    ap.add_argument("--query", default="sum by (job) (rate(bench_requests_total[5m]))")
    ap.add_argument("--hours", type=float, default=1.0, help="range length")
    ap.add_argument("--step", type=float, default=15.0)
    ap.add_argument("--end-ago", type=float, default=3600.0, help="seconds between the range end and now")
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    end = (time.time() - args.end_ago) // args.step * args.step
    params = {"query": args.query, "start": end - args.hours * 3600, "end": end, "step": args.step}
    with httpx.Client(base_url=args.url, headers=headers, timeout=120) as c:
        t0 = time.perf_counter()
        first = c.get("/api/v1/query_range", params=params)
        first_ms = (time.perf_counter() - t0) * 1000
        first.raise_for_status()
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = c.get("/api/v1/query_range", params=params)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.content == first.content, "a repeat gave another answer"
    times.sort()
    print(f"query: {args.query}  range {args.hours} h step {args.step} s, ending {args.end_ago:.0f} s ago")
    print(
        f"first (computed): {first_ms:.1f} ms; repeats: median {statistics.median(times):.2f} ms, "
        f"p99 {times[int(0.99 * (len(times) - 1))]:.2f} ms over {args.runs}"
    )


if __name__ == "__main__":
    main()
