"""The background jobs by name, with how often each runs. Both runners (embedded and Celery) read
this table, so a job is written once and scheduled the same way by either."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rtpm.jobs.maintenance import JobResult, compact, enforce_retention, rollup
from rtpm.settings import MaintenanceSettings
from rtpm.storage.maintenance import MaintenanceStore

JobFn = Callable[[MaintenanceStore, int, MaintenanceSettings], Awaitable[JobResult]]


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFn
    interval: Callable[[MaintenanceSettings], float]


async def _rollup(store: MaintenanceStore, now_ms: int, opts: MaintenanceSettings) -> JobResult:
    return await rollup(store, now_ms=now_ms, opts=opts)


async def _compaction(store: MaintenanceStore, now_ms: int, opts: MaintenanceSettings) -> JobResult:
    return await compact(store, now_ms=now_ms, opts=opts)


async def _retention(store: MaintenanceStore, now_ms: int, opts: MaintenanceSettings) -> JobResult:
    return await enforce_retention(store, now_ms=now_ms, opts=opts)


# Order matters within one tick: rollups read raw rows that compaction then moves into chunks.
JOBS: dict[str, Job] = {
    "rollup": Job("rollup", _rollup, lambda o: o.rollup_interval_seconds),
    "compaction": Job("compaction", _compaction, lambda o: o.compaction_interval_seconds),
    "retention": Job("retention", _retention, lambda o: o.retention_interval_seconds),
}
