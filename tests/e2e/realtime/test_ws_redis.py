"""Two `rtpm serve` processes sharing live updates through a Redis server owned by the test;
the Redis server goes away and comes back while both keep serving."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import websockets

from tests._realtime import recv_json, recv_until, subscribe
from tests._server import RtpmServer, free_port
from tests.conftest import IN_CI

pytestmark = pytest.mark.integration


class RedisServer:
    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 15
        while True:
            try:
                client = redis.Redis(port=self.port, socket_connect_timeout=1)
                client.ping()
                client.close()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is required under CI=true")
        pytest.skip("redis-server not installed")
    server = RedisServer(free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


def ws_url(server: RtpmServer) -> str:
    return server.url.replace("http://", "ws://") + f"/ws/metrics?token={server.api_key}"


async def ingest(server: RtpmServer, name: str, value: float) -> None:
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(
            server.url + "/api/v1/metrics/ingest", json={"name": name, "value": value}, headers=server.headers
        )
    assert r.status_code == 201, r.text


async def wait_for_value(ws: websockets.ClientConnection, name: str, value: float) -> None:
    await recv_until(
        ws, lambda m: m["type"] == "metric" and m["series"]["__name__"] == name and m["samples"][-1]["value"] == value
    )


async def test_samples_and_alerts_cross_processes_and_survive_a_redis_outage(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"RTPM_REDIS_URL": redis_server.url, "RTPM_REALTIME__REDIS_RECONNECT_MAX_SECONDS": "0.5"}
    # Both processes share one SQLite database and Redis: API keys made on one work on the other.
    data = str(tmp_path / "data")
    a = RtpmServer(env={**env, "RTPM_DATA_DIR": data, "RTPM_JOBS": "off"}, log_path=tmp_path / "a.log")
    b = RtpmServer(env={**env, "RTPM_DATA_DIR": data, "RTPM_JOBS": "off"}, log_path=tmp_path / "b.log")
    a.start()
    b.start()
    try:
        b._api_key = a.api_key
        name = f"x_{uuid.uuid4().hex[:8]}"
        async with websockets.connect(ws_url(a)) as on_a, websockets.connect(ws_url(b)) as on_b:
            for ws in (on_a, on_b):
                assert (await recv_json(ws))["type"] == "connection"
                await subscribe(ws, {"subscription": "metrics", "metrics": [name]})
                await subscribe(ws, {"subscription": "alerts"})

            # Written through A, seen on B (and on A, once: it comes back from Redis like everyone's).
            await ingest(a, name, 1.0)
            await wait_for_value(on_b, name, 1.0)
            await wait_for_value(on_a, name, 1.0)
            await ingest(a, name, 2.0)
            msg, before = await recv_until(on_a, lambda m: m["type"] == "metric")
            assert before == [] and [s["value"] for s in msg["samples"]] == [2.0]

            # An alert event on the live channel (what alerting publishes) reaches both, tenant-scoped.
            publisher = redis.Redis.from_url(redis_server.url)
            event = {"event": "firing", "labels": {"alertname": "HighCPU"}, "state": "firing"}
            for tenant in ("other-tenant", "default"):
                publisher.publish("rtpm:live:alerts", json.dumps({"o": "test", "q": 1, "t": tenant, "e": event}))
            publisher.close()
            for ws in (on_a, on_b):
                alert, _ = await recv_until(ws, lambda m: m["type"] == "alert")
                assert alert["alert"]["labels"] == {"alertname": "HighCPU"}

            # Redis goes away: each process still serves its own writes to its own clients.
            redis_server.stop()
            await ingest(a, name, 3.0)
            await wait_for_value(on_a, name, 3.0)
            await ingest(b, name, 4.0)
            await wait_for_value(on_b, name, 4.0)

            # Redis comes back on the same port: both reconnect by themselves and fan out again.
            redis_server.start()
            deadline = time.monotonic() + 30
            value = 100.0
            while True:
                value += 1
                await ingest(a, name, value)
                try:
                    await asyncio.wait_for(wait_for_value(on_b, name, value), 1.0)
                    break
                except (TimeoutError, AssertionError):
                    assert time.monotonic() < deadline, "B never saw A's writes after Redis came back"
            # ...and A's own client gets each of A's writes exactly once.
            await ingest(a, name, 500.0)
            got = []
            while not got or got[-1] != 500.0:
                msg, _ = await recv_until(on_a, lambda m: m["type"] == "metric")
                got.extend(s["value"] for s in msg["samples"])
            assert got.count(500.0) == 1
            await ingest(a, name, 501.0)
            msg, _ = await recv_until(on_a, lambda m: m["type"] == "metric")
            assert [s["value"] for s in msg["samples"]] == [501.0]
    finally:
        a.stop()
        b.stop()
