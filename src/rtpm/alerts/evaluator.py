"""The alert state machine, as Prometheus' `rules/alerting.go` runs it.

`evaluate(rule, results, state, now_ms)` is pure: given the rule, the instant-query result at
`now_ms` and the rule's active alerts, it returns the alerts' new state, the notifications to send
and the `ALERTS` / `ALERTS_FOR_STATE` samples to write. `run_rule()` does one evaluation with the
I/O injected: a `QueryFn` (never the engine), a `NotifyFn` (never the notifier), the alert store
and a function writing samples.

    inactive ──result──► pending ──active for `for`──► firing ──condition gone──► resolved
                            └──condition gone──► (dropped, never notified)   (after keep_firing_for)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

from rtpm.alerts.templating import expand
from rtpm.errors import RtpmError
from rtpm.model.alerts import Alert, AlertRule, AlertState, label_fingerprint
from rtpm.model.labels import METRIC_NAME
from rtpm.model.stale import STALE_NAN

if TYPE_CHECKING:
    from rtpm.storage.alert_store import AlertStore

log = structlog.get_logger("rtpm.alerts")

ALERTS_METRIC = "ALERTS"
ALERTS_FOR_STATE_METRIC = "ALERTS_FOR_STATE"
DEFAULT_RESEND_DELAY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant-query result."""

    labels: dict[str, str]
    value: float


class NotificationKind(StrEnum):
    FIRING = "firing"  # the alert started firing (sent to every receiver)
    RESOLVED = "resolved"  # the alert stopped firing (sent to every receiver)
    RESEND = "resend"  # still firing; re-sent to Alertmanager so it does not time the alert out


@dataclass(frozen=True, slots=True)
class Notification:
    kind: NotificationKind
    alert: Alert
    rule: AlertRule
    ends_at_ms: int  # firing: when Alertmanager may consider it resolved if not re-sent; resolved: when it ended


QueryFn = Callable[[str, str, int], Awaitable[list[Sample]]]  # (tenant, expr, time_ms) -> samples
NotifyFn = Callable[[Sequence[Notification]], Awaitable[None]]
WriteSeriesFn = Callable[[str, list[tuple[dict[str, str], int, float]]], Awaitable[None]]  # tenant, samples


@dataclass(slots=True)
class Outcome:
    alerts: list[Alert] = field(default_factory=list)  # new state of every active or just-resolved alert
    dropped: list[Alert] = field(default_factory=list)  # pending alerts whose condition went away
    notifications: list[Notification] = field(default_factory=list)
    series: list[tuple[dict[str, str], float]] = field(default_factory=list)  # ALERTS samples at now_ms
    error: str | None = None


def alert_labels(rule: AlertRule, sample: Sample) -> dict[str, str]:
    """Result labels without `__name__`, then the rule's (templated) labels, `alertname`, and the
    rule's severity unless a label sets it."""
    out = {k: v for k, v in sample.labels.items() if k != METRIC_NAME}
    for k, tmpl in rule.labels.items():
        v = expand(tmpl, sample.labels, sample.value)
        if v:
            out[k] = v
        else:
            out.pop(k, None)
    out["alertname"] = rule.name
    out.setdefault("severity", rule.severity.value)
    return out


def ends_at_ms(rule: AlertRule, now_ms: int, resend_delay_seconds: float) -> int:
    """Prometheus: a firing alert is valid for 4 x max(interval, resend delay) unless re-sent."""
    return now_ms + round(4 * max(rule.evaluation_interval_seconds, resend_delay_seconds) * 1000)


def evaluate(
    rule: AlertRule,
    results: Sequence[Sample],
    state: Sequence[Alert],
    now_ms: int,
    *,
    resend_delay_seconds: float = DEFAULT_RESEND_DELAY_SECONDS,
) -> Outcome:
    """One evaluation of `rule` at `now_ms`. `state` holds the rule's active (pending or firing)
    alerts; anything else in it is ignored."""
    out = Outcome()
    active = {a.fingerprint: a for a in state if a.active}
    seen: dict[str, tuple[dict[str, str], Sample]] = {}
    for sample in results:
        labels = alert_labels(rule, sample)
        fp = label_fingerprint(labels)
        if fp in seen:
            out.error = f"vector contains metrics with the same labelset after applying alert labels: {labels}"
            return out
        seen[fp] = (labels, sample)

    hold_ms = round(rule.for_seconds * 1000)
    keep_ms = round(rule.keep_firing_for_seconds * 1000)
    valid_until = ends_at_ms(rule, now_ms, resend_delay_seconds)
    resend_ms = round(resend_delay_seconds * 1000)

    def annotations(sample: Sample) -> dict[str, str]:
        return {k: expand(v, sample.labels, sample.value) for k, v in rule.annotations.items()}

    new_state: dict[str, Alert] = {}
    for fp, (labels, sample) in seen.items():
        prev = active.get(fp)
        if prev is None:
            new_state[fp] = Alert(
                tenant=rule.tenant,
                rule_id=rule.id or 0,
                rule_name=rule.name,
                fingerprint=fp,
                labels=labels,
                annotations=annotations(sample),
                state=AlertState.PENDING,
                value=sample.value,
                active_at_ms=now_ms,
                severity=rule.severity,
                updated_ms=now_ms,
            )
        else:
            new_state[fp] = prev.with_(
                labels=labels,
                annotations=annotations(sample),
                value=sample.value,
                keep_firing_since_ms=None,
                severity=rule.severity,
                updated_ms=now_ms,
            )

    for fp, prev in active.items():
        if fp in seen:
            continue
        if prev.state is AlertState.FIRING and keep_ms > 0:
            since = prev.keep_firing_since_ms if prev.keep_firing_since_ms is not None else now_ms
            if now_ms - since < keep_ms:
                new_state[fp] = prev.with_(keep_firing_since_ms=since, updated_ms=now_ms)
                continue
        if prev.state is AlertState.PENDING:
            out.dropped.append(prev)
            continue
        resolved = prev.with_(state=AlertState.RESOLVED, resolved_at_ms=now_ms, last_sent_ms=now_ms, updated_ms=now_ms)
        out.alerts.append(resolved)
        out.notifications.append(Notification(NotificationKind.RESOLVED, resolved, rule, now_ms))

    for fp, alert in new_state.items():
        if alert.state is AlertState.PENDING and now_ms - alert.active_at_ms >= hold_ms:
            alert = alert.with_(state=AlertState.FIRING, fired_at_ms=now_ms, last_sent_ms=now_ms)
            out.notifications.append(Notification(NotificationKind.FIRING, alert, rule, valid_until))
        elif alert.state is AlertState.FIRING and (
            alert.last_sent_ms is None or now_ms - alert.last_sent_ms >= resend_ms
        ):
            alert = alert.with_(last_sent_ms=now_ms)
            out.notifications.append(Notification(NotificationKind.RESEND, alert, rule, valid_until))
        new_state[fp] = alert
        out.alerts.append(alert)

    out.series = _alert_series(active.values(), new_state.values())
    return out


def _alerts_labels(alert: Alert) -> dict[str, str]:
    return {**alert.labels, METRIC_NAME: ALERTS_METRIC, "alertstate": alert.state.value}


def _alert_series(before: Iterable[Alert], after: Iterable[Alert]) -> list[tuple[dict[str, str], float]]:
    """ALERTS{alertstate} = 1 and ALERTS_FOR_STATE = activeAt (seconds) for every active alert;
    a staleness marker for every ALERTS / ALERTS_FOR_STATE series that was active before and is not now."""
    out: list[tuple[dict[str, str], float]] = []
    now_keys: set[tuple[tuple[str, str], ...]] = set()
    for a in after:
        for labels, value in (
            (_alerts_labels(a), 1.0),
            ({**a.labels, METRIC_NAME: ALERTS_FOR_STATE_METRIC}, a.active_at_ms / 1000),
        ):
            now_keys.add(tuple(sorted(labels.items())))
            out.append((labels, value))
    for a in before:
        for labels in (_alerts_labels(a), {**a.labels, METRIC_NAME: ALERTS_FOR_STATE_METRIC}):
            key = tuple(sorted(labels.items()))
            if key not in now_keys:
                now_keys.add(key)
                out.append((labels, STALE_NAN))
    return out


def resolve_manually(alert: Alert, rule: AlertRule | None, now_ms: int, by: str) -> tuple[Alert, Notification | None]:
    """Close an alert by hand. A firing alert is notified as resolved; a pending one silently closed.
    If the condition still holds at the next evaluation, a new alert opens (the store keeps the
    resolved one as history)."""
    resolved = alert.with_(
        state=AlertState.RESOLVED, resolved_at_ms=now_ms, resolved_by=by, last_sent_ms=now_ms, updated_ms=now_ms
    )
    if alert.state is AlertState.FIRING and rule is not None:
        return resolved, Notification(NotificationKind.RESOLVED, resolved, rule, now_ms)
    return resolved, None


@dataclass(frozen=True, slots=True)
class EvalResult:
    rule_id: int
    alerts: int
    notifications: int
    error: str | None
    duration_seconds: float


async def run_rule(
    rule: AlertRule,
    *,
    query: QueryFn,
    notify: NotifyFn,
    store: AlertStore,
    write_series: WriteSeriesFn,
    now_ms: int,
    resend_delay_seconds: float = DEFAULT_RESEND_DELAY_SECONDS,
    monotonic: Callable[[], float] = time.monotonic,
) -> EvalResult:
    """One evaluation of one rule: query, step the state machine, persist, then notify and write
    the ALERTS series. State is saved before anything is sent, so a crash never re-sends a
    transition that was already recorded."""
    assert rule.id is not None
    started = monotonic()
    error: str | None = None
    outcome = Outcome()
    try:
        eval_ms = now_ms - round(rule.query_offset_seconds * 1000)
        results = await query(rule.tenant, rule.expr, eval_ms)
        state = await store.active_alerts(tenant=rule.tenant, rule_id=rule.id)
        outcome = evaluate(rule, results, state, now_ms, resend_delay_seconds=resend_delay_seconds)
        error = outcome.error
    except RtpmError as exc:
        error = f"{exc.code}: {exc.message}"
    duration = monotonic() - started
    if error is not None:
        log.warning("rule_evaluation_failed", rule_id=rule.id, rule=rule.name, error=error)
        await store.record_rule_evaluation(rule.id, now_ms=now_ms, duration_seconds=duration, error=error)
        return EvalResult(rule.id, 0, 0, error, duration)
    saved = await store.save_evaluation(
        rule.id,
        alerts=outcome.alerts,
        dropped=[a.id for a in outcome.dropped if a.id is not None],
        now_ms=now_ms,
        duration_seconds=duration,
    )
    # Saved alerts come back with their ids. An alert resolved by hand since we read it is not
    # saved (it stays resolved), and nothing is sent for it.
    by_fp = {a.fingerprint: a for a in saved}
    sent = [
        Notification(n.kind, by_fp[n.alert.fingerprint], n.rule, n.ends_at_ms)
        for n in outcome.notifications
        if n.alert.fingerprint in by_fp
    ]
    if sent:
        await notify(sent)
    if outcome.series:
        samples = [(labels, now_ms, value) for labels, value in outcome.series]
        try:
            await write_series(rule.tenant, samples)
        except RtpmError as exc:
            log.warning("alerts_series_write_failed", rule_id=rule.id, error=exc.message)
    firing = sum(1 for a in outcome.alerts if a.state is AlertState.FIRING)
    log.debug("rule_evaluated", rule_id=rule.id, alerts_firing=firing, duration_seconds=duration)
    return EvalResult(rule.id, len(outcome.alerts), len(sent), None, duration)
