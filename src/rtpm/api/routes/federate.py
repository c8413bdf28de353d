"""`/federate`: the latest sample of every series matching `match[]`, in the Prometheus text
exposition format, so that a Prometheus (or any scraper) can pull selected series from RTPM.

As Prometheus's own federation: a series is included when it has a sample within the lookback
delta before the evaluation time (`time`, default now), and that sample is not a staleness
marker; the sample carries its own timestamp. Families come sorted by name, each with `# TYPE
<name> untyped` (Prometheus federates without types, so no suffix rules apply) and a `# HELP`
line from the stored metadata.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep
from rtpm.api.params import time_param
from rtpm.api.routes.prometheus import _match_sets, _params
from rtpm.model.labels import METRIC_NAME, Labels
from rtpm.model.samples import LatestSample
from rtpm.model.stale import is_stale_nan

router = APIRouter(tags=["prometheus"])

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
NO_HELP = "Federated by RTPM (no help text recorded)."


def format_value(v: float) -> str:
    """A sample value as Go's text format writes it (`1`, `0.5`, `+Inf`, `NaN`, `1e+21`)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def series_line(labels: Labels, value: float, ts_ms: int | None) -> str:
    name = ""
    parts = []
    for k, v in labels:
        if k == METRIC_NAME:
            name = v
        else:
            parts.append(f'{k}="{_escape_label(v)}"')
    head = f"{name}{{{','.join(parts)}}}" if parts else name
    return f"{head} {format_value(value)}" + (f" {ts_ms}" if ts_ms is not None else "")


def render(samples: list[LatestSample], helps: dict[str, str]) -> str:
    """Families sorted by name (series sorted by labels), each with its HELP and TYPE lines."""
    families: dict[str, list[LatestSample]] = {}
    for s in samples:
        name = dict(s.labels).get(METRIC_NAME, "")
        families.setdefault(name, []).append(s)
    out: list[str] = []
    for name in sorted(families):
        out.append(f"# HELP {name} {_escape_help(helps.get(name) or NO_HELP)}")
        out.append(f"# TYPE {name} untyped")
        for s in sorted(families[name], key=lambda x: x.labels):
            out.append(series_line(s.labels, s.value, s.ts_ms))
    return "\n".join(out) + ("\n" if out else "")


@router.get("/federate", dependencies=[Depends(require("metrics:read"))])
async def federate(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """`match[]` (at least one series selector, repeatable), `time` (default now)."""
    params = await _params(request)
    sets = _match_sets(params, required=True)
    now_ms = round(services.clock() * 1000)
    at = time_param(params.get("time"), "time", now_ms)
    lookback = round(services.settings.query.lookback_delta_seconds * 1000)
    querier = services.storage.querier(tenant, at - lookback + 1, at)  # (t - lookback, t]
    found: dict[Labels, LatestSample] = {}
    for matchers in sets:
        for s in await querier.latest(matchers):
            if not is_stale_nan(s.value):
                found[s.labels] = s
    names = {dict(lb).get(METRIC_NAME, "") for lb in found}
    helps = {m.name: m.help for m in await services.storage.metadata(tenant) if m.name in names and m.help}
    return Response(render(list(found.values()), helps), media_type=TEXT_FORMAT)
