"""FastAPI dependencies as Annotated aliases: the services, the tenant, the request body."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from rtpm.bootstrap import Services
from rtpm.errors import BadDataError


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_tenant(request: Request) -> str:
    """The tenant of the caller. Until authentication lands every caller is the default tenant."""
    services: Services = request.app.state.services
    return getattr(request.state, "tenant", None) or services.settings.default_tenant


ServicesDep = Annotated[Services, Depends(get_services)]
TenantDep = Annotated[str, Depends(get_tenant)]


async def read_json(request: Request) -> Any:
    body = await request.body()
    if not body:
        raise BadDataError("request body is empty; expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadDataError(f"request body is not valid JSON: {exc}") from None
