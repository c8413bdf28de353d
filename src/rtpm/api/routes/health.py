"""Health probes, with Kubernetes semantics.

* `/health/live`: the process answers (never checks dependencies: a restart would not fix them).
* `/health/ready`: 503 when storage is unreachable, so the load balancer stops sending traffic.
* `/health/detailed`: every dependency (storage, Redis, job runner, alert evaluation's heartbeat,
  write buffer) with its status and check latency; 503 only when storage is down.
* `/health/system`: CPU, memory, the data directory's disk, open connections (psutil).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import psutil
from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from rtpm import __version__
from rtpm.api.auth import public
from rtpm.api.deps import ServicesDep
from rtpm.api.responses import OrjsonResponse
from rtpm.app.services import Services
from rtpm.errors import RtpmError
from rtpm.jobs import heartbeat
from rtpm.model.time import to_rfc3339

router = APIRouter(tags=["health"])

PROBE = [Depends(public(exempt=True))]
CHECK_TIMEOUT_SECONDS = 3.0
# The write buffer is "degraded" above this share of max_pending_samples (writes soon get 503).
BUFFER_DEGRADED_RATIO = 0.8


def _utc_now_iso(services: Services) -> str:
    """Now as RFC3339 in UTC (`2026-01-02T03:04:05.678Z`)."""
    return to_rfc3339(round(services.clock() * 1000))


@router.get("/health", dependencies=PROBE)
async def health(services: ServicesDep) -> dict[str, Any]:
    """The process answers. The original RTPM API's fields (`status: healthy`, `timestamp`,
    `service`, `version`) plus the uptime; dependencies are checked by `/health/ready` and
    `/health/detailed`."""
    return {
        "status": "healthy",
        "timestamp": _utc_now_iso(services),
        "service": "rtpm-api",
        "version": __version__,
        "uptime_seconds": round(services.clock() - services.started_at, 3),
    }


@router.get("/health/live", dependencies=PROBE)
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready", dependencies=PROBE)
async def ready(services: ServicesDep) -> OrjsonResponse:
    storage = await _check_storage(services)
    ok = storage["status"] == "up"
    return OrjsonResponse(
        {"status": "ready" if ok else "not_ready", "checks": {"storage": storage}},
        status_code=200 if ok else 503,
    )


# ---- /health/detailed ------------------------------------------------------------------------


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 6)


async def _check_storage(services: Services) -> dict[str, Any]:
    backend = "postgresql" if services.settings.database_url else "sqlite"
    started = time.perf_counter()
    try:
        await asyncio.wait_for(services.storage.ping(), CHECK_TIMEOUT_SECONDS)
    except (RtpmError, TimeoutError) as exc:
        error = str(exc) or f"no answer within {CHECK_TIMEOUT_SECONDS}s"
        return {"status": "down", "backend": backend, "latency_seconds": _since(started), "error": error}
    return {"status": "up", "backend": backend, "latency_seconds": _since(started)}


async def _check_redis(services: Services) -> dict[str, Any]:
    url = getattr(services.settings, "redis_url", None)
    if not url:
        return {"status": "not_configured"}
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
    )
    started = time.perf_counter()
    try:
        await asyncio.wait_for(client.ping(), CHECK_TIMEOUT_SECONDS)
    except (RedisError, OSError, TimeoutError) as exc:
        return {"status": "down", "latency_seconds": _since(started), "error": type(exc).__name__}
    finally:
        await client.aclose()
    return {"status": "up", "latency_seconds": _since(started)}


def _check_jobs(services: Services) -> dict[str, Any]:
    """Who runs background jobs: `embedded` (asyncio tasks here), `celery` (workers), or `off`."""
    mode = getattr(services.settings, "jobs", "embedded")
    return {"status": mode}


async def check_alerting(services: Services) -> dict[str, Any]:
    """The alert evaluator's heartbeat (jobs/heartbeat.py); `unknown` when storage does not answer."""
    try:
        beats = await asyncio.wait_for(services.storage.alerts.heartbeats(), CHECK_TIMEOUT_SECONDS)
    except (RtpmError, TimeoutError) as exc:
        return {"status": "unknown", "error": str(exc) or f"no answer within {CHECK_TIMEOUT_SECONDS}s"}
    now = services.clock()
    return heartbeat.alerting_check(services.settings, beats, now=now, uptime_seconds=now - services.started_at)


def _check_buffer(services: Services) -> dict[str, Any]:
    stats = services.buffer.stats()
    limit = services.settings.write_buffer.max_pending_samples
    ratio = stats.pending_samples / limit if limit else 0.0
    degraded = ratio >= BUFFER_DEGRADED_RATIO or stats.last_error is not None
    out: dict[str, Any] = {
        "status": "degraded" if degraded else "up",
        "pending_samples": stats.pending_samples,
        "max_pending_samples": limit,
        "utilization_ratio": round(ratio, 4),
        "flushes": stats.flushes,
        "samples_written": stats.samples_written,
        "last_flush_seconds": stats.last_flush_seconds,
    }
    if stats.last_error is not None:
        out["last_error"] = stats.last_error
    return out


@router.get("/health/detailed", dependencies=PROBE)
async def detailed(services: ServicesDep) -> OrjsonResponse:
    """Each dependency with status and check latency. `status`: healthy, degraded (something
    optional is down, the write buffer is filling up, or alert evaluation has stalled: its last
    round is older than a few rounds plus a lease) or unhealthy (storage down: 503)."""
    storage, redis, alerting = await asyncio.gather(
        _check_storage(services), _check_redis(services), check_alerting(services)
    )
    checks: dict[str, Any] = {
        "storage": storage,
        "redis": redis,
        "job_runner": _check_jobs(services),
        "alerting": alerting,
        "write_buffer": _check_buffer(services),
        "rate_limits": services.limiter.status() if services.limiter else {"status": "off"},
    }
    if storage["status"] != "up":
        status = "unhealthy"
    elif (
        redis["status"] == "down"
        or alerting["status"] == "stalled"
        or checks["write_buffer"]["status"] != "up"
        or checks["rate_limits"]["status"] == "degraded"
    ):
        status = "degraded"
    else:
        status = "healthy"
    body = {
        "status": status,
        "version": __version__,
        "uptime_seconds": round(services.clock() - services.started_at, 3),
        "checks": checks,
    }
    return OrjsonResponse(body, status_code=503 if status == "unhealthy" else 200)


# ---- /health/system --------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    """The data directory, or its nearest existing parent (PostgreSQL deployments may not make it)."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _system(data_dir: Path) -> dict[str, Any]:
    proc = psutil.Process()
    with proc.oneshot():
        mem_info = proc.memory_info()
        process = {
            "pid": proc.pid,
            "cpu_percent": proc.cpu_percent(interval=None),
            "memory_rss_bytes": mem_info.rss,
            "threads": proc.num_threads(),
            "open_files": proc.num_fds() if hasattr(proc, "num_fds") else None,
        }
    try:
        conns = proc.net_connections(kind="inet")
    except psutil.Error:
        conns = []
    by_status: dict[str, int] = {}
    for c in conns:
        by_status[c.status] = by_status.get(c.status, 0) + 1
    vm = psutil.virtual_memory()
    disk_path = _existing(data_dir)
    disk = psutil.disk_usage(str(disk_path))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": {
            "percent": psutil.cpu_percent(interval=None),
            "count": psutil.cpu_count(),
            "load_average": list(load) if load else None,
        },
        "memory": {"total_bytes": vm.total, "available_bytes": vm.available, "used_percent": vm.percent},
        "disk": {
            "path": str(disk_path),
            "total_bytes": disk.total,
            "used_bytes": disk.used,
            "free_bytes": disk.free,
            "used_percent": disk.percent,
        },
        "connections": {"open": len(conns), "by_status": by_status},
        "process": process,
    }


@router.get("/health/system", dependencies=PROBE)
async def system(services: ServicesDep) -> dict[str, Any]:
    """Resource use of this host and this process (one worker's view with `--workers N`). CPU
    percentages are measured since the previous call (0.0 on the first)."""
    return await run_in_threadpool(_system, services.settings.data_dir)


# ---- /api/v1/status (the original RTPM API's status report) -----------------------------------


def _cache_state(services: Services, redis: dict[str, Any]) -> str:
    """`disabled` when result caching is off, else the state of where it lives (Redis or memory)."""
    if services.query_cache is None:
        return "disabled"
    if redis["status"] == "not_configured":
        return "healthy"  # in this process's memory
    return "healthy" if redis["status"] == "up" else "degraded"  # falls back to per-process


@router.get("/api/v1/status", dependencies=[Depends(public())])
async def status(services: ServicesDep) -> dict[str, Any]:
    """The original RTPM API's `{"status", "services": {"api", "database", "cache"}, "timestamp"}`,
    with the real state of each: `healthy`, `degraded`, `unavailable` or `disabled`. `status` is
    `operational`, `degraded` (something optional is down, or the write buffer is filling up) or
    `unavailable` (storage down). Public like the health probes, but rate limited per client IP."""
    storage, redis = await asyncio.gather(_check_storage(services), _check_redis(services))
    buffer = _check_buffer(services)
    states = {
        "api": "healthy" if buffer["status"] == "up" else "degraded",
        "database": "healthy" if storage["status"] == "up" else "unavailable",
        "cache": _cache_state(services, redis),
    }
    if states["database"] == "unavailable":
        overall = "unavailable"
    elif "degraded" in states.values():
        overall = "degraded"
    else:
        overall = "operational"
    return {
        "status": overall,
        "services": states,
        "timestamp": _utc_now_iso(services),
        "version": __version__,
        "backends": {
            "database": storage["backend"],
            "cache": "redis" if redis["status"] != "not_configured" else "memory",
        },
    }
