"""EmbeddedScheduler: runs the background jobs as asyncio tasks inside `rtpm serve`.

Several processes may share one database; a lease in the database makes one of them the leader
and only the leader runs jobs. The lease is renewed every tick; when the leader dies its lease
runs out and another process takes over. Jobs are idempotent, so a hand-over in the middle of one
is safe. Extra jobs (alert evaluation) can be added with `add()`."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from rtpm.errors import RtpmError
from rtpm.jobs.maintenance import JobResult
from rtpm.jobs.registry import JOBS, Job
from rtpm.settings import MaintenanceSettings
from rtpm.storage.maintenance import MaintenanceStore

log = structlog.get_logger("rtpm.jobs")

JobObserver = Callable[[str, float, bool], None]  # job name, seconds, succeeded


def _bound(job: Job, store: MaintenanceStore, opts: MaintenanceSettings) -> Callable[[int], Awaitable[JobResult]]:
    """`job.run` with its store and settings: a function of the time only."""

    def run(now_ms: int) -> Awaitable[JobResult]:
        return job.run(store, now_ms, opts)

    return run


@dataclass
class JobState:
    interval_seconds: float
    run: Callable[[int], Awaitable[JobResult | None]]
    next_run: float = 0.0
    last_run: float | None = None
    last_seconds: float | None = None
    last_error: str | None = None
    runs: int = 0
    failures: int = 0


@dataclass
class SchedulerStatus:
    mode: str
    leader: bool
    holder: str
    jobs: dict[str, dict[str, object]] = field(default_factory=dict)


class EmbeddedScheduler:
    def __init__(
        self,
        store: MaintenanceStore,
        opts: MaintenanceSettings,
        *,
        clock: Callable[[], float] = time.time,
        observer: JobObserver | None = None,
        tick_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._opts = opts
        self._clock = clock
        self._observer = observer
        self._tick = tick_seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leader = False
        self._task: asyncio.Task[None] | None = None
        self._jobs: dict[str, JobState] = {}
        for name, job in JOBS.items():
            self.add(name, job.interval(opts), _bound(job, store, opts))

    def add(self, name: str, interval_seconds: float, run: Callable[[int], Awaitable[JobResult | None]]) -> None:
        self._jobs[name] = JobState(interval_seconds, run)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="rtpm-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def status(self) -> SchedulerStatus:
        return SchedulerStatus(
            "embedded",
            self.leader,
            self.holder,
            {
                name: {
                    "interval_seconds": st.interval_seconds,
                    "last_run": st.last_run,
                    "last_seconds": st.last_seconds,
                    "last_error": st.last_error,
                    "runs": st.runs,
                    "failures": st.failures,
                }
                for name, st in self._jobs.items()
            },
        )

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except RtpmError as exc:  # storage away: keep trying, say so
                self.leader = False
                log.warning("jobs_tick_failed", error=str(exc))
            await asyncio.sleep(self._tick)

    async def tick(self) -> None:
        """Renew or take the lease; as leader, run every job that is due."""
        now = self._clock()
        ttl_ms = int(self._opts.lease_seconds * 1000)
        self.leader = await self._store.try_lease("jobs", self.holder, ttl_ms, int(now * 1000))
        if not self.leader:
            return
        for name, st in self._jobs.items():
            if now < st.next_run:
                continue
            await self.run_job(name)
            now = self._clock()

    async def run_job(self, name: str) -> JobResult | None:
        st = self._jobs[name]
        started = self._clock()
        t0 = time.perf_counter()
        ok = False
        result = None
        try:
            result = await st.run(int(started * 1000))
            ok = True
            st.last_error = None
            (log.info if getattr(result, "items", 0) else log.debug)(
                "job_done",
                job=name,
                seconds=round(time.perf_counter() - t0, 3),
                items=getattr(result, "items", None),
                samples=getattr(result, "samples", None),
            )
        except RtpmError as exc:
            st.last_error = str(exc)
            st.failures += 1
            log.warning("job_failed", job=name, error=str(exc))
        except Exception as exc:  # a job's bug must not stop the others: log it with its traceback
            st.last_error = f"{type(exc).__name__}: {exc}"
            st.failures += 1
            log.exception("job_crashed", job=name)
        seconds = time.perf_counter() - t0
        st.runs += 1
        st.last_run = started
        st.last_seconds = seconds
        st.next_run = started + st.interval_seconds
        if self._observer is not None:
            self._observer(name, seconds, ok)
        return result
