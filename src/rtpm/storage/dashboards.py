"""Dashboards of the web UI: the record and its store, over either backend's `Executor`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from rtpm.storage.sql import Executor, Row


@dataclass(frozen=True, slots=True)
class Dashboard:
    tenant: str
    id: str
    title: str
    spec: dict[str, Any]  # panels and options, as the UI saved them (validated by the API)
    created_ms: int
    updated_ms: int


def dumps(spec: dict[str, Any]) -> str:
    return orjson.dumps(spec).decode()


def loads(text: str) -> dict[str, Any]:
    value = orjson.loads(text)
    return value if isinstance(value, dict) else {}


_COLS = "tenant, id, title, spec, created_ms, updated_ms"


def _row(r: Row) -> Dashboard:
    return Dashboard(r[0], r[1], r[2], loads(r[3]), int(r[4]), int(r[5]))


class DashboardStore:
    def __init__(self, sql: Executor) -> None:
        self._sql = sql

    async def list_dashboards(self, tenant: str) -> list[Dashboard]:
        rows = await self._sql.fetch(f"SELECT {_COLS} FROM dashboards WHERE tenant = $1 ORDER BY title, id", tenant)
        return [_row(r) for r in rows]

    async def get_dashboard(self, tenant: str, dashboard_id: str) -> Dashboard | None:
        row = await self._sql.fetchrow(
            f"SELECT {_COLS} FROM dashboards WHERE tenant = $1 AND id = $2", tenant, dashboard_id
        )
        return _row(row) if row else None

    async def put_dashboard(self, dashboard: Dashboard) -> Dashboard:
        """Create or replace; a replaced dashboard keeps its `created_ms`. Returns what is stored."""
        d = dashboard
        row = await self._sql.fetchrow(
            f"INSERT INTO dashboards ({_COLS}) VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (tenant, id) DO UPDATE SET title = excluded.title, spec = excluded.spec, "
            f"updated_ms = excluded.updated_ms RETURNING {_COLS}",
            d.tenant,
            d.id,
            d.title,
            dumps(d.spec),
            d.created_ms,
            d.updated_ms,
        )
        assert row is not None
        return _row(row)

    async def delete_dashboard(self, tenant: str, dashboard_id: str) -> bool:
        return await self._sql.execute("DELETE FROM dashboards WHERE tenant = $1 AND id = $2", tenant, dashboard_id) > 0
