"""SqliteStorage: the embedded default. One file in WAL mode; one writer thread, reader threads.

sqlite3 is blocking, so every call runs on a dedicated thread: writes on one thread with one
connection (SQLite has one writer anyway), reads on a small pool of threads, each with its own
connection. Nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from rtpm.model.labels import Labels, Matcher, equal_metric_name, fingerprint, metric_name_of
from rtpm.model.samples import (
    MetricInfo,
    MetricMetadata,
    MetricType,
    WriteBatch,
)
from rtpm.storage import chunks, migrations, wal
from rtpm.storage._engine import (
    HEAD_CUT,
    head_start,
    log_rebuild,
    open_or_close,
    refuse_past_limit,
    refuse_rows_over_wal,
    split_at,
)
from rtpm.storage._querier import Loaded, MergedQuerier, latest_of, too_many_samples
from rtpm.storage._series import (
    FlatSamples,
    LabelsCache,
    SeriesIdCache,
    encode_labels,
    filter_series,
    flatten,
    late_marks,
    merged_metadata,
)
from rtpm.storage.alert_store import AlertStore
from rtpm.storage.auth_base import AuthStore
from rtpm.storage.chunks import F64, I64
from rtpm.storage.dashboards import DashboardStore
from rtpm.storage.head import Head, HeadLog
from rtpm.storage.histograms import HistogramStore
from rtpm.storage.sqlite_maintenance import SqliteMaintenance
from rtpm.storage.sqlite_rows import cut_until, nan_bits, sample_value
from rtpm.storage.sqlite_sql import SqliteExecutor, storage_error

T = TypeVar("T")


class SqliteStorage:
    backend = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        read_threads: int = 2,
        late_grace_ms: int = 300_000,
        chunk_window_ms: int = 7_200_000,
        engine: str = "rows",
        head_max_series: int = 1_000_000,
        wal_poll_seconds: float = 0.25,
    ) -> None:
        self._path = path
        self.engine = engine
        self._headlog = HeadLog(Head(head_max_series), self._wal_since, wal_poll_seconds) if engine == "head" else None
        self._synchronous = synchronous
        self._late_grace_ms = late_grace_ms
        self._chunk_window_ms = chunk_window_ms
        self._sql = SqliteExecutor(self._read, self._write)  # the stores' SQL
        self.maintenance = SqliteMaintenance(self)
        self.alerts = AlertStore(self._sql)
        self.auth = AuthStore(self._sql)
        self.dashboards = DashboardStore(self._sql)
        self.histograms = HistogramStore(self._sql, self._find_series)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="rtpm-sqlite-w")
        self._readers = ThreadPoolExecutor(read_threads, thread_name_prefix="rtpm-sqlite-r")
        self._local = threading.local()
        self._write_conn: sqlite3.Connection | None = None
        self._ids = SeriesIdCache()
        self._labels = LabelsCache()
        self._all_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
        # Only takes effect on a new, empty database: lets retention give freed pages back to the OS.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        with self._lock:
            self._all_conns.append(conn)
        return conn

    def _reader_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._write_conn is None:
                self._write_conn = self._connect()
            return fn(self._write_conn)

        return await self._run(self._writer, run)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._readers, lambda: fn(self._reader_conn()))

    @staticmethod
    async def _run(executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Migrate and start the engine; on failure nothing stays open."""
        await open_or_close(self._open, self.close)

    async def _open(self) -> None:
        await self.migrate()
        pending = await self._read(lambda c: c.execute("SELECT COUNT(*) FROM wal_records").fetchone()[0])
        if self._headlog is None:
            refuse_rows_over_wal(pending)
            return
        start = head_start(int(time.time() * 1000), self._late_grace_ms, self._chunk_window_ms)

        def init_cut(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO maintenance_state (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (HEAD_CUT, start),
            )

        await self._write(init_cut)
        seconds = await self._headlog.rebuild()
        log_rebuild(self._headlog, pending, seconds)
        self._headlog.start()

    async def migrate(self) -> list[int]:
        self._path.parent.mkdir(parents=True, exist_ok=True)

        def run(conn: sqlite3.Connection) -> list[int]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
                )
                done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
                applied = []
                for version, name, sql in migrations.load("sqlite"):
                    if version in done:
                        continue
                    for statement in migrations.statements(sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (version, name, int(time.time() * 1000)),
                    )
                    applied.append(version)
                conn.execute("COMMIT")
                return applied
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return await self._write(run)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if self._headlog is not None:
            await self._headlog.stop()
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._all_conns:
                conn.close()
            self._all_conns.clear()

    # -- writes --------------------------------------------------------------------------------

    async def write(self, batches: Sequence[WriteBatch]) -> int:
        per_batch, missing = self._ids.resolve(batches)
        now_ms = int(time.time() * 1000)

        def run(conn: sqlite3.Connection) -> tuple[int, wal.Record | None]:
            conn.execute("BEGIN IMMEDIATE")
            record = None
            try:
                new_ids = self._ensure_series(conn, missing, now_ms)
                self._ids.complete(batches, per_batch, new_ids)
                flat = flatten(batches, per_batch)
                if self._headlog is None:
                    self._insert_rows(conn, flat, now_ms)
                elif len(flat):
                    # in the transaction (BEGIN IMMEDIATE: the one writer): no cut commits meanwhile
                    cut = cut_until(conn)
                    flat = refuse_past_limit(self._headlog.head, batches, per_batch, flat, cut)
                    hot, late = split_at(flat, cut)
                    if len(late):
                        self._insert_rows(conn, late, now_ms, all_late=True)  # back-fill: the raw-row path
                    if len(hot):
                        cur = conn.execute(
                            "INSERT INTO wal_records (min_ts, max_ts, count, payload) VALUES (?, ?, ?, ?)",
                            (
                                int(hot.ts_ms.min()),
                                int(hot.ts_ms.max()),
                                len(hot),
                                wal.encode(hot.series_ids, hot.ts_ms, hot.values),
                            ),
                        )
                        assert cur.lastrowid is not None
                        record = wal.Record(cur.lastrowid, hot.series_ids, hot.ts_ms, hot.values)
                for sql, rows in self.histograms.writes(batches, per_batch):
                    conn.executemany(sql, rows)
                meta = merged_metadata(batches)
                if meta:
                    conn.executemany(
                        "INSERT INTO metric_metadata VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, name) "
                        "DO UPDATE SET type = excluded.type, unit = excluded.unit, help = excluded.help, "
                        "updated_ms = excluded.updated_ms",
                        [(t, md.name, md.type.value, md.unit, md.help, now_ms) for (t, _), md in meta.items()],
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._ids.remember(new_ids)
            return len(flat) + sum(len(b.h_ts_ms) for b in batches), record

        written, record = await self._write(run)
        if record is not None and self._headlog is not None:
            await self._headlog.after_commit(record)
        return written

    def _insert_rows(self, conn: sqlite3.Connection, flat: FlatSamples, now_ms: int, *, all_late: bool = False) -> None:
        """The row-per-sample path (the rows engine, and back-fill older than the head, which is
        late by definition: its windows may be compacted already)."""
        finite = ~np.isnan(flat.values)
        rows: Any
        if finite.all():
            rows = zip(flat.series_ids.tolist(), flat.ts_ms.tolist(), flat.values.tolist(), strict=True)
            conn.executemany(
                "INSERT INTO samples (series_id, ts, value, nan_bits) VALUES (?, ?, ?, NULL) "
                "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, nan_bits = NULL",
                rows,
            )
        else:
            rows = [
                (s, t, v, None) if v == v else (s, t, None, nan_bits(v))
                for s, t, v in zip(flat.series_ids.tolist(), flat.ts_ms.tolist(), flat.values.tolist(), strict=True)
            ]
            conn.executemany(
                "INSERT INTO samples (series_id, ts, value, nan_bits) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, "
                "nan_bits = excluded.nan_bits",
                rows,
            )
        late_before = now_ms - self._late_grace_ms if not all_late else np.iinfo(np.int64).max
        late = late_marks(flat, late_before, self._chunk_window_ms)
        if late:
            conn.executemany(
                "INSERT INTO late_writes (kind, series_id, bucket) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, series_id, bucket) DO UPDATE SET seq = seq + 1",
                late,
            )

    async def _wal_since(self, after_id: int, limit: int) -> tuple[int | None, list[wal.Entry]]:
        """The cut and the WAL records after `after_id`, read in one snapshot (one read transaction)."""

        def run(conn: sqlite3.Connection) -> tuple[int | None, list[wal.Entry]]:
            conn.execute("BEGIN")
            try:
                cut = cut_until(conn)
                rows = conn.execute(
                    "SELECT id, payload FROM wal_records WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
                ).fetchall()
            finally:
                conn.execute("COMMIT")
            return cut, [wal.decode(rid, payload) for rid, payload in rows]

        return await self._read(run)

    @staticmethod
    def _ensure_series(
        conn: sqlite3.Connection, missing: list[tuple[str, Labels]], now_ms: int
    ) -> dict[tuple[str, Labels], int]:
        if not missing:
            return {}
        fps = [(tenant, fingerprint(labels)) for tenant, labels in missing]
        conn.executemany(
            "INSERT OR IGNORE INTO series (tenant, fingerprint, name, labels, created_ms) VALUES (?, ?, ?, ?, ?)",
            [
                (tenant, fp, metric_name_of(labels), encode_labels(labels), now_ms)
                for (tenant, labels), (_, fp) in zip(missing, fps, strict=True)
            ],
        )
        out = {}
        for key, (tenant, fp) in zip(missing, fps, strict=True):
            row = conn.execute("SELECT id FROM series WHERE tenant = ? AND fingerprint = ?", (tenant, fp)).fetchone()
            out[key] = row[0]
        return out

    # -- reads ---------------------------------------------------------------------------------

    def querier(self, tenant: str, start_ms: int, end_ms: int) -> SqliteQuerier:
        return SqliteQuerier(self, tenant, start_ms, end_ms)

    async def metric_names(self, tenant: str) -> list[MetricInfo]:
        def run(conn: sqlite3.Connection) -> list[MetricInfo]:
            rows = conn.execute(
                "SELECT s.name, COUNT(*), m.type, m.unit, m.help FROM series s "
                "LEFT JOIN metric_metadata m ON m.tenant = s.tenant AND m.name = s.name "
                "WHERE s.tenant = ? GROUP BY s.name ORDER BY s.name",
                (tenant,),
            ).fetchall()
            return [
                MetricInfo(name, MetricType(t or "unknown"), unit or "", help_ or "", count)
                for name, count, t, unit, help_ in rows
            ]

        return await self._read(run)

    async def metadata(self, tenant: str, name: str | None = None) -> list[MetricMetadata]:
        def run(conn: sqlite3.Connection) -> list[MetricMetadata]:
            sql = "SELECT name, type, unit, help FROM metric_metadata WHERE tenant = ?"
            args: tuple[Any, ...] = (tenant,)
            if name is not None:
                sql += " AND name = ?"
                args += (name,)
            rows = conn.execute(sql + " ORDER BY name", args).fetchall()
            return [MetricMetadata(n, MetricType(t), u, h) for n, t, u, h in rows]

        return await self._read(run)

    async def _find_series(self, tenant: str, matchers: Sequence[Matcher]) -> list[tuple[int, Labels]]:
        return await self._read(lambda conn: self._matching_series(conn, tenant, matchers))

    def _matching_series(
        self, conn: sqlite3.Connection, tenant: str, matchers: Sequence[Matcher]
    ) -> list[tuple[int, Labels]]:
        name = equal_metric_name(matchers)
        if name is not None:
            cur = conn.execute("SELECT id, labels FROM series WHERE tenant = ? AND name = ?", (tenant, name))
        else:
            cur = conn.execute("SELECT id, labels FROM series WHERE tenant = ?", (tenant,))
        return filter_series(cur, matchers, self._labels)


class SqliteQuerier(MergedQuerier):
    def __init__(self, storage: SqliteStorage, tenant: str, start_ms: int, end_ms: int) -> None:
        super().__init__(tenant, start_ms, end_ms, storage._headlog, storage.maintenance)
        self._s = storage

    async def _find(self, matchers: Sequence[Matcher]) -> list[tuple[int, Labels]]:
        return await self._s._read(lambda conn: self._s._matching_series(conn, self.tenant, matchers))

    def _raw(self, conn: sqlite3.Connection, sid: int, limit: int = -1) -> tuple[I64, F64] | None:
        rows = conn.execute(
            "SELECT ts, value, nan_bits FROM samples WHERE series_id = ? AND ts BETWEEN ? AND ? ORDER BY ts LIMIT ?",
            (sid, self.start_ms, self.end_ms, limit),
        ).fetchall()
        if not rows:
            return None
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vals = np.fromiter((sample_value(r[1], r[2]) for r in rows), dtype=np.float64, count=len(rows))
        return ts, vals

    def _chunk_blobs(self, conn: sqlite3.Connection, sid: int, *, last_only: bool = False) -> list[tuple[bytes, bytes]]:
        sql = (
            "SELECT ts_data, value_data FROM chunks WHERE series_id = ? AND min_ts <= ? AND max_ts >= ? "
            "ORDER BY window_start"
        )
        if last_only:
            sql += " DESC LIMIT 1"
        return conn.execute(sql, (sid, self.end_ms, self.start_ms)).fetchall()

    def _chunk_samples(self, conn: sqlite3.Connection, sid: int) -> int:
        return conn.execute(
            "SELECT COALESCE(SUM(count), 0) FROM chunks WHERE series_id = ? AND min_ts <= ? AND max_ts >= ?",
            (sid, self.end_ms, self.start_ms),
        ).fetchone()[0]

    async def _load_stored(self, ids: list[int], limit: int | None = None) -> Loaded:
        def run(conn: sqlite3.Connection) -> Loaded:
            out: Loaded = {}
            left = limit
            for sid in ids:
                if left is not None:  # count as we go: stop before reading past the limit
                    left -= self._chunk_samples(conn, sid)
                    if left < 0:
                        raise too_many_samples(limit)
                raw = self._raw(conn, sid, -1 if left is None else left + 1)
                if raw is not None and left is not None:
                    left -= len(raw[0])
                    if left < 0:
                        raise too_many_samples(limit)
                blobs = self._chunk_blobs(conn, sid)
                if raw is None and not blobs:
                    continue
                out[sid] = chunks.assemble(blobs, raw, self.start_ms, self.end_ms)
            return out

        return await self._s._read(run)

    async def _latest_stored(self, ids: list[int]) -> dict[int, tuple[int, float]]:
        def run(conn: sqlite3.Connection) -> dict[int, tuple[int, float]]:
            candidates: dict[int, list[tuple[int, float]]] = {}
            for sid in ids:
                options: list[tuple[int, float]] = []
                blobs = self._chunk_blobs(conn, sid, last_only=True)
                if blobs:
                    ts, vals = chunks.assemble(blobs, None, self.start_ms, self.end_ms)
                    if len(ts):
                        options.append((int(ts[-1]), float(vals[-1])))
                    else:  # the last chunk has nothing in range: look through all of them
                        ts, vals = chunks.assemble(self._chunk_blobs(conn, sid), None, self.start_ms, self.end_ms)
                        if len(ts):
                            options.append((int(ts[-1]), float(vals[-1])))
                row = conn.execute(
                    "SELECT ts, value, nan_bits FROM samples WHERE series_id = ? AND ts BETWEEN ? AND ? "
                    "ORDER BY ts DESC LIMIT 1",
                    (sid, self.start_ms, self.end_ms),
                ).fetchone()
                if row:
                    options.append((row[0], sample_value(row[1], row[2])))
                if options:
                    candidates[sid] = options
            return latest_of(candidates)

        return await self._s._read(run)


if TYPE_CHECKING:
    from rtpm.storage.base import Querier, Storage

    _s: type[Storage] = SqliteStorage
    _q: type[Querier] = SqliteQuerier
