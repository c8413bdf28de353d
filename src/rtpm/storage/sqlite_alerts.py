"""AlertStore on SQLite, through SqliteStorage's writer thread and reader pool. Leadership is a
lease row (holder + expiry) renewed by its holder and taken over once it has expired."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    from rtpm.storage.sqlite import SqliteStorage

_ALERT_INSERT = f"INSERT INTO alerts ({ALERT_COLS.removeprefix('id, ')}) VALUES ({', '.join('?' * 16)})"
_ALERT_UPDATE_COLS = [c.strip() for c in ALERT_COLS.split(",")][1:]


class SqliteAlertStore:
    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage
        self._held: str | None = None  # the holder whose lease this process renewed last
        self._renewed_at = 0.0

    # -- rules ---------------------------------------------------------------------------------

    async def create_rule(self, rule: AlertRule) -> AlertRule:
        def run(conn: sqlite3.Connection) -> int:
            try:
                cur = conn.execute(
                    "INSERT INTO alert_rules (tenant, name, spec, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?)",
                    (rule.tenant, rule.name, dumps(rule.spec()), rule.created_ms, rule.updated_ms),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"an alert rule named {rule.name!r} exists already") from None
            assert cur.lastrowid is not None
            return cur.lastrowid

        return rule.with_(id=await self._s._write(run))

    async def get_rule(self, tenant: str, rule_id: int) -> AlertRule | None:
        row = await self._s._read(
            lambda c: c.execute(
                f"SELECT {RULE_COLS} FROM alert_rules WHERE tenant = ? AND id = ?", (tenant, rule_id)
            ).fetchone()
        )
        return rule_from_row(row) if row else None

    async def list_rules(self, tenant: str | None = None) -> list[AlertRule]:
        def run(conn: sqlite3.Connection) -> list[AlertRule]:
            if tenant is None:
                rows = conn.execute(f"SELECT {RULE_COLS} FROM alert_rules ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {RULE_COLS} FROM alert_rules WHERE tenant = ? ORDER BY id", (tenant,)
                ).fetchall()
            return [rule_from_row(r) for r in rows]

        return await self._s._read(run)

    async def update_rule(self, rule: AlertRule) -> AlertRule:
        def run(conn: sqlite3.Connection) -> int:
            try:
                cur = conn.execute(
                    "UPDATE alert_rules SET name = ?, spec = ?, updated_ms = ? WHERE tenant = ? AND id = ?",
                    (rule.name, dumps(rule.spec()), rule.updated_ms, rule.tenant, rule.id),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"an alert rule named {rule.name!r} exists already") from None
            return cur.rowcount

        if not await self._s._write(run):
            raise NotFoundError(f"alert rule {rule.id} not found")
        return rule

    async def delete_rule(self, tenant: str, rule_id: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = conn.execute("DELETE FROM alert_rules WHERE tenant = ? AND id = ?", (tenant, rule_id)).rowcount
                if n:
                    conn.execute("DELETE FROM alerts WHERE rule_id = ? AND resolved_ms IS NULL", (rule_id,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return bool(n)

        return await self._s._write(run)

    async def record_rule_evaluation(
        self, rule_id: int, *, now_ms: int, duration_seconds: float, error: str | None
    ) -> None:
        await self._s._write(
            lambda c: c.execute(
                "UPDATE alert_rules SET last_eval_ms = ?, last_eval_seconds = ?, last_error = ? WHERE id = ?",
                (now_ms, duration_seconds, error, rule_id),
            )
        )

    # -- alerts --------------------------------------------------------------------------------

    async def save_evaluation(
        self, rule_id: int, *, alerts: Sequence[Alert], dropped: Sequence[int], now_ms: int, duration_seconds: float
    ) -> list[Alert]:
        def run(conn: sqlite3.Connection) -> list[Alert]:
            saved: list[Alert] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for a in alerts:
                    values = alert_values(a)
                    if a.id is None:
                        cur = conn.execute(_ALERT_INSERT + " ON CONFLICT DO NOTHING", values)
                        if cur.rowcount:
                            assert cur.lastrowid is not None
                            saved.append(a.with_(id=cur.lastrowid))
                    else:
                        sets = ", ".join(f"{c} = ?" for c in _ALERT_UPDATE_COLS)
                        cur = conn.execute(
                            f"UPDATE alerts SET {sets} WHERE id = ? AND resolved_ms IS NULL", (*values, a.id)
                        )
                        if cur.rowcount:
                            saved.append(a)
                if dropped:
                    conn.executemany("DELETE FROM alerts WHERE id = ? AND state = 'pending'", [(i,) for i in dropped])
                conn.execute(
                    "UPDATE alert_rules SET last_eval_ms = ?, last_eval_seconds = ?, last_error = NULL WHERE id = ?",
                    (now_ms, duration_seconds, rule_id),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return saved

        return await self._s._write(run)

    async def active_alerts(self, *, tenant: str | None = None, rule_id: int | None = None) -> list[Alert]:
        sql = f"SELECT {ALERT_COLS} FROM alerts WHERE resolved_ms IS NULL"
        args: list[object] = []
        if tenant is not None:
            sql += " AND tenant = ?"
            args.append(tenant)
        if rule_id is not None:
            sql += " AND rule_id = ?"
            args.append(rule_id)
        rows = await self._s._read(lambda c: c.execute(sql + " ORDER BY id", args).fetchall())
        return [alert_from_row(r) for r in rows]

    async def get_alert(self, tenant: str, alert_id: int) -> Alert | None:
        row = await self._s._read(
            lambda c: c.execute(
                f"SELECT {ALERT_COLS} FROM alerts WHERE tenant = ? AND id = ?", (tenant, alert_id)
            ).fetchone()
        )
        return alert_from_row(row) if row else None

    async def close_alert(self, alert: Alert) -> bool:
        assert alert.state is AlertState.RESOLVED and alert.id is not None
        n = await self._s._write(
            lambda c: (
                c.execute(
                    "UPDATE alerts SET state = ?, resolved_ms = ?, resolved_by = ?, last_sent_ms = ?, updated_ms = ? "
                    "WHERE id = ? AND resolved_ms IS NULL",
                    (
                        alert.state.value,
                        alert.resolved_at_ms,
                        alert.resolved_by,
                        alert.last_sent_ms,
                        alert.updated_ms,
                        alert.id,
                    ),
                ).rowcount
            )
        )
        return bool(n)

    async def history(self, query: HistoryQuery) -> tuple[list[Alert], int]:
        where, args = history_where(query, lambda i: "?")

        def run(conn: sqlite3.Connection) -> tuple[list[Alert], int]:
            total = conn.execute(f"SELECT count(*) FROM alerts WHERE {where}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT {ALERT_COLS} FROM alerts WHERE {where} ORDER BY active_ms DESC, id DESC LIMIT ? OFFSET ?",
                [*args, query.limit, query.offset],
            ).fetchall()
            return [alert_from_row(r) for r in rows], int(total)

        return await self._s._read(run)

    # -- leadership ----------------------------------------------------------------------------

    async def try_lead(self, holder: str, lease_seconds: float) -> bool:
        # A held lease is renewed when a third of it has passed, not on every call (one write less).
        if self._held == holder and time.monotonic() - self._renewed_at < lease_seconds / 3:
            return True

        def run(conn: sqlite3.Connection) -> bool:
            now_ms = int(time.time() * 1000)
            conn.execute(
                "INSERT INTO alert_leases (name, holder, expires_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms "
                "WHERE alert_leases.holder = excluded.holder OR alert_leases.expires_ms < ?",
                (LEADER_NAME, holder, now_ms + int(lease_seconds * 1000), now_ms),
            )
            row = conn.execute("SELECT holder FROM alert_leases WHERE name = ?", (LEADER_NAME,)).fetchone()
            return bool(row and row[0] == holder)

        started = time.monotonic()
        try:
            held = await self._s._write(run)
        except BaseException:
            self._held = None
            raise
        self._held = holder if held else None
        self._renewed_at = started
        return held

    async def release_lead(self, holder: str) -> None:
        self._held = None
        await self._s._write(
            lambda c: c.execute("DELETE FROM alert_leases WHERE name = ? AND holder = ?", (LEADER_NAME, holder))
        )

    # -- heartbeat -----------------------------------------------------------------------------

    async def record_heartbeat(self, beat: Heartbeat) -> None:
        await self._s._write(
            lambda c: c.execute(
                f"INSERT OR REPLACE INTO alert_heartbeats ({HEARTBEAT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    beat.runner,
                    beat.holder,
                    beat.round_ms,
                    beat.rules,
                    beat.errors,
                    beat.duration_seconds,
                    beat.stall_seconds,
                ),
            )
        )

    async def heartbeats(self) -> list[Heartbeat]:
        def run(conn: sqlite3.Connection) -> list[Heartbeat]:
            rows = conn.execute(f"SELECT {HEARTBEAT_COLS} FROM alert_heartbeats ORDER BY runner").fetchall()
            return [heartbeat_from_row(r) for r in rows]

        return await self._s._read(run)


if TYPE_CHECKING:
    from rtpm.storage.alert_store import AlertStore

    _a: type[AlertStore] = SqliteAlertStore
