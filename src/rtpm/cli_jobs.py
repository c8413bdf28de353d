"""`rtpm worker`, `rtpm beat` (Celery) and `rtpm jobs run NAME` (one job, once, now)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from rtpm.settings import Settings


def _celery_logging(settings: Settings) -> None:
    from rtpm.logging import configure_logging, connect_celery_signals

    configure_logging(settings)
    connect_celery_signals()  # task id and name bound into every log line of a task


def _worker(settings: Settings, args: argparse.Namespace) -> int:
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
