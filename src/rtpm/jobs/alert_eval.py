"""The periodic alert evaluation job, run in-process by `rtpm serve` (embedded jobs).

Every `poll_seconds` the runner asks the store for leadership (a PostgreSQL advisory lock or a
SQLite lease); only the leader evaluates. It evaluates every enabled rule whose interval has passed
since its last evaluation (kept in storage, so a new leader carries on where the old one stopped).
`run_due_rules()` is the unit a scheduler (Celery beat) can call instead, unchanged.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from rtpm.alerts.evaluator import EvalResult, NotifyFn, QueryFn, WriteSeriesFn, run_rule
from rtpm.errors import RtpmError
from rtpm.model.alerts import AlertRule
from rtpm.settings import AlertingSettings
from rtpm.storage.alert_store import AlertStore

if TYPE_CHECKING:
    from rtpm.metrics import AlertMetrics

log = structlog.get_logger("rtpm.jobs.alerts", component="alerts")  # lazy: configured later

_MAX_CONCURRENT_RULES = 8


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_due(rule: AlertRule, now_ms: int) -> bool:
    if not rule.enabled:
        return False
    if rule.last_eval_ms is None:
        return True
    # A little slack so a poll that lands just before the interval does not wait a whole poll.
    return now_ms - rule.last_eval_ms >= rule.evaluation_interval_seconds * 1000 - 50


async def run_due_rules(
    *,
    store: AlertStore,
    query: QueryFn,
    notify: NotifyFn,
    write_series: WriteSeriesFn,
    now_ms: int,
    resend_delay_seconds: float,
    metrics: AlertMetrics | None = None,
) -> list[EvalResult]:
    """Evaluate every rule that is due at `now_ms` (a few at a time)."""
    rules = [r for r in await store.list_rules() if is_due(r, now_ms)]
    if not rules:
        return []
    gate = asyncio.Semaphore(_MAX_CONCURRENT_RULES)

    async def one(rule: AlertRule) -> EvalResult:
        async with gate:
            result = await run_rule(
                rule,
                query=query,
                notify=notify,
                store=store,
                write_series=write_series,
                now_ms=now_ms,
                resend_delay_seconds=resend_delay_seconds,
            )
        if metrics is not None:
            metrics.evaluations.inc()
            metrics.evaluation_duration.observe(result.duration_seconds)
            if result.error is not None:
                metrics.evaluation_failures.inc()
        return result

    results = list(await asyncio.gather(*(one(r) for r in rules)))
    if metrics is not None:
        metrics.last_evaluation.set(now_ms / 1000)
    return results


class AlertEvaluationRunner:
    def __init__(
        self,
        *,
        store: AlertStore,
        query: QueryFn,
        notify: NotifyFn,
        write_series: WriteSeriesFn,
        settings: AlertingSettings,
        clock: Callable[[], float] = time.time,
        metrics: AlertMetrics | None = None,
        holder: str | None = None,
    ) -> None:
        self._store = store
        self._query = query
        self._notify = notify
        self._write = write_series
        self._opts = settings
        self._clock = clock
        self._metrics = metrics
        self.holder = holder or holder_id()
        self.is_leader = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="rtpm-alert-evaluation")

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except TimeoutError:
                self._task.cancel()
            self._task = None
        self.is_leader = False
        try:
            await self._store.release_lead(self.holder)
        except RtpmError as exc:
            log.warning("alert_leadership_release_failed", error=exc.message)

    async def tick(self) -> list[EvalResult]:
        """One round: check leadership, evaluate what is due if leading."""
        leading = await self._store.try_lead(self.holder, self._opts.lease_seconds)
        if leading != self.is_leader:
            log.info("alert_leadership_changed", holder=self.holder, leader=leading)
            self.is_leader = leading
        if not leading:
            return []
        return await run_due_rules(
            store=self._store,
            query=self._query,
            notify=self._notify,
            write_series=self._write,
            now_ms=int(self._clock() * 1000),
            resend_delay_seconds=self._opts.resend_delay_seconds,
            metrics=self._metrics,
        )

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except RtpmError as exc:
                log.warning("alert_evaluation_round_failed", error=exc.message)
            except Exception:  # a process edge: keep evaluating, but leave a traceback
                log.exception("alert_evaluation_round_crashed")
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self._opts.poll_seconds)
            except TimeoutError:
                pass
