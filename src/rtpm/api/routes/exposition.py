"""`GET /metrics`: RTPM's own instruments in the Prometheus text format (all worker processes'
values aggregated in multi-process mode). A public probe, like /health."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rtpm.api.auth import self_monitoring
from rtpm.api.deps import ServicesDep
from rtpm.api.routes.health import check_alerting
from rtpm.jobs import heartbeat

router = APIRouter(tags=["health"])


@router.get("/metrics", dependencies=[Depends(self_monitoring())], response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text exposition format 0.0.4 of `rtpm_*` (and `process_*` with one worker)."""
    # Multi-process mode reads one file per process and metric: keep it off the event loop.
    body, content_type = await run_in_threadpool(services.metrics.exposition)
    # The alert heartbeat comes from the database (the same in every process), not a registry.
    alerting = await check_alerting(services)
    if alerting["status"] != "unknown":
        body += heartbeat.exposition(alerting)
    return Response(body, media_type=content_type)
