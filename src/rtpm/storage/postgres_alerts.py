"""AlertStore on PostgreSQL, through PostgresStorage's pool (always the writer: alert state read
from a lagging replica would send a transition twice). Leadership is the `leases` row named
`alert-evaluator`: taken or renewed by one statement that succeeds only when the lease expired or
is the caller's own, by the database's clock. No connection is held between rounds, so a holder
that hangs or dies loses the lead when its lease runs out (the old advisory lock stayed held by an
idle connection as long as its hung holder lived)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg

from rtpm.errors import AlreadyExists, NotFoundError
from rtpm.model.alerts import Alert, AlertRule, AlertState
from rtpm.storage.alert_store import (
    ALERT_COLS,
    HEARTBEAT_COLS,
    LEADER_NAME,
    RULE_COLS,
    Heartbeat,
    HistoryQuery,
    alert_from_row,
    alert_values,
    dumps,
    heartbeat_from_row,
    history_where,
    rule_from_row,
)

if TYPE_CHECKING:
    from rtpm.storage.postgres import PostgresStorage

# Take or renew the lease: a new row, or the existing one when it has expired or is ours.
# RETURNING gives the holder only when this statement wrote the row.
_TAKE_LEASE = (
    "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms) "
    "INSERT INTO leases (name, holder, expires_ms) SELECT $1, $2, now.ms + $3 FROM now "
    "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_ms = EXCLUDED.expires_ms "
    "WHERE leases.holder = EXCLUDED.holder OR leases.expires_ms < (SELECT ms FROM now) RETURNING holder"
)
_LEASE_TIMEOUT = 5.0

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


class PostgresAlertStore:
    def __init__(self, storage: PostgresStorage) -> None:
        self._s = storage
        self._held: str | None = None
        self._renewed_at = 0.0

    # -- rules ---------------------------------------------------------------------------------

    async def create_rule(self, rule: AlertRule) -> AlertRule:
        async with self._s._conn() as conn:
            try:
                rule_id = await conn.fetchval(
                    "INSERT INTO alert_rules (tenant, name, spec, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5) "
                    "RETURNING id",
                    rule.tenant,
                    rule.name,
                    dumps(rule.spec()),
                    rule.created_ms,
                    rule.updated_ms,
                )
            except asyncpg.exceptions.UniqueViolationError:
                raise AlreadyExists(f"an alert rule named {rule.name!r} exists already") from None
        return rule.with_(id=int(rule_id))

    async def get_rule(self, tenant: str, rule_id: int) -> AlertRule | None:
        async with self._s._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {RULE_COLS} FROM alert_rules WHERE tenant = $1 AND id = $2", tenant, rule_id
            )
        return rule_from_row(row) if row else None

    async def list_rules(self, tenant: str | None = None) -> list[AlertRule]:
        async with self._s._conn() as conn:
            if tenant is None:
                rows = await conn.fetch(f"SELECT {RULE_COLS} FROM alert_rules ORDER BY id")
            else:
                rows = await conn.fetch(f"SELECT {RULE_COLS} FROM alert_rules WHERE tenant = $1 ORDER BY id", tenant)
        return [rule_from_row(r) for r in rows]

    async def update_rule(self, rule: AlertRule) -> AlertRule:
        async with self._s._conn() as conn:
            try:
                status = await conn.execute(
                    "UPDATE alert_rules SET name = $1, spec = $2, updated_ms = $3 WHERE tenant = $4 AND id = $5",
                    rule.name,
                    dumps(rule.spec()),
                    rule.updated_ms,
                    rule.tenant,
                    rule.id,
                )
            except asyncpg.exceptions.UniqueViolationError:
                raise AlreadyExists(f"an alert rule named {rule.name!r} exists already") from None
        if status.endswith(" 0"):
            raise NotFoundError(f"alert rule {rule.id} not found")
        return rule

    async def delete_rule(self, tenant: str, rule_id: int) -> bool:
        async with self._s._conn() as conn, conn.transaction():
            status = await conn.execute("DELETE FROM alert_rules WHERE tenant = $1 AND id = $2", tenant, rule_id)
            if status.endswith(" 0"):
                return False
            await conn.execute("DELETE FROM alerts WHERE rule_id = $1 AND resolved_ms IS NULL", rule_id)
        return True

    async def record_rule_evaluation(
        self, rule_id: int, *, now_ms: int, duration_seconds: float, error: str | None
    ) -> None:
        async with self._s._conn() as conn:
            await conn.execute(
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
        saved: list[Alert] = []
        async with self._s._conn() as conn, conn.transaction():
            for a in alerts:
                values = alert_values(a)
                if a.id is None:
                    new_id = await conn.fetchval(_ALERT_INSERT, *values)
                    if new_id is not None:
                        saved.append(a.with_(id=int(new_id)))
                else:
                    status = await conn.execute(_ALERT_UPDATE, *values, a.id)
                    if not status.endswith(" 0"):
                        saved.append(a)
            if dropped:
                await conn.execute(
                    "DELETE FROM alerts WHERE id = ANY($1::bigint[]) AND state = 'pending'", list(dropped)
                )
            await conn.execute(
                "UPDATE alert_rules SET last_eval_ms = $1, last_eval_seconds = $2, last_error = NULL WHERE id = $3",
                now_ms,
                duration_seconds,
                rule_id,
            )
        return saved

    async def active_alerts(self, *, tenant: str | None = None, rule_id: int | None = None) -> list[Alert]:
        sql = f"SELECT {ALERT_COLS} FROM alerts WHERE resolved_ms IS NULL"
        args: list[object] = []
        if tenant is not None:
            args.append(tenant)
            sql += f" AND tenant = ${len(args)}"
        if rule_id is not None:
            args.append(rule_id)
            sql += f" AND rule_id = ${len(args)}"
        async with self._s._conn() as conn:
            rows = await conn.fetch(sql + " ORDER BY id", *args)
        return [alert_from_row(r) for r in rows]

    async def get_alert(self, tenant: str, alert_id: int) -> Alert | None:
        async with self._s._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {ALERT_COLS} FROM alerts WHERE tenant = $1 AND id = $2", tenant, alert_id
            )
        return alert_from_row(row) if row else None

    async def close_alert(self, alert: Alert) -> bool:
        assert alert.state is AlertState.RESOLVED and alert.id is not None
        async with self._s._conn() as conn:
            status = await conn.execute(
                "UPDATE alerts SET state = $1, resolved_ms = $2, resolved_by = $3, last_sent_ms = $4, "
                "updated_ms = $5 WHERE id = $6 AND resolved_ms IS NULL",
                alert.state.value,
                alert.resolved_at_ms,
                alert.resolved_by,
                alert.last_sent_ms,
                alert.updated_ms,
                alert.id,
            )
        return not status.endswith(" 0")

    async def history(self, query: HistoryQuery) -> tuple[list[Alert], int]:
        where, args = history_where(query, lambda i: f"${i}")
        n = len(args)
        async with self._s._conn() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM alerts WHERE {where}", *args)
            rows = await conn.fetch(
                f"SELECT {ALERT_COLS} FROM alerts WHERE {where} ORDER BY active_ms DESC, id DESC "
                f"LIMIT ${n + 1} OFFSET ${n + 2}",
                *args,
                query.limit,
                query.offset,
            )
        return [alert_from_row(r) for r in rows], int(total)

    # -- leadership ----------------------------------------------------------------------------

    async def try_lead(self, holder: str, lease_seconds: float) -> bool:
        """One upsert on the `leases` row, timed by the database's clock (so the hosts' clocks do
        not matter); the connection goes back to the pool at once. A lease held here is renewed
        once a third of it has passed, not on every call."""
        if self._held == holder and time.monotonic() - self._renewed_at < lease_seconds / 3:
            return True
        started = time.monotonic()
        try:
            async with self._s._conn() as conn:
                got = await conn.fetchval(
                    _TAKE_LEASE, LEADER_NAME, holder, int(lease_seconds * 1000), timeout=_LEASE_TIMEOUT
                )
        except BaseException:
            self._held = None
            raise
        held = got == holder
        self._held = holder if held else None
        self._renewed_at = started
        return held

    async def release_lead(self, holder: str) -> None:
        self._held = None
        async with self._s._conn() as conn:
            await conn.execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2", LEADER_NAME, holder, timeout=_LEASE_TIMEOUT
            )

    # -- heartbeat -----------------------------------------------------------------------------

    async def record_heartbeat(self, beat: Heartbeat) -> None:
        async with self._s._conn() as conn:
            await conn.execute(
                f"INSERT INTO alert_heartbeats ({HEARTBEAT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (runner) DO UPDATE SET holder = EXCLUDED.holder, round_ms = EXCLUDED.round_ms, "
                "rules = EXCLUDED.rules, errors = EXCLUDED.errors, duration_seconds = EXCLUDED.duration_seconds, "
                "stall_seconds = EXCLUDED.stall_seconds",
                beat.runner,
                beat.holder,
                beat.round_ms,
                beat.rules,
                beat.errors,
                beat.duration_seconds,
                beat.stall_seconds,
            )

    async def heartbeats(self) -> list[Heartbeat]:
        async with self._s._conn() as conn:
            rows = await conn.fetch(f"SELECT {HEARTBEAT_COLS} FROM alert_heartbeats ORDER BY runner")
        return [heartbeat_from_row(r) for r in rows]


if TYPE_CHECKING:
    from rtpm.storage.alert_store import AlertStore

    _a: type[AlertStore] = PostgresAlertStore
