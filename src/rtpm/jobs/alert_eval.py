"""The periodic alert evaluation job, run in-process by `rtpm serve` (embedded jobs).

Every `poll_seconds` the runner asks the store for leadership (a lease row in the database, on
both backends); only the leader evaluates. It evaluates every enabled rule whose interval has
passed since its last evaluation (kept in storage, so a new leader carries on where the old one
stopped). `run_due_rules()` is the unit the Celery task (`alert_task.py`) calls instead, unchanged.

Nothing can silence evaluation for long: one rule's evaluation is abandoned after
`evaluation_timeout_seconds` (at most half its interval, at most a third of the lease), so a round
ends well before its lease does; a leader that hangs or dies anyway loses its lease when it runs
out. After every round the leader writes a heartbeat row (`alert_heartbeats`), which
/health/detailed and /metrics of every process read: older than a few rounds plus a lease means
evaluation is stalled.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from rtpm.alerts.evaluator import EvalResult, NotifyFn, QueryFn, WriteSeriesFn, run_rule
from rtpm.errors import RtpmError
from rtpm.model.alerts import AlertRule
from rtpm.settings import AlertingSettings
from rtpm.storage.alert_store import AlertStore, Heartbeat

if TYPE_CHECKING:
    from rtpm.metrics import AlertMetrics

log = structlog.get_logger("rtpm.jobs.alerts", component="alerts")  # lazy: configured later

_MAX_CONCURRENT_RULES = 8


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def rule_timeout(rule: AlertRule, cap_seconds: float) -> float:
    """How long one evaluation of `rule` may take: the cap, and at most half the rule's interval."""
    return max(0.05, min(cap_seconds, rule.evaluation_interval_seconds / 2))


def stall_seconds(round_seconds: float, lease_seconds: float, rounds: float) -> float:
    """When a heartbeat is too old: `rounds` missed rounds, plus the lease a dead leader leaves
    behind (the next leader has to wait for it to expire)."""
    return rounds * round_seconds + lease_seconds


def embedded_limits(opts: AlertingSettings) -> tuple[float, float]:
    """(per-evaluation cap, heartbeat stall age) of the embedded runner."""
    cap = min(opts.evaluation_timeout_seconds, opts.lease_seconds / 3)
    return cap, stall_seconds(opts.poll_seconds, opts.lease_seconds, opts.stalled_after_rounds)


async def _test_block(path: Path | None) -> None:
    """The test hook (RTPM_ALERTING__TEST_BLOCK_FILE): the first evaluation that renames the file
    away blocks, for good: in the event loop ('async', so the evaluation timeout ends it) or the
    whole thread, deaf to exceptions and signal handlers (file content 'sync': only a kill ends
    it, such as Celery's hard time limit). `<file>.blocked`
    gets the blocked process's pid, so a test knows when an evaluation is stuck and where."""
    if path is None:
        return
    taken = path.with_name(f"{path.name}.taken.{os.getpid()}")
    try:
        os.rename(path, taken)  # atomic: exactly one evaluation, in any process, takes it
    except FileNotFoundError:
        return
    mode = taken.read_text().strip()
    path.with_name(path.name + ".blocked").write_text(str(os.getpid()))
    log.warning("alert_evaluation_blocked_by_test_hook", mode=mode or "async")
    if mode == "sync":  # like a hang in C code: nothing in the process ends it, only a kill
        while True:
            try:
                time.sleep(3600)  # noqa: ASYNC251 - the point: a hang asyncio cannot interrupt
            except BaseException:  # noqa: S112 - soft time limits and SIGTERM included
                continue
    await asyncio.sleep(3600)


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
    timeout_seconds: float = 10.0,
    test_block_file: Path | None = None,
) -> list[EvalResult]:
    """Evaluate every rule that is due at `now_ms` (a few at a time), each within
    `rule_timeout(rule, timeout_seconds)`: one that takes longer is abandoned (nothing of it is
    saved or sent; its transaction rolls back) and recorded as failed, and is due again."""
    rules = [r for r in await store.list_rules() if is_due(r, now_ms)]
    if not rules:
        return []
    gate = asyncio.Semaphore(_MAX_CONCURRENT_RULES)

    async def evaluate(rule: AlertRule) -> EvalResult:
        await _test_block(test_block_file)
        return await run_rule(
            rule,
            query=query,
            notify=notify,
            store=store,
            write_series=write_series,
            now_ms=now_ms,
            resend_delay_seconds=resend_delay_seconds,
        )

    async def one(rule: AlertRule) -> EvalResult:
        assert rule.id is not None
        limit = rule_timeout(rule, timeout_seconds)
        async with gate:
            started = time.monotonic()
            try:
                result = await asyncio.wait_for(evaluate(rule), limit)
            except TimeoutError:
                error = f"timeout: the evaluation took longer than {limit:g} s and was abandoned"
                log.warning("rule_evaluation_timed_out", rule_id=rule.id, rule=rule.name, seconds=limit)
                result = EvalResult(rule.id, 0, 0, error, time.monotonic() - started)
                try:
                    await store.record_rule_evaluation(
                        rule.id, now_ms=now_ms, duration_seconds=result.duration_seconds, error=error
                    )
                except RtpmError as exc:
                    log.warning("rule_evaluation_record_failed", rule_id=rule.id, error=exc.message)
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
        self._timeout, self._stall = embedded_limits(settings)
        self._beat_at = 0.0  # monotonic time of the last heartbeat written
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
        now_ms = int(self._clock() * 1000)
        started = time.monotonic()
        results = await run_due_rules(
            store=self._store,
            query=self._query,
            notify=self._notify,
            write_series=self._write,
            now_ms=now_ms,
            resend_delay_seconds=self._opts.resend_delay_seconds,
            metrics=self._metrics,
            timeout_seconds=self._timeout,
            test_block_file=self._opts.test_block_file,
        )
        # The heartbeat: after every round that evaluated, and at least every few seconds when
        # nothing was due (a write per poll would be one every 0.5 s for nothing).
        if results or started - self._beat_at >= min(5.0, self._stall / 4):
            self._beat_at = started
            await self._store.record_heartbeat(
                Heartbeat(
                    runner="embedded",
                    holder=self.holder,
                    round_ms=now_ms,
                    rules=len(results),
                    errors=sum(1 for r in results if r.error is not None),
                    duration_seconds=time.monotonic() - started,
                    stall_seconds=self._stall,
                )
            )
        return results

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
