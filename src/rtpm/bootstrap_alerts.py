"""Composition of alerting: the query function over the PromQL engine, the notification
dispatcher and its receivers, the live-channel hook, and the in-process evaluation runner.
Called by `bootstrap.py`; the only place that knows the concrete types alerting plugs into."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from rtpm.alerts.evaluator import Notification, NotificationKind, NotifyFn, QueryFn, Sample, WriteSeriesFn
from rtpm.alerts.views import alert_to_output
from rtpm.errors import QueryError
from rtpm.jobs.alert_eval import AlertEvaluationRunner
from rtpm.model.labels import labels_from_pairs
from rtpm.model.samples import WriteBatch
from rtpm.notify.dispatcher import Dispatcher, DispatchOptions
from rtpm.notify.receivers import make_receivers
from rtpm.query.promql.engine import Engine, EngineOptions
from rtpm.query.promql.values import Scalar, Vector
from rtpm.storage.alert_store import AlertStore

if TYPE_CHECKING:
    from rtpm.bootstrap import Services

log = structlog.get_logger("rtpm.alerts")


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


def buffer_write_fn(services: Services) -> WriteSeriesFn:
    """ALERTS / ALERTS_FOR_STATE go through the normal write path."""

    async def write(tenant: str, samples: list[tuple[dict[str, str], int, float]]) -> None:
        batch = WriteBatch(tenant)
        for labels, ts_ms, value in samples:
            batch.add(labels_from_pairs(labels.items()), ts_ms, value)
        await services.buffer.submit(batch)

    return write


def alert_event(n: Notification) -> dict[str, Any]:
    """What the live channel (WebSocket) gets on a transition: the alert as the API shows it."""
    return {"event": n.kind.value, **alert_to_output(n.alert, n.rule)}


@dataclass
class Alerting:
    store: AlertStore
    dispatcher: Dispatcher
    notify: NotifyFn
    client: httpx.AsyncClient
    runner: AlertEvaluationRunner | None = None
    receiver_names: list[str] = field(default_factory=list)

    async def close(self) -> None:
        # Evaluation stops first (it sends), then queued notifications get a few seconds to go out.
        if self.runner is not None:
            await self.runner.close()
        await self.dispatcher.close(timeout_seconds=5.0)
        await self.client.aclose()


async def start_alerting(services: Services) -> Alerting:
    settings = services.settings
    opts = settings.alerting
    external_url = opts.external_url or f"http://{settings.host}:{settings.port}"
    client = httpx.AsyncClient(timeout=opts.notify_timeout_seconds, follow_redirects=False)
    receivers = make_receivers(opts, client, external_url=external_url)
    metrics = services.metrics.alerts
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
    # The live channel (realtime/, WebSocket): `publish_alert(tenant, event)`, never blocks.
    pubsub = getattr(services, "pubsub", None)
    publish_alert = pubsub.publish_alert if pubsub is not None else None

    async def notify(notifications: Sequence[Notification]) -> None:
        await dispatcher.notify(notifications)
        for n in notifications:
            if n.kind is not NotificationKind.RESEND and publish_alert is not None:
                event: Mapping[str, Any] = alert_event(n)
                publish_alert(n.alert.tenant, event)
                metrics.notifications_sent.labels("websocket").inc()

    store = services.storage.alerts
    alerting = Alerting(store, dispatcher, notify, client, receiver_names=[r.name for r in receivers])
    await dispatcher.start()
    if opts.evaluation_enabled and settings.jobs == "embedded":
        alerting.runner = AlertEvaluationRunner(
            store=store,
            query=engine_query_fn(Engine(services.storage, EngineOptions.from_settings(settings))),
            notify=notify,
            write_series=buffer_write_fn(services),
            settings=opts,
            clock=services.clock,
            metrics=metrics,
        )
        await alerting.runner.start()
        log.info("alert_evaluation_started", holder=alerting.runner.holder, receivers=alerting.receiver_names)
    return alerting
