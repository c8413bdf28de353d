"""The background jobs' runner in this process (RTPM_JOBS=embedded)."""

from __future__ import annotations

import time

from rtpm.jobs.scheduler import EmbeddedScheduler
from rtpm.metrics import JobMetrics
from rtpm.settings import Settings
from rtpm.storage.base import Storage


def make_scheduler(settings: Settings, storage: Storage, metrics: JobMetrics) -> EmbeddedScheduler | None:
    """The embedded runner when `RTPM_JOBS=embedded` (the default); None for `celery` (workers and
    beat run the jobs) and `off`. Not started."""
    if settings.jobs != "embedded":
        return None

    def observe(job: str, seconds: float, ok: bool) -> None:
        metrics.duration.labels(job).observe(seconds)
        if ok:
            metrics.last_success.labels(job).set(time.time())
        else:
            metrics.failures.labels(job).inc()

    return EmbeddedScheduler(storage.maintenance, settings.maintenance, observer=observe)
