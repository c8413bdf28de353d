"""Alerting: the query function over the PromQL engine, the notification dispatcher and its
receivers, the live-channel hook, ALERTS series through the write buffer, and the in-process
evaluation runner. `rtpm serve` and the Celery task (jobs/alert_task.py) both get theirs from
`start_alerting`, through `build_services`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from rtpm.alerts.evaluator import Notification, NotificationKind, NotifyFn, QueryFn, Sample, WriteSeriesFn
from rtpm.alerts.views import alert_to_output
from rtpm.errors import QueryError
from rtpm.ingest.buffer import WriteBuffer
from rtpm.jobs.alert_eval import AlertEvaluationRunner
from rtpm.metrics import AlertMetrics
from rtpm.model.labels import labels_from_pairs
from rtpm.model.samples import WriteBatch
from rtpm.notify.dispatcher import Dispatcher, DispatchOptions
from rtpm.notify.receivers import make_receivers
from rtpm.query.promql.engine import Engine
from rtpm.query.promql.values import Scalar, Vector
from rtpm.settings import Settings
from rtpm.storage.alert_store import AlertStore

log = structlog.get_logger("rtpm.alerts")

PublishAlertFn = Callable[[str, Mapping[str, Any]], None]  # (tenant, event); never blocks


def engine_query_fn(engine: Engine) -> QueryFn:
    """Prometheus' EngineQueryFunc: an instant query; a scalar becomes one sample without labels."""

    async def query(tenant: str, expr: str, time_ms: int) -> list[Sample]:
        result = await engine.instant(tenant, expr, time_ms)
        v = result.value
        if isinstance(v, Scalar):
            return [Sample({}, float(v.values[0]))]
        if isinstance(v, Vector):
            return [Sample(dict(lb), float(v.values[i, 0])) for i, lb in enumerate(v.labels) if v.present[i, 0]]
        raise QueryError(f"rule expression returned a {result.type}; an alerting rule needs a vector or scalar")

    return query


def buffer_write_fn(buffer: WriteBuffer) -> WriteSeriesFn:
    """ALERTS / ALERTS_FOR_STATE go through the normal write path (live subscribers and the query
    cache see them like any other commit)."""

    async def write(tenant: str, samples: list[tuple[dict[str, str], int, float]]) -> None:
        batch = WriteBatch(tenant)
        for labels, ts_ms, value in samples:
            batch.add(labels_from_pairs(labels.items()), ts_ms, value)
        await buffer.submit(batch)

    return write


def alert_event(n: Notification) -> dict[str, Any]:
    """What the live channel (WebSocket) gets on a transition: the alert as the API shows it."""
    return {"event": n.kind.value, **alert_to_output(n.alert, n.rule)}


@dataclass(frozen=True)
class Alerting:
    store: AlertStore
    query: QueryFn  # rule expressions, through the PromQL engine
    notify: NotifyFn  # receivers (through the dispatcher) and the live channel
    write_series: WriteSeriesFn  # ALERTS / ALERTS_FOR_STATE, through the write buffer
    dispatcher: Dispatcher
    client: httpx.AsyncClient
    receiver_names: tuple[str, ...]
    runner: AlertEvaluationRunner | None  # the embedded evaluator (RTPM_JOBS=embedded in rtpm serve)
    drain_seconds: float  # how long queued notifications may still take to go out on close

    async def close(self) -> None:
        # Evaluation stops first (it sends), then queued notifications get a moment to go out.
        if self.runner is not None:
            await self.runner.close()
        await self.dispatcher.close(timeout_seconds=self.drain_seconds)
        await self.client.aclose()


async def start_alerting(
    settings: Settings,
    *,
    store: AlertStore,
    engine: Engine,
    buffer: WriteBuffer,
    publish_alert: PublishAlertFn,
    metrics: AlertMetrics,
    clock: Callable[[], float],
    embedded_runner: bool,
    drain_seconds: float,
) -> Alerting:
    """Dispatcher started; with `embedded_runner` (and evaluation enabled, RTPM_JOBS=embedded)
    the evaluation runner started too. The caller closes the result; queued notifications get
    `drain_seconds` then."""
    opts = settings.alerting
    external_url = opts.external_url or f"http://{settings.host}:{settings.port}"
    client = httpx.AsyncClient(timeout=opts.notify_timeout_seconds, follow_redirects=False)
    receivers = make_receivers(opts, client, external_url=external_url)
    dispatcher = Dispatcher(
        receivers,
        DispatchOptions(
            queue_size=opts.notify_queue_size,
            max_attempts=opts.notify_max_attempts,
            backoff_seconds=opts.notify_backoff_seconds,
            backoff_max_seconds=opts.notify_backoff_max_seconds,
        ),
        metrics=metrics,
    )

    async def notify(notifications: Sequence[Notification]) -> None:
        await dispatcher.notify(notifications)
        for n in notifications:
            if n.kind is not NotificationKind.RESEND:
                publish_alert(n.alert.tenant, alert_event(n))
                metrics.notifications_sent.labels("websocket").inc()

    query = engine_query_fn(engine)
    write_series = buffer_write_fn(buffer)
    runner = None
    if embedded_runner and opts.evaluation_enabled and settings.jobs == "embedded":
        runner = AlertEvaluationRunner(
            store=store,
            query=query,
            notify=notify,
            write_series=write_series,
            settings=opts,
            clock=clock,
            metrics=metrics,
        )
    alerting = Alerting(
        store, query, notify, write_series, dispatcher, client, tuple(r.name for r in receivers), runner, drain_seconds
    )
    try:
        await dispatcher.start()
        if runner is not None:
            await runner.start()
            log.info("alert_evaluation_started", holder=runner.holder, receivers=list(alerting.receiver_names))
    except BaseException:
        await alerting.close()
        raise
    return alerting
