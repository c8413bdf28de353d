"""`/api/v1/dashboards`: the web UI's saved dashboards (panels of queries), stored per tenant."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, ValidationError

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep, read_json
from rtpm.app.services import Services
from rtpm.errors import NotFoundError, Problem, ValidationFailed
from rtpm.model.time import to_rfc3339
from rtpm.storage.dashboards import Dashboard, DashboardStore

router = APIRouter(prefix="/api/v1/dashboards", tags=["dashboards"])
READ = [Depends(require("metrics:read"))]
WRITE = [Depends(require("metrics:write"))]
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
RANGE_RE = r"^\d+[smhdw]$"


class PanelIn(BaseModel):
    title: str = Field("", max_length=200)
    query: str = Field(min_length=1, max_length=10_000, description="PromQL")
    unit: str = Field("", max_length=32)
    step: str = Field("", max_length=16, description="Empty: automatic")
    width: int = Field(1, ge=1, le=2, description="Grid columns the panel spans")


class DashboardIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    range: str = Field("1h", pattern=RANGE_RE, description="Default time range, e.g. 1h")
    refresh_seconds: int = Field(30, ge=0, le=86400, description="0: no automatic refresh")
    panels: list[PanelIn] = Field(default_factory=list, max_length=50)


def _store(services: Services) -> DashboardStore:
    return services.storage.dashboards


def _check_id(dashboard_id: str) -> str:
    if not ID_RE.match(dashboard_id):
        raise ValidationFailed([Problem("id", "1-64 letters, digits, '-' or '_', starting with a letter or digit")])
    return dashboard_id


def _out(d: Dashboard, *, full: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "title": d.title,
        "panel_count": len(d.spec.get("panels", [])),
        "created_at": to_rfc3339(d.created_ms),
        "updated_at": to_rfc3339(d.updated_ms),
    }
    if full:
        out.update({k: v for k, v in d.spec.items() if k != "title"})
    return out


@router.get("", dependencies=READ)
async def list_dashboards(services: ServicesDep, tenant: TenantDep) -> dict[str, Any]:
    """The tenant's dashboards (without their panels)."""
    return {"dashboards": [_out(d, full=False) for d in await _store(services).list_dashboards(tenant)]}


@router.get("/{dashboard_id}", dependencies=READ)
async def get_dashboard(dashboard_id: str, services: ServicesDep, tenant: TenantDep) -> dict[str, Any]:
    found = await _store(services).get_dashboard(tenant, _check_id(dashboard_id))
    if found is None:
        raise NotFoundError(f"no dashboard {dashboard_id!r}")
    return _out(found)


@router.put(
    "/{dashboard_id}",
    dependencies=WRITE,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": DashboardIn.model_json_schema()}}}
    },
)
async def put_dashboard(
    dashboard_id: str, request: Request, services: ServicesDep, tenant: TenantDep
) -> dict[str, Any]:
    """Create or replace a dashboard: `title`, `range`, `refresh_seconds`, `panels` (`title`, `query`,
    `unit`, `step`, `width`)."""
    _check_id(dashboard_id)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationFailed([Problem("body", "must be a JSON object")])
    try:
        parsed = DashboardIn.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(
            [Problem(".".join(str(p) for p in err["loc"]) or "body", err["msg"]) for err in exc.errors()]
        ) from None
    now_ms = int(services.clock() * 1000)
    spec = parsed.model_dump(exclude={"title"})
    saved = await _store(services).put_dashboard(Dashboard(tenant, dashboard_id, parsed.title, spec, now_ms, now_ms))
    return _out(saved)


@router.delete("/{dashboard_id}", dependencies=WRITE)
async def delete_dashboard(dashboard_id: str, services: ServicesDep, tenant: TenantDep) -> dict[str, Any]:
    if not await _store(services).delete_dashboard(tenant, _check_id(dashboard_id)):
        raise NotFoundError(f"no dashboard {dashboard_id!r}")
    return {"status": "deleted", "id": dashboard_id}
