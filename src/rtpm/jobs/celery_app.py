"""The Celery runner: the same jobs as the embedded scheduler, as Celery tasks.

    rtpm worker            # = celery -A rtpm.jobs.celery_app worker
    rtpm beat              # = celery -A rtpm.jobs.celery_app beat
    celery -A rtpm.jobs.celery_app flower

Tasks are thin: each builds the storage from settings, runs one job function with a time (epoch
ms, default now) and closes it. They acknowledge late and are rejected when their worker dies,
so a killed worker's task runs again elsewhere; the jobs are idempotent (rollups are replaced,
never added to), so running again never double-counts.

Time limits are sized to each task's interval: `evaluate_rules` by `alert_task.task_limits` (a
few seconds over one evaluation's timeout), a maintenance job by its interval (capped by
`task_time_limit_seconds`; watermarks keep what a cut run did). An evaluation run that finds
another run holding the lead does not report success: it is rejected (Flower shows it as failed
with the reason), and the heartbeat it did not write shows in /health/detailed. `rtpm worker`
maps SIGTERM to Celery's soft shutdown: running tasks get `worker_shutdown_seconds`, then are
cancelled and run again elsewhere, so the worker exits within its grace period."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from celery import Celery, Task
from celery.exceptions import Reject

from rtpm.errors import StorageUnavailable
from rtpm.jobs.registry import JOBS
from rtpm.settings import MaintenanceSettings, Settings

log = structlog.get_logger("rtpm.jobs")


def broker_url(settings: Settings) -> str:
    return settings.maintenance.celery_broker_url or settings.redis_url or "redis://127.0.0.1:6379/0"


async def run_job(settings: Settings, name: str, now_ms: int) -> dict[str, Any]:
    from rtpm.app.storage import storage_session

    async with storage_session(settings, start=True) as storage:
        result = await JOBS[name].run(storage.maintenance, now_ms, settings.maintenance)
    return {"job": result.job, "items": result.items, "samples": result.samples, "details": result.details}


def job_time_limit(opts: MaintenanceSettings, interval_seconds: float) -> float:
    """A maintenance job's hard time limit: its interval (at least 30 s), at most the cap."""
    return min(opts.task_time_limit_seconds, max(30.0, interval_seconds))


def make_celery(settings: Settings) -> Celery:
    from rtpm.jobs.alert_task import SKIPPED, task_limits

    opts = settings.maintenance
    limits = task_limits(settings.alerting)
    app = Celery("rtpm", broker=broker_url(settings))
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=opts.task_time_limit_seconds,
        task_soft_time_limit=opts.task_time_limit_seconds * 0.9,
        worker_soft_shutdown_timeout=opts.worker_shutdown_seconds,
        worker_send_task_events=True,  # Flower sees tasks, skipped ones included
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": max(120, int(opts.task_time_limit_seconds * 2))},
        worker_hijack_root_logger=False,
        beat_schedule={
            **{
                f"rtpm-{name}": {"task": f"rtpm.jobs.{name}", "schedule": job.interval(opts)}
                for name, job in JOBS.items()
            },
            "rtpm-evaluate-rules": {
                "task": "rtpm.jobs.evaluate_rules",
                "schedule": limits.schedule_seconds,
                # stale runs are dropped: a backlog after an outage collapses into the next run
                "options": {"expires": max(5.0, limits.schedule_seconds * 3)},
            },
        },
    )

    for name in JOBS:

        def task(self: Task, now_ms: int | None = None, _name: str = name) -> dict[str, Any]:
            when = now_ms if now_ms is not None else int(time.time() * 1000)
            return asyncio.run(run_job(settings, _name, when))

        hard = job_time_limit(opts, JOBS[name].interval(opts))
        app.task(
            name=f"rtpm.jobs.{name}",
            bind=True,
            acks_late=True,
            time_limit=hard,
            soft_time_limit=hard * 0.9,
            autoretry_for=(StorageUnavailable,),
            retry_backoff=True,
            retry_backoff_max=300,
            max_retries=10,
        )(task)

    @app.task(
        name="rtpm.jobs.evaluate_rules",
        bind=True,
        acks_late=True,
        time_limit=limits.hard_seconds,
        soft_time_limit=limits.soft_seconds,
        # No retries: beat sends the next run within a second or so anyway.
    )
    def evaluate_rules(self: Task, now_ms: int | None = None) -> dict[str, Any]:
        from rtpm.jobs.alert_task import evaluate_rules_once

        when = now_ms if now_ms is not None else int(time.time() * 1000)
        result = asyncio.run(evaluate_rules_once(settings, when))
        if result.get("skipped"):
            log.warning("alert_evaluation_skipped", reason=SKIPPED, task_id=self.request.id)
            raise Reject(f"skipped: {SKIPPED}", requeue=False)
        return result

    return app


def __getattr__(attr: str) -> Celery:
    """`celery -A rtpm.jobs.celery_app ...` (Flower) finds `app`, built from the environment."""
    if attr in ("app", "celery"):
        global _app
        if _app is None:
            _app = make_celery(Settings())
        return _app
    raise AttributeError(attr)


_app: Celery | None = None
