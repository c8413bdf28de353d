"""HistogramStore on PostgreSQL (tables of migration 0007), through PostgresStorage's pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg

from rtpm.model.histograms import Exemplar
from rtpm.model.labels import Labels, Matcher
from rtpm.model.samples import WriteBatch
from rtpm.storage._querier import too_many_samples
from rtpm.storage.histograms import (
    EXEMPLARS_PER_SERIES,
    HistogramSeries,
    SeriesExemplars,
    decode_exemplar_labels,
    exemplars_to_write,
    merge_rows,
    rows_to_write,
)

if TYPE_CHECKING:
    from rtpm.storage.postgres import PostgresStorage


class PostgresHistogramStore:
    def __init__(self, storage: PostgresStorage) -> None:
        self._s = storage

    @staticmethod
    async def write_in(conn: asyncpg.Connection, batches: Sequence[WriteBatch], per_batch_ids: list[list[int]]) -> None:
        """Inside the storage's write transaction: the batches' histogram samples and exemplars."""
        if any(b.h_ts_ms for b in batches):
            await conn.executemany(
                "INSERT INTO histogram_samples (series_id, min_ts, max_ts, count, data) VALUES ($1, $2, $3, $4, $5)",
                rows_to_write(batches, per_batch_ids),
            )
        if any(b.exemplars for b in batches):
            rows = exemplars_to_write(batches, per_batch_ids)
            await conn.executemany(
                "INSERT INTO exemplars (series_id, ts, value, labels) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (series_id, ts, labels) DO UPDATE SET value = EXCLUDED.value",
                rows,
            )
            await conn.execute(
                "DELETE FROM exemplars e USING (SELECT series_id, ts, labels, row_number() OVER "
                "(PARTITION BY series_id ORDER BY ts DESC) AS n FROM exemplars WHERE series_id = ANY($1::bigint[])) old "
                "WHERE e.series_id = old.series_id AND e.ts = old.ts AND e.labels = old.labels AND old.n > $2",
                sorted({r[0] for r in rows}),
                EXEMPLARS_PER_SERIES,
            )

    async def select(
        self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher], *, max_samples: int | None = None
    ) -> list[HistogramSeries]:
        async with self._s._conn() as conn:
            if await conn.fetchval("SELECT 1 FROM histogram_samples LIMIT 1") is None:
                return []  # the usual case without native histograms: no series lookup
            found = await self._s._matching_series(conn, tenant, matchers)
            if not found:
                return []
            rows = await conn.fetch(
                "SELECT series_id, data FROM histogram_samples WHERE series_id = ANY($1::bigint[]) "
                "AND max_ts >= $2 AND min_ts <= $3 ORDER BY id",
                [sid for sid, _ in found],
                start_ms,
                end_ms,
            )
        per: dict[int, list[tuple[bytes]]] = {}
        for r in rows:
            per.setdefault(r[0], []).append((r[1],))
        out = []
        total = 0
        for sid, labels in found:
            got = per.get(sid)
            if not got:
                continue
            ts, values = merge_rows(got, start_ms, end_ms)
            total += len(ts)
            if max_samples is not None and total > max_samples:
                raise too_many_samples(max_samples)
            if ts:
                out.append(HistogramSeries(labels, ts, values))
        return out

    async def exemplars(
        self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher]
    ) -> list[SeriesExemplars]:
        async with self._s._conn() as conn:
            found = await self._s._matching_series(conn, tenant, matchers)
            if not found:
                return []
            rows = await conn.fetch(
                "SELECT series_id, ts, value, labels FROM exemplars WHERE series_id = ANY($1::bigint[]) "
                "AND ts BETWEEN $2 AND $3 ORDER BY ts",
                [sid for sid, _ in found],
                start_ms,
                end_ms,
            )
        per: dict[int, list[Exemplar]] = {}
        for r in rows:
            per.setdefault(r[0], []).append(Exemplar(decode_exemplar_labels(r[3]), r[2], r[1]))
        return [SeriesExemplars(labels, per[sid]) for sid, labels in found if sid in per]

    async def series(self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher]) -> list[Labels]:
        async with self._s._conn() as conn:
            if await conn.fetchval("SELECT 1 FROM histogram_samples LIMIT 1") is None:
                return []
            found = await self._s._matching_series(conn, tenant, matchers)
            if not found:
                return []
            rows = await conn.fetch(
                "SELECT DISTINCT series_id FROM histogram_samples WHERE series_id = ANY($1::bigint[]) "
                "AND max_ts >= $2 AND min_ts <= $3",
                [sid for sid, _ in found],
                start_ms,
                end_ms,
            )
        have = {r[0] for r in rows}
        return [labels for sid, labels in found if sid in have]
