"""`rtpm worker`, `rtpm beat` (Celery), `rtpm jobs run NAME` (one job, once, now) and
`rtpm jobs check` (a container health check: alert evaluation is alive)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from typing import Any

from rtpm.settings import Settings


def _celery_logging(settings: Settings) -> None:
    from rtpm.logging import configure_logging, connect_celery_signals

    configure_logging(settings)
    connect_celery_signals()  # task id and name bound into every log line of a task


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    # SIGTERM as Celery's cold shutdown with a soft phase: running tasks get
    # RTPM_MAINTENANCE__WORKER_SHUTDOWN_SECONDS, then are cancelled (and, acknowledged late, run
    # again elsewhere). Celery's default warm shutdown waits for them however long they take.
    # Read by billiard when it is first imported, so before anything imports Celery.
    os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    from rtpm.jobs.celery_app import make_celery

    _celery_logging(settings)

    argv = ["worker", f"--loglevel={args.loglevel}", f"--concurrency={args.concurrency}"]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    make_celery(settings).worker_main(argv)
    return 0


def _beat(settings: Settings, args: argparse.Namespace) -> int:
    from rtpm.jobs.celery_app import make_celery

    _celery_logging(settings)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = args.schedule or str(settings.data_dir / "celerybeat-schedule")
    make_celery(settings).start(["beat", f"--loglevel={args.loglevel}", f"--schedule={schedule}"])
    return 0


def _run_once(settings: Settings, args: argparse.Namespace) -> int:
    from rtpm.jobs.celery_app import run_job

    now_ms = int(args.now * 1000) if args.now is not None else int(time.time() * 1000)
    result: dict[str, Any] = asyncio.run(run_job(settings, args.name, now_ms))
    print(result)
    return 0


async def _heartbeat_problem(settings: Settings) -> str | None:
    from rtpm.app.storage import storage_session

    if not settings.alerting.evaluation_enabled:
        return None
    async with storage_session(settings) as storage:
        beats = {b.runner: b for b in await storage.alerts.heartbeats()}
    beat = beats.get("celery")
    now = time.time()
    if beat is None:
        return "no alert evaluation round has completed yet"
    if beat.stalled(now):
        return f"the last alert evaluation round was {beat.age_seconds(now):.0f} s ago (stalled after {beat.stall_seconds:g} s)"
    return None


def _check(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when this role works: `worker` answers a ping through the broker and alert rounds
    are completing (the heartbeat in the database is fresh); `beat`: rounds are completing (beat
    sends them). Used as the compose health checks; prints the reason when unhealthy."""
    try:
        problem = asyncio.run(asyncio.wait_for(_heartbeat_problem(settings), args.timeout))
    except Exception as exc:  # storage away, timeout: unhealthy, say why
        problem = f"cannot read the alert heartbeat: {type(exc).__name__}: {exc}"
    if problem is None and args.role == "worker":
        from rtpm.jobs.celery_app import make_celery

        node = args.hostname or f"celery@{socket.gethostname()}"
        replies = make_celery(settings).control.ping(destination=[node], timeout=args.timeout)
        if not replies:
            problem = f"worker {node} did not answer a ping within {args.timeout:g} s"
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy")
    return 0


def add_job_commands(sub: Any) -> None:
    from rtpm.jobs.registry import JOBS

    worker = sub.add_parser("worker", help="run a Celery worker for the background jobs")
    worker.add_argument("--concurrency", type=int, default=2)
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("--hostname", default=None, help="Celery node name (default: celery@<host>)")
    worker.set_defaults(func=_worker)
    beat = sub.add_parser("beat", help="run Celery beat: schedules the background jobs")
    beat.add_argument("--loglevel", default="INFO")
    beat.add_argument("--schedule", default=None, help="beat's schedule file (default: in the data dir)")
    beat.set_defaults(func=_beat)
    jobs = sub.add_parser("jobs", help="run one background job now, in this process")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    run = jobs_sub.add_parser("run", help="run a job once")
    run.add_argument("name", choices=sorted(JOBS))
    run.add_argument("--now", type=float, default=None, help="unix seconds to run as (default: now)")
    run.set_defaults(func=_run_once)
    check = jobs_sub.add_parser("check", help="health check of a worker or beat: alert evaluation is alive")
    check.add_argument("role", choices=["worker", "beat"])
    check.add_argument("--hostname", default=None, help="the worker's Celery node name (default: celery@<host>)")
    check.add_argument("--timeout", type=float, default=5.0)
    check.set_defaults(func=_check)
