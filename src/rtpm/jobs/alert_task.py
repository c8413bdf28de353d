"""Alert evaluation as one job run, for the Celery runner (`rtpm.jobs.evaluate_rules`).

`rtpm serve` evaluates in process (bootstrap_alerts.py) when RTPM_JOBS=embedded; with
RTPM_JOBS=celery it does not, and beat sends this task instead. One run: take the alert store's
lease (so two overlapping runs never both notify), evaluate every rule that is due with the same
`run_due_rules` the embedded runner uses, write ALERTS/ALERTS_FOR_STATE straight to storage,
deliver notifications (bounded wait), publish transitions to the live channel through Redis, and
write the heartbeat.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from rtpm.alerts.evaluator import Notification, NotificationKind
from rtpm.bootstrap_alerts import alert_event, engine_query_fn
from rtpm.jobs.alert_eval import holder_id, run_due_rules, stall_seconds
from rtpm.model.labels import labels_from_pairs
from rtpm.model.samples import WriteBatch
from rtpm.notify.dispatcher import Dispatcher, DispatchOptions
from rtpm.notify.receivers import make_receivers
from rtpm.query.promql.engine import Engine, EngineOptions
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
    from rtpm.bootstrap import make_pubsub, make_storage

    opts = settings.alerting
    storage = make_storage(settings)
    try:
        await storage.open()
        store = storage.alerts
        holder = holder_id()
        if not await store.try_lead(holder, limits.lease_seconds):
            return {"job": "evaluate_rules", "skipped": SKIPPED}
        started = time.monotonic()
        client = httpx.AsyncClient(timeout=opts.notify_timeout_seconds, follow_redirects=False)
        external_url = opts.external_url or f"http://{settings.host}:{settings.port}"
        dispatcher = Dispatcher(
            make_receivers(opts, client, external_url=external_url),
            DispatchOptions(
                queue_size=opts.notify_queue_size,
                max_attempts=opts.notify_max_attempts,
                backoff_seconds=opts.notify_backoff_seconds,
                backoff_max_seconds=opts.notify_backoff_max_seconds,
            ),
        )
        pubsub = make_pubsub(settings) if settings.redis_url else None
        try:
            await dispatcher.start()
            if pubsub is not None:
                await pubsub.start()

            async def notify(notifications: Sequence[Notification]) -> None:
                await dispatcher.notify(notifications)
                for n in notifications:
                    if n.kind is not NotificationKind.RESEND and pubsub is not None:
                        pubsub.publish_alert(n.alert.tenant, alert_event(n))

            async def write_series(tenant: str, samples: list[tuple[dict[str, str], int, float]]) -> None:
                batch = WriteBatch(tenant)
                for labels, ts_ms, value in samples:
                    batch.add(labels_from_pairs(labels.items()), ts_ms, value)
                await storage.write([batch])

            results = await run_due_rules(
                store=store,
                query=engine_query_fn(Engine(storage, EngineOptions.from_settings(settings))),
                notify=notify,
                write_series=write_series,
                now_ms=now_ms,
                resend_delay_seconds=opts.resend_delay_seconds,
                timeout_seconds=limits.evaluation_seconds,
                test_block_file=opts.test_block_file,
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
            await dispatcher.close(timeout_seconds=limits.delivery_seconds)
            if pubsub is not None:
                await pubsub.close()
            await client.aclose()
            await store.release_lead(holder)
        return {"job": "evaluate_rules", "rules": len(results), "errors": errors}
    finally:
        await storage.close()
