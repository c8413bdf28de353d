"""Durability: SIGKILL while clients ingest; every acknowledged sample is there exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests._server import RtpmServer

pytestmark = pytest.mark.integration


def test_acknowledged_samples_survive_sigkill(
    server_factory: Callable[..., RtpmServer], backend_env: dict[str, str]
) -> None:
    server = server_factory(env=backend_env)
    base = time.time() - 600
    acked: set[tuple[int, int]] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client(worker: int) -> None:
        seq = 0
        with httpx.Client(base_url=server.url, timeout=10, headers=server.headers) as c:
            while not stop.is_set():
                items = [
                    {
                        "name": "durable",
                        "value": float(seq + i),
                        "labels": {"worker": str(worker)},
                        "timestamp": base + (seq + i) * 0.001,
                    }
                    for i in range(200)
                ]
                try:
                    r = c.post("/api/v1/metrics/batch", json={"metrics": items})
                except httpx.HTTPError:
                    return  # the server died mid-request: not acknowledged
                if r.status_code == 201:
                    with lock:
                        acked.update((worker, seq + i) for i in range(200))
                seq += 200

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 4000:
                break
        time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 4000, "clients did not get enough writes acknowledged before the kill"

    server.start()
    with httpx.Client(base_url=server.url, timeout=60, headers=server.headers) as c:
        body = {"metric_name": "durable", "start_time": base - 1, "end_time": base + 3600}
        stored: dict[tuple[int, int], int] = {}
        for worker in range(4):
            r = c.post("/api/v1/metrics/query", json=body | {"labels": {"worker": str(worker)}})
            if r.status_code != 200:
                continue
            for series in r.json():
                for p in series["data_points"]:
                    key = (worker, int(p["value"]))
                    stored[key] = stored.get(key, 0) + 1
    missing = acked - stored.keys()
    assert not missing, f"{len(missing)} acknowledged samples lost, e.g. {sorted(missing)[:5]}"
    assert all(n == 1 for n in stored.values()), "a sample is stored twice"
