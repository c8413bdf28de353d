"""FastAPI dependencies as Annotated aliases: the services, the tenant, the request body."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import orjson
from fastapi import Depends, Path, Query, Request
from starlette.requests import HTTPConnection

from rtpm.app.services import Services
from rtpm.errors import BadDataError, Unauthenticated, UnsupportedMediaType
from rtpm.ingest.compression import decompress


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


# The dependencies are `async def` though they never await: FastAPI runs a plain `def` dependency in
# its thread pool, a hand-off per request that cost about a tenth of a remote-write request's CPU.
async def get_services(request: Request) -> Services:
    return services_of(request)


async def get_tenant(conn: HTTPConnection) -> str:
    """The tenant of the authenticated caller. Fails closed: without a Principal set by an auth
    dependency (`require(...)` in `rtpm.api.auth`) there is no tenant, and the request is refused."""
    principal = getattr(conn.state, "principal", None)
    if principal is None:
        raise Unauthenticated("authentication required")
    tenant: str = principal.tenant
    return tenant


ServicesDep = Annotated[Services, Depends(get_services)]
TenantDep = Annotated[str, Depends(get_tenant)]

_NON_FINITE_TOKEN = re.compile(rb"NaN|Infinity")

# Row ids in paths and queries: BIGINT range, so an out-of-range number is a 422, not a driver error.
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Path(ge=0, le=MAX_ROW_ID)]
OptionalRowId = Annotated[int | None, Query(ge=0, le=MAX_ROW_ID)]


async def read_json(request: Request) -> Any:
    """The JSON body, inflated first when it has a Content-Encoding (gzip or deflate, bounded by
    max_body_bytes; any other encoding is a 415 naming it). NaN, Infinity and -Infinity are taken
    as bare tokens, as Python's and JavaScript's JSON writers produce them."""
    body = await request.body()
    encoding = request.headers.get("content-encoding")
    if encoding and encoding.strip().lower() not in ("identity", ""):
        enc = encoding.strip().lower()
        if enc not in ("gzip", "x-gzip", "deflate"):
            raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none")
        body = decompress(body, enc, max_bytes=services_of(request).settings.limits.max_body_bytes)
    if not body:
        raise BadDataError("request body is empty; expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if _NON_FINITE_TOKEN.search(body):
            try:
                return json.loads(body)  # the stdlib parser takes NaN, Infinity, -Infinity
            except (ValueError, RecursionError):
                pass
        raise BadDataError(f"request body is not valid JSON: {exc}") from None
