"""Live fan-out (WebSocket): the pub/sub between processes, and the hub's counters copied into
the service's own metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from rtpm.metrics import WebSocketMetrics
from rtpm.realtime.hub import ConnectionHub, HubStats
from rtpm.realtime.pubsub import MemoryPubSub, PubSub
from rtpm.settings import Settings


def make_pubsub(settings: Settings) -> PubSub:
    """Through Redis when there is one (so every process sees every commit), else in process."""
    opts = settings.realtime
    if settings.redis_url:
        from rtpm.realtime.pubsub import RedisPubSub

        return RedisPubSub(
            settings.redis_url,
            max_queued_samples=opts.publish_queue_max_samples,
            reconnect_max_seconds=opts.redis_reconnect_max_seconds,
        )
    return MemoryPubSub(max_queued_samples=opts.publish_queue_max_samples)


async def sync_websocket_metrics(hub: ConnectionHub, metrics: WebSocketMetrics, interval_seconds: float = 1.0) -> None:
    """Copy the hub's counters into rtpm_websocket_* every `interval_seconds` (the hub counts in
    plain integers on its hot path; this turns them into Prometheus instruments off it)."""
    last = HubStats()
    while True:
        await asyncio.sleep(interval_seconds)
        st = replace(hub.stats)
        metrics.connections.set(st.connections)
        metrics.messages_sent.inc(max(0, st.messages_sent - last.messages_sent))
        for reason, now, before in (
            ("queue_full", st.samples_dropped + st.alerts_dropped, last.samples_dropped + last.alerts_dropped),
            ("coalesced", st.samples_coalesced, last.samples_coalesced),
            ("closed", st.closed_lagging, last.closed_lagging),
        ):
            metrics.messages_dropped.labels(reason).inc(max(0, now - before))
        last = st


@asynccontextmanager
async def websocket_metrics(hub: ConnectionHub, metrics: WebSocketMetrics) -> AsyncIterator[None]:
    """`sync_websocket_metrics` as a task for the duration of the block."""
    task = asyncio.create_task(sync_websocket_metrics(hub, metrics), name="rtpm-ws-metrics")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
