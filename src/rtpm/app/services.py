"""`Services`: everything one process runs on, built once by `build_services` and never changed
after. The start order below is the order of dependence; shutdown is its exact reverse (one
AsyncExitStack), so whatever is started is also closed, a failed start included."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from rtpm.app.alerting import Alerting, start_alerting
from rtpm.app.auth import build_auth, make_limiter
from rtpm.app.jobs import make_scheduler
from rtpm.app.live import make_pubsub, websocket_metrics
from rtpm.app.storage import storage_session
from rtpm.cache.query import QueryCache, make_query_cache
from rtpm.ingest.buffer import WriteBuffer
from rtpm.ingest.validate import Validator
from rtpm.jobs.scheduler import EmbeddedScheduler
from rtpm.metrics import Metrics
from rtpm.query.promql.engine import Engine, EngineOptions
from rtpm.realtime.hub import ConnectionHub, HubOptions
from rtpm.realtime.pubsub import PubSub
from rtpm.security.ratelimit import RateLimiter
from rtpm.security.service import AuthService
from rtpm.settings import Settings
from rtpm.storage.base import Storage

Role = Literal["server", "worker"]
"""`server`: `rtpm serve`, everything. `worker`: one Celery task run (jobs/alert_task.py): no
AuthService or rate limiter (no first-start admin made from a worker), no embedded scheduler or
evaluation runner (the task itself is the run), and notifications still queued at shutdown are
not waited for (the run drains them within its limits); the rest as the server has it."""


@dataclass(frozen=True)
class Services:
    settings: Settings
    storage: Storage
    buffer: WriteBuffer  # the write path: every sample, ALERTS included, is committed through it
    validator: Validator
    engine: Engine  # PromQL, for the query routes and alert rules alike
    metrics: Metrics
    hub: ConnectionHub  # WebSocket connections of this process
    pubsub: PubSub  # live fan-out between processes (Redis) or within this one
    alerting: Alerting  # rule store, notifications, the embedded evaluator
    auth: AuthService | None  # None in a worker
    limiter: RateLimiter | None  # None in a worker
    query_cache: QueryCache | None  # answers about the past (None: caching off)
    scheduler: EmbeddedScheduler | None  # background jobs in this process (RTPM_JOBS=embedded)
    clock: Callable[[], float] = time.time
    started_at: float = field(default_factory=time.time)


@asynccontextmanager
async def build_services(
    settings: Settings, *, metrics: Metrics | None = None, role: Role = "server"
) -> AsyncIterator[Services]:
    """Open storage (migrating it) and start everything on it; on exit stop it all in reverse:
    the scheduler and alert evaluation first (they write through the buffer), then the buffer
    drains (acknowledged writes are committed), then the live channel, and storage last."""
    metrics = metrics if metrics is not None else Metrics.create()
    clock = time.time
    server = role == "server"
    async with AsyncExitStack() as stack:
        storage = await stack.enter_async_context(storage_session(settings, start=True))

        limiter: RateLimiter | None = None
        auth: AuthService | None = None
        if server:
            limiter = make_limiter(settings)
            stack.push_async_callback(limiter.close)
            auth = await build_auth(settings, storage, limiter)

        hub = ConnectionHub(HubOptions.from_settings(settings.realtime), clock=clock)
        pubsub = make_pubsub(settings)
        pubsub.subscribe(hub)
        await pubsub.start()
        stack.push_async_callback(pubsub.close)
        await hub.start()
        stack.push_async_callback(hub.close)
        await stack.enter_async_context(websocket_metrics(hub, metrics.websocket))

        query_cache = make_query_cache(settings, metrics.cache)
        if query_cache is not None:
            stack.push_async_callback(query_cache.close)
        buffer = WriteBuffer(storage, settings.write_buffer, metrics.buffer)
        buffer.on_commit(pubsub.publish_samples)  # never blocks: a bounded queue, drops counted
        if query_cache is not None:
            buffer.on_commit(query_cache.on_commit)
        await buffer.start()
        stack.push_async_callback(buffer.close)

        engine = Engine(storage, EngineOptions.from_settings(settings))
        alerting = await start_alerting(
            settings,
            store=storage.alerts,
            engine=engine,
            buffer=buffer,
            publish_alert=pubsub.publish_alert,
            metrics=metrics.alerts,
            clock=clock,
            embedded_runner=server,
            # a worker's run drains its notifications itself, within its task limits, while it leads
            drain_seconds=5.0 if server else 0.0,
        )
        stack.push_async_callback(alerting.close)

        scheduler = make_scheduler(settings, storage, metrics.jobs) if server else None
        if scheduler is not None:
            await scheduler.start()
            stack.push_async_callback(scheduler.stop)

        yield Services(
            settings=settings,
            storage=storage,
            buffer=buffer,
            validator=Validator(settings.limits),
            engine=engine,
            metrics=metrics,
            hub=hub,
            pubsub=pubsub,
            alerting=alerting,
            auth=auth,
            limiter=limiter,
            query_cache=query_cache,
            scheduler=scheduler,
            clock=clock,
        )
