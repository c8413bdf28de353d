"""The scale-out deployment end to end, for real: PostgreSQL, Redis (the Celery broker),
`rtpm serve --workers 2`, `rtpm worker`, `rtpm beat`, each a subprocess, and a local webhook
receiver that counts notifications. A rule fires exactly once and resolves exactly once: in normal
running, after the worker is SIGKILLed in the middle of an evaluation and started again, and after
an evaluation hangs in code asyncio cannot interrupt (the test hook RTPM_ALERTING__TEST_BLOCK_FILE,
'sync'): Celery's hard time limit kills it, its lease expires, the next run evaluates. Meanwhile
the worker's PostgreSQL connections (pg_stat_activity, by application_name) stay bounded, and drop
to none between runs: a skipped run leaks nothing.

Short intervals: beat sends `evaluate_rules` every second, one evaluation may take 0.5 s, so a
run's hard limit is 4.5 s and its lease 5.5 s (alert_task.task_limits)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from rtpm.jobs.alert_task import task_limits
from rtpm.settings import AlertingSettings
from tests._receivers import WebhookReceiver, wait_for
from tests._server import RtpmServer
from tests.conftest import fresh_schema

pytestmark = pytest.mark.integration

ALERTING = {
    "RTPM_ALERTING__POLL_SECONDS": "1",
    "RTPM_ALERTING__EVALUATION_TIMEOUT_SECONDS": "0.5",
    "RTPM_ALERTING__NOTIFY_TIMEOUT_SECONDS": "0.5",
    "RTPM_ALERTING__RESEND_DELAY_SECONDS": "3600",  # no re-sends: every webhook is a transition
    "RTPM_MAINTENANCE__WORKER_SHUTDOWN_SECONDS": "1",
}
RULE = {"name": "ProbeHigh", "expr": "probe_value > 0.5", "evaluation_interval": "1s", "for_duration": "0s"}


class Proc:
    """`python -m rtpm ...` in its own process group (a SIGKILL takes its pool processes too, as
    `docker kill` does)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtpm", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")


def test_task_limits_nest_below_the_lease() -> None:
    limits = task_limits(AlertingSettings(evaluation_timeout_seconds=0.5, notify_timeout_seconds=0.5, poll_seconds=1))
    assert limits.evaluation_seconds < limits.run_seconds < limits.soft_seconds < limits.hard_seconds
    assert limits.hard_seconds < limits.lease_seconds < limits.stall_seconds
    default = task_limits(AlertingSettings())
    assert default.hard_seconds < 60 and default.lease_seconds > default.hard_seconds


@pytest.fixture(scope="module")
def schema(pg_dsn: str) -> Iterator[str]:
    yield from fresh_schema(pg_dsn)


async def _connections(dsn: str, app: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app))
    finally:
        await conn.close()


def test_scale_out_alerting_survives_a_killed_and_a_hung_worker(
    pg_dsn: str, schema: str, redis_url: str, tmp_path: Path
) -> None:
    app = f"rtpm-{uuid.uuid4().hex[:8]}"
    hook = WebhookReceiver()
    block = tmp_path / "block"
    base = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
    env = {
        **base,
        **ALERTING,
        "RTPM_ENVIRONMENT": "test",
        "RTPM_DATABASE_URL": pg_dsn,
        "RTPM_DATABASE_SCHEMA": schema,
        "RTPM_DATABASE_POOL_SIZE": "4",
        "RTPM_REDIS_URL": redis_url,
        "RTPM_JOBS": "celery",
        "RTPM_DATA_DIR": str(tmp_path / "data"),
        "RTPM_ALERTING__WEBHOOKS": json.dumps({"ops": {"url": hook.url}}),
        "RTPM_ALERTING__TEST_BLOCK_FILE": str(block),
    }
    worker_env = {**env, "RTPM_DATABASE_APPLICATION_NAME": f"{app}-worker"}
    server = RtpmServer(
        env={**env, "RTPM_DATABASE_APPLICATION_NAME": f"{app}-api"},
        log_path=tmp_path / "serve.log",
        args=["--workers", "2"],
    )
    procs: list[Proc] = []
    counts: list[int] = []

    def worker(n: int) -> Proc:
        p = Proc(["worker", "--concurrency", "2", "--hostname", f"w{n}@%h"], worker_env, tmp_path / f"worker{n}.log")
        procs.append(p)
        return p

    def sample_connections() -> int:
        counts.append(asyncio.run(_connections(pg_dsn, f"{app}-worker")))
        return counts[-1]

    from rtpm.jobs.celery_app import make_celery
    from rtpm.settings import Settings

    make_celery(Settings(_env_file=None, redis_url=redis_url)).control.purge()  # type: ignore[call-arg]
    try:
        # Worker and beat start while the API does (each takes seconds to import on a busy machine).
        w = worker(1)
        procs.append(Proc(["beat", "--schedule", str(tmp_path / "beat-schedule")], worker_env, tmp_path / "beat.log"))
        server.start()
        c = httpx.Client(base_url=server.url, headers=server.headers, timeout=10)
        r = c.post("/api/v1/alerts/rules", json=RULE)
        assert r.status_code == 201, r.text

        def probe(value: float) -> None:
            r = c.post("/api/v1/metrics/ingest", json={"name": "probe_value", "value": value, "labels": {}})
            assert r.status_code == 201, r.text

        def episode(n: int, before: Callable[[], None] | None = None) -> None:
            """Fire, then resolve: the n-th firing and n-th resolved webhook, each exactly once."""
            probe(1.0)
            if before is not None:
                before()
            wait_for(f"firing webhook #{n}", lambda: len(hook.payloads("firing")) >= n, timeout=40)
            sample_connections()
            probe(0.0)
            wait_for(f"resolved webhook #{n}", lambda: len(hook.payloads("resolved")) >= n, timeout=40)
            sample_connections()

        # The heartbeat: /health/detailed and /metrics show the Celery runner evaluating.
        def alerting() -> dict[str, Any]:
            return dict(c.get("/health/detailed").json()["checks"]["alerting"])

        wait_for("the celery heartbeat", lambda: alerting()["status"] == "up", timeout=40)
        assert alerting()["runner"] == "celery" and "celery" in alerting()["runners"]
        metrics = c.get("/metrics").text
        assert 'rtpm_alerting_evaluation_stalled{runner="celery"} 0' in metrics
        assert 'rtpm_alerting_last_evaluation_timestamp_seconds{runner="celery"}' in metrics

        episode(1)
        # The compose health checks of worker and beat (`rtpm jobs check`), run here in process.
        from rtpm.cli import main

        with pytest.MonkeyPatch.context() as mp:
            for k, v in worker_env.items():
                mp.setenv(k, v)
            assert main(["jobs", "check", "beat"]) == 0
            assert main(["jobs", "check", "worker", "--hostname", f"w1@{socket.gethostname()}"]) == 0
            assert main(["jobs", "check", "worker", "--hostname", "nobody@nowhere", "--timeout", "1"]) == 1

        # 2. The worker is SIGKILLed (all its processes) while an evaluation is blocked.
        def kill_mid_evaluation() -> None:
            wait_for("the evaluation to block", (block.parent / "block.blocked").exists, timeout=20)
            w.kill()
            (block.parent / "block.blocked").unlink()
            worker(2)

        block.write_text("sync")
        episode(2, kill_mid_evaluation)

        # 3. An evaluation hangs where asyncio cannot interrupt it; nobody kills the worker.
        block.write_text("sync")
        episode(3, lambda: wait_for("the hang", (block.parent / "block.blocked").exists, timeout=20))
        assert "TimeLimitExceeded" in procs[-1].text() or "Hard time limit" in procs[-1].text()

        # Exactly once each, a few rounds later still.
        time.sleep(2.5)
        assert len(hook.payloads("firing")) == 3, [p["status"] for p in hook.payloads()]
        assert len(hook.payloads("resolved")) == 3, [p["status"] for p in hook.payloads()]
        # Connections: never more than the worker's pool processes can hold, none left between runs.
        print(f"worker connections sampled after each transition: {counts}")
        assert max(counts) <= 2 * 4, counts
        wait_for("the worker holding no connection between runs", lambda: sample_connections() == 0, timeout=10)
        assert "alert_evaluation_skipped" in "".join(p.text() for p in procs)  # reported, not a success

        # 4. SIGTERM (to the main process, as `docker stop` does) while a run hangs: the worker
        # gives it RTPM_MAINTENANCE__WORKER_SHUTDOWN_SECONDS, cancels it and exits, rather than
        # waiting in warm shutdown for the task to end.
        last = procs[-2] if procs[-1].log_path.name == "beat.log" else procs[-1]
        (block.parent / "block.blocked").unlink()
        hard_limits = last.text().count("Hard time limit")
        block.write_text("sync")
        wait_for("the last hang", (block.parent / "block.blocked").exists, timeout=20)
        last.proc.send_signal(signal.SIGTERM)
        last.proc.wait(timeout=30)
        assert "Soft Shutdown" in last.text(), last.text()[-3000:]
        assert last.text().count("Hard time limit") == hard_limits  # it did not wait for the limit
        c.close()
    finally:
        for p in procs:  # SIGTERM to all first, then wait for each
            if p.proc.poll() is None:
                os.killpg(p.proc.pid, signal.SIGTERM)
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
        for p in procs:
            p.stop()
        server.stop()
        hook.close()


def test_many_runs_led_or_skipped_leave_no_connection_behind(pg_dsn: str, schema: str) -> None:
    """The Celery task's body, in process, many times: half the runs find the lease held by
    someone else and skip. After every run, led or skipped, RTPM has no connection open."""
    from rtpm.app.storage import make_storage
    from rtpm.jobs.alert_task import SKIPPED, evaluate_rules_once
    from rtpm.model.alerts import AlertRule
    from rtpm.settings import Settings

    app = f"rtpm-{uuid.uuid4().hex[:8]}"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        database_url=pg_dsn,
        database_schema=f"{schema}_runs",
        database_application_name=app,
        jobs="celery",
    )

    async def run() -> list[int]:
        other = make_storage(settings.model_copy(update={"database_application_name": f"{app}-test"}))
        await other.open()
        try:
            await other.alerts.create_rule(
                AlertRule(tenant="default", name="R", expr="vector(1)", evaluation_interval_seconds=1)
            )
            seen = []
            base = int(time.time() * 1000)
            for i in range(20):
                someone_else = i % 2 == 1
                if someone_else:
                    assert await other.alerts.try_lead("someone-else", 60)
                result = await evaluate_rules_once(settings, base + i * 1000)  # the rule is due each run
                assert (result.get("skipped") == SKIPPED) is someone_else, result
                if someone_else:
                    await other.alerts.release_lead("someone-else")
                seen.append(await _connections(pg_dsn, app))
            return seen
        finally:
            await other.close()
            conn = await asyncpg.connect(pg_dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_runs" CASCADE')
            finally:
                await conn.close()

    seen = asyncio.run(run())
    print(f"RTPM connections after each of 20 runs: {seen}")
    assert seen == [0] * 20, seen
