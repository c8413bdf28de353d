"""DashboardStore on PostgreSQL, through PostgresStorage's pool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rtpm.storage.dashboards import Dashboard, dumps, loads

if TYPE_CHECKING:
    from rtpm.storage.postgres import PostgresStorage

_COLS = "tenant, id, title, spec, created_ms, updated_ms"


def _row(r: Any) -> Dashboard:
    return Dashboard(r[0], r[1], r[2], loads(r[3]), int(r[4]), int(r[5]))


class PostgresDashboardStore:
    def __init__(self, storage: PostgresStorage) -> None:
        self._s = storage

    async def list_dashboards(self, tenant: str) -> list[Dashboard]:
        async with self._s._conn() as conn:
            rows = await conn.fetch(f"SELECT {_COLS} FROM dashboards WHERE tenant = $1 ORDER BY title, id", tenant)
        return [_row(r) for r in rows]

    async def get_dashboard(self, tenant: str, dashboard_id: str) -> Dashboard | None:
        async with self._s._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLS} FROM dashboards WHERE tenant = $1 AND id = $2", tenant, dashboard_id
            )
        return _row(row) if row else None

    async def put_dashboard(self, dashboard: Dashboard) -> Dashboard:
        d = dashboard
        async with self._s._conn() as conn:
            row = await conn.fetchrow(
                f"INSERT INTO dashboards ({_COLS}) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (tenant, id) DO UPDATE SET title = EXCLUDED.title, spec = EXCLUDED.spec, "
                f"updated_ms = EXCLUDED.updated_ms RETURNING {_COLS}",
                d.tenant,
                d.id,
                d.title,
                dumps(d.spec),
                d.created_ms,
                d.updated_ms,
            )
        return _row(row)

    async def delete_dashboard(self, tenant: str, dashboard_id: str) -> bool:
        async with self._s._conn() as conn:
            status = await conn.execute("DELETE FROM dashboards WHERE tenant = $1 AND id = $2", tenant, dashboard_id)
        return not status.endswith(" 0")
