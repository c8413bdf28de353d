"""Alert evaluation as one job run, for the Celery runner (`rtpm.jobs.evaluate_rules`).

`rtpm serve` evaluates in process (app/alerting.py) when RTPM_JOBS=embedded; with
RTPM_JOBS=celery it does not, and beat sends this task instead. One run builds the services as a
worker (`build_services(role="worker")`: the same alerting, write buffer and live channel as the
server's, without auth or the embedded runners), takes the alert store's lease (so two
overlapping runs never both notify), evaluates every rule that is due with the same
`run_due_rules` the embedded runner uses, writes ALERTS/ALERTS_FOR_STATE through the write buffer,
delivers notifications (bounded wait), publishes transitions to the live channel (through Redis
when configured), and writes the heartbeat.

Every part of a run is bounded, and the bounds nest (`TaskLimits`): one rule evaluation <
the whole run (an asyncio deadline) < Celery's soft limit < its hard limit (the pool process is
killed) < the lease. So a run that hangs, even in code asyncio cannot interrupt, is killed before
its lease runs out, and the next run takes the lease over a moment later. A SIGKILLed worker
leaves its lease to expire the same way. Storage (and its connections) is closed on every path,
a skipped run included."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from rtpm.app.services import build_services
from rtpm.jobs.alert_eval import holder_id, run_due_rules, stall_seconds
from rtpm.settings import AlertingSettings, Settings
from rtpm.storage.alert_store import Heartbeat

SKIPPED = "another evaluator holds the lead"
_SETUP_SECONDS = 1.0  # opening storage, the lease, the heartbeat: a margin on top of evaluation


@dataclass(frozen=True)
class TaskLimits:
    evaluation_seconds: float  # one rule
    delivery_seconds: float  # notifications still queued when evaluation ends
    run_seconds: float  # the whole run, as an asyncio deadline
    soft_seconds: float  # Celery's soft time limit (SoftTimeLimitExceeded in the task)
    hard_seconds: float  # Celery's hard time limit (the pool process is killed)
    lease_seconds: float  # the evaluator lease a run takes: outlives the hard limit
    schedule_seconds: float  # how often beat sends the task
    stall_seconds: float  # the heartbeat is stalled when older than this


def task_limits(opts: AlertingSettings) -> TaskLimits:
    evaluation = opts.evaluation_timeout_seconds
    delivery = min(30.0, opts.notify_timeout_seconds * 2)
    run = evaluation + delivery + _SETUP_SECONDS
    soft = run + 1.0
    hard = soft + 1.0
    lease = hard + 1.0
    schedule = max(1.0, opts.poll_seconds)
    return TaskLimits(
        evaluation,
        delivery,
        run,
        soft,
        hard,
        lease,
        schedule,
        stall_seconds(schedule, lease, opts.stalled_after_rounds),
    )


async def evaluate_rules_once(settings: Settings, now_ms: int) -> dict[str, Any]:
    """One run within its deadline. Returns a summary; `skipped` in it when another run leads."""
    limits = task_limits(settings.alerting)
    async with asyncio.timeout(limits.run_seconds):
        return await _evaluate(settings, now_ms, limits)


async def _evaluate(settings: Settings, now_ms: int, limits: TaskLimits) -> dict[str, Any]:
    async with build_services(settings, role="worker") as services:
        alerting = services.alerting
        store = alerting.store
        holder = holder_id()
        if not await store.try_lead(holder, limits.lease_seconds):
            return {"job": "evaluate_rules", "skipped": SKIPPED}
        started = time.monotonic()
        try:
            results = await run_due_rules(
                store=store,
                query=alerting.query,
                notify=alerting.notify,
                write_series=alerting.write_series,
                now_ms=now_ms,
                resend_delay_seconds=settings.alerting.resend_delay_seconds,
                timeout_seconds=limits.evaluation_seconds,
                test_block_file=settings.alerting.test_block_file,
            )
            errors = sum(1 for r in results if r.error is not None)
            await store.record_heartbeat(
                Heartbeat(
                    runner="celery",
                    holder=f"{socket.gethostname()}:{os.getpid()}",
                    round_ms=now_ms,
                    rules=len(results),
                    errors=errors,
                    duration_seconds=time.monotonic() - started,
                    stall_seconds=limits.stall_seconds,
                )
            )
        finally:
            # Notifications of this run go out (bounded) while it still holds the lead.
            await alerting.dispatcher.drain(limits.delivery_seconds)
            await store.release_lead(holder)
        return {"job": "evaluate_rules", "rules": len(results), "errors": errors}
