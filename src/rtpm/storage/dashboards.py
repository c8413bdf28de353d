"""Dashboards of the web UI: the record and the store Protocol (one implementation per backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson


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


class DashboardStore(Protocol):
    async def list_dashboards(self, tenant: str) -> list[Dashboard]: ...

    async def get_dashboard(self, tenant: str, dashboard_id: str) -> Dashboard | None: ...

    async def put_dashboard(self, dashboard: Dashboard) -> Dashboard:
        """Create or replace; a replaced dashboard keeps its `created_ms`. Returns what is stored."""
        ...

    async def delete_dashboard(self, tenant: str, dashboard_id: str) -> bool: ...
