"""Celery end to end: `rtpm worker` and `rtpm beat` as real subprocesses, a real Redis broker of
the test's own, real PostgreSQL. Every job runs; a worker killed in the middle of a task has the
task run again elsewhere, and rollups are not double-counted."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from rtpm.model.labels import Matcher, make_labels
from rtpm.model.rollups import RESOLUTIONS_MS, compute
from rtpm.model.samples import WriteBatch
from rtpm.storage.postgres import PostgresStorage
from tests._server import free_port
from tests.conftest import _unavailable

pytestmark = pytest.mark.integration
HOUR = 3_600_000
NAME = Matcher.equal("__name__", "cpu_seconds_total")


def wait_for(check: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server", "not installed")  # fails under CI=true
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    wait_for(lambda: _ping(redis, url), 10, "the test's redis-server")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _ping(redis_mod: object, url: str) -> bool:
    try:
        return bool(redis_mod.Redis.from_url(url).ping())  # type: ignore[attr-defined]
    except Exception:
        return False


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtpm", *args], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")


async def load(dsn: str, schema: str, batch: WriteBatch) -> None:
    storage = PostgresStorage(dsn, schema=schema)
    await storage.open()
    try:
        await storage.write([batch])
    finally:
        await storage.close()


def history(start: int) -> WriteBatch:
    b = WriteBatch("default")
    for h in range(3):
        labels = make_labels("cpu_seconds_total", {"host": f"h{h}"})
        for i, ts in enumerate(range(start, start + 3 * HOUR, 15_000)):
            b.add(labels, ts, float(i % 500) * (h + 1))  # a counter with resets
    return b


async def check_rollups(dsn: str, schema: str, start: int) -> float:
    """Rollups equal what the samples give, at every resolution; returns h1's max in the first hour."""
    storage = await _open(dsn, schema)
    try:
        return await _check(storage, start)
    finally:
        await storage.close()


async def _check(storage: PostgresStorage, start: int) -> float:
    maint = storage.maintenance
    series = await storage.querier("default", start, start + 3 * HOUR).select([NAME])
    ids = {labels: sid for sid, labels in await maint.find_series("default", [NAME])}
    for width in RESOLUTIONS_MS:
        got = await maint.load_rollups(width, list(ids.values()), start - start % width, start + 3 * HOUR + width)
        for s in series:
            want = compute(s.ts_ms, s.values, width)
            have = got[ids[s.labels]]
            np.testing.assert_array_equal(have.bucket, want.bucket)
            np.testing.assert_array_equal(have.count, want.count)  # not double-counted
            np.testing.assert_allclose(have.sum, want.sum)
            np.testing.assert_allclose(have.increase, want.increase)
    return await _hour_max(storage, start)


def test_worker_and_beat_run_every_job_and_a_killed_task_runs_again(
    pg_dsn: str, pg_schema: str, broker: str, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    start = now - now % HOUR - 30 * HOUR  # yesterday: written late, so rolled up through the marks
    asyncio.run(load(pg_dsn, pg_schema, history(start)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
    env.update(
        RTPM_DATABASE_URL=pg_dsn,
        RTPM_DATABASE_SCHEMA=pg_schema,
        RTPM_REDIS_URL=broker,
        RTPM_DATA_DIR=str(tmp_path / "data"),
        RTPM_JOBS="celery",
        RTPM_MAINTENANCE__ROLLUP_INTERVAL_SECONDS="2",
        RTPM_MAINTENANCE__COMPACTION_INTERVAL_SECONDS="2",
        RTPM_ALERTING__POLL_SECONDS="2",
        RTPM_MAINTENANCE__RETENTION_INTERVAL_SECONDS="2",
        RTPM_MAINTENANCE__TASK_TIME_LIMIT_SECONDS="60",
    )
    procs: list[Proc] = []
    try:
        procs.append(Proc(["worker", "--concurrency", "1", "--hostname", "w1@%h"], env, tmp_path / "w1.log"))
        beat = Proc(["beat"], env, tmp_path / "beat.log")
        procs.append(beat)

        async def done() -> bool:
            s = PostgresStorage(pg_dsn, schema=pg_schema)  # connects on first use
            try:
                st = await s.maintenance.status("default")
                return st.chunks >= 3 and all(str(w) in st.rollup_rows for w in RESOLUTIONS_MS) and st.raw_samples == 0
            finally:
                await s.close()

        wait_for(lambda: asyncio.run(done()), 90, "rollups at every resolution and compaction, from beat + worker")
        assert "rtpm.jobs.retention" in procs[0].text()
        # alert evaluation runs on the same workers: a rule over fresh samples fires
        asyncio.run(add_rule_and_fresh_samples(pg_dsn, pg_schema))
        wait_for(lambda: asyncio.run(firing(pg_dsn, pg_schema)), 60, "the rule evaluated by a Celery worker to fire")
        beat.stop()
        procs.remove(beat)
        asyncio.run(check_rollups(pg_dsn, pg_schema, start))

        # A late sample, then a rollup task that blocks on a lock the test holds; its worker is
        # killed mid-task and the task must run again on another worker.
        late = WriteBatch("default")
        late.add(make_labels("cpu_seconds_total", {"host": "h1"}), start + 61_000, 10_000.0)
        asyncio.run(_kill_mid_task(pg_dsn, pg_schema, env, procs, tmp_path, late))
        assert asyncio.run(check_rollups(pg_dsn, pg_schema, start)) == 10_000.0
    finally:
        for p in procs:
            p.stop()


async def add_rule_and_fresh_samples(dsn: str, schema: str) -> None:
    from rtpm.model.alerts import AlertRule

    storage = await _open(dsn, schema)
    try:
        await storage.alerts.create_rule(
            AlertRule(tenant="default", name="HotCpu", expr="cpu_temp_celsius > 80", evaluation_interval_seconds=1)
        )
        b = WriteBatch("default")
        now = int(time.time() * 1000)
        for i in range(5):
            b.add(make_labels("cpu_temp_celsius", {"host": "h0"}), now - 4000 + i * 1000, 90.0)
        await storage.write([b])
    finally:
        await storage.close()


async def firing(dsn: str, schema: str) -> bool:
    storage = await _open(dsn, schema)
    try:
        return any(a.state.value == "firing" for a in await storage.alerts.active_alerts(tenant="default"))
    finally:
        await storage.close()


async def _open(dsn: str, schema: str) -> PostgresStorage:
    return PostgresStorage(dsn, schema=schema)  # connects on first use


async def _hour_max(storage: PostgresStorage, start: int) -> float:
    ids = [
        sid for sid, labels in await storage.maintenance.find_series("default", [NAME]) if dict(labels)["host"] == "h1"
    ]
    rows = await storage.maintenance.load_rollups(HOUR, ids, start, start + HOUR)
    return float(rows[ids[0]].max[0])


async def _kill_mid_task(
    dsn: str, schema: str, env: dict[str, str], procs: list[Proc], tmp_path: Path, late: WriteBatch
) -> None:
    from rtpm.jobs.celery_app import make_celery
    from rtpm.settings import Settings

    app = make_celery(Settings(_env_file=None, redis_url=env["RTPM_REDIS_URL"]))  # type: ignore[call-arg]
    app.control.purge()  # what beat queued before it stopped

    def idle() -> bool:
        active = app.control.inspect(timeout=3).active()  # None: no worker answered in time
        return active is not None and not any(active.values())

    wait_for(idle, 90, "an idle worker")
    lock = await asyncpg.connect(dsn)
    tx = lock.transaction()
    await tx.start()
    await lock.execute(f'LOCK TABLE "{schema}".rollups IN ACCESS EXCLUSIVE MODE')
    try:
        await load(dsn, schema, late)  # its rollup must wait for the lock, whoever runs it
        app.send_task("rtpm.jobs.rollup")

        def running_pid() -> int | None:
            active = app.control.inspect(timeout=3).active() or {}
            for tasks in active.values():
                for t in tasks:
                    if t["name"] == "rtpm.jobs.rollup":
                        return int(t["worker_pid"])
            return None

        pid = wait_for(running_pid, 30, "the rollup task to start")

        async def blocked() -> bool:
            n = await lock.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%rollups%'"
            )
            return bool(n)

        deadline = time.monotonic() + 30
        while not await blocked():
            assert time.monotonic() < deadline, "the task never reached the rollups table"
            await asyncio.sleep(0.2)
        procs.append(Proc(["worker", "--concurrency", "1", "--hostname", "w2@%h"], env, tmp_path / "w2.log"))
        os.kill(int(pid), signal.SIGKILL)  # the pool process running the task dies mid-task
        await asyncio.sleep(2)
    finally:
        await tx.rollback()
        await lock.close()

    async def marks_left() -> int:
        s = await _open(dsn, schema)
        try:
            return len(await s.maintenance.late_writes("rollup", 100))
        finally:
            await s.close()

    deadline = time.monotonic() + 60
    while await marks_left():
        assert time.monotonic() < deadline, "the killed task was not run again:\n" + procs[-1].text()[-3000:]
        await asyncio.sleep(0.3)
    log = procs[0].text() + procs[-1].text()
    assert "WorkerLostError" in log or "Worker exited prematurely" in log or "rejected" in log.lower()


def test_flower_runs_against_the_same_app_behind_basic_auth(broker: str, tmp_path: Path) -> None:
    """`celery -A rtpm.jobs.celery_app flower` finds the app and serves its dashboard API, as
    docker-compose.yml runs it: with FLOWER_BASIC_AUTH (from RTPM_FLOWER_BASIC_AUTH), nothing but
    /healthcheck answers without the login."""
    import httpx

    login = ("ops", "flower-test-password-9c2")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTPM_", "FLOWER_"))}
    env.update(RTPM_REDIS_URL=broker, RTPM_DATA_DIR=str(tmp_path / "data"), FLOWER_BASIC_AUTH=":".join(login))
    port = free_port()
    log = open(tmp_path / "flower.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "rtpm.jobs.celery_app",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            f"--db={tmp_path / 'flower.db'}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).text == "OK"
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "flower to answer /healthcheck")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/workers", timeout=10).status_code == 401
        assert httpx.get(f"{base}/", timeout=5).status_code == 401
        assert httpx.get(f"{base}/api/workers", auth=("ops", "wrong"), timeout=10).status_code == 401
        assert httpx.get(f"{base}/api/workers", auth=login, timeout=10).status_code == 200
        assert "Flower" in httpx.get(f"{base}/", auth=login, timeout=5).text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
