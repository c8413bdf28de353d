"""A remote-write sender that meets a full write buffer gets 503 + Retry-After, retries, and in the
end every sample is stored exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cramjam
import httpx
import pytest

from rtpm.ingest.proto import WriteRequest
from tests._server import RtpmServer

pytestmark = pytest.mark.integration

HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
SERIES = 20
REQUESTS = 60
PER_REQUEST = 40  # samples: 20 series x 2 timestamps


def build(index: int, base_ms: int) -> tuple[bytes, dict[tuple[str, int], float]]:
    w = WriteRequest()
    sent: dict[tuple[str, int], float] = {}
    for s in range(SERIES):
        ts = w.timeseries.add()
        ts.labels.add(name="__name__", value="rw_retry")
        ts.labels.add(name="s", value=str(s))
        for k in range(PER_REQUEST // SERIES):
            t = base_ms + (index * 2 + k) * 1000
            value = index * 1000.0 + s * 10 + k
            ts.samples.add(timestamp=t, value=value)
            sent[(str(s), t)] = value
    return bytes(cramjam.snappy.compress_raw(w.SerializeToString())), sent


def test_503_then_retry_stores_every_sample_exactly_once(server_factory: Callable[..., RtpmServer]) -> None:
    server = server_factory(
        env={
            "RTPM_WRITE_BUFFER__MAX_PENDING_SAMPLES": str(PER_REQUEST + 10),
            "RTPM_WRITE_BUFFER__FLUSH_INTERVAL_SECONDS": "0.05",
        }
    )
    base_ms = (int(time.time()) - 600) * 1000
    bodies = [build(i, base_ms) for i in range(REQUESTS)]
    refused = 0

    def send(body: bytes) -> int:
        nonlocal refused
        with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
            for _ in range(2000):
                r = c.post("/api/v1/write", content=body, headers=HEADERS)
                if r.status_code == 204:
                    return 1
                assert r.status_code == 503, r.text
                assert int(r.headers["Retry-After"]) >= 1
                refused += 1
                time.sleep(0.02)  # a test sender: shorter than Retry-After asks, to keep the test quick
        raise AssertionError("never accepted")

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(send, [b for b, _ in bodies])) == REQUESTS
    assert refused > 0, "the write buffer never filled up: the test did not exercise a retry"

    expected: dict[tuple[str, int], float] = {}
    for _, sent in bodies:
        expected.update(sent)
    at = (base_ms + REQUESTS * 2000) / 1000 + 1
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        r = c.get("/api/v1/query", params={"query": "rw_retry[1h]", "time": str(at)})
        assert r.status_code == 200, r.text
        result = r.json()["data"]["result"]
    stored: dict[tuple[str, int], float] = {}
    count = 0
    for series in result:
        for t, v in series["values"]:
            stored[(series["metric"]["s"], round(float(t) * 1000))] = float(v)
            count += 1
    assert count == SERIES * REQUESTS * (PER_REQUEST // SERIES)
    assert stored == expected
