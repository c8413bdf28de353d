"""Prometheus's TSDB admin API, in its shape, for the `admin` scope: `delete_series` removes the
caller's tenant's samples of the series matching `match[]` between `start` and `end` (default: all
time), from raw rows, chunks and rollups alike; `clean_tombstones` answers at once, since RTPM
deletes in place and keeps no tombstones. Both answer 204 as Prometheus does.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep
from rtpm.api.params import time_param
from rtpm.api.routes.prometheus import _match_sets, _params, _prometheus_envelope
from rtpm.api.routes.tsdb import _store
from rtpm.errors import BadDataError
from rtpm.model.time import MAX_TIME_MS, MIN_TIME_MS

router = APIRouter(prefix="/api/v1/admin/tsdb", tags=["prometheus"], dependencies=[Depends(_prometheus_envelope)])
log = structlog.get_logger("rtpm.api.admin")


@router.api_route(
    "/delete_series",
    methods=["POST", "PUT"],
    dependencies=[Depends(require("admin"))],
    status_code=204,
    response_class=Response,
)
async def delete_series(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """`match[]` (series selectors, at least one, repeatable), `start` and `end` (unix seconds or
    RFC3339; the whole of time when left out), in the query string or a form body."""
    params = await _params(request)
    sets = _match_sets(params, required=True)
    start = time_param(params.get("start"), "start", MIN_TIME_MS)
    end = time_param(params.get("end"), "end", MAX_TIME_MS)
    if end < start:
        raise BadDataError('invalid parameter "end": end timestamp must not be before start time')
    store = _store(services)
    ids: set[int] = set()
    for matchers in sets:
        ids.update(sid for sid, _ in await store.find_series(tenant, list(matchers)))
    removed = await store.delete_samples(sorted(ids), start, end) if ids else 0
    if services.query_cache is not None:
        await services.query_cache.store.bump(tenant)  # no cached answer may show deleted samples
    log.info(
        "series_deleted",
        tenant=tenant,
        match=params.all("match[]"),
        start_ms=start,
        end_ms=end,
        series=len(ids),
        samples=removed,
    )
    return Response(status_code=204)


@router.api_route(
    "/clean_tombstones",
    methods=["POST", "PUT"],
    dependencies=[Depends(require("admin"))],
    status_code=204,
    response_class=Response,
)
async def clean_tombstones() -> Response:
    """Nothing to clean: delete_series removes samples in place."""
    return Response(status_code=204)
