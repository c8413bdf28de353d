"""HistogramStore on SQLite (tables of migration 0007), through SqliteStorage's threads."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    from rtpm.storage.sqlite import SqliteStorage


def _bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


def _value(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]


class SqliteHistogramStore:
    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage

    @staticmethod
    def write_in(conn: sqlite3.Connection, batches: Sequence[WriteBatch], per_batch_ids: list[list[int]]) -> None:
        """Inside the storage's write transaction: the batches' histogram samples and exemplars."""
        if any(b.h_ts_ms for b in batches):
            conn.executemany(
                "INSERT INTO histogram_samples (series_id, min_ts, max_ts, count, data) VALUES (?, ?, ?, ?, ?)",
                rows_to_write(batches, per_batch_ids),
            )
        if any(b.exemplars for b in batches):
            rows = exemplars_to_write(batches, per_batch_ids)
            conn.executemany(
                "INSERT INTO exemplars (series_id, ts, value_bits, labels) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (series_id, ts, labels) DO UPDATE SET value_bits = excluded.value_bits",
                [(sid, ts, _bits(v), lb) for sid, ts, v, lb in rows],
            )
            for sid in {r[0] for r in rows}:
                conn.execute(
                    "DELETE FROM exemplars WHERE series_id = ? AND ts < (SELECT ts FROM exemplars "
                    "WHERE series_id = ? ORDER BY ts DESC LIMIT 1 OFFSET ?)",
                    (sid, sid, EXEMPLARS_PER_SERIES - 1),
                )

    async def select(
        self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher], *, max_samples: int | None = None
    ) -> list[HistogramSeries]:
        def run(conn: sqlite3.Connection) -> list[HistogramSeries]:
            out: list[HistogramSeries] = []
            if conn.execute("SELECT 1 FROM histogram_samples LIMIT 1").fetchone() is None:
                return out  # the usual case without native histograms: no series lookup
            total = 0
            for sid, labels in self._s._matching_series(conn, tenant, matchers):
                rows = conn.execute(
                    "SELECT data FROM histogram_samples WHERE series_id = ? AND max_ts >= ? AND min_ts <= ? "
                    "ORDER BY id",
                    (sid, start_ms, end_ms),
                ).fetchall()
                if not rows:
                    continue
                ts, values = merge_rows(rows, start_ms, end_ms)
                total += len(ts)
                if max_samples is not None and total > max_samples:
                    raise too_many_samples(max_samples)
                if ts:
                    out.append(HistogramSeries(labels, ts, values))
            return out

        return await self._s._read(run)

    async def exemplars(
        self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher]
    ) -> list[SeriesExemplars]:
        def run(conn: sqlite3.Connection) -> list[SeriesExemplars]:
            out = []
            for sid, labels in self._s._matching_series(conn, tenant, matchers):
                rows = conn.execute(
                    "SELECT ts, value_bits, labels FROM exemplars WHERE series_id = ? AND ts BETWEEN ? AND ? "
                    "ORDER BY ts",
                    (sid, start_ms, end_ms),
                ).fetchall()
                if rows:
                    found = [Exemplar(decode_exemplar_labels(lb), _value(bits), ts) for ts, bits, lb in rows]
                    out.append(SeriesExemplars(labels, found))
            return out

        return await self._s._read(run)

    async def series(self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher]) -> list[Labels]:
        def run(conn: sqlite3.Connection) -> list[Labels]:
            if conn.execute("SELECT 1 FROM histogram_samples LIMIT 1").fetchone() is None:
                return []
            return [
                labels
                for sid, labels in self._s._matching_series(conn, tenant, matchers)
                if conn.execute(
                    "SELECT 1 FROM histogram_samples WHERE series_id = ? AND max_ts >= ? AND min_ts <= ? LIMIT 1",
                    (sid, start_ms, end_ms),
                ).fetchone()
            ]

        return await self._s._read(run)
