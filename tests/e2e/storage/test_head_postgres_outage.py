"""PostgreSQL going away under the head engine while clients ingest (issue 14, acceptance 2).

The connections between `rtpm serve` and PostgreSQL are cut by a proxy (every open connection
dropped, new ones refused: what RTPM sees of a PostgreSQL restart, without restarting the server
the other tests share), twice, while four clients ingest: writes in the outage get a clear 503
with Retry-After, /health/detailed reports storage down, and RTPM recovers by itself when the
connections come back. Every sample answered 201 is then stored exactly once, in the process's
head and after a restart that rebuilds it from the WAL, and of every request never answered (or
refused) either all samples are stored or none."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from tests._proxy import TcpProxy
from tests._server import RtpmServer
from tests.e2e.storage._clients import IngestClients

pytestmark = pytest.mark.integration


def _outage(c: httpx.Client, proxy: TcpProxy, clients: IngestClients) -> None:
    proxy.cut()
    deadline = time.monotonic() + 30
    while True:  # a write in flight when the connections dropped may still be finishing
        r = c.post("/api/v1/metrics/batch", json={"metrics": [{"name": "pg_outage_probe", "value": 1.0}]})
        if r.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert "postgres" in r.json()["error"]["message"]
    detailed = c.get("/health/detailed")
    assert detailed.status_code == 503, detailed.text
    assert detailed.json()["status"] == "unhealthy"
    assert detailed.json()["checks"]["storage"]["status"] == "down"
    refused = clients.statuses.get(503, 0)
    time.sleep(1.0)  # the clients meet the outage too
    assert clients.statuses.get(503, 0) > refused, f"the clients' writes were not refused: {clients.statuses}"

    proxy.restore()
    deadline = time.monotonic() + 30
    while c.get("/health/detailed").status_code != 200:
        assert time.monotonic() < deadline, "RTPM did not recover after PostgreSQL came back"
        time.sleep(0.2)
    clients.wait_for(2000)  # the clients' writes go through again, with nothing done by hand


def test_postgres_outage_under_the_head_engine_loses_and_doubles_nothing(
    server_factory: Callable[..., RtpmServer], pg_dsn: str, pg_schema: str
) -> None:
    target = urlsplit(pg_dsn)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        dsn = pg_dsn.replace(f"{target.hostname}:{target.port or 5432}", f"127.0.0.1:{proxy.port}")
        env = {
            "RTPM_STORAGE_ENGINE": "head",
            "RTPM_DATABASE_URL": dsn,
            "RTPM_DATABASE_SCHEMA": pg_schema,
            "RTPM_LIMITS__MAX_POINTS_PER_SERIES": "1000000",
        }
        server = server_factory(env=env)
        base = time.time() - 120
        with (
            httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c,
            IngestClients(server, "pg_outage", base, step_s=0.001) as clients,
        ):
            clients.wait_for(2000)
            _outage(c, proxy, clients)
            _outage(c, proxy, clients)  # a second time: the recovered state recovers again
        clients.check(server)  # from the process's head, which lived through the outages
        server.restart()
        clients.check(server)  # from the WAL: the head rebuilt at start
