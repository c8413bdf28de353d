"""How alerts and rules look from outside: the seed's alert JSON (API, live channel) and a rule's
headline facts (metric, condition, threshold), also for rules written as plain PromQL."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

from rtpm.errors import BadDataError
from rtpm.model.alerts import Alert, AlertRule
from rtpm.model.labels import METRIC_NAME, MatchType
from rtpm.model.time import to_rfc3339
from rtpm.query.promql import ast as promql_ast

_COMPARISONS = frozenset({">", ">=", "<", "<=", "==", "!="})


def rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    return to_rfc3339(ms)


@dataclasses.dataclass(frozen=True, slots=True)
class Headline:
    metric_name: str | None
    condition: str | None
    threshold: float | None


def _first_metric(node: Any) -> str | None:
    if isinstance(node, promql_ast.VectorSel):
        for m in node.matchers:
            if m.name == METRIC_NAME and m.type is MatchType.EQUAL:
                return str(m.value)
        return None
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name, None)
            children = value if isinstance(value, list) else [value]
            for child in children:
                if isinstance(child, promql_ast.Node):
                    found = _first_metric(child)
                    if found:
                        return found
    return None


@lru_cache(maxsize=4096)
def _expr_headline(expr: str) -> Headline:
    try:
        node = promql_ast.parse(expr)
    except BadDataError:
        return Headline(None, None, None)
    condition = threshold = None
    if isinstance(node, promql_ast.Binary) and node.op in _COMPARISONS and not node.return_bool:
        if isinstance(node.rhs, promql_ast.NumberLit):
            condition, threshold = node.op, float(node.rhs.value)
    return Headline(_first_metric(node), condition, threshold)


def headline(rule: AlertRule | None) -> Headline:
    if rule is None:
        return Headline(None, None, None)
    if rule.threshold is not None:
        t = rule.threshold
        return Headline(t.metric_name, t.condition, t.threshold)
    return _expr_headline(rule.expr)


def _json_float(v: float) -> float | str:
    return v if v == v and v not in (float("inf"), float("-inf")) else str(v)


def alert_to_output(alert: Alert, rule: AlertRule | None) -> dict[str, Any]:
    h = headline(rule)
    return {
        "id": alert.id,
        "rule_id": alert.rule_id,
        "rule_name": alert.rule_name,
        "metric_name": h.metric_name,
        "status": alert.state.value,
        "severity": alert.severity.value,
        "current_value": _json_float(alert.value),
        "threshold": h.threshold,
        "condition": h.condition,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "started_at": rfc3339(alert.active_at_ms),
        "fired_at": rfc3339(alert.fired_at_ms),
        "resolved_at": rfc3339(alert.resolved_at_ms),
        "resolved_by": alert.resolved_by,
        "fingerprint": alert.fingerprint,
    }
