"""Alerting rules, alert state and history, evaluator leadership and the evaluator's heartbeat:
`AlertStore`, over either backend's `Executor` (always the primary on PostgreSQL: alert state read
from a lagging replica would send a transition twice).

Leadership is a lease in a table on both backends: one row (holder, expiry) taken or renewed by one
statement that succeeds only when the lease has expired or is the caller's own, by the database's
clock (so the hosts' clocks do not matter). Nothing holds a connection between calls, so a holder
that hangs or dies loses the lead when its lease runs out."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from rtpm.errors import AlreadyExists, NotFoundError
from rtpm.model.alerts import Alert, AlertRule, AlertState, Severity
from rtpm.storage.sql import Executor, Row

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


def heartbeat_from_row(row: Row) -> Heartbeat:
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


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def rule_from_row(row: Row) -> AlertRule:
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


def alert_from_row(row: Row) -> Alert:
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


def history_where(q: HistoryQuery) -> tuple[str, list[Any]]:
    """The WHERE clause of a history query and its arguments."""
    clauses = ["tenant = $1"]
    args: list[Any] = [q.tenant]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(p=f"${len(args)}"))

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


_INSERT_COLS = ALERT_COLS.removeprefix("id, ")
_ALERT_INSERT = (
    f"INSERT INTO alerts ({_INSERT_COLS}) VALUES ({', '.join(f'${i}' for i in range(1, 17))}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)
_ALERT_UPDATE = (
    "UPDATE alerts SET "
    + ", ".join(f"{c.strip()} = ${i}" for i, c in enumerate(_INSERT_COLS.split(","), start=1))
    + " WHERE id = $17 AND resolved_ms IS NULL"
)
_LEASES = {"postgres": "leases", "sqlite": "alert_leases"}  # the lease table (SQLite's older own one)
# Take or renew the lease ($3 ms from now): a new row, or the existing one when it has expired or
# is ours. RETURNING gives the holder only when this statement wrote the row.
_TAKE_LEASE = (
    "INSERT INTO {t} (name, holder, expires_ms) VALUES ($1, $2, {now} + $3) "
    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms "
    "WHERE {t}.holder = excluded.holder OR {t}.expires_ms < excluded.expires_ms - $3 RETURNING holder"
)
_LEASE_TIMEOUT = 5.0


def _named_clash(rule: AlertRule) -> AlreadyExists:
    return AlreadyExists(f"an alert rule named {rule.name!r} exists already")


class AlertStore:
    def __init__(self, sql: Executor) -> None:
        self._sql = sql
        table = _LEASES[sql.dialect.name]
        self._take_lease = _TAKE_LEASE.format(t=table, now=sql.dialect.now_ms)
        self._release_lease = f"DELETE FROM {table} WHERE name = $1 AND holder = $2"
        self._held: str | None = None  # the holder whose lease this process renewed last
        self._renewed_at = 0.0

    # -- rules ---------------------------------------------------------------------------------

    async def create_rule(self, rule: AlertRule) -> AlertRule:
        """Store a new rule; returns it with its id. Raises AlreadyExists when the tenant has a
        rule of that name."""
        try:
            rule_id = await self._sql.fetchval(
                "INSERT INTO alert_rules (tenant, name, spec, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5) "
                "RETURNING id",
                rule.tenant,
                rule.name,
                dumps(rule.spec()),
                rule.created_ms,
                rule.updated_ms,
            )
        except AlreadyExists:
            raise _named_clash(rule) from None
        return rule.with_(id=int(rule_id))

    async def get_rule(self, tenant: str, rule_id: int) -> AlertRule | None:
        row = await self._sql.fetchrow(
            f"SELECT {RULE_COLS} FROM alert_rules WHERE tenant = $1 AND id = $2", tenant, rule_id
        )
        return rule_from_row(row) if row else None

    async def list_rules(self, tenant: str | None = None) -> list[AlertRule]:
        """Rules of `tenant` (of every tenant when None), by id."""
        if tenant is None:
            rows = await self._sql.fetch(f"SELECT {RULE_COLS} FROM alert_rules ORDER BY id")
        else:
            rows = await self._sql.fetch(f"SELECT {RULE_COLS} FROM alert_rules WHERE tenant = $1 ORDER BY id", tenant)
        return [rule_from_row(r) for r in rows]

    async def update_rule(self, rule: AlertRule) -> AlertRule:
        """Replace a rule's definition. Raises NotFoundError, or AlreadyExists on a name clash."""
        try:
            n = await self._sql.execute(
                "UPDATE alert_rules SET name = $1, spec = $2, updated_ms = $3 WHERE tenant = $4 AND id = $5",
                rule.name,
                dumps(rule.spec()),
                rule.updated_ms,
                rule.tenant,
                rule.id,
            )
        except AlreadyExists:
            raise _named_clash(rule) from None
        if n == 0:
            raise NotFoundError(f"alert rule {rule.id} not found")
        return rule

    async def delete_rule(self, tenant: str, rule_id: int) -> bool:
        """Delete a rule and its active alerts (resolved ones stay in history). False if absent."""
        async with self._sql.transaction() as tx:
            if not await tx.execute("DELETE FROM alert_rules WHERE tenant = $1 AND id = $2", tenant, rule_id):
                return False
            await tx.execute("DELETE FROM alerts WHERE rule_id = $1 AND resolved_ms IS NULL", rule_id)
        return True

    async def record_rule_evaluation(
        self, rule_id: int, *, now_ms: int, duration_seconds: float, error: str | None
    ) -> None:
        await self._sql.execute(
            "UPDATE alert_rules SET last_eval_ms = $1, last_eval_seconds = $2, last_error = $3 WHERE id = $4",
            now_ms,
            duration_seconds,
            error,
            rule_id,
        )

    # -- alerts --------------------------------------------------------------------------------

    async def save_evaluation(
        self, rule_id: int, *, alerts: Sequence[Alert], dropped: Sequence[int], now_ms: int, duration_seconds: float
    ) -> list[Alert]:
        """In one transaction: insert new alerts (id None), update the others unless they were
        resolved meanwhile (a manual resolve wins), delete `dropped` pending alerts, and record a
        successful evaluation of the rule. Returns the alerts written, with their ids."""
        saved: list[Alert] = []
        async with self._sql.transaction() as tx:
            for a in alerts:
                values = alert_values(a)
                if a.id is None:
                    new_id = await tx.fetchval(_ALERT_INSERT, *values)
                    if new_id is not None:
                        saved.append(a.with_(id=int(new_id)))
                elif await tx.execute(_ALERT_UPDATE, *values, a.id):
                    saved.append(a)
            if dropped:
                await tx.execute(
                    f"DELETE FROM alerts WHERE {tx.dialect.in_ids('id', '$1')} AND state = 'pending'",
                    tx.dialect.ids(dropped),
                )
            await tx.execute(
                "UPDATE alert_rules SET last_eval_ms = $1, last_eval_seconds = $2, last_error = NULL WHERE id = $3",
                now_ms,
                duration_seconds,
                rule_id,
            )
        return saved

    async def active_alerts(self, *, tenant: str | None = None, rule_id: int | None = None) -> list[Alert]:
        """Pending and firing alerts."""
        sql = f"SELECT {ALERT_COLS} FROM alerts WHERE resolved_ms IS NULL"
        args: list[object] = []
        if tenant is not None:
            args.append(tenant)
            sql += f" AND tenant = ${len(args)}"
        if rule_id is not None:
            args.append(rule_id)
            sql += f" AND rule_id = ${len(args)}"
        return [alert_from_row(r) for r in await self._sql.fetch(sql + " ORDER BY id", *args)]

    async def get_alert(self, tenant: str, alert_id: int) -> Alert | None:
        row = await self._sql.fetchrow(
            f"SELECT {ALERT_COLS} FROM alerts WHERE tenant = $1 AND id = $2", tenant, alert_id
        )
        return alert_from_row(row) if row else None

    async def close_alert(self, alert: Alert) -> bool:
        """Write a resolved alert if it is still active; False if it was resolved already."""
        assert alert.state is AlertState.RESOLVED and alert.id is not None
        n = await self._sql.execute(
            "UPDATE alerts SET state = $1, resolved_ms = $2, resolved_by = $3, last_sent_ms = $4, "
            "updated_ms = $5 WHERE id = $6 AND resolved_ms IS NULL",
            alert.state.value,
            alert.resolved_at_ms,
            alert.resolved_by,
            alert.last_sent_ms,
            alert.updated_ms,
            alert.id,
        )
        return n > 0

    async def history(self, query: HistoryQuery) -> tuple[list[Alert], int]:
        """Alerts (any state) matching the query, newest first, and the total count."""
        where, args = history_where(query)
        n = len(args)
        total = await self._sql.fetchval(f"SELECT count(*) FROM alerts WHERE {where}", *args)
        rows = await self._sql.fetch(
            f"SELECT {ALERT_COLS} FROM alerts WHERE {where} ORDER BY active_ms DESC, id DESC "
            f"LIMIT ${n + 1} OFFSET ${n + 2}",
            *args,
            query.limit,
            query.offset,
        )
        return [alert_from_row(r) for r in rows], int(total)

    # -- leadership ----------------------------------------------------------------------------

    async def try_lead(self, holder: str, lease_seconds: float) -> bool:
        """Become (or stay) the one evaluator of this database for `lease_seconds` from now (the
        database's clock). Must be called again before the lease runs out. A holder that dies or
        hangs loses it when the lease expires; no connection is held meanwhile. A lease held here
        is renewed once a third of it has passed, not on every call."""
        if self._held == holder and time.monotonic() - self._renewed_at < lease_seconds / 3:
            return True
        started = time.monotonic()
        try:
            got = await self._sql.timed(_LEASE_TIMEOUT).fetchval(
                self._take_lease, LEADER_NAME, holder, int(lease_seconds * 1000)
            )
        except BaseException:
            self._held = None
            raise
        held = got == holder
        self._held = holder if held else None
        self._renewed_at = started
        return held

    async def release_lead(self, holder: str) -> None:
        """Give the lease up now (when `holder` has it), so the next round need not wait."""
        self._held = None
        await self._sql.timed(_LEASE_TIMEOUT).execute(self._release_lease, LEADER_NAME, holder)

    # -- heartbeat -----------------------------------------------------------------------------

    async def record_heartbeat(self, beat: Heartbeat) -> None:
        """Replace the heartbeat row of `beat.runner`."""
        await self._sql.execute(
            f"INSERT INTO alert_heartbeats ({HEARTBEAT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (runner) DO UPDATE SET holder = excluded.holder, round_ms = excluded.round_ms, "
            "rules = excluded.rules, errors = excluded.errors, duration_seconds = excluded.duration_seconds, "
            "stall_seconds = excluded.stall_seconds",
            beat.runner,
            beat.holder,
            beat.round_ms,
            beat.rules,
            beat.errors,
            beat.duration_seconds,
            beat.stall_seconds,
        )

    async def heartbeats(self) -> list[Heartbeat]:
        """Every runner's last heartbeat, by runner."""
        rows = await self._sql.fetch(f"SELECT {HEARTBEAT_COLS} FROM alert_heartbeats ORDER BY runner")
        return [heartbeat_from_row(r) for r in rows]
