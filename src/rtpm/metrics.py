"""The service's own Prometheus instruments: one dataclass per layer, built from an injected registry.

Components receive their section (`HttpMetrics`, `IngestMetrics`, ...) from `Services.metrics`
and never import a global. Tests build `Metrics.create(CollectorRegistry())` and read values with
`registry.get_sample_value(...)`.

Multi-process mode: when `PROMETHEUS_MULTIPROC_DIR` is set before `prometheus_client` is first
imported (`rtpm serve --workers N` and `scripts/start.sh` set it, and wipe it at start), every
value is written to a per-process file there and `/metrics` aggregates those files with a
`MultiProcessCollector` (see `exposition()`). Gauges declare how processes combine.

Every label value comes from a bounded set: route templates, protocol and reason enums, receiver
kinds, job names. Never a tenant's metric name or label value.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from rtpm import __version__
from rtpm import errors as e

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Requests and queries from sub-millisecond to a minute; flushes are short.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# The original RTPM API's request latency buckets.
ORIGINAL_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

PROTOCOLS = ("json", "remote_write", "influx", "otlp", "prom_text")
QUERY_KINDS = ("instant", "range")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def reject_reason(exc: BaseException) -> str:
    """A bounded reason for a refused write, from the error class."""
    if isinstance(exc, e.ValidationFailed):
        return "invalid"
    if isinstance(exc, e.PayloadTooLarge):
        return "too_large"
    if isinstance(exc, e.UnsupportedMediaType):
        return "unsupported_media_type"
    if isinstance(exc, e.LimitExceeded):
        return "limit_exceeded"
    if isinstance(exc, e.BadDataError):
        return "malformed"
    if isinstance(exc, e.OverloadedError):
        return "overloaded"
    if isinstance(exc, e.StorageError):
        return "storage_error"
    return "internal"


@dataclass(frozen=True)
class HttpMetrics:
    requests: Counter
    duration: Histogram
    # The original RTPM API's names, kept for its dashboards and tests (endpoint = route template).
    legacy_requests: Counter
    legacy_latency: Histogram

    @classmethod
    def create(cls, reg: CollectorRegistry) -> HttpMetrics:
        return cls(
            requests=Counter(
                "rtpm_http_requests",
                "HTTP requests answered, by method, route template and status code.",
                ["method", "route", "status"],
                registry=reg,
            ),
            duration=Histogram(
                "rtpm_http_request_duration_seconds",
                "Time from request start to the end of the response, by method, route template and status code.",
                ["method", "route", "status"],
                buckets=LATENCY_BUCKETS,
                registry=reg,
            ),
            legacy_requests=Counter(
                "rtpm_request",
                "HTTP requests (the original RTPM API's name), by method, route template and status code.",
                ["method", "endpoint", "status"],
                registry=reg,
            ),
            legacy_latency=Histogram(
                "rtpm_request_latency_seconds",
                "HTTP request latency (the original RTPM API's name and buckets).",
                buckets=ORIGINAL_LATENCY_BUCKETS,
                registry=reg,
            ),
        )


class _IngestTrack:
    """What one push request did; see IngestMetrics.track()."""

    __slots__ = ("samples",)

    def __init__(self) -> None:
        self.samples: int | None = None


@dataclass(frozen=True)
class IngestMetrics:
    samples: Counter
    samples_rejected: Counter
    requests_rejected: Counter

    @classmethod
    def create(cls, reg: CollectorRegistry) -> IngestMetrics:
        m = cls(
            samples=Counter(
                "rtpm_ingest_samples",
                "Samples committed to storage, by push protocol.",
                ["protocol"],
                registry=reg,
            ),
            samples_rejected=Counter(
                "rtpm_ingest_samples_rejected",
                "Samples refused, by push protocol and reason (invalid items, overloaded buffer, storage error).",
                ["protocol", "reason"],
                registry=reg,
            ),
            requests_rejected=Counter(
                "rtpm_ingest_requests_rejected",
                "Push requests refused as a whole, by push protocol and reason.",
                ["protocol", "reason"],
                registry=reg,
            ),
        )
        for p in PROTOCOLS:
            m.samples.labels(p)
        return m

    @contextmanager
    def track(self, protocol: str) -> Iterator[_IngestTrack]:
        """Count one push: set `.samples` once the batch is decoded; on success they are counted as
        ingested, on an error as rejected with a reason from the error class."""
        t = _IngestTrack()
        try:
            yield t
        except e.RtpmError as exc:
            reason = reject_reason(exc)
            self.requests_rejected.labels(protocol, reason).inc()
            n = t.samples
            if n is None and isinstance(exc, e.ValidationFailed):
                n = len(exc.problems)
            if n:
                self.samples_rejected.labels(protocol, reason).inc(n)
            raise
        if t.samples:
            self.samples.labels(protocol).inc(t.samples)

    def rejected(self, protocol: str, reason: str, samples: int) -> None:
        """Samples dropped from an accepted request (e.g. OTLP partial success)."""
        if samples:
            self.samples_rejected.labels(protocol, reason).inc(samples)


@dataclass(frozen=True)
class BufferMetrics:
    pending_samples: Gauge
    flush_duration: Histogram
    flush_failures: Counter
    samples_written: Counter

    @classmethod
    def create(cls, reg: CollectorRegistry) -> BufferMetrics:
        return cls(
            pending_samples=Gauge(
                "rtpm_write_buffer_pending_samples",
                "Samples waiting in the write buffer for their commit (summed over processes).",
                registry=reg,
                multiprocess_mode="livesum",
            ),
            flush_duration=Histogram(
                "rtpm_write_buffer_flush_duration_seconds",
                "Time one write-buffer flush (one storage transaction) took.",
                buckets=FLUSH_BUCKETS,
                registry=reg,
            ),
            flush_failures=Counter(
                "rtpm_write_buffer_flush_failures",
                "Write-buffer flushes that failed (every waiting request got the error).",
                registry=reg,
            ),
            samples_written=Counter(
                "rtpm_storage_samples_written",
                "Samples written to storage by the write buffer.",
                registry=reg,
            ),
        )

    def flushed(self, seconds: float, samples: int, pending: int) -> None:
        self.flush_duration.observe(seconds)
        self.samples_written.inc(samples)
        self.pending_samples.set(pending)

    def flush_failed(self, pending: int) -> None:
        self.flush_failures.inc()
        self.pending_samples.set(pending)


@dataclass(frozen=True)
class QueryMetrics:
    duration: Histogram
    failures: Counter

    @classmethod
    def create(cls, reg: CollectorRegistry) -> QueryMetrics:
        m = cls(
            duration=Histogram(
                "rtpm_query_duration_seconds",
                "PromQL evaluation time, by kind (instant or range).",
                ["kind"],
                buckets=LATENCY_BUCKETS,
                registry=reg,
            ),
            failures=Counter(
                "rtpm_query_failures",
                "PromQL queries that failed, by kind and reason.",
                ["kind", "reason"],
                registry=reg,
            ),
        )
        for k in QUERY_KINDS:
            m.duration.labels(k)
        return m

    @contextmanager
    def time(self, kind: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except e.RtpmError as exc:
            self.failures.labels(kind, exc.code).inc()
            raise
        finally:
            self.duration.labels(kind).observe(time.perf_counter() - started)


@dataclass(frozen=True)
class CacheMetrics:
    requests: Counter

    @classmethod
    def create(cls, reg: CollectorRegistry) -> CacheMetrics:
        return cls(
            requests=Counter(
                "rtpm_cache_requests",
                "Cache lookups, by cache (latest, query) and result (hit, miss).",
                ["cache", "result"],
                registry=reg,
            ),
        )

    def hit(self, cache: str) -> None:
        self.requests.labels(cache, "hit").inc()

    def miss(self, cache: str) -> None:
        self.requests.labels(cache, "miss").inc()


@dataclass(frozen=True)
class WebSocketMetrics:
    connections: Gauge
    messages_sent: Counter
    messages_dropped: Counter

    @classmethod
    def create(cls, reg: CollectorRegistry) -> WebSocketMetrics:
        return cls(
            connections=Gauge(
                "rtpm_websocket_connections",
                "Open WebSocket connections (summed over processes).",
                registry=reg,
                multiprocess_mode="livesum",
            ),
            messages_sent=Counter(
                "rtpm_websocket_messages_sent",
                "Messages sent to WebSocket clients.",
                registry=reg,
            ),
            messages_dropped=Counter(
                "rtpm_websocket_messages_dropped",
                "Messages dropped for slow WebSocket clients, by reason (queue_full, coalesced, closed).",
                ["reason"],
                registry=reg,
            ),
        )


@dataclass(frozen=True)
class AlertMetrics:
    evaluations: Counter
    evaluation_failures: Counter
    evaluation_duration: Histogram
    last_evaluation: Gauge
    notifications_sent: Counter
    notifications_failed: Counter
    notifications_dropped: Counter
    notifications_queue_length: Gauge

    @classmethod
    def create(cls, reg: CollectorRegistry) -> AlertMetrics:
        return cls(
            evaluations=Counter(
                "rtpm_rule_evaluations",
                "Alert rule evaluations.",
                registry=reg,
            ),
            evaluation_failures=Counter(
                "rtpm_rule_evaluation_failures",
                "Alert rule evaluations that failed.",
                registry=reg,
            ),
            evaluation_duration=Histogram(
                "rtpm_rule_evaluation_duration_seconds",
                "Time one alert rule evaluation took.",
                buckets=LATENCY_BUCKETS,
                registry=reg,
            ),
            last_evaluation=Gauge(
                "rtpm_rule_last_evaluation_timestamp_seconds",
                "Unix time of the last rule evaluation round.",
                registry=reg,
                multiprocess_mode="max",
            ),
            notifications_sent=Counter(
                "rtpm_notifications_sent",
                "Notifications delivered, by receiver kind (webhook, alertmanager, websocket).",
                ["receiver"],
                registry=reg,
            ),
            notifications_failed=Counter(
                "rtpm_notifications_failed",
                "Notification deliveries that failed after their retries, by receiver kind.",
                ["receiver"],
                registry=reg,
            ),
            notifications_dropped=Counter(
                "rtpm_notifications_dropped",
                "Notifications dropped because the queue was full.",
                registry=reg,
            ),
            notifications_queue_length=Gauge(
                "rtpm_notifications_queue_length",
                "Notifications waiting to be sent (summed over processes).",
                registry=reg,
                multiprocess_mode="livesum",
            ),
        )


@dataclass(frozen=True)
class JobMetrics:
    duration: Histogram
    failures: Counter
    last_success: Gauge

    @classmethod
    def create(cls, reg: CollectorRegistry) -> JobMetrics:
        return cls(
            duration=Histogram(
                "rtpm_job_duration_seconds",
                "Background job run time, by job (rollup, retention, compaction, evaluate_rules).",
                ["job"],
                buckets=JOB_BUCKETS,
                registry=reg,
            ),
            failures=Counter(
                "rtpm_job_failures",
                "Background job runs that failed, by job.",
                ["job"],
                registry=reg,
            ),
            last_success=Gauge(
                "rtpm_job_last_success_timestamp_seconds",
                "Unix time a job last finished without error, by job.",
                ["job"],
                registry=reg,
                multiprocess_mode="max",
            ),
        )

    @contextmanager
    def time(self, job: str) -> Iterator[None]:
        """Time one run of `job`; failures are counted and re-raised."""
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.failures.labels(job).inc()
            raise
        finally:
            self.duration.labels(job).observe(time.perf_counter() - started)
        self.last_success.labels(job).set(time.time())


@dataclass(frozen=True)
class Metrics:
    """Every instrument of one process, registered in `registry`."""

    registry: CollectorRegistry
    http: HttpMetrics
    ingest: IngestMetrics
    buffer: BufferMetrics
    query: QueryMetrics
    cache: CacheMetrics
    websocket: WebSocketMetrics
    alerts: AlertMetrics
    jobs: JobMetrics
    build_info: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        reg = registry if registry is not None else CollectorRegistry()
        # `_created` series double every counter and histogram for no use here (and multi-process
        # mode has none): keep the exposition the same in both modes.
        prometheus_client.disable_created_metrics()
        build_info = Gauge(
            "rtpm_build_info",
            "Always 1; labels carry the RTPM and Python versions.",
            ["version", "python_version"],
            registry=reg,
            multiprocess_mode="max",
        )
        build_info.labels(__version__, platform.python_version()).set(1)
        if multiprocess_dir() is None:
            # Process metrics only make sense per process; multi-process mode cannot aggregate them.
            prometheus_client.ProcessCollector(registry=reg)
        return cls(
            registry=reg,
            http=HttpMetrics.create(reg),
            ingest=IngestMetrics.create(reg),
            buffer=BufferMetrics.create(reg),
            query=QueryMetrics.create(reg),
            cache=CacheMetrics.create(reg),
            websocket=WebSocketMetrics.create(reg),
            alerts=AlertMetrics.create(reg),
            jobs=JobMetrics.create(reg),
            build_info=build_info,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type: this registry, or in multi-process mode the
        aggregate of every process's files."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg, path=path)
        return generate_latest(reg), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int | None = None) -> None:
    """Drop this process's `live*` gauge files (call at worker exit) in multi-process mode."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid if pid is not None else os.getpid())


def prepare_multiprocess_dir(path: str) -> None:
    """Create `path` and remove the files of a previous run (call once, before workers start)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
