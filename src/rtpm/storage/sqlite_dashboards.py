"""DashboardStore on SQLite, through SqliteStorage's writer thread and reader pool."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from rtpm.storage.dashboards import Dashboard, dumps, loads

if TYPE_CHECKING:
    from rtpm.storage.sqlite import SqliteStorage

_COLS = "tenant, id, title, spec, created_ms, updated_ms"


def _row(r: Any) -> Dashboard:
    return Dashboard(r[0], r[1], r[2], loads(r[3]), int(r[4]), int(r[5]))


class SqliteDashboardStore:
    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage

    async def list_dashboards(self, tenant: str) -> list[Dashboard]:
        rows = await self._s._read(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM dashboards WHERE tenant = ? ORDER BY title, id", (tenant,)
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def get_dashboard(self, tenant: str, dashboard_id: str) -> Dashboard | None:
        row = await self._s._read(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM dashboards WHERE tenant = ? AND id = ?", (tenant, dashboard_id)
            ).fetchone()
        )
        return _row(row) if row else None

    async def put_dashboard(self, dashboard: Dashboard) -> Dashboard:
        d = dashboard

        def run(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                f"INSERT INTO dashboards ({_COLS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, id) DO UPDATE SET title = excluded.title, spec = excluded.spec, "
                f"updated_ms = excluded.updated_ms RETURNING {_COLS}",
                (d.tenant, d.id, d.title, dumps(d.spec), d.created_ms, d.updated_ms),
            ).fetchone()

        return _row(await self._s._write(run))

    async def delete_dashboard(self, tenant: str, dashboard_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM dashboards WHERE tenant = ? AND id = ?", (tenant, dashboard_id))
            return cur.rowcount > 0

        return await self._s._write(run)
