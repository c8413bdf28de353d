"""Wiring of the live hub's counters into the service's own metrics (part of the composition root)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from rtpm.metrics import WebSocketMetrics
from rtpm.realtime.hub import ConnectionHub, HubStats


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


def start_websocket_metrics(hub: ConnectionHub, metrics: WebSocketMetrics) -> asyncio.Task[None]:
    return asyncio.create_task(sync_websocket_metrics(hub, metrics), name="rtpm-ws-metrics")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
