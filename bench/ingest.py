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
import struct
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


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


_RW_LABELS: dict[tuple[str, int], tuple[dict[str, str], bytes]] = {}
_F64 = struct.Struct("<d")


def _rw_labels(name: str, labels: dict[str, str]) -> bytes:
    """A TimeSeries' label fields, encoded once per series (the stream reuses each series' dict)."""
    hit = _RW_LABELS.get((name, id(labels)))
    if hit is None:
        pairs = sorted({**labels, "__name__": name}.items())
        enc = b"".join(_field(0x0A, _field(0x0A, k.encode()) + _field(0x12, v.encode())) for k, v in pairs)
        hit = _RW_LABELS[(name, id(labels))] = (labels, enc)
    return hit[1]


def encode_remote_write(chunk: list[tuple[str, dict[str, str], float, float]]) -> tuple[bytes, dict[str, str], str]:
    """Prometheus remote write 1.0 (WriteRequest, snappy), encoded by hand: the protobuf runtime
    costs ~6 us a sample, too slow to prepare 20 M (`--check-encoders` compares the two)."""
    by_series: dict[bytes, list[bytes]] = {}
    for n, lb, t, v in chunk:
        sample = b"\x09" + _F64.pack(v) + b"\x10" + _varint(int(t * 1000))
        by_series.setdefault(_rw_labels(n, lb), []).append(b"\x12" + bytes([len(sample)]) + sample)
    body = b"".join(_field(0x0A, labels + b"".join(samples)) for labels, samples in by_series.items())
    headers = {
        "content-type": "application/x-protobuf",
        "content-encoding": "snappy",
        "x-prometheus-remote-write-version": "0.1.0",
    }
    return bytes(cramjam.snappy.compress_raw(body)), headers, "/api/v1/write"


def encode_influx(chunk: list[tuple[str, dict[str, str], float, float]]) -> tuple[bytes, dict[str, str], str]:
    lines = []
    for n, lb, t, v in chunk:
        lines.append(f"bench,{_influx_tags(lb)} {n}={v} {int(t * 1000) * 1_000_000}")
    return ("\n".join(lines) + "\n").encode(), {"content-type": "text/plain; charset=utf-8"}, "/write"


_OTLP_ATTRS: dict[int, tuple[dict[str, str], bytes]] = {}
_U64 = struct.Struct("<Q")
# resource {attributes {key: "service.name" value {string_value: "bench"}}}
_OTLP_RESOURCE = _field(0x0A, _field(0x0A, _field(0x0A, b"service.name") + _field(0x12, _field(0x0A, b"bench"))))


def _otlp_attrs(labels: dict[str, str]) -> bytes:
    """A data point's attributes (field 7), encoded once per series."""
    hit = _OTLP_ATTRS.get(id(labels))
    if hit is None:
        enc = b"".join(
            _field(0x3A, _field(0x0A, k.encode()) + _field(0x12, _field(0x0A, v.encode()))) for k, v in labels.items()
        )
        hit = _OTLP_ATTRS[id(labels)] = (labels, enc)
    return hit[1]


def encode_otlp(chunk: list[tuple[str, dict[str, str], float, float]]) -> tuple[bytes, dict[str, str], str]:
    """OTLP/HTTP protobuf: one resource, one scope, a gauge per metric name; encoded by hand as
    remote write is (`--check-encoders`)."""
    points: dict[str, list[bytes]] = {}
    for n, lb, t, v in chunk:
        dp = _otlp_attrs(lb) + b"\x19" + _U64.pack(int(t * 1000) * 1_000_000) + b"\x21" + _F64.pack(v)
        points.setdefault(n, []).append(_field(0x0A, dp))
    metrics = b"".join(
        _field(0x12, _field(0x0A, n.encode()) + _field(0x2A, b"".join(dps))) for n, dps in points.items()
    )
    body = _field(0x0A, _OTLP_RESOURCE + _field(0x12, metrics))
    return body, {"content-type": "application/x-protobuf"}, "/v1/metrics"


def _influx_tags(labels: dict[str, str]) -> str:
    hit = _INFLUX_TAGS.get(id(labels))
    if hit is None:
        hit = _INFLUX_TAGS[id(labels)] = (labels, ",".join(f"{k}={val}" for k, val in sorted(labels.items())))
    return hit[1]


_INFLUX_TAGS: dict[int, tuple[dict[str, str], str]] = {}


ENCODERS: dict[str, Callable[[list[tuple[str, dict[str, str], float, float]]], tuple[bytes, dict[str, str], str]]] = {
    "json": encode_json,
    "remote-write": encode_remote_write,
    "influx": encode_influx,
    "otlp": encode_otlp,
}


def check_encoders() -> None:
    """The hand-made protobuf encoders give the messages the protobuf runtime gives for the same samples."""
    series = make_series(300)
    chunk = list(itertools.islice(sample_stream(series, time.time()), 700))  # some series twice
    rw = WriteRequest()
    by_series: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for n, lb, t, v in chunk:
        by_series.setdefault(tuple(sorted({**lb, "__name__": n}.items())), []).append((int(t * 1000), v))
    for key, samples in by_series.items():
        ts = rw.timeseries.add()
        for k, val in key:
            ts.labels.add(name=k, value=val)
        for t_ms, v in samples:
            ts.samples.add(timestamp=t_ms, value=v)
    got = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(encode_remote_write(chunk)[0])))
    assert got == rw, "remote write encoding differs"  # as messages: protobuf leaves out a 0.0 value
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
    assert ExportMetricsServiceRequest.FromString(encode_otlp(chunk)[0]) == req, "OTLP encoding differs"
    print("remote write and OTLP encodings match the protobuf runtime's")


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
    print(f"sending {len(bodies)} batches", flush=True)  # bench/engines.py starts counting CPU here
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
    ap.add_argument("--check-encoders", action="store_true", help="compare the encoders with protobuf's and exit")
    args = ap.parse_args()
    if args.check_encoders:
        check_encoders()
        return
    args.headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
