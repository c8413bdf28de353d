"""Alerting rules: validation of API input, the seed's threshold form compiled to PromQL, and
Prometheus rules files (YAML `groups`) in and out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from rtpm.errors import BadDataError, Problem, ValidationFailed
from rtpm.model.alerts import AlertRule, Severity, ThresholdSpec
from rtpm.model.labels import is_valid_label_name, is_valid_metric_name
from rtpm.model.time import format_duration, parse_duration
from rtpm.query.promql import ast as promql_ast

DEFAULT_WINDOW_SECONDS = 300.0
OPERATORS = (">=", "<=", "==", "!=", ">", "<")
_OP_WORDS = {
    "gt": ">",
    "gte": ">=",
    "ge": ">=",
    "lt": "<",
    "lte": "<=",
    "le": "<=",
    "eq": "==",
    "ne": "!=",
    "neq": "!=",
    # the original RTPM API's locustfile and suites
    "greater_than": ">",
    "greater_than_or_equal": ">=",
    "greater_than_or_equals": ">=",
    "greater_or_equal": ">=",
    "less_than": "<",
    "less_than_or_equal": "<=",
    "less_than_or_equals": "<=",
    "less_or_equal": "<=",
    "equal": "==",
    "equals": "==",
    "equal_to": "==",
    "not_equal": "!=",
    "not_equals": "!=",
    "not_equal_to": "!=",
}
# Other names of the rule body's fields, as the original RTPM API's clients send them.
_FIELD_ALIASES = {"for": "for_duration", "duration": "for_duration", "metric": "metric_name", "operator": "condition"}
AGGREGATIONS = {
    "avg": "avg_over_time({sel}[{w}])",
    "min": "min_over_time({sel}[{w}])",
    "max": "max_over_time({sel}[{w}])",
    "sum": "sum_over_time({sel}[{w}])",
    "count": "count_over_time({sel}[{w}])",
    "p95": "quantile_over_time(0.95, {sel}[{w}])",
    "p99": "quantile_over_time(0.99, {sel}[{w}])",
    "rate": "rate({sel}[{w}])",
}
_THRESHOLD_KEYS = ("metric_name", "condition", "threshold", "aggregation", "window")


# ---- durations --------------------------------------------------------------------------------


def parse_duration_seconds(raw: object, name: str) -> float:
    """Seconds (a number or numeric string) or a Prometheus duration (`90s`, `5m`, `1h30m`); >= 0."""
    try:
        ms = parse_duration(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: cannot parse {raw!r} as seconds or a duration like 5m ({exc})") from None
    if ms < 0:
        raise ValueError(f"{name}: must be a finite, non-negative duration")
    return ms / 1000


# ---- the threshold form -----------------------------------------------------------------------


def _number(v: float) -> str:
    r = repr(float(v))
    return r[:-2] if r.endswith(".0") else r


def parse_condition(condition: object, threshold: float) -> str:
    """`"> 75"`, `">"` or `"gt"` -> `">"`; a number in the condition must equal `threshold`."""
    if not isinstance(condition, str) or not condition.strip():
        raise ValueError('condition: expected an operator (> >= < <= == !=), e.g. "> 75"')
    text = condition.strip()
    word = _OP_WORDS.get(text.split()[0].lower())
    if word is not None:
        op, rest = word, text.split(None, 1)[1] if " " in text else ""
    else:
        op = next((o for o in OPERATORS if text.startswith(o)), "")
        if not op:
            raise ValueError(f"condition: {condition!r} does not start with an operator (> >= < <= == !=)")
        rest = text[len(op) :]
    rest = rest.strip()
    if rest:
        try:
            given = float(rest)
        except ValueError:
            raise ValueError(f"condition: {condition!r}: {rest!r} is not a number") from None
        if given != threshold:
            raise ValueError(
                f"condition: {condition!r} disagrees with threshold {_number(threshold)}; send the operator alone "
                "or the same number"
            )
    return op


def compile_threshold(spec: ThresholdSpec) -> str:
    matchers = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(spec.labels.items()))
    sel = f"{spec.metric_name}{{{matchers}}}" if matchers else spec.metric_name
    if spec.aggregation:
        w = format_duration(spec.window_seconds or DEFAULT_WINDOW_SECONDS)
        sel = AGGREGATIONS[spec.aggregation].format(sel=sel, w=w)
    return f"{sel} {spec.condition} {_number(spec.threshold)}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---- API input --------------------------------------------------------------------------------


def check_expr(expr: str) -> None:
    """Raise QueryParseError (the parser's message) unless `expr` is an instant vector or scalar."""
    node = promql_ast.parse(expr)
    if node.type not in ("vector", "scalar"):
        raise BadDataError(f"expr: an alerting rule needs an instant vector or scalar expression, not a {node.type}")


@dataclass
class _Collector:
    problems: list[Problem] = field(default_factory=list)

    def add(self, fld: str, reason: str) -> None:
        self.problems.append(Problem(fld, reason))


def _str_map(value: object, fld: str, c: _Collector, *, label_names: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        c.add(fld, "expected an object of strings")
        return {}
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or (label_names and not is_valid_label_name(k)):
            c.add(f"{fld}.{k}", "invalid label name")
            continue
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            c.add(f"{fld}.{k}", "expected a string")
            continue
        out[k] = str(v)
    return out


def rule_from_input(
    data: Mapping[str, Any],
    *,
    tenant: str,
    now_ms: int,
    base: AlertRule | None = None,
    default_interval_seconds: float = 60.0,
    known_receivers: Sequence[str] | None = None,
) -> AlertRule:
    """Validate the API's rule body. With `base`, a partial update of that rule. Raises
    ValidationFailed listing every problem, or QueryParseError for an expression that does not parse."""
    if not isinstance(data, Mapping):
        raise BadDataError("expected a JSON object")
    c = _Collector()
    d = dict(data)
    for alias, key in _FIELD_ALIASES.items():
        if alias in d:
            value = d.pop(alias)
            if key in d and d[key] != value:
                c.add(alias, f"an alias of {key}, which is given too with another value; send one of them")
            d.setdefault(key, value)
    r: dict[str, Any] = {}
    if base is None or "name" in d:
        name = d.get("name")
        if not isinstance(name, str) or not name.strip():
            c.add("name", "required, a non-empty string")
        else:
            r["name"] = name.strip()
    for key, attr in (
        ("for_duration", "for_seconds"),
        ("keep_firing_for", "keep_firing_for_seconds"),
        ("evaluation_interval", "evaluation_interval_seconds"),
        ("query_offset", "query_offset_seconds"),
    ):
        if key in d and d[key] is not None:
            try:
                r[attr] = parse_duration_seconds(d[key], key)
            except ValueError as exc:
                c.add(key, str(exc).split(": ", 1)[-1])
    if r.get("evaluation_interval_seconds") == 0:
        c.add("evaluation_interval", "must be positive")
    if base is None and "evaluation_interval_seconds" not in r:
        r["evaluation_interval_seconds"] = default_interval_seconds
    if "severity" in d and d["severity"] is not None:
        try:
            r["severity"] = Severity(str(d["severity"]).lower())
        except ValueError:
            c.add("severity", f"one of {', '.join(s.value for s in Severity)}")
    if "labels" in d:
        r["labels"] = _str_map(d["labels"], "labels", c, label_names=True)
    if "annotations" in d:
        r["annotations"] = _str_map(d["annotations"], "annotations", c, label_names=False)
    if "enabled" in d:
        if not isinstance(d["enabled"], bool):
            c.add("enabled", "expected true or false")
        else:
            r["enabled"] = d["enabled"]
    if "group" in d and d["group"] is not None:
        if not isinstance(d["group"], str) or not d["group"]:
            c.add("group", "expected a non-empty string")
        else:
            r["group"] = d["group"]
    if "receivers" in d:
        recv = d["receivers"] or []
        if not isinstance(recv, list) or not all(isinstance(x, str) for x in recv):
            c.add("receivers", "expected a list of receiver names")
        else:
            unknown = [x for x in recv if known_receivers is not None and x not in known_receivers]
            if unknown:
                c.add("receivers", f"unknown receiver(s) {unknown}; configured: {sorted(known_receivers or [])}")
            r["receivers"] = list(recv)

    has_expr = d.get("expr") not in (None, "")
    threshold_keys = [k for k in _THRESHOLD_KEYS if d.get(k) is not None]
    if has_expr and threshold_keys:
        c.add("expr", f"give either expr or the threshold form ({', '.join(threshold_keys)}), not both")
    elif has_expr:
        if not isinstance(d["expr"], str):
            c.add("expr", "expected a PromQL string")
        else:
            r["expr"] = d["expr"].strip()
            r["threshold"] = None
    elif threshold_keys or base is None or (base.threshold is not None and "labels" in d):
        # In the threshold form `labels` select the metric's series (and so label the alerts too).
        selector = r.get("labels") if "labels" in d else None
        spec = _threshold_from_input(d, base.threshold if base is not None else None, selector, c)
        if spec is not None:
            r["threshold"] = spec
            r["expr"] = compile_threshold(spec)
    if c.problems:
        raise ValidationFailed(c.problems)
    if "expr" in r:
        check_expr(r["expr"])
    if base is None:
        return AlertRule(tenant=tenant, created_ms=now_ms, updated_ms=now_ms, **r)
    return base.with_(updated_ms=now_ms, **r)


def _threshold_from_input(
    d: Mapping[str, Any], base: ThresholdSpec | None, selector: dict[str, str] | None, c: _Collector
) -> ThresholdSpec | None:
    metric = d.get("metric_name", base.metric_name if base else None)
    if not isinstance(metric, str) or not is_valid_metric_name(metric):
        c.add("metric_name", "required (or expr): a metric name [a-zA-Z_:][a-zA-Z0-9_:]*")
    raw_threshold = d.get("threshold", base.threshold if base else None)
    threshold: float | None = None
    if isinstance(raw_threshold, int | float) and not isinstance(raw_threshold, bool) and math.isfinite(raw_threshold):
        threshold = float(raw_threshold)
    else:
        c.add("threshold", "required with metric_name: a finite number")
    op = None
    raw_condition = d.get("condition", base.condition if base else None)
    if threshold is not None:
        try:
            op = parse_condition(raw_condition, threshold)
        except ValueError as exc:
            c.add("condition", str(exc).split(": ", 1)[-1])
    aggregation = d.get("aggregation", base.aggregation if base else None)
    if aggregation is not None and aggregation not in AGGREGATIONS:
        c.add("aggregation", f"one of {', '.join(AGGREGATIONS)}")
    window = base.window_seconds if base else None
    if d.get("window") is not None:
        try:
            window = parse_duration_seconds(d["window"], "window")
            if window == 0:
                c.add("window", "must be positive")
        except ValueError as exc:
            c.add("window", str(exc).split(": ", 1)[-1])
    match = selector if selector is not None else (base.labels if base else {})
    if c.problems or metric is None or threshold is None or op is None:
        return None
    return ThresholdSpec(str(metric), op, threshold, dict(match), aggregation, window)


def rule_to_output(rule: AlertRule) -> dict[str, Any]:
    """The API's view of a rule."""
    th = rule.threshold
    return {
        "id": rule.id,
        "name": rule.name,
        "group": rule.group,
        "expr": rule.expr,
        "metric_name": th.metric_name if th else None,
        "aggregation": th.aggregation if th else None,
        "window": th.window_seconds if th else None,
        "condition": th.condition if th else None,
        "threshold": th.threshold if th else None,
        "for_duration": rule.for_seconds,
        "keep_firing_for": rule.keep_firing_for_seconds,
        "evaluation_interval": rule.evaluation_interval_seconds,
        "query_offset": rule.query_offset_seconds,
        "severity": rule.severity.value,
        "labels": rule.labels,
        "annotations": rule.annotations,
        "enabled": rule.enabled,
        "receivers": rule.receivers,
        "created_ms": rule.created_ms,
        "updated_ms": rule.updated_ms,
        "last_evaluation_ms": rule.last_eval_ms,
        "last_error": rule.last_error,
    }


# ---- Prometheus rules files -------------------------------------------------------------------


@dataclass
class ImportResult:
    rules: list[AlertRule]
    skipped: list[str]  # recording rules, which RTPM does not evaluate


def import_rules_file(
    text: str | bytes, *, tenant: str, now_ms: int, default_interval_seconds: float = 60.0
) -> ImportResult:
    """Parse a Prometheus rules file. Alerting rules become AlertRules (the group's interval, query
    offset and labels carried into each); recording rules are skipped and listed."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadDataError(f"rules file is not valid YAML: {exc}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("groups"), list):
        raise BadDataError("rules file: expected a top-level `groups:` list")
    c = _Collector()
    out: list[AlertRule] = []
    skipped: list[str] = []
    group_names: set[str] = set()
    rule_names: set[str] = set()
    for gi, group in enumerate(doc["groups"]):
        where = f"groups[{gi}]"
        if not isinstance(group, Mapping) or not isinstance(group.get("name"), str) or not group["name"]:
            c.add(where, "a group needs a `name`")
            continue
        gname = group["name"]
        if gname in group_names:
            c.add(where, f"group name {gname!r} repeated")
        group_names.add(gname)
        interval = default_interval_seconds
        offset = 0.0
        try:
            if group.get("interval") is not None:
                interval = parse_duration_seconds(group["interval"], "interval")
            if group.get("query_offset") is not None:
                offset = parse_duration_seconds(group["query_offset"], "query_offset")
        except ValueError as exc:
            c.add(where, str(exc))
        glabels = _str_map(group.get("labels"), f"{where}.labels", c, label_names=True)
        for ri, raw in enumerate(group.get("rules") or []):
            rwhere = f"{where}.rules[{ri}]"
            if not isinstance(raw, Mapping):
                c.add(rwhere, "expected a mapping")
                continue
            if "record" in raw:
                skipped.append(str(raw["record"]))
                continue
            name = raw.get("alert")
            if not isinstance(name, str) or not name:
                c.add(rwhere, "needs `alert` (or `record`)")
                continue
            if name in rule_names:
                c.add(rwhere, f"alert name {name!r} repeated; RTPM rule names are unique per tenant")
            rule_names.add(name)
            body: dict[str, Any] = {
                "name": name,
                "expr": raw.get("expr"),
                "group": gname,
                "evaluation_interval": interval,
                "query_offset": offset,
                "labels": {**glabels, **(raw.get("labels") or {})},
                "annotations": raw.get("annotations") or {},
            }
            if raw.get("for") is not None:
                body["for_duration"] = raw["for"]
            if raw.get("keep_firing_for") is not None:
                body["keep_firing_for"] = raw["keep_firing_for"]
            sev = str(body["labels"].get("severity", "")).lower()
            if sev in Severity.__members__.values():
                body["severity"] = sev
            if not body["expr"]:
                c.add(rwhere, "needs `expr`")
                continue
            try:
                out.append(
                    rule_from_input(
                        body, tenant=tenant, now_ms=now_ms, default_interval_seconds=default_interval_seconds
                    )
                )
            except ValidationFailed as exc:
                for p in exc.problems:
                    c.add(f"{rwhere}.{p.field}", p.reason)
            except BadDataError as exc:
                c.add(f"{rwhere}.expr", exc.message)
    if c.problems:
        raise ValidationFailed(c.problems)
    return ImportResult(out, skipped)


def export_rules_file(rules: Sequence[AlertRule], *, default_interval_seconds: float = 60.0) -> str:
    """Rules as a Prometheus rules file: one group per rule group and evaluation interval (and query
    offset), in order of first appearance, so every rule keeps its own interval through an export
    and import. A rule group whose rules have different intervals becomes several file groups, the
    later ones named `<group>_<interval>` (Prometheus wants group names unique in a file)."""
    groups: dict[tuple[str, float, float], list[AlertRule]] = {}
    for rule in sorted(rules, key=lambda r: r.id or 0):
        key = (rule.group, rule.evaluation_interval_seconds, rule.query_offset_seconds)
        groups.setdefault(key, []).append(rule)
    doc_groups = []
    used: set[str] = set()
    for (gname, interval, offset), members in groups.items():
        name = gname
        if name in used:
            name = f"{gname}_{format_duration(interval)}" + (f"_{format_duration(offset)}" if offset else "")
            n = 2
            while name in used:
                name, n = f"{gname}_{format_duration(interval)}_{n}", n + 1
        used.add(name)
        g: dict[str, Any] = {"name": name}
        if interval != default_interval_seconds:
            g["interval"] = format_duration(interval)
        if offset:
            g["query_offset"] = format_duration(offset)
        g["rules"] = [_export_rule(r) for r in members]
        doc_groups.append(g)
    return yaml.safe_dump({"groups": doc_groups}, sort_keys=False, allow_unicode=True, width=1000)


def _export_rule(rule: AlertRule) -> dict[str, Any]:
    out: dict[str, Any] = {"alert": rule.name, "expr": rule.expr}
    if rule.for_seconds:
        out["for"] = format_duration(rule.for_seconds)
    if rule.keep_firing_for_seconds:
        out["keep_firing_for"] = format_duration(rule.keep_firing_for_seconds)
    labels = dict(rule.labels)
    if "severity" not in labels and rule.severity != Severity.WARNING:
        labels["severity"] = rule.severity.value
    if labels:
        out["labels"] = labels
    if rule.annotations:
        out["annotations"] = dict(rule.annotations)
    return out
