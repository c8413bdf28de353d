"""The seed's alerts API: rules (CRUD, Prometheus rules-file import/export), active alerts,
history, manual resolve. Also builds the data of the Prometheus-format `/api/v1/rules` and
`/api/v1/alerts` (served by `prometheus.py`), so both show the same rules and alerts."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from rtpm.alerts.evaluator import resolve_manually
from rtpm.alerts.rules import export_rules_file, import_rules_file, rule_from_input, rule_to_output
from rtpm.alerts.views import alert_to_output, rfc3339
from rtpm.api.auth import require
from rtpm.api.deps import OptionalRowId, RowId, ServicesDep, TenantDep, read_json
from rtpm.api.params import time_param
from rtpm.app.alerting import Alerting
from rtpm.app.services import Services
from rtpm.errors import BadDataError, NotFoundError, RtpmError
from rtpm.model.alerts import AlertRule, AlertState, Severity
from rtpm.security.principal import Principal
from rtpm.storage.alert_store import HistoryQuery

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
READ = [Depends(require("alerts:read"))]
WRITE = [Depends(require("alerts:write"))]
MAX_PAGE = 1000
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


def _alerting(services: Services) -> Alerting:
    return services.alerting


def _now_ms(services: Services) -> int:
    return int(services.clock() * 1000)


def _known_receivers(alerting: Alerting) -> list[str]:
    return [*alerting.receiver_names, "alertmanager"]


async def _rule_or_404(alerting: Alerting, tenant: str, rule_id: int) -> AlertRule:
    rule = await alerting.store.get_rule(tenant, rule_id)
    if rule is None:
        raise NotFoundError(f"alert rule {rule_id} not found")
    return rule


# ---- rules ------------------------------------------------------------------------------------


@router.post("/rules", status_code=201, dependencies=WRITE)
async def create_rule(request: Request, services: ServicesDep, tenant: TenantDep) -> Any:
    """A rule from `expr` (PromQL) or the threshold form (`metric_name`, `condition`, `threshold`,
    `aggregation`, `window`, `labels`), with `for_duration`/`for`, `keep_firing_for`, `severity`,
    `labels`, `annotations`, `evaluation_interval`, `enabled`, `receivers`. Answers 201 with the rule."""
    alerting = _alerting(services)
    rule = rule_from_input(
        await read_json(request),
        tenant=tenant,
        now_ms=_now_ms(services),
        default_interval_seconds=services.settings.alerting.default_interval_seconds,
        known_receivers=_known_receivers(alerting),
    )
    return rule_to_output(await alerting.store.create_rule(rule))


@router.get("/rules", dependencies=READ)
async def list_rules(services: ServicesDep, tenant: TenantDep) -> Any:
    return [rule_to_output(r) for r in await _alerting(services).store.list_rules(tenant)]


@router.get("/rules/export", dependencies=READ)
async def export_rules(services: ServicesDep, tenant: TenantDep) -> Response:
    """Every rule of the tenant as a Prometheus rules file (YAML)."""
    rules = await _alerting(services).store.list_rules(tenant)
    text = export_rules_file(rules, default_interval_seconds=services.settings.alerting.default_interval_seconds)
    return Response(text, media_type="application/yaml")


@router.post("/rules/import", dependencies=WRITE)
async def import_rules(request: Request, services: ServicesDep, tenant: TenantDep) -> Any:
    """A Prometheus rules file (YAML body). Alerting rules are created, or replace the tenant's rule
    of the same name; recording rules are skipped and listed. All or nothing on invalid input."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in _YAML_TYPES and ctype != "application/octet-stream":
        raise BadDataError(f"send the rules file as application/yaml, not {ctype}")
    body = await request.body()
    alerting = _alerting(services)
    now_ms = _now_ms(services)
    parsed = import_rules_file(
        body, tenant=tenant, now_ms=now_ms, default_interval_seconds=services.settings.alerting.default_interval_seconds
    )
    existing = {r.name: r for r in await alerting.store.list_rules(tenant)}
    created = updated = 0
    out = []
    for rule in parsed.rules:
        old = existing.get(rule.name)
        if old is None:
            saved = await alerting.store.create_rule(rule)
            created += 1
        else:
            saved = await alerting.store.update_rule(
                rule.with_(id=old.id, created_ms=old.created_ms, receivers=old.receivers, enabled=old.enabled)
            )
            updated += 1
        out.append(rule_to_output(saved))
    return {"created": created, "updated": updated, "skipped_recording_rules": parsed.skipped, "rules": out}


@router.get("/rules/{rule_id}", dependencies=READ)
async def get_rule(rule_id: RowId, services: ServicesDep, tenant: TenantDep) -> Any:
    return rule_to_output(await _rule_or_404(_alerting(services), tenant, rule_id))


@router.put("/rules/{rule_id}", dependencies=WRITE)
async def update_rule(rule_id: RowId, request: Request, services: ServicesDep, tenant: TenantDep) -> Any:
    """A partial update: fields not sent keep their values."""
    alerting = _alerting(services)
    base = await _rule_or_404(alerting, tenant, rule_id)
    rule = rule_from_input(
        await read_json(request),
        tenant=tenant,
        now_ms=_now_ms(services),
        base=base,
        known_receivers=_known_receivers(alerting),
    )
    saved = await alerting.store.update_rule(rule)
    if base.enabled and not saved.enabled:
        await _close_rule_alerts(services, alerting, saved, "rule disabled")
    return rule_to_output(saved)


@router.delete("/rules/{rule_id}", status_code=204, dependencies=WRITE)
async def delete_rule(rule_id: RowId, services: ServicesDep, tenant: TenantDep) -> Response:
    """Delete a rule. Its firing alerts are resolved (and notified) first; history stays."""
    alerting = _alerting(services)
    rule = await _rule_or_404(alerting, tenant, rule_id)
    await _close_rule_alerts(services, alerting, rule, "rule deleted")
    if not await alerting.store.delete_rule(tenant, rule_id):
        raise NotFoundError(f"alert rule {rule_id} not found")
    return Response(status_code=204)


async def _close_rule_alerts(services: Services, alerting: Alerting, rule: AlertRule, why: str) -> None:
    """A rule that stops being evaluated resolves its active alerts, so none stays firing forever."""
    notes = []
    for alert in await alerting.store.active_alerts(tenant=rule.tenant, rule_id=rule.id):
        resolved, note = resolve_manually(alert, rule, _now_ms(services), why)
        if await alerting.store.close_alert(resolved) and note is not None:
            notes.append(note)
    if notes:
        await alerting.notify(notes)


# ---- alerts -----------------------------------------------------------------------------------


async def _rules_by_id(alerting: Alerting, tenant: str) -> dict[int, AlertRule]:
    return {r.id: r for r in await alerting.store.list_rules(tenant) if r.id is not None}


@router.get("/active", dependencies=READ)
async def active_alerts(services: ServicesDep, tenant: TenantDep) -> Any:
    """Pending and firing alerts, as a JSON array."""
    alerting = _alerting(services)
    rules = await _rules_by_id(alerting, tenant)
    alerts = await alerting.store.active_alerts(tenant=tenant)
    return [alert_to_output(a, rules.get(a.rule_id)) for a in alerts]


def _int_param(raw: str | None, name: str, default: int, *, lo: int, hi: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise BadDataError(f"{name}: expected an integer, got {raw!r}") from None
    if not lo <= n <= hi:
        raise BadDataError(f"{name}: must be between {lo} and {hi}")
    return n


@router.get("/history", dependencies=READ)
async def history(request: Request, services: ServicesDep, tenant: TenantDep) -> Any:
    """Alerts in any state, newest first. Filters: `rule_id` (or `rule`, an id or a name), `state`,
    `severity`, `start`/`end` (RFC3339 or unix seconds; alerts active at some time in between).
    Pages: `limit` (default 100, at most 1000) and `offset`."""
    q = request.query_params
    alerting = _alerting(services)
    rules = await _rules_by_id(alerting, tenant)
    rule_id: OptionalRowId = None
    raw_rule = q.get("rule_id") or q.get("rule")
    if raw_rule:
        if raw_rule.isdigit():
            rule_id = int(raw_rule)
        else:
            by_name = [rid for rid, r in rules.items() if r.name == raw_rule]
            rule_id = by_name[0] if by_name else -1
    state = None
    if q.get("state"):
        try:
            state = AlertState(q["state"].lower())
        except ValueError:
            raise BadDataError(f"state: one of pending, firing, resolved; got {q['state']!r}") from None
    severity = None
    if q.get("severity"):
        try:
            severity = Severity(q["severity"].lower())
        except ValueError:
            raise BadDataError(f"severity: one of {', '.join(s.value for s in Severity)}") from None
    start = time_param(q["start"], "start", rfc3339=True) if q.get("start") else None
    end = time_param(q["end"], "end", rfc3339=True) if q.get("end") else None
    if start is not None and end is not None and end < start:
        raise BadDataError("end: must not be before start")
    limit = _int_param(q.get("limit"), "limit", 100, lo=1, hi=MAX_PAGE)
    offset = _int_param(q.get("offset"), "offset", 0, lo=0, hi=2**31)
    alerts, total = await alerting.store.history(
        HistoryQuery(tenant, rule_id, state, severity, start, end, limit=limit, offset=offset)
    )
    return {
        "alerts": [alert_to_output(a, rules.get(a.rule_id)) for a in alerts],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.post("/resolve/{alert_id}")
async def resolve_alert(
    alert_id: RowId,
    services: ServicesDep,
    principal: Principal = Depends(require("alerts:write")),
) -> Any:
    """Close an alert by hand (recorded with who did it). If its condition still holds at the
    next evaluation, a new alert opens."""
    tenant = principal.tenant
    alerting = _alerting(services)
    alert = await alerting.store.get_alert(tenant, alert_id)
    if alert is None:
        raise NotFoundError(f"alert {alert_id} not found")
    if not alert.active:
        raise BadDataError(f"alert {alert_id} is {alert.state.value} already")
    rule = await alerting.store.get_rule(tenant, alert.rule_id)
    resolved, note = resolve_manually(alert, rule, _now_ms(services), principal.subject or "anonymous")
    if not await alerting.store.close_alert(resolved):
        raise BadDataError(f"alert {alert_id} was resolved meanwhile")
    if note is not None:
        try:
            await alerting.notify([note])
        except RtpmError:
            pass  # the close is recorded; delivery problems are counted by the dispatcher
    return alert_to_output(resolved, rule)


# ---- the Prometheus-format views ----------------------------------------------------------------


def _prom_value(v: float) -> str:
    """Prometheus prints an alert's value with strconv.FormatFloat(v, 'e', -1, 64)."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return str(np.format_float_scientific(v, unique=True, trim="-", exp_digits=2))


def _prom_alert(a: Any) -> dict[str, Any]:
    return {
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.value,
        "activeAt": rfc3339(a.active_at_ms),
        "value": _prom_value(a.value),
    }


async def prometheus_alerts(services: Services, tenant: str) -> dict[str, Any]:
    """The data of Prometheus' `GET /api/v1/alerts`."""
    return {"alerts": [_prom_alert(a) for a in await services.alerting.store.active_alerts(tenant=tenant)]}


async def prometheus_rules(services: Services, tenant: str, kind: str | None = None) -> dict[str, Any]:
    """The data of Prometheus' `GET /api/v1/rules` (`type=alert` or none; RTPM has no recording rules)."""
    if kind == "record":
        return {"groups": []}
    store = services.alerting.store
    by_rule: dict[int, list[Any]] = {}
    for a in await store.active_alerts(tenant=tenant):
        by_rule.setdefault(a.rule_id, []).append(a)
    groups: dict[str, dict[str, Any]] = {}
    for r in await store.list_rules(tenant):
        alerts = by_rule.get(r.id or 0, [])
        states = {a.state for a in alerts}
        state = "firing" if AlertState.FIRING in states else "pending" if states else "inactive"
        health = "unknown" if r.last_eval_ms is None else "err" if r.last_error else "ok"
        g = groups.setdefault(
            r.group,
            {
                "name": r.group,
                "file": "rtpm",
                "rules": [],
                "interval": r.evaluation_interval_seconds,
                "limit": 0,
                "evaluationTime": 0.0,
                "lastEvaluation": "0001-01-01T00:00:00Z",
            },
        )
        g["evaluationTime"] += r.last_eval_seconds or 0.0
        last = rfc3339(r.last_eval_ms) or "0001-01-01T00:00:00Z"
        g["lastEvaluation"] = max(g["lastEvaluation"], last)
        g["rules"].append(
            {
                "state": state if r.enabled else "inactive",
                "name": r.name,
                "query": r.expr,
                "duration": r.for_seconds,
                "keepFiringFor": r.keep_firing_for_seconds,
                "labels": r.labels,
                "annotations": r.annotations,
                "alerts": [_prom_alert(a) for a in alerts],
                "health": health,
                "lastError": r.last_error or "",
                "evaluationTime": r.last_eval_seconds or 0.0,
                "lastEvaluation": last,
                "type": "alerting",
            }
        )
    return {"groups": list(groups.values())}
