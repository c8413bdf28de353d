"""Ingest benchmark: posts batches from N concurrent clients to a RUNNING server and prints
samples/s, request latency p50/p99 and errors. It starts nothing itself.

The mix is realistic: `--series` series (default 10,000) of one of a few metric names with 4-5
labels each, every series getting one sample per 10 s of simulated time; batches are cut from
that stream in order, so a batch of 5,000 covers half the series at one instant.

    rtpm serve &                                   # SQLite (the embedded default)
    python bench/ingest.py --url http://127.0.0.1:8000 --samples 2000000 --batch 5000 --clients 4

    RTPM_DATABASE_URL=postgresql://root@127.0.0.1/test rtpm serve &
    python bench/ingest.py --samples 2000000 --batch 5000 --clients 4

`--seconds` bounds the run by time instead of count. `--format` picks the wire format: `json` (the
seed's /api/v1/metrics/batch), `remote-write` (Prometheus remote write 1.0, snappy protobuf, to
/api/v1/write), `influx` (line protocol, ns timestamps, to /write; metric names become
`bench_{name}`) or `otlp` (OTLP/HTTP protobuf gauges, to /v1/metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Callable, Iterator

import cramjam
import httpx
import orjson

from rtpm.ingest.proto import ExportMetricsServiceRequest, WriteRequest

METRICS = ["http_requests_total", "cpu_usage_percent", "memory_used_bytes", "disk_io_seconds_total"]


def make_series(n: int) -> list[tuple[str, dict[str, str]]]:
    out = []
    for i in range(n):
        labels = {
            "host": f"host-{i % 500:03d}",
            "region": ["eu-west", "us-east", "ap-south"][i % 3],
            "service": f"svc-{(i // 500) % 20}",
            "instance": f"10.0.{i // 250}.{i % 250}:9100",
        }
        if i % 2:
            labels["env"] = "prod"
        out.append((METRICS[i % len(METRICS)], labels))
    return out


def sample_stream(
    series: list[tuple[str, dict[str, str]]], start_s: float
) -> Iterator[tuple[str, dict[str, str], float, float]]:
    """(name, labels, unix seconds, value) forever: every series once per 10 s of simulated time."""
    for tick in itertools.count():
        ts = start_s + tick * 10.0
        for i, (name, labels) in enumerate(series):
            yield name, labels, ts, float((tick * 7 + i) % 1000)


def encode_json(chunk: list[tuple[str, dict[str, str], float, float]]) -> tuple[bytes, dict[str, str], str]:
    body = orjson.dumps({"metrics": [{"name": n, "labels": lb, "timestamp": t, "value": v} for n, lb, t, v in chunk]})
    return body, {"content-type": "application/json"}, "/api/v1/metrics/batch"


def encode_remote_write(chunk: list[tuple[str, dict[str, str], float, float]]) -> tuple[bytes, dict[str, str], str]:
    by_series: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for n, lb, t, v in chunk:
        key = tuple(sorted({**lb, "__name__": n}.items()))
        by_series.setdefault(key, []).append((int(t * 1000), v))
    w = WriteRequest()
    for key, samples in by_series.items():
        ts = w.timeseries.add()
        for k, val in key:
            ts.labels.add(name=k, value=val)
        for t_ms, v in samples:
            ts.samples.add(timestamp=t_ms, value=v)
    headers = {
        "content-type": "application/x-protobuf",
        "content-encoding": "snappy",
        "x-prometheus-remote-write-version": "0.1.0",
    }
    return bytes(cramjam.snappy.compress_raw(w.SerializeToString())), headers, "/api/v1/write"


def encode_influx(chunk: list[tuple[str, dict[str, str], float, float]]) -> tuple[bytes, dict[str, str], str]:
    lines = []
    for n, lb, t, v in chunk:
        tags = ",".join(f"{k}={val}" for k, val in sorted(lb.items()))
        lines.append(f"bench,{tags} {n}={v} {int(t * 1000) * 1_000_000}")
    return ("\n".join(lines) + "\n").encode(), {"content-type": "text/plain; charset=utf-8"}, "/write"


def encode_otlp(chunk: list[tuple[str, dict[str, str], float, float]]) -> tuple[bytes, dict[str, str], str]:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "bench"
    sm = rm.scope_metrics.add()
    metrics = {}
    for n, lb, t, v in chunk:
        m = metrics.get(n)
        if m is None:
            m = metrics[n] = sm.metrics.add(name=n)
        dp = m.gauge.data_points.add(time_unix_nano=int(t * 1000) * 1_000_000, as_double=v)
        for k, val in lb.items():
            dp.attributes.add(key=k).value.string_value = val
    return req.SerializeToString(), {"content-type": "application/x-protobuf"}, "/v1/metrics"


ENCODERS: dict[str, Callable[[list[tuple[str, dict[str, str], float, float]]], tuple[bytes, dict[str, str], str]]] = {
    "json": encode_json,
    "remote-write": encode_remote_write,
    "influx": encode_influx,
    "otlp": encode_otlp,
}


async def run(args: argparse.Namespace) -> None:
    series = make_series(args.series)
    # Simulated time ends near now so every timestamp is inside the server's accepted window;
    # --from-now starts at now instead (the server must accept that much future: the head engine
    # takes every sample then, none is back-fill older than its window).
    ticks_needed = max(1, args.samples // len(series) + 1)
    stream = sample_stream(series, time.time() if args.from_now else time.time() - ticks_needed * 10.0 - 60)
    encode = ENCODERS[args.format]
    print(f"preparing {args.samples} samples as {args.format} batches of {args.batch} ...", flush=True)
    bodies = []
    for _ in range(max(1, args.samples // args.batch)):
        chunk = list(itertools.islice(stream, args.batch))
        bodies.append(encode(chunk))
    queue: asyncio.Queue[tuple[bytes, dict[str, str], str]] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.monotonic() + args.seconds if args.seconds else None

    async def client() -> None:
        nonlocal sent
        async with httpx.AsyncClient(base_url=args.url, timeout=60, headers=args.headers) as c:
            while not queue.empty():
                if deadline and time.monotonic() > deadline:
                    return
                body, headers, path = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    r = await c.post(path, content=body, headers=headers)
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if status.startswith("2"):
                    sent += args.batch
                else:
                    errors[status] = errors.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"format={args.format} clients={args.clients} batch={args.batch} series={args.series}")
    print(f"samples stored: {sent} in {elapsed:.2f} s = {sent / elapsed:,.0f} samples/s")
    print(
        f"requests: {len(latencies)}  p50 {p(0.5):.1f} ms  p99 {p(0.99):.1f} ms  mean {statistics.mean(latencies) * 1000:.1f} ms"
    )
    print(f"errors: {sum(errors.values())} {errors if errors else ''}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--format", default="json", choices=sorted(ENCODERS))
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: send all samples)")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--token", default=None, help="bearer token / API key, when auth is on")
    ap.add_argument("--from-now", action="store_true", help="simulated time starts now (into the future)")
    args = ap.parse_args()
    args.headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
