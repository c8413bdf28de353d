"""Prometheus's probe and status endpoints, in its shapes, for tools that expect a Prometheus:
`/-/healthy`, `/-/ready`, `/api/v1/status/{config,flags,runtimeinfo}` and `/api/v1/targets`.

RTPM scrapes nothing and has no Prometheus configuration file: `config` is an empty YAML document
and `targets` lists none. `flags` reports RTPM's settings under the names of the Prometheus flags
they correspond to, so a reader learns the lookback, limits and retention actually in force.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, Response

from rtpm.api.auth import public, require
from rtpm.api.deps import ServicesDep
from rtpm.api.routes.prometheus import _json_success, _prometheus_envelope
from rtpm.app.services import Services
from rtpm.errors import RtpmError
from rtpm.model.time import to_rfc3339

router = APIRouter(tags=["prometheus"])
api = APIRouter(prefix="/api/v1", tags=["prometheus"], dependencies=[Depends(_prometheus_envelope)])

PROBE = [Depends(public(exempt=True))]
READY_TIMEOUT_SECONDS = 3.0


@router.api_route("/-/healthy", methods=["GET", "HEAD"], dependencies=PROBE, response_class=PlainTextResponse)
async def healthy() -> PlainTextResponse:
    """Prometheus's liveness probe: the process answers."""
    return PlainTextResponse("Prometheus Server is Healthy.\n")


@router.api_route("/-/ready", methods=["GET", "HEAD"], dependencies=PROBE, response_class=PlainTextResponse)
async def ready(services: ServicesDep) -> PlainTextResponse:
    """Prometheus's readiness probe: 503 while storage does not answer."""
    try:
        await asyncio.wait_for(services.storage.ping(), READY_TIMEOUT_SECONDS)
    except (RtpmError, TimeoutError):
        return PlainTextResponse("Service Unavailable", status_code=503)
    return PlainTextResponse("Prometheus Server is Ready.\n")


def _duration(seconds: float) -> str:
    """Seconds as a Prometheus duration (`5m`, `15d`, `90s`)."""
    ms = round(seconds * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def flags(services: Services) -> dict[str, str]:
    s = services.settings
    return {
        "query.lookback-delta": _duration(s.query.lookback_delta_seconds),
        "query.timeout": _duration(s.query.timeout_seconds),
        "query.max-samples": str(s.limits.max_query_samples),
        "storage.tsdb.retention.time": _duration(s.maintenance.retention_raw_days * 86400),
        "storage.tsdb.path": str(s.data_dir),
        "web.enable-remote-write-receiver": "true",
        "web.enable-otlp-receiver": "true",
        "web.enable-admin-api": "true",
        "web.listen-address": f"{s.host}:{s.port}",
    }


@api.get("/status/flags", dependencies=[Depends(require("metrics:read"))])
async def status_flags(services: ServicesDep) -> Response:
    return _json_success(flags(services))


@api.get("/status/config", dependencies=[Depends(require("metrics:read"))])
async def status_config() -> Response:
    """RTPM has no Prometheus configuration: an empty YAML document."""
    return _json_success({"yaml": ""})


@api.get("/status/runtimeinfo", dependencies=[Depends(require("metrics:read"))])
async def status_runtimeinfo(services: ServicesDep) -> Response:
    started = to_rfc3339(round(services.started_at * 1000))
    data: dict[str, Any] = {
        "startTime": started,
        "CWD": os.getcwd(),
        "hostname": socket.gethostname(),
        "serverTime": to_rfc3339(round(services.clock() * 1000)),
        "reloadConfigSuccess": True,
        "lastConfigTime": started,
        "corruptionCount": 0,
        "goroutineCount": threading.active_count(),
        "GOMAXPROCS": os.cpu_count() or 1,
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": _duration(services.settings.maintenance.retention_raw_days * 86400),
    }
    return _json_success(data)


@api.get("/targets", dependencies=[Depends(require("metrics:read"))])
async def targets() -> Response:
    """RTPM scrapes nothing: no active or dropped targets."""
    return _json_success({"activeTargets": [], "droppedTargets": [], "droppedTargetCounts": {}})
