"""Rule validation, the threshold form compiled to PromQL, and Prometheus rules files."""

from __future__ import annotations

import pytest
import yaml

from rtpm.alerts.rules import (
    export_rules_file,
    format_duration,
    import_rules_file,
    parse_duration_seconds,
    rule_from_input,
)
from rtpm.errors import BadDataError, QueryParseError, ValidationFailed
from rtpm.model.alerts import Severity

NOW = 1_700_000_000_000


def make(body: dict[str, object], **kw: object):  # type: ignore[no-untyped-def]
    return rule_from_input(body, tenant="t", now_ms=NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "expr"),
    [
        pytest.param({"condition": "> 75", "threshold": 75.0}, "cpu_usage > 75", id="seed-client"),
        pytest.param({"condition": ">", "threshold": 75}, "cpu_usage > 75", id="bare-operator"),
        pytest.param({"condition": "gte", "threshold": 0.5}, "cpu_usage >= 0.5", id="word"),
        pytest.param(
            {"condition": "<", "threshold": 10, "aggregation": "avg", "window": "10m"},
            "avg_over_time(cpu_usage[10m]) < 10",
            id="avg-window",
        ),
        pytest.param(
            {"condition": ">", "threshold": 1, "aggregation": "p99"},
            "quantile_over_time(0.99, cpu_usage[5m]) > 1",
            id="p99-default-window",
        ),
        pytest.param(
            {"condition": ">", "threshold": 3, "aggregation": "rate", "window": 60, "labels": {"host": 'we"b'}},
            'rate(cpu_usage{host="we\\"b"}[1m]) > 3',
            id="rate-labels",
        ),
    ],
)
def test_threshold_form_compiles_to_promql(body: dict[str, object], expr: str) -> None:
    r = make({"name": "x", "metric_name": "cpu_usage", **body})
    assert r.expr == expr
    assert r.threshold is not None and r.threshold.metric_name == "cpu_usage"


def test_condition_that_disagrees_with_threshold_is_refused() -> None:
    with pytest.raises(ValidationFailed) as err:
        make({"name": "x", "metric_name": "cpu", "condition": "> 80", "threshold": 75})
    assert err.value.problems[0].field == "condition"
    assert "disagrees" in err.value.problems[0].reason


def test_invalid_expression_is_refused_with_the_parser_message() -> None:
    with pytest.raises(QueryParseError) as err:
        make({"name": "x", "expr": "rate(cpu[5m]"})
    assert "parse error" in str(err.value)
    with pytest.raises(BadDataError, match="instant vector"):
        make({"name": "x", "expr": "cpu[5m]"})


def test_every_problem_is_listed() -> None:
    with pytest.raises(ValidationFailed) as err:
        make({"severity": "bad", "for": "soon", "labels": {"0x": "y"}, "expr": "up"})
    fields = {p.field for p in err.value.problems}
    assert fields == {"name", "severity", "for_duration", "labels.0x"}


def test_fields_and_defaults() -> None:
    r = make(
        {
            "name": " disk ",
            "expr": "disk_free < 10",
            "for": "5m",
            "keep_firing_for": 30,
            "severity": "CRITICAL",
            "annotations": {"summary": "{{ $labels.host }}"},
            "receivers": ["ops"],
        },
        known_receivers=["ops"],
        default_interval_seconds=15,
    )
    assert (r.name, r.for_seconds, r.keep_firing_for_seconds, r.severity) == ("disk", 300, 30, Severity.CRITICAL)
    assert r.evaluation_interval_seconds == 15 and r.enabled
    with pytest.raises(ValidationFailed, match="unknown receiver"):
        make({"name": "x", "expr": "up", "receivers": ["nope"]}, known_receivers=["ops"])


def test_partial_update_recompiles_the_threshold_form() -> None:
    r = make({"name": "x", "metric_name": "cpu", "condition": ">", "threshold": 75, "for": 60})
    r2 = rule_from_input({"threshold": 90}, tenant="t", now_ms=NOW + 1, base=r)
    assert r2.expr == "cpu > 90" and r2.for_seconds == 60 and r2.updated_ms == NOW + 1
    r3 = rule_from_input({"expr": "up == 0"}, tenant="t", now_ms=NOW + 2, base=r2)
    assert r3.expr == "up == 0" and r3.threshold is None
    r4 = rule_from_input({"enabled": False}, tenant="t", now_ms=NOW + 3, base=r3)
    assert not r4.enabled and r4.expr == "up == 0"


def test_durations() -> None:
    assert parse_duration_seconds("1h30m", "x") == 5400
    assert parse_duration_seconds("90", "x") == 90
    assert parse_duration_seconds(1.5, "x") == 1.5
    assert format_duration(5400) == "1h30m"
    assert format_duration(0) == "0s"
    assert format_duration(0.25) == "250ms"
    with pytest.raises(ValueError):
        parse_duration_seconds("-1", "x")


RULES_FILE = """
groups:
  - name: node
    interval: 30s
    labels:
      team: infra
    rules:
      - alert: HostDown
        expr: up == 0
        for: 1m
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.instance }} is down"
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: HighLoad
        expr: node_load1 > 4
        keep_firing_for: 5m
  - name: api
    rules:
      - alert: ErrorsHigh
        expr: rate(http_errors_total[5m]) > 0.1
"""


def test_rules_file_import_carries_group_settings() -> None:
    result = import_rules_file(RULES_FILE, tenant="t", now_ms=NOW)
    assert result.skipped == ["job:up:sum"]
    by = {r.name: r for r in result.rules}
    assert by["HostDown"].group == "node" and by["HostDown"].evaluation_interval_seconds == 30
    assert by["HostDown"].labels == {"team": "infra", "severity": "critical"}
    assert by["HostDown"].severity == Severity.CRITICAL and by["HostDown"].for_seconds == 60
    assert by["HighLoad"].keep_firing_for_seconds == 300
    assert by["ErrorsHigh"].evaluation_interval_seconds == 60


def test_rules_file_round_trip() -> None:
    rules = [r.with_(id=i) for i, r in enumerate(import_rules_file(RULES_FILE, tenant="t", now_ms=NOW).rules, 1)]
    text = export_rules_file(rules)
    again = import_rules_file(text, tenant="t", now_ms=NOW).rules
    assert [r.spec() for r in again] == [r.spec() for r in rules]
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["groups"]] == ["node", "api"]
    assert doc["groups"][0]["interval"] == "30s"
    assert doc["groups"][0]["rules"][0] == {
        "alert": "HostDown",
        "expr": "up == 0",
        "for": "1m",
        "labels": {"team": "infra", "severity": "critical"},
        "annotations": {"summary": "{{ $labels.instance }} is down"},
    }


def test_rules_file_errors_name_the_place() -> None:
    with pytest.raises(ValidationFailed) as err:
        import_rules_file(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: 'up =='\n  - alert: A\n    expr: up\n",
            tenant="t",
            now_ms=NOW,
        )
    fields = [p.field for p in err.value.problems]
    assert fields == ["groups[0].rules[0].expr", "groups[0].rules[1]"]
    with pytest.raises(BadDataError, match="groups"):
        import_rules_file("rules: []", tenant="t", now_ms=NOW)
