"""Graceful shutdown: SIGTERM during ingest stores every acknowledged sample, refuses what it
cannot take (503 or a closed connection, never a 5xx that lost data) and exits 0 within a bound."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests._ops import OPEN_ENV
from tests._server import RtpmServer

pytestmark = pytest.mark.integration

BATCH = 200
EXIT_BOUND_SECONDS = 30  # uvicorn's graceful timeout (10 s) + the final flush, with room to spare


def test_sigterm_during_ingest_keeps_every_acknowledged_sample(server_factory: Callable[..., RtpmServer]) -> None:
    server = server_factory(env=OPEN_ENV)
    base = time.time() - 600
    acked: set[tuple[int, int]] = set()
    statuses: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client(worker: int) -> None:
        seq = 0
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                items = [
                    {
                        "name": "sigterm_ingest",
                        "value": float(seq + i),
                        "labels": {"worker": str(worker)},
                        "timestamp": base + (seq + i) * 0.001,
                    }
                    for i in range(BATCH)
                ]
                try:
                    r = c.post("/api/v1/metrics/batch", json={"metrics": items})
                except httpx.HTTPError:
                    time.sleep(0.01)  # closed or refused while shutting down: not acknowledged
                    seq += BATCH
                    continue
                with lock:
                    statuses.add(r.status_code)
                    if r.status_code == 201:
                        acked.update((worker, seq + i) for i in range(BATCH))
                seq += BATCH

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 4000:
                    break
            time.sleep(0.05)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        rc = server.proc.wait(timeout=EXIT_BOUND_SECONDS)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert len(acked) >= 4000, "clients did not get enough writes acknowledged before SIGTERM"
    assert rc == 0, server.log()
    assert statuses <= {201, 503}, f"unexpected statuses during shutdown: {statuses}"
    log = server.log()
    assert '"stopped"' in log or "stopped" in log, log

    server.start()
    stored: dict[tuple[int, int], int] = {}
    with httpx.Client(base_url=server.url, timeout=60) as c:
        body = {"metric_name": "sigterm_ingest", "start_time": base - 1, "end_time": base + 3600}
        for worker in range(4):
            r = c.post("/api/v1/metrics/query", json=body | {"labels": {"worker": str(worker)}})
            assert r.status_code == 200, r.text
            for series in r.json():
                for p in series["data_points"]:
                    key = (worker, int(p["value"]))
                    stored[key] = stored.get(key, 0) + 1
    missing = acked - stored.keys()
    assert not missing, f"{len(missing)} acknowledged samples lost, e.g. {sorted(missing)[:5]}"
    assert all(n == 1 for n in stored.values()), "a sample is stored twice"


async def test_sigterm_closes_live_websockets_with_going_away(server_factory: Callable[..., RtpmServer]) -> None:
    """Live clients are told 1001 (going away), not dropped, when the server is stopped."""
    import asyncio
    import json

    import websockets
    from websockets.exceptions import ConnectionClosed

    server = server_factory(env=OPEN_ENV)
    url = server.url.replace("http://", "ws://") + "/ws/metrics"
    async with websockets.connect(url) as ws:
        greeting = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        assert greeting["type"] == "connection"
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
