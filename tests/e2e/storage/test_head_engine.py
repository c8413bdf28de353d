"""The head engine (RTPM_STORAGE_ENGINE=head) through real `rtpm serve` processes: two servers
on one PostgreSQL read each other's acknowledged writes at once (each read catches up with the
WAL first), and acknowledged samples survive SIGKILL exactly once (PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests._server import RtpmServer
from tests.e2e.storage.test_durability import test_acknowledged_samples_survive_sigkill as _durability

pytestmark = pytest.mark.integration

HEAD = {"RTPM_STORAGE_ENGINE": "head"}


def _promql(c: httpx.Client, expr: str) -> dict[str, float]:
    r = c.get("/api/v1/query", params={"query": expr})
    assert r.status_code == 200, r.text
    return {s["metric"]["via"]: float(s["value"][1]) for s in r.json()["data"]["result"]}


def _seed(c: httpx.Client, via: str, start: float) -> list[float]:
    body = {"metric_name": "head_rw", "labels": {"via": via}, "start_time": start - 1, "end_time": start + 600}
    r = c.post("/api/v1/metrics/query", json=body)
    assert r.status_code == 200, r.text
    return [p["value"] for s in r.json() for p in s["data_points"]]


def test_two_servers_on_one_postgres_read_each_others_writes(
    server_factory: Callable[..., RtpmServer], pg_dsn: str, pg_schema: str
) -> None:
    # no background tailing: what is tested is that every read catches up with the WAL first
    env = HEAD | {
        "RTPM_DATABASE_URL": pg_dsn,
        "RTPM_DATABASE_SCHEMA": pg_schema,
        "RTPM_JOBS": "off",
        "RTPM_STORAGE_WAL_POLL_SECONDS": "0",
    }
    a = server_factory(env=env)
    b = server_factory(env=env)
    headers = a.headers  # the key lives in the database: valid on both
    now = time.time() - 30  # in the past, so an instant query at the present sees the newest
    with (
        httpx.Client(base_url=a.url, headers=headers, timeout=30) as ca,
        httpx.Client(base_url=b.url, headers=headers, timeout=30) as cb,
    ):
        for round_, (writer, reader, via) in enumerate([(ca, cb, "a"), (cb, ca, "b"), (ca, cb, "a")]):
            ts = now + round_
            item = {"name": "head_rw", "value": float(round_ + 1), "labels": {"via": via}, "timestamp": ts}
            r = writer.post("/api/v1/metrics/batch", json={"metrics": [item]})
            assert r.status_code == 201, r.text
            # no waiting: the first read through the other process already returns the sample
            assert _promql(reader, "head_rw")[via] == float(round_ + 1)
            assert _seed(reader, via, now)[-1] == float(round_ + 1)
        # the same (series, ts) rewritten through the other process: the last written wins on both
        item = {"name": "head_rw", "value": 42.0, "labels": {"via": "a"}, "timestamp": now + 2}
        assert cb.post("/api/v1/metrics/batch", json={"metrics": [item]}).status_code == 201
        for c in (ca, cb):
            assert _seed(c, "a", now) == [1.0, 42.0]


# Both backends: PostgreSQL's write path has the most parts (series in their own transaction, the
# WAL lock, encoding before it); SQLite's record commits in the samples' transaction.
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_acknowledged_samples_survive_sigkill_with_the_head_engine(
    server_factory: Callable[..., RtpmServer], backend_env: dict[str, str]
) -> None:
    _durability(server_factory, backend_env | HEAD)
