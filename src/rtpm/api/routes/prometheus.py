"""The Prometheus HTTP API (v1): query, query_range, series, labels, label values, metadata,
buildinfo, format_query, and the empty exemplar/rules/alerts endpoints Grafana probes.

Parameters are read from the URL and, for POST, from an `application/x-www-form-urlencoded` body
(the body wins, as with Go's `FormValue`). Every answer uses Prometheus' envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from rtpm import __version__
from rtpm.api.auth import public, require
from rtpm.api.deps import ServicesDep, TenantDep
from rtpm.api.params import duration_param, time_param
from rtpm.api.routes import alerts as alerts_api
from rtpm.app.services import Services
from rtpm.errors import BadDataError
from rtpm.model.labels import Labels, Matcher
from rtpm.model.time import MAX_TIME_MS, MIN_TIME_MS
from rtpm.query.promql import ast as promql_ast
from rtpm.query.promql.histograms import exemplars_json
from rtpm.query.promql.jsonfmt import render

# The Prometheus version whose API and PromQL semantics we follow (reported by buildinfo).
PROMETHEUS_COMPAT_VERSION = "3.0.0"


async def _prometheus_envelope(request: Request) -> None:
    request.state.prometheus_envelope = True


router = APIRouter(prefix="/api/v1", tags=["prometheus"], dependencies=[Depends(_prometheus_envelope)])


# ---- parameters -----------------------------------------------------------------------------


class Params:
    def __init__(self, values: dict[str, list[str]]) -> None:
        self.values = values

    def get(self, name: str) -> str | None:
        v = self.values.get(name)
        return v[0] if v else None

    def all(self, name: str) -> list[str]:
        return self.values.get(name, [])


async def _params(request: Request) -> Params:
    out: dict[str, list[str]] = {}
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            body = await request.body()
            for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                out.setdefault(k, []).append(v)
    for k, v in request.query_params.multi_items():
        out.setdefault(k, []).append(v)
    return Params(out)


def _limit(params: Params) -> int | None:
    raw = params.get("limit")
    if raw is None or raw == "":
        return None
    try:
        n = int(raw)
    except ValueError:
        raise BadDataError(f'invalid parameter "limit": cannot parse "{raw}" to a valid limit') from None
    if n < 0:
        raise BadDataError('invalid parameter "limit": limit must be non-negative')
    return n or None


def _body(data: bytes, warnings: Sequence[str] = ()) -> bytes:
    """The success envelope; "PromQL info: ..." annotations go to `infos`, as Prometheus has them."""
    body = b'{"status":"success","data":' + data
    warn = [w for w in warnings if not w.startswith("PromQL info:")]
    infos = [w for w in warnings if w.startswith("PromQL info:")]
    if warn:
        body += b',"warnings":' + orjson.dumps(warn)
    if infos:
        body += b',"infos":' + orjson.dumps(infos)
    return body + b"}"


def _success(data: bytes, warnings: Sequence[str] = ()) -> Response:
    return Response(_body(data, warnings), media_type="application/json")


async def _cached(
    services: Services, tenant: str, parts: tuple[Any, ...], end_ms: int, compute: Callable[[], Awaitable[bytes]]
) -> Response:
    """The answer from the query cache when the range is old enough to be cached; the query text
    is keyed with its white space folded."""
    cache = services.query_cache
    if cache is None:
        body = await compute()
    else:
        kind, text, *rest = parts
        body, _ = await cache.get_or_compute(tenant, (kind, " ".join(text.split()), *rest), end_ms, compute)
    return Response(body, media_type="application/json")


def _json_success(data: Any, warnings: Sequence[str] = ()) -> Response:
    return _success(orjson.dumps(data), warnings)


TRUNCATED = "results truncated due to limit"


def _query_opts(params: Params) -> tuple[int | None, float | None]:
    lookback = params.get("lookback_delta")
    timeout = params.get("timeout")
    lb = duration_param(lookback, "lookback_delta") if lookback else None
    to = duration_param(timeout, "timeout") / 1000 if timeout else None
    return lb, to


# ---- queries --------------------------------------------------------------------------------


@router.api_route("/query", dependencies=[Depends(require("metrics:read"))], methods=["GET", "POST"])
async def query(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """Instant query: `query`, `time` (default now), `timeout`, `limit`, `lookback_delta`."""
    params = await _params(request)
    now_ms = round(services.clock() * 1000)
    t = time_param(params.get("time"), "time", now_ms)
    limit = _limit(params)
    lookback, timeout = _query_opts(params)
    text = params.get("query") or ""

    async def compute() -> bytes:
        with services.metrics.query.time("instant"):
            result = await services.engine.instant(tenant, text, t, lookback_ms=lookback, timeout_s=timeout)
        data, truncated = render(result, as_range=False, limit=limit)
        return _body(data, [*result.warnings, *([TRUNCATED] if truncated else [])])

    return await _cached(services, tenant, ("instant", text, t, lookback, limit), t, compute)


def check_range(start_ms: int, end_ms: int, step_ms: int, max_points: int) -> None:
    if end_ms < start_ms:
        raise BadDataError('invalid parameter "end": end timestamp must not be before start time')
    if step_ms <= 0:
        raise BadDataError(
            'invalid parameter "step": zero or negative query resolution step widths are not accepted. '
            "Try a positive integer"
        )
    if (end_ms - start_ms) // step_ms > max_points:
        raise BadDataError(
            f"exceeded maximum resolution of {max_points:,} points per timeseries. Try decreasing the query "
            "resolution (?step=XX)"
        )


@router.api_route("/query_range", dependencies=[Depends(require("metrics:read"))], methods=["GET", "POST"])
async def query_range(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """Range query: `query`, `start`, `end`, `step` (all required), `timeout`, `limit`, `lookback_delta`."""
    params = await _params(request)
    start = time_param(params.get("start"), "start")
    end = time_param(params.get("end"), "end")
    step = duration_param(params.get("step"), "step")
    check_range(start, end, step, services.settings.limits.max_points_per_series)
    limit = _limit(params)
    lookback, timeout = _query_opts(params)
    text = params.get("query") or ""

    async def compute() -> bytes:
        with services.metrics.query.time("range"):
            result = await services.engine.range(
                tenant, text, start, end, step, lookback_ms=lookback, timeout_s=timeout
            )
        data, truncated = render(result, as_range=True, limit=limit)
        return _body(data, [*result.warnings, *([TRUNCATED] if truncated else [])])

    return await _cached(services, tenant, ("range", text, start, end, step, lookback, limit), end, compute)


@router.api_route("/format_query", dependencies=[Depends(require("metrics:read"))], methods=["GET", "POST"])
async def format_query(request: Request) -> Response:
    params = await _params(request)
    text = params.get("query") or ""
    promql_ast.parse(text)  # raises bad_data with the position
    return _json_success(promql_ast.pretty(text))


@router.api_route("/query_exemplars", dependencies=[Depends(require("metrics:read"))], methods=["GET", "POST"])
async def query_exemplars(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """Exemplars of the series every selector of `query` matches, in [start, end] (Prometheus's
    defaults: all time), in Prometheus's shape: [{seriesLabels, exemplars: [{labels, value, timestamp}]}]."""
    params = await _params(request)
    node = promql_ast.parse(params.get("query") or "")
    start = time_param(params.get("start"), "start", MIN_TIME_MS)
    end = time_param(params.get("end"), "end", MAX_TIME_MS)
    if end < start:
        raise BadDataError('invalid parameter "end": end timestamp must not be before start time')
    return _success(await exemplars_json(services.storage.histograms, tenant, node, start, end))


# ---- metadata -------------------------------------------------------------------------------


def _match_sets(params: Params, required: bool) -> list[list[Matcher]]:
    raw = params.all("match[]")
    if not raw and required:
        raise BadDataError("no match[] parameter provided")
    sets = []
    for text in raw:
        node = promql_ast.parse(text)
        if not isinstance(node, promql_ast.VectorSel):
            raise BadDataError(f'invalid parameter "match[]": {text!r} is not a series selector')
        sets.append(node.matchers)
    return sets


def _range(params: Params) -> tuple[int, int]:
    start = time_param(params.get("start"), "start", MIN_TIME_MS)
    end = time_param(params.get("end"), "end", MAX_TIME_MS)
    if end < start:
        raise BadDataError('invalid parameter "end": end timestamp must not be before start time')
    return start, end


def _truncate(items: list[Any], limit: int | None) -> tuple[list[Any], list[str]]:
    if limit is not None and len(items) > limit:
        return items[:limit], [TRUNCATED]
    return items, []


@router.api_route("/series", dependencies=[Depends(require("metrics:read"))], methods=["GET", "POST"])
async def series(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    params = await _params(request)
    sets = _match_sets(params, required=True)
    start, end = _range(params)
    limit = _limit(params)
    querier = services.storage.querier(tenant, start, end)
    found: dict[Labels, None] = {}
    for matchers in sets:
        for labels in await querier.series(matchers):
            found[labels] = None
        for labels in await services.storage.histograms.series(tenant, start, end, matchers):
            found[labels] = None  # series holding only native histograms
    items, warnings = _truncate([dict(lb) for lb in sorted(found)], limit)
    return _json_success(items, warnings)


@router.api_route("/labels", dependencies=[Depends(require("metrics:read"))], methods=["GET", "POST"])
async def labels(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    params = await _params(request)
    sets = _match_sets(params, required=False)
    start, end = _range(params)
    limit = _limit(params)
    querier = services.storage.querier(tenant, start, end)
    names: set[str] = set()
    for matchers in sets or [[]]:
        names.update(await querier.label_names(matchers))
        for lb in await services.storage.histograms.series(tenant, start, end, matchers):
            names.update(k for k, _ in lb)
    items, warnings = _truncate(sorted(names), limit)
    return _json_success(items, warnings)


def unescape_label_name(name: str) -> str:
    """`U__` + escaped UTF-8 name (`_` as `__`, other characters as `_<hex>_`) back to the name."""
    if not name.startswith("U__"):
        return name
    s, out, i = name[3:], [], 0
    while i < len(s):
        if s[i] == "_":
            if s.startswith("__", i):
                out.append("_")
                i += 2
                continue
            j = s.find("_", i + 1)
            try:
                out.append(chr(int(s[i + 1 : j], 16)))
            except ValueError:
                return name
            i = j + 1
            continue
        out.append(s[i])
        i += 1
    return "".join(out)


@router.get("/label/{name}/values", dependencies=[Depends(require("metrics:read"))])
async def label_values(name: str, request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    params = await _params(request)
    label = unescape_label_name(name)
    sets = _match_sets(params, required=False)
    start, end = _range(params)
    limit = _limit(params)
    querier = services.storage.querier(tenant, start, end)
    values: set[str] = set()
    for matchers in sets or [[]]:
        values.update(await querier.label_values(label, matchers))
        for lb in await services.storage.histograms.series(tenant, start, end, matchers):
            values.update(v for k, v in lb if k == label)
    items, warnings = _truncate(sorted(values), limit)
    return _json_success(items, warnings)


@router.get("/metadata", dependencies=[Depends(require("metrics:read"))])
async def metadata(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    params = await _params(request)
    limit = _limit(params)
    raw_per = params.get("limit_per_metric")
    try:
        per_metric = int(raw_per) if raw_per else None
    except ValueError:
        raise BadDataError(f'invalid parameter "limit_per_metric": cannot parse "{raw_per}"') from None
    out: dict[str, list[dict[str, str]]] = {}
    for m in await services.storage.metadata(tenant, params.get("metric") or None):
        entries = out.setdefault(m.name, [])
        if per_metric and per_metric > 0 and len(entries) >= per_metric:
            continue
        entries.append({"type": m.type.value, "help": m.help, "unit": m.unit})
        if limit is not None and len(out) > limit:
            out.pop(m.name)
            break
    return _json_success(out)


@router.get("/status/buildinfo", dependencies=[Depends(public())])
async def buildinfo() -> Response:
    """Prometheus' build info; no `features` (Grafana would take us for Mimir)."""
    return _json_success(
        {
            "version": PROMETHEUS_COMPAT_VERSION,
            "revision": f"rtpm-{__version__}",
            "branch": "rtpm",
            "buildUser": "rtpm",
            "buildDate": "",
            "goVersion": "none (RTPM, Python)",
        }
    )


@router.get("/rules", dependencies=[Depends(require("alerts:read"))])
async def rules(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """Alerting rules with their state and alerts (`type=alert|record`; RTPM has no recording rules)."""
    return _json_success(await alerts_api.prometheus_rules(services, tenant, request.query_params.get("type")))


@router.get("/alerts", dependencies=[Depends(require("alerts:read"))])
async def alerts(services: ServicesDep, tenant: TenantDep) -> Response:
    """Pending and firing alerts, as Prometheus lists them."""
    return _json_success(await alerts_api.prometheus_alerts(services, tenant))
