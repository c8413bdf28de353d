"""Alert evaluation as one job run, for the Celery runner (`rtpm.jobs.evaluate_rules`).

`rtpm serve` evaluates in process (bootstrap_alerts.py) when RTPM_JOBS=embedded; with
RTPM_JOBS=celery it does not, and beat sends this task instead. One run: take the alert store's
leadership (so two overlapping runs never both notify), evaluate every rule that is due with the
same `run_due_rules` the embedded runner uses, write ALERTS/ALERTS_FOR_STATE straight to storage,
deliver notifications (bounded wait), and publish transitions to the live channel through Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from rtpm.alerts.evaluator import Notification, NotificationKind
from rtpm.bootstrap_alerts import alert_event, engine_query_fn
from rtpm.jobs.alert_eval import holder_id, run_due_rules
from rtpm.model.labels import labels_from_pairs
from rtpm.model.samples import WriteBatch
from rtpm.notify.dispatcher import Dispatcher, DispatchOptions
from rtpm.notify.receivers import make_receivers
from rtpm.query.promql.engine import Engine, EngineOptions
from rtpm.settings import Settings


async def evaluate_rules_once(settings: Settings, now_ms: int) -> dict[str, Any]:
    from rtpm.bootstrap import make_pubsub, make_storage

    opts = settings.alerting
    storage = make_storage(settings)
    await storage.open()
    store = storage.alerts  # type: ignore[attr-defined]
    holder = holder_id()
    try:
        if not await store.try_lead(holder, opts.lease_seconds):
            return {"job": "evaluate_rules", "skipped": "another evaluator holds the lead"}
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

        try:
            results = await run_due_rules(
                store=store,
                query=engine_query_fn(Engine(storage, EngineOptions.from_settings(settings))),
                notify=notify,
                write_series=write_series,
                now_ms=now_ms,
                resend_delay_seconds=opts.resend_delay_seconds,
            )
        finally:
            await dispatcher.close(timeout_seconds=min(30.0, opts.notify_timeout_seconds * 2))
            if pubsub is not None:
                await pubsub.close()
            await client.aclose()
            await store.release_lead(holder)
        return {
            "job": "evaluate_rules",
            "rules": len(results),
            "errors": sum(1 for r in results if r.error is not None),
        }
    finally:
        await storage.close()
