"""The composition root: the one place that picks implementations from settings."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from rtpm.bootstrap_alerts import Alerting, start_alerting
from rtpm.bootstrap_auth import build_auth
from rtpm.bootstrap_jobs import make_scheduler
from rtpm.bootstrap_live import start_websocket_metrics
from rtpm.bootstrap_live import stop as stop_websocket_metrics
from rtpm.cache.latest import LatestValueCache
from rtpm.cache.query import QueryCache, make_query_cache
from rtpm.ingest.buffer import WriteBuffer
from rtpm.ingest.validate import Validator
from rtpm.jobs.scheduler import EmbeddedScheduler
from rtpm.metrics import Metrics
from rtpm.realtime.hub import ConnectionHub, HubOptions
from rtpm.realtime.pubsub import MemoryPubSub, PubSub
from rtpm.security.ratelimit import RateLimiter
from rtpm.security.service import AuthService
from rtpm.settings import Settings
from rtpm.storage.base import Storage


@dataclass
class Services:
    settings: Settings
    storage: Storage
    buffer: WriteBuffer
    validator: Validator
    latest: LatestValueCache
    clock: Callable[[], float] = field(default=time.time)
    started_at: float = field(default_factory=time.time)
    auth: AuthService | None = None
    limiter: RateLimiter | None = None
    metrics: Metrics = field(default_factory=Metrics.create)
    query_cache: QueryCache | None = None  # answers about the past (None: caching off)
    scheduler: EmbeddedScheduler | None = None  # background jobs in this process (RTPM_JOBS=embedded)
    hub: ConnectionHub = field(default_factory=ConnectionHub)
    pubsub: PubSub = field(default_factory=MemoryPubSub)
    alerting: Alerting | None = None  # rule evaluation and notifications (bootstrap_alerts.py)


def make_storage(settings: Settings) -> Storage:
    if settings.database_url:
        from rtpm.storage.postgres import PostgresStorage

        return PostgresStorage(
            settings.database_url,
            schema=settings.database_schema,
            pool_size=settings.database_pool_size,
            partition_days_ahead=settings.partition_days_ahead,
            late_grace_ms=int(settings.maintenance.late_grace_seconds * 1000),
            chunk_window_ms=settings.maintenance.chunk_window_seconds * 1000,
            engine=settings.storage_engine,
            head_max_series=settings.storage_head_max_series,
            wal_poll_seconds=settings.storage_wal_poll_seconds,
            read_dsns=settings.database_read_urls,
            application_name=settings.database_application_name,
        )
    from rtpm.storage.sqlite import SqliteStorage

    return SqliteStorage(
        settings.sqlite_path,
        synchronous=settings.sqlite_synchronous,
        late_grace_ms=int(settings.maintenance.late_grace_seconds * 1000),
        chunk_window_ms=settings.maintenance.chunk_window_seconds * 1000,
        engine=settings.storage_engine,
        head_max_series=settings.storage_head_max_series,
        wal_poll_seconds=settings.storage_wal_poll_seconds,
    )


def make_pubsub(settings: Settings) -> PubSub:
    """Live fan-out: through Redis when there is one (so every process sees every commit), else in process."""
    opts = settings.realtime
    if settings.redis_url:
        from rtpm.realtime.pubsub import RedisPubSub

        return RedisPubSub(
            settings.redis_url,
            max_queued_samples=opts.publish_queue_max_samples,
            reconnect_max_seconds=opts.redis_reconnect_max_seconds,
        )
    return MemoryPubSub(max_queued_samples=opts.publish_queue_max_samples)


@asynccontextmanager
async def build_services(settings: Settings, *, metrics: Metrics | None = None) -> AsyncIterator[Services]:
    """Open storage (migrating it), start the write buffer; on exit flush and close in order."""
    metrics = metrics if metrics is not None else Metrics.create()
    storage = make_storage(settings)
    await storage.open()
    buffer = WriteBuffer(storage, settings.write_buffer, metrics.buffer)
    latest = LatestValueCache(settings.latest_cache_size)
    buffer.on_commit(latest.on_commit)
    services = Services(settings, storage, buffer, Validator(settings.limits), latest, metrics=metrics)
    services.auth, services.limiter = await build_auth(settings, storage)
    services.hub = ConnectionHub(HubOptions.from_settings(settings.realtime), clock=services.clock)
    services.pubsub = make_pubsub(settings)
    services.pubsub.subscribe(services.hub)
    buffer.on_commit(services.pubsub.publish_samples)  # never blocks: a bounded queue, drops counted
    await services.pubsub.start()
    await services.hub.start()
    ws_metrics = start_websocket_metrics(services.hub, metrics.websocket)
    await buffer.start()
    services.query_cache = make_query_cache(settings, metrics.cache)
    if services.query_cache is not None:
        buffer.on_commit(services.query_cache.on_commit)
    services.scheduler = make_scheduler(settings, storage, metrics.jobs)
    if services.scheduler is not None:
        await services.scheduler.start()
    try:
        services.alerting = await start_alerting(services)
        yield services
    finally:
        if services.scheduler is not None:
            await services.scheduler.stop()
        if services.alerting is not None:  # evaluation writes ALERTS through the buffer: stop it first
            await services.alerting.close()
        # The write buffer must drain before storage closes: acknowledged writes are committed.
        await buffer.close()
        await stop_websocket_metrics(ws_metrics)
        await services.hub.close()
        await services.pubsub.close()
        if services.limiter is not None:
            await services.limiter.close()
        if services.query_cache is not None:
            await services.query_cache.close()
        await storage.close()
