"""The alert state machine with an injected clock: no I/O, no sleeping."""

from __future__ import annotations

import math

import pytest

from rtpm.alerts.evaluator import (
    ALERTS_FOR_STATE_METRIC,
    ALERTS_METRIC,
    NotificationKind,
    Outcome,
    Sample,
    evaluate,
    resolve_manually,
)
from rtpm.alerts.templating import expand, format_value, humanize
from rtpm.model.alerts import Alert, AlertRule, AlertState, Severity, label_fingerprint
from rtpm.model.samples import is_stale_nan

T0 = 1_700_000_000_000
S = 1000


def rule(**kw: object) -> AlertRule:
    base: dict[str, object] = {
        "tenant": "t",
        "name": "HighCPU",
        "expr": "cpu > 75",
        "id": 7,
        "for_seconds": 30.0,
        "evaluation_interval_seconds": 10.0,
    }
    base.update(kw)
    return AlertRule(**base)  # type: ignore[arg-type]


def cpu(host: str, value: float) -> Sample:
    return Sample({"__name__": "cpu", "host": host}, value)


class Machine:
    """Feeds evaluations through `evaluate`, carrying the active state as the store would."""

    def __init__(self, r: AlertRule, resend_delay_seconds: float = 60.0) -> None:
        self.rule = r
        self.state: list[Alert] = []
        self.resend = resend_delay_seconds
        self.next_id = 1

    def step(self, at_ms: int, *samples: Sample) -> Outcome:
        out = evaluate(self.rule, samples, self.state, at_ms, resend_delay_seconds=self.resend)
        assert out.error is None, out.error
        saved = []
        for a in out.alerts:
            if a.id is None:
                a = a.with_(id=self.next_id)
                self.next_id += 1
            saved.append(a)
        self.state = [a for a in saved if a.active]
        return out

    def kinds(self, out: Outcome) -> list[tuple[str, str]]:
        return [(n.kind.value, n.alert.labels.get("host", "")) for n in out.notifications]


def test_pending_alert_fires_after_for_duration() -> None:
    m = Machine(rule())
    out = m.step(T0, cpu("a", 80))
    assert [a.state for a in out.alerts] == [AlertState.PENDING]
    assert out.notifications == []
    out = m.step(T0 + 10 * S, cpu("a", 81))
    assert out.alerts[0].state is AlertState.PENDING
    out = m.step(T0 + 29 * S, cpu("a", 82))
    assert out.alerts[0].state is AlertState.PENDING
    out = m.step(T0 + 30 * S, cpu("a", 83))
    [a] = out.alerts
    assert a.state is AlertState.FIRING
    assert a.active_at_ms == T0 and a.fired_at_ms == T0 + 30 * S and a.value == 83
    assert m.kinds(out) == [("firing", "a")]
    # Still firing: no new firing notification at the next evaluation.
    out = m.step(T0 + 40 * S, cpu("a", 84))
    assert out.notifications == []


def test_for_zero_fires_on_first_evaluation() -> None:
    m = Machine(rule(for_seconds=0))
    out = m.step(T0, cpu("a", 80))
    assert [a.state for a in out.alerts] == [AlertState.FIRING]
    assert m.kinds(out) == [("firing", "a")]


def test_resolved_when_condition_stops_and_pending_dropped_silently() -> None:
    m = Machine(rule(for_seconds=20))
    m.step(T0, cpu("a", 80), cpu("b", 90))
    m.step(T0 + 20 * S, cpu("a", 80), cpu("b", 90))  # both fire
    m.step(T0 + 30 * S, cpu("a", 80), cpu("b", 90), cpu("c", 99))  # c pending
    out = m.step(T0 + 40 * S, cpu("a", 80))  # b resolves, c dropped
    assert m.kinds(out) == [("resolved", "b")]
    [resolved] = [a for a in out.alerts if a.state is AlertState.RESOLVED]
    assert resolved.resolved_at_ms == T0 + 40 * S
    assert [a.labels["host"] for a in out.dropped] == ["c"]
    assert [a.labels["host"] for a in m.state] == ["a"]


def test_keep_firing_for_holds_the_alert_then_resolves() -> None:
    m = Machine(rule(for_seconds=0, keep_firing_for_seconds=25))
    m.step(T0, cpu("a", 80))
    out = m.step(T0 + 10 * S)  # condition gone: kept firing
    assert [a.state for a in out.alerts] == [AlertState.FIRING] and out.notifications == []
    assert out.alerts[0].keep_firing_since_ms == T0 + 10 * S
    out = m.step(T0 + 30 * S)
    assert out.alerts[0].state is AlertState.FIRING
    out = m.step(T0 + 35 * S)  # 25 s after the condition went away
    assert m.kinds(out) == [("resolved", "a")]


def test_keep_firing_for_resets_when_condition_returns() -> None:
    m = Machine(rule(for_seconds=0, keep_firing_for_seconds=15))
    m.step(T0, cpu("a", 80))
    m.step(T0 + 10 * S)
    out = m.step(T0 + 20 * S, cpu("a", 80))
    assert out.alerts[0].keep_firing_since_ms is None and out.notifications == []
    out = m.step(T0 + 30 * S)
    assert out.alerts[0].state is AlertState.FIRING  # a fresh keep-firing window
    out = m.step(T0 + 45 * S)
    assert m.kinds(out) == [("resolved", "a")]


def test_flapping_condition_restarts_pending_each_time() -> None:
    m = Machine(rule(for_seconds=20))
    m.step(T0, cpu("a", 80))
    m.step(T0 + 10 * S)  # gone before `for`: dropped, nothing sent
    out = m.step(T0 + 20 * S, cpu("a", 80))
    assert out.alerts[0].state is AlertState.PENDING and out.alerts[0].active_at_ms == T0 + 20 * S
    out = m.step(T0 + 30 * S, cpu("a", 80))
    assert out.alerts[0].state is AlertState.PENDING  # only 10 s since it came back
    out = m.step(T0 + 40 * S, cpu("a", 80))
    assert m.kinds(out) == [("firing", "a")]
    out = m.step(T0 + 50 * S)
    assert m.kinds(out) == [("resolved", "a")]
    m.step(T0 + 60 * S, cpu("a", 80))
    out = m.step(T0 + 80 * S, cpu("a", 80))
    assert m.kinds(out) == [("firing", "a")]  # a new alert, notified again
    assert out.alerts[0].active_at_ms == T0 + 60 * S


def test_label_sets_appear_and_vanish_independently() -> None:
    m = Machine(rule(for_seconds=0))
    out = m.step(T0, cpu("a", 80))
    assert m.kinds(out) == [("firing", "a")]
    out = m.step(T0 + 10 * S, cpu("a", 80), cpu("b", 90))
    assert m.kinds(out) == [("firing", "b")]
    out = m.step(T0 + 20 * S, cpu("b", 90))
    assert m.kinds(out) == [("resolved", "a")]
    fps = {a.labels["host"]: a.fingerprint for a in m.state}
    assert fps == {"b": label_fingerprint({"alertname": "HighCPU", "host": "b", "severity": "warning"})}


def test_alert_labels_and_templated_annotations() -> None:
    r = rule(
        for_seconds=0,
        severity=Severity.CRITICAL,
        labels={"team": "ops", "where": "{{ $labels.host }}-dc1"},
        annotations={
            "summary": "CPU on {{ $labels.host }} is {{ $value }}%",
            "human": "{{ $value | humanize }}",
            "fmt": '{{ printf "%.1f" $value }}',
            "go": "{{ .Labels.host }}/{{ .Value }}",
            "unknown": '{{ template "x" . }}',
        },
    )
    m = Machine(r)
    out = m.step(T0, cpu("web-1", 87.25))
    [a] = out.alerts
    assert a.labels == {
        "alertname": "HighCPU",
        "host": "web-1",
        "severity": "critical",
        "team": "ops",
        "where": "web-1-dc1",
    }
    assert a.annotations["summary"] == "CPU on web-1 is 87.25%"
    assert a.annotations["human"] == "87.25"
    assert a.annotations["fmt"] == "87.2"
    assert a.annotations["go"] == "web-1/87.25"
    assert a.annotations["unknown"] == '{{ template "x" . }}'
    assert a.fingerprint == label_fingerprint(a.labels)
    # Annotations follow the value; the alert keeps its identity.
    out = m.step(T0 + 10 * S, cpu("web-1", 91))
    assert out.alerts[0].annotations["summary"] == "CPU on web-1 is 91%"
    assert out.alerts[0].fingerprint == a.fingerprint


def test_template_value_formats() -> None:
    assert format_value(1e21) == "1e+21"
    assert format_value(0.00001) == "1e-05"
    assert format_value(123456789.0) == "123456789"
    assert format_value(math.nan) == "NaN"
    assert humanize(1234567) == "1.235M"
    assert humanize(0.0012) == "1.2m"
    assert expand("{{ $labels.missing }}x", {}, 1) == "x"


def test_duplicate_label_sets_after_rule_labels_are_an_error() -> None:
    r = rule(for_seconds=0, labels={"host": "same"})
    out = evaluate(r, [cpu("a", 80), cpu("b", 90)], [], T0)
    assert out.error is not None and "same labelset" in out.error
    assert out.alerts == [] and out.notifications == []


def test_manual_resolve_closes_and_a_new_alert_opens_if_condition_holds() -> None:
    m = Machine(rule(for_seconds=10))
    m.step(T0, cpu("a", 80))
    m.step(T0 + 10 * S, cpu("a", 80))
    [firing] = m.state
    resolved, note = resolve_manually(firing, m.rule, T0 + 15 * S, "alice")
    assert resolved.state is AlertState.RESOLVED and resolved.resolved_by == "alice"
    assert note is not None and note.kind is NotificationKind.RESOLVED
    m.state = []  # the store no longer lists it as active
    out = m.step(T0 + 20 * S, cpu("a", 80))
    [new] = out.alerts
    assert new.id != firing.id and new.state is AlertState.PENDING and new.active_at_ms == T0 + 20 * S
    out = m.step(T0 + 30 * S, cpu("a", 80))
    assert m.kinds(out) == [("firing", "a")]


def test_manual_resolve_of_pending_alert_sends_nothing() -> None:
    m = Machine(rule(for_seconds=60))
    m.step(T0, cpu("a", 80))
    _, note = resolve_manually(m.state[0], m.rule, T0 + 1, "bob")
    assert note is None


def test_firing_alert_is_resent_to_alertmanager_after_resend_delay() -> None:
    m = Machine(rule(for_seconds=0), resend_delay_seconds=30)
    out = m.step(T0, cpu("a", 80))
    assert [n.kind for n in out.notifications] == [NotificationKind.FIRING]
    assert out.notifications[0].ends_at_ms == T0 + 4 * 30 * S  # 4 x max(interval, resend delay)
    assert m.step(T0 + 10 * S, cpu("a", 80)).notifications == []
    out = m.step(T0 + 30 * S, cpu("a", 80))
    assert [n.kind for n in out.notifications] == [NotificationKind.RESEND]
    assert m.step(T0 + 40 * S, cpu("a", 80)).notifications == []


def test_alerts_series_and_staleness_markers() -> None:
    m = Machine(rule(for_seconds=10))
    out = m.step(T0, cpu("a", 80))
    series = {(lb["__name__"], lb.get("alertstate")): v for lb, v in out.series}
    assert series == {(ALERTS_METRIC, "pending"): 1.0, (ALERTS_FOR_STATE_METRIC, None): T0 / 1000}
    out = m.step(T0 + 10 * S, cpu("a", 80))
    got = {(lb["__name__"], lb.get("alertstate")): v for lb, v in out.series}
    assert got[(ALERTS_METRIC, "firing")] == 1.0
    assert is_stale_nan(got[(ALERTS_METRIC, "pending")])
    out = m.step(T0 + 20 * S)
    assert all(is_stale_nan(v) for _, v in out.series) and len(out.series) == 2


def test_scalar_like_result_without_labels_gives_one_alert() -> None:
    m = Machine(rule(for_seconds=0, name="Up"))
    out = m.step(T0, Sample({}, 1.0))
    assert out.alerts[0].labels == {"alertname": "Up", "severity": "warning"}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param({}, "cbf29ce484222325", id="empty"),
    ],
)
def test_fingerprint_of_empty_label_set_is_fnv_offset(labels: dict[str, str], expected: str) -> None:
    assert label_fingerprint(labels) == expected
