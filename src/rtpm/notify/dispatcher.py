"""Dispatcher: the NotifyFn behind the evaluator. Never blocks it.

Every receiver has its own bounded queue and worker, so a receiver that is down (or slow) delays
only itself. `notify()` groups notifications by rule and kind, puts one batch on each accepting
receiver's queue, and drops (and counts) when a queue is full. A worker sends a batch, retrying
retryable failures with exponential backoff and jitter up to `max_attempts`; every outcome is
counted per receiver kind.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from rtpm.alerts.evaluator import Notification
from rtpm.notify.receivers.base import DeliveryError, Receiver

if TYPE_CHECKING:
    from rtpm.metrics import AlertMetrics

log = structlog.get_logger("rtpm.notify", component="notify")  # lazy: configured later


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    queue_size: int = 1000  # batches waiting per receiver
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0


@dataclass
class ReceiverStats:
    sent: int = 0  # notifications delivered
    failed: int = 0  # notifications given up on after their attempts
    dropped: int = 0  # notifications refused because the queue was full
    retries: int = 0
    last_error: str | None = None


@dataclass
class _Lane:
    receiver: Receiver
    queue: asyncio.Queue[list[Notification]]
    stats: ReceiverStats = field(default_factory=ReceiverStats)
    task: asyncio.Task[None] | None = None


class Dispatcher:
    def __init__(
        self,
        receivers: Sequence[Receiver],
        options: DispatchOptions | None = None,
        *,
        metrics: AlertMetrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.options = options or DispatchOptions()
        self._metrics = metrics
        self._sleep = sleep
        self._lanes = {r.name: _Lane(r, asyncio.Queue(self.options.queue_size)) for r in receivers}
        self._closing = False

    @property
    def stats(self) -> dict[str, ReceiverStats]:
        return {name: lane.stats for name, lane in self._lanes.items()}

    @property
    def receivers(self) -> list[Receiver]:
        return [lane.receiver for lane in self._lanes.values()]

    async def start(self) -> None:
        for lane in self._lanes.values():
            if lane.task is None:
                lane.task = asyncio.create_task(self._work(lane), name=f"rtpm-notify-{lane.receiver.name}")

    async def notify(self, notifications: Sequence[Notification]) -> None:
        """Queue `notifications` for every receiver that takes them. Returns at once."""
        groups: dict[tuple[int | None, str], list[Notification]] = {}
        for n in notifications:
            groups.setdefault((n.rule.id, n.kind.value), []).append(n)
        for batch in groups.values():
            for lane in self._lanes.values():
                mine = [n for n in batch if lane.receiver.accepts(n)]
                if not mine:
                    continue
                if self._closing:
                    self._drop(lane, len(mine), "shutting down")
                    continue
                try:
                    lane.queue.put_nowait(mine)
                except asyncio.QueueFull:
                    self._drop(lane, len(mine), "queue full")
                    continue
                self._queue_gauge(len(mine))

    def _drop(self, lane: _Lane, n: int, why: str) -> None:
        lane.stats.dropped += n
        if self._metrics is not None:
            self._metrics.notifications_dropped.inc(n)
        log.warning("notifications_dropped", receiver=lane.receiver.name, count=n, reason=why)

    def _queue_gauge(self, delta: int) -> None:
        if self._metrics is not None:
            self._metrics.notifications_queue_length.inc(delta)

    async def _work(self, lane: _Lane) -> None:
        while True:
            batch = await lane.queue.get()
            try:
                await self._deliver(lane, batch)
            finally:
                self._queue_gauge(-len(batch))
                lane.queue.task_done()

    async def _deliver(self, lane: _Lane, batch: list[Notification]) -> None:
        r = lane.receiver
        opts = self.options
        for attempt in range(1, opts.max_attempts + 1):
            try:
                await r.send(batch)
            except DeliveryError as exc:
                lane.stats.last_error = str(exc)
                if not exc.retryable or attempt == opts.max_attempts:
                    lane.stats.failed += len(batch)
                    if self._metrics is not None:
                        self._metrics.notifications_failed.labels(r.kind).inc(len(batch))
                    log.error(
                        "notification_failed", receiver=r.name, attempts=attempt, alerts=len(batch), error=str(exc)
                    )
                    return
                lane.stats.retries += 1
                delay = min(opts.backoff_max_seconds, opts.backoff_seconds * 2 ** (attempt - 1))
                log.warning("notification_retry", receiver=r.name, attempt=attempt, delay_seconds=delay, error=str(exc))
                await self._sleep(delay * random.uniform(0.8, 1.2))
                continue
            lane.stats.sent += len(batch)
            if self._metrics is not None:
                self._metrics.notifications_sent.labels(r.kind).inc(len(batch))
            log.info("notification_sent", receiver=r.name, kind=batch[0].kind.value, alerts=len(batch))
            return

    async def drain(self, timeout_seconds: float) -> bool:
        """Wait until every queue is empty (True) or `timeout_seconds` pass (False)."""
        try:
            async with asyncio.timeout(timeout_seconds):
                for lane in self._lanes.values():
                    await lane.queue.join()
            return True
        except TimeoutError:
            return False

    async def close(self, timeout_seconds: float = 5.0) -> None:
        """Stop taking notifications, give queued ones `timeout_seconds` to go out, stop the workers."""
        self._closing = True
        await self.drain(timeout_seconds)
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        for lane in self._lanes.values():
            if lane.task is not None:
                try:
                    await lane.task
                except asyncio.CancelledError:
                    pass
                lane.task = None
