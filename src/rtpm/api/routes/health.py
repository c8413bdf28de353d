"""Health probes: liveness, readiness (storage reachable), version."""

from __future__ import annotations

from fastapi import APIRouter

from rtpm import __version__
from rtpm.api.deps import ServicesDep
from rtpm.api.responses import OrjsonResponse
from rtpm.errors import RtpmError

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready")
async def ready(services: ServicesDep) -> OrjsonResponse:
    try:
        await services.storage.ping()
    except RtpmError as exc:
        return OrjsonResponse(
            {"status": "not_ready", "checks": {"storage": {"status": "down", "error": str(exc)}}},
            status_code=503,
        )
    return OrjsonResponse({"status": "ready", "checks": {"storage": {"status": "up"}}})
