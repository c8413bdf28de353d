"""The contract for alerting rules, alert state and history, evaluator leadership and the
evaluator's heartbeat (`AlertStore`), one implementation per backend (`sqlite_alerts.py`,
`postgres_alerts.py`) over the storage object's own connections. Rows <-> domain objects are
converted here, once for both.

Leadership is a lease in a table on both backends: one row (holder, expiry) taken or renewed by one
statement that succeeds only when the lease has expired or is the caller's own. Nothing holds a
connection between calls, so a holder that hangs or dies loses the lead when its lease runs out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from rtpm.model.alerts import Alert, AlertRule, AlertState, Severity

RULE_COLS = "id, tenant, name, spec, created_ms, updated_ms, last_eval_ms, last_eval_seconds, last_error"
ALERT_COLS = (
    "id, tenant, rule_id, rule_name, fingerprint, state, severity, labels, annotations, value, active_ms, "
    "fired_ms, resolved_ms, resolved_by, keep_firing_since_ms, last_sent_ms, updated_ms"
)
LEADER_NAME = "alert-evaluator"
HEARTBEAT_COLS = "runner, holder, round_ms, rules, errors, duration_seconds, stall_seconds"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The last completed evaluation round of one kind of runner (`embedded` or `celery`)."""

    runner: str
    holder: str
    round_ms: int  # when the round evaluated (epoch ms)
    rules: int  # rules evaluated in it
    errors: int
    duration_seconds: float
    stall_seconds: float  # older than this, evaluation is stalled (the runner's own sizing)

    def age_seconds(self, now: float) -> float:
        return max(0.0, now - self.round_ms / 1000)

    def stalled(self, now: float) -> bool:
        return self.age_seconds(now) > self.stall_seconds


def heartbeat_from_row(row: Sequence[Any]) -> Heartbeat:
    return Heartbeat(str(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]), float(row[5]), float(row[6]))


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    tenant: str
    rule_id: int | None = None
    state: AlertState | None = None
    severity: Severity | None = None
    start_ms: int | None = None  # alerts active at some point in [start_ms, end_ms]
    end_ms: int | None = None
    limit: int = 100
    offset: int = 0


class AlertStore(Protocol):
    # -- rules ---------------------------------------------------------------------------------

    async def create_rule(self, rule: AlertRule) -> AlertRule:
        """Store a new rule; returns it with its id. Raises AlreadyExists when the tenant has a
        rule of that name."""
        ...

    async def get_rule(self, tenant: str, rule_id: int) -> AlertRule | None: ...

    async def list_rules(self, tenant: str | None = None) -> list[AlertRule]:
        """Rules of `tenant` (of every tenant when None), by id."""
        ...

    async def update_rule(self, rule: AlertRule) -> AlertRule:
        """Replace a rule's definition. Raises NotFoundError, or AlreadyExists on a name clash."""
        ...

    async def delete_rule(self, tenant: str, rule_id: int) -> bool:
        """Delete a rule and its active alerts (resolved ones stay in history). False if absent."""
        ...

    async def record_rule_evaluation(
        self, rule_id: int, *, now_ms: int, duration_seconds: float, error: str | None
    ) -> None: ...

    # -- alerts --------------------------------------------------------------------------------

    async def save_evaluation(
        self, rule_id: int, *, alerts: Sequence[Alert], dropped: Sequence[int], now_ms: int, duration_seconds: float
    ) -> list[Alert]:
        """In one transaction: insert new alerts (id None), update the others unless they were
        resolved meanwhile (a manual resolve wins), delete `dropped` pending alerts, and record a
        successful evaluation of the rule. Returns the alerts written, with their ids."""
        ...

    async def active_alerts(self, *, tenant: str | None = None, rule_id: int | None = None) -> list[Alert]:
        """Pending and firing alerts."""
        ...

    async def get_alert(self, tenant: str, alert_id: int) -> Alert | None: ...

    async def close_alert(self, alert: Alert) -> bool:
        """Write a resolved alert if it is still active; False if it was resolved already."""
        ...

    async def history(self, query: HistoryQuery) -> tuple[list[Alert], int]:
        """Alerts (any state) matching the query, newest first, and the total count."""
        ...

    # -- leadership ----------------------------------------------------------------------------

    async def try_lead(self, holder: str, lease_seconds: float) -> bool:
        """Become (or stay) the one evaluator of this database for `lease_seconds` from now (the
        database's clock on PostgreSQL). Must be called again before the lease runs out. A holder
        that dies or hangs loses it when the lease expires; no connection is held meanwhile."""
        ...

    async def release_lead(self, holder: str) -> None:
        """Give the lease up now (when `holder` has it), so the next round need not wait."""
        ...

    async def record_heartbeat(self, beat: Heartbeat) -> None:
        """Replace the heartbeat row of `beat.runner`."""
        ...

    async def heartbeats(self) -> list[Heartbeat]:
        """Every runner's last heartbeat, by runner."""
        ...


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def rule_from_row(row: Sequence[Any]) -> AlertRule:
    return AlertRule.from_spec(
        orjson.loads(row[3]),
        id=int(row[0]),
        tenant=row[1],
        name=row[2],
        created_ms=int(row[4]),
        updated_ms=int(row[5]),
        last_eval_ms=row[6],
        last_eval_seconds=row[7],
        last_error=row[8],
    )


def alert_from_row(row: Sequence[Any]) -> Alert:
    value = row[9]
    return Alert(
        id=int(row[0]),
        tenant=row[1],
        rule_id=int(row[2]),
        rule_name=row[3],
        fingerprint=row[4],
        state=AlertState(row[5]),
        severity=Severity(row[6]),
        labels=orjson.loads(row[7]),
        annotations=orjson.loads(row[8]),
        value=math.nan if value is None else float(value),
        active_at_ms=int(row[10]),
        fired_at_ms=row[11],
        resolved_at_ms=row[12],
        resolved_by=row[13],
        keep_firing_since_ms=row[14],
        last_sent_ms=row[15],
        updated_ms=int(row[16]),
    )


def alert_values(a: Alert) -> tuple[Any, ...]:
    """Every column of ALERT_COLS but `id`, in order."""
    return (
        a.tenant,
        a.rule_id,
        a.rule_name,
        a.fingerprint,
        a.state.value,
        a.severity.value,
        dumps(a.labels),
        dumps(a.annotations),
        a.value,
        a.active_at_ms,
        a.fired_at_ms,
        a.resolved_at_ms,
        a.resolved_by,
        a.keep_firing_since_ms,
        a.last_sent_ms,
        a.updated_ms,
    )


def history_where(q: HistoryQuery, param: Any) -> tuple[str, list[Any]]:
    """The WHERE clause of a history query; `param(i)` renders the i-th placeholder (1-based)."""
    clauses = [f"tenant = {param(1)}"]
    args: list[Any] = [q.tenant]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(p=param(len(args))))

    if q.rule_id is not None:
        add("rule_id = {p}", q.rule_id)
    if q.state is not None:
        add("state = {p}", q.state.value)
    if q.severity is not None:
        add("severity = {p}", q.severity.value)
    if q.end_ms is not None:
        add("active_ms <= {p}", q.end_ms)
    if q.start_ms is not None:
        add("(resolved_ms IS NULL OR resolved_ms >= {p})", q.start_ms)
    return " AND ".join(clauses), args
