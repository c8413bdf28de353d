"""PostgresStorage: asyncpg pool; samples partitioned by day; group commit in one transaction.

Series are created in their own short transaction before the samples' transaction (a series row
without samples is harmless, and the id cache is then never poisoned by a rollback). Samples go in
with one `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO UPDATE`, so a retried batch
overwrites instead of duplicating. Daily partitions of `samples` are made ahead of need and on
demand, so retention can drop whole partitions.

Read replicas (`read_dsns`, PostgreSQL streaming replicas): query reads (a querier's series,
samples, chunks and latest values; metric names; metadata) go to a replica only when it has
replayed everything the primary had flushed when the read began (`pg_last_wal_replay_lsn() >=`
the primary's `pg_current_wal_flush_lsn()`), so a lagging replica never gives an older answer than
the primary would; otherwise, or when no replica answers, the primary serves them. Everything else
reads the primary: writes and series ids, alert rules and state (a stale read would send a
transition twice), auth (a revoked key must stop working at once), dashboards, maintenance
watermarks and leases, migrations and health. See docs/read-replicas.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import numpy as np
import structlog

from rtpm.errors import StorageError, StorageUnavailable
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
from rtpm.storage.postgres_maintenance import WAL_LOCK, PostgresMaintenance
from rtpm.storage.postgres_sql import PostgresExecutor

log = structlog.get_logger("rtpm.storage")

if TYPE_CHECKING:
    from rtpm.storage.postgres_sql import Conn

DAY_MS = 86_400_000
_MIGRATION_LOCK = 0x5254504D  # "RTPM"
_PARTITION_LOCK = 0x5254504E

_REPLICA_RETRY_SECONDS = 5.0  # a replica that failed is not asked again for this long
_REPLICA_CHECK_TIMEOUT = 2.0
_FLUSH_LSN = "SELECT pg_current_wal_flush_lsn()::text"
_REPLAYED = "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)"  # NULL on a primary: not a replica

_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


def partition_name(day: int) -> str:
    return "samples_p" + datetime.fromtimestamp(day * 86400, tz=UTC).strftime("%Y%m%d")


class _Replica:
    """One read replica: its pool, made on first use; skipped for a while after a failure."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.name = dsn.rsplit("@", 1)[-1]  # host:port/db, without credentials
        self.down_until = 0.0
        self._pool: asyncpg.Pool | None = None

    async def pool(self, storage: PostgresStorage) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=storage._pool_size,
                timeout=storage._connect_timeout,
                command_timeout=60,
                server_settings=storage._server_settings(f"{storage._app_name}-read"),
            )
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (TimeoutError, *_UNAVAILABLE):
                pool.terminate()


class PostgresStorage:
    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        pool_size: int = 8,
        partition_days_ahead: int = 2,
        connect_timeout_seconds: float = 10.0,
        late_grace_ms: int = 300_000,
        chunk_window_ms: int = 7_200_000,
        engine: str = "rows",
        head_max_series: int = 1_000_000,
        wal_poll_seconds: float = 0.25,
        read_dsns: Sequence[str] = (),
        application_name: str = "rtpm",
    ) -> None:
        self._dsn = dsn
        self.engine = engine
        self._headlog = HeadLog(Head(head_max_series), self._wal_since, wal_poll_seconds) if engine == "head" else None
        self._app_name = application_name
        self._replicas = [_Replica(d) for d in read_dsns]
        self._next_replica = 0
        self.reads = {"replica": 0, "primary": 0}  # query reads by where they were served
        self._late_grace_ms = late_grace_ms
        self._chunk_window_ms = chunk_window_ms
        self._sql = PostgresExecutor(self._conn)  # the stores' SQL, on the primary
        self.maintenance = PostgresMaintenance(self)
        self.alerts = AlertStore(self._sql)
        self.auth = AuthStore(self._sql)
        self.dashboards = DashboardStore(self._sql)
        self.histograms = HistogramStore(self._sql, self._find_series)
        self._schema = schema
        self._pool_size = pool_size
        self._days_ahead = partition_days_ahead
        self._connect_timeout = connect_timeout_seconds
        self._pool: asyncpg.Pool | None = None
        self._ids = SeriesIdCache()
        self._labels = LabelsCache()
        self._partitions: set[int] = set()
        self._cut_seen: int | None = None  # head engine: the cut as last read, to split before locking

    # -- connections ---------------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._connect_timeout,
                command_timeout=60,
                server_settings=self._server_settings(self._app_name),
            )
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"postgres unreachable: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise StorageError(f"postgres: {exc}") from exc

    def _server_settings(self, application_name: str) -> dict[str, str]:
        return {
            "search_path": self._schema,
            "application_name": application_name,
            # JIT compiling costs ~60 ms per large read, more than it saves on our short queries
            "jit": "off",
        }

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        if self._pool is None:
            await self._connect()
        assert self._pool is not None
        async with self._acquire(self._pool) as conn:
            yield conn

    @asynccontextmanager
    async def _read_conn(self, pool: asyncpg.Pool | None) -> AsyncIterator[Conn]:
        """A connection of `pool` (a replica's, from `_read_pool()`), or of the primary for None."""
        if pool is None:
            async with self._conn() as conn:
                yield conn
        else:
            async with self._acquire(pool) as conn:
                yield conn

    async def _read_pool(self) -> asyncpg.Pool | None:
        """The pool of a replica that has replayed everything the primary had flushed now, or None
        (read the primary): no replica configured, all behind, or none answering."""
        if not self._replicas:
            return None
        async with self._conn() as conn:
            lsn = await conn.fetchval(_FLUSH_LSN)
        n = len(self._replicas)
        start, self._next_replica = self._next_replica, (self._next_replica + 1) % n
        now = time.monotonic()
        for i in range(n):
            replica = self._replicas[(start + i) % n]
            if replica.down_until > now:
                continue
            try:
                pool = await replica.pool(self)
                async with pool.acquire(timeout=_REPLICA_CHECK_TIMEOUT) as conn:
                    caught_up = await conn.fetchval(_REPLAYED, lsn, timeout=_REPLICA_CHECK_TIMEOUT)
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                replica.down_until = now + _REPLICA_RETRY_SECONDS
                log.warning("read_replica_unavailable", replica=replica.name, error=str(exc))
                continue
            if caught_up:
                self.reads["replica"] += 1
                return pool
        self.reads["primary"] += 1
        return None

    @asynccontextmanager
    async def _acquire(self, pool: asyncpg.Pool) -> AsyncIterator[Conn]:
        try:
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                try:
                    yield conn
                except asyncpg.PostgresError:
                    raise  # the server refused a statement: the connection itself is fine
                except BaseException:
                    # Cancelled or timed out mid-operation, or the connection broke: never hand it
                    # back to the pool, where the next user would find an operation in progress
                    # ("cannot switch to state 12").
                    conn.terminate()
                    raise
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"postgres unreachable: {exc}") from exc
        except asyncpg.PostgresError as exc:
            if isinstance(exc, asyncpg.exceptions.OperatorInterventionError):
                raise StorageUnavailable(f"postgres unavailable: {exc}") from exc
            raise StorageError(f"postgres: {exc}") from exc

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Migrate and start the engine; on failure nothing stays open."""
        await open_or_close(self._open, self.close)

    async def _open(self) -> None:
        await self._connect()
        await self.migrate()
        now_ms = int(time.time() * 1000)
        today = now_ms // DAY_MS
        await self._ensure_partitions(range(today - 1, today + self._days_ahead + 1))
        async with self._conn() as conn:
            pending = await conn.fetchval("SELECT COUNT(*) FROM wal_records")
            if self._headlog is not None:
                await conn.execute(
                    "INSERT INTO maintenance_state (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    HEAD_CUT,
                    head_start(now_ms, self._late_grace_ms, self._chunk_window_ms),
                )
        if self._headlog is None:
            refuse_rows_over_wal(pending)
            return
        seconds = await self._headlog.rebuild()
        log_rebuild(self._headlog, pending, seconds)
        self._headlog.start()

    async def migrate(self) -> list[int]:
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
            )
            done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for version, name, sql in migrations.load("postgres"):
                if version in done:
                    continue
                for statement in migrations.statements(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, $3)", version, name, int(time.time() * 1000)
                )
                applied.append(version)
            return applied

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._headlog is not None:
            await self._headlog.stop()
        for replica in self._replicas:
            await replica.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (TimeoutError, *_UNAVAILABLE):
                pool.terminate()

    # -- partitions ----------------------------------------------------------------------------

    async def _ensure_partitions(self, days: Any) -> None:
        missing = sorted(d for d in days if d not in self._partitions)
        if not missing:
            return
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
            existing = {
                r[0]
                for r in await conn.fetch(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
                    "WHERE p.relname = 'samples' AND n.nspname = current_schema()"
                )
            }
            for day in missing:
                name = partition_name(day)
                if name not in existing:
                    await conn.execute(
                        f"CREATE TABLE {name} PARTITION OF samples FOR VALUES FROM ({day * DAY_MS}) "
                        f"TO ({(day + 1) * DAY_MS})"
                    )
        self._partitions.update(missing)

    def _forget_partition(self, name: str) -> None:
        self._partitions = {d for d in self._partitions if partition_name(d) != name}

    async def partitions(self) -> list[str]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
                "WHERE p.relname = 'samples' AND n.nspname = current_schema() ORDER BY 1"
            )
        return [r[0] for r in rows]

    # -- writes --------------------------------------------------------------------------------

    async def write(self, batches: Sequence[WriteBatch]) -> int:
        per_batch, missing = self._ids.resolve(batches)
        if missing:
            new_ids = await self._ensure_series(missing)
            self._ids.remember(new_ids)  # committed already: series have their own transaction
            self._ids.complete(batches, per_batch, new_ids)
        flat = flatten(batches, per_batch)
        if self._headlog is not None and len(flat):
            flat = refuse_past_limit(self._headlog.head, batches, per_batch, flat, self._cut_seen)
        if len(flat):
            days = np.unique(flat.ts_ms // DAY_MS).tolist()
            await self._ensure_partitions(days)
        meta = merged_metadata(batches)
        now_ms = int(time.time() * 1000)
        record = None
        if self._headlog is not None and len(flat):
            # Split and encode before taking the lock, at the cut last seen; redone under the lock
            # only if the cut moved meanwhile (once per window), so the lock covers little more
            # than the insert and the commit.
            cut_seen = self._cut_seen
            hot, late = split_at(flat, cut_seen)
            payload = wal.encode(hot.series_ids, hot.ts_ms, hot.values) if len(hot) else b""
        async with self._conn() as conn, conn.transaction():
            if self._headlog is None:
                if len(flat):
                    await self._insert_rows(conn, flat, now_ms)
            elif len(flat):
                # Under the WAL lock until commit: ids are taken in commit order (tailing by id never
                # skips a record that commits later), and no cut commits between reading it and us.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", WAL_LOCK)
                cut = await conn.fetchval("SELECT value FROM maintenance_state WHERE name = $1", HEAD_CUT)
                if cut != cut_seen:
                    self._cut_seen = cut
                    hot, late = split_at(flat, cut)
                    payload = wal.encode(hot.series_ids, hot.ts_ms, hot.values) if len(hot) else b""
                if len(late):
                    await self._insert_rows(conn, late, now_ms, all_late=True)  # back-fill: the raw-row path
                if len(hot):
                    rid = await conn.fetchval(
                        "INSERT INTO wal_records (min_ts, max_ts, count, payload) VALUES ($1, $2, $3, $4) RETURNING id",
                        int(hot.ts_ms.min()),
                        int(hot.ts_ms.max()),
                        len(hot),
                        payload,
                    )
                    record = wal.Record(rid, hot.series_ids, hot.ts_ms, hot.values)
            for sql, rows in self.histograms.writes(batches, per_batch):
                await conn.executemany(sql, rows)
            if meta:
                await conn.executemany(
                    "INSERT INTO metric_metadata VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, name) "
                    "DO UPDATE SET type = EXCLUDED.type, unit = EXCLUDED.unit, help = EXCLUDED.help, "
                    "updated_ms = EXCLUDED.updated_ms",
                    [(t, md.name, md.type.value, md.unit, md.help, now_ms) for (t, _), md in meta.items()],
                )
        if record is not None and self._headlog is not None:
            await self._headlog.after_commit(record)
        return len(flat) + sum(len(b.h_ts_ms) for b in batches)

    async def _insert_rows(self, conn: Conn, flat: FlatSamples, now_ms: int, *, all_late: bool = False) -> None:
        """The row-per-sample path (the rows engine, and back-fill older than the head, which is
        late by definition: its windows may be compacted already)."""
        await self._insert_samples(conn, flat)
        late_before = now_ms - self._late_grace_ms if not all_late else np.iinfo(np.int64).max
        late = late_marks(flat, late_before, self._chunk_window_ms)
        if late:
            # one statement over arrays: a backfill marks thousands per flush
            await conn.execute(
                "INSERT INTO late_writes (kind, series_id, bucket) "
                "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) "
                "ON CONFLICT (kind, series_id, bucket) DO UPDATE SET seq = late_writes.seq + 1",
                [m[0] for m in late],
                [m[1] for m in late],
                [m[2] for m in late],
            )

    async def _wal_since(self, after_id: int, limit: int) -> tuple[int | None, list[wal.Entry]]:
        """The cut and the WAL records after `after_id`, in one statement (one snapshot)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT -1 AS id, NULL::bytea AS payload, value FROM maintenance_state WHERE name = $3 "
                "UNION ALL (SELECT id, payload, NULL FROM wal_records WHERE id > $1 ORDER BY id LIMIT $2) ORDER BY 1",
                after_id,
                limit,
                HEAD_CUT,
            )
        cut = None
        records = []
        for r in rows:
            if r[0] == -1:
                cut = r[2]
            else:
                records.append(wal.decode(r[0], r[1]))
        return cut, records

    @staticmethod
    async def _insert_samples(conn: Conn, flat: FlatSamples) -> None:
        """Binary COPY, the fast path (new samples, the common case). When a (series, ts) is
        already stored (a retried batch, an overwrite), the COPY fails as a whole at a savepoint
        and the batch goes in again as an upsert, so the last written value wins."""
        try:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "samples",
                    records=zip(flat.series_ids.tolist(), flat.ts_ms.tolist(), flat.values.tolist(), strict=True),
                    columns=("series_id", "ts", "value"),
                )
        except asyncpg.exceptions.UniqueViolationError:
            await conn.execute(
                "INSERT INTO samples (series_id, ts, value) "
                "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::float8[]) "
                "ON CONFLICT (series_id, ts) DO UPDATE SET value = EXCLUDED.value",
                flat.series_ids,
                flat.ts_ms,
                flat.values,
            )

    async def _ensure_series(self, missing: list[tuple[str, Labels]]) -> dict[tuple[str, Labels], int]:
        tenants = [t for t, _ in missing]
        fps = [fingerprint(labels) for _, labels in missing]
        names = [metric_name_of(labels) for _, labels in missing]
        encoded = [encode_labels(labels) for _, labels in missing]
        now_ms = int(time.time() * 1000)
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO series (tenant, fingerprint, name, labels, created_ms) "
                "SELECT t, f, n, l::jsonb, $5 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) "
                "AS u(t, f, n, l) ORDER BY t, f ON CONFLICT (tenant, fingerprint) DO NOTHING",
                tenants,
                fps,
                names,
                encoded,
                now_ms,
            )
            rows = await conn.fetch(
                "SELECT s.tenant, s.fingerprint, s.id FROM series s "
                "JOIN unnest($1::text[], $2::bigint[]) AS u(t, f) ON s.tenant = u.t AND s.fingerprint = u.f",
                tenants,
                fps,
            )
        by_fp = {(r[0], r[1]): r[2] for r in rows}
        return {key: by_fp[(key[0], fp)] for key, fp in zip(missing, fps, strict=True)}

    # -- reads ---------------------------------------------------------------------------------

    def querier(self, tenant: str, start_ms: int, end_ms: int) -> PostgresQuerier:
        return PostgresQuerier(self, tenant, start_ms, end_ms)

    async def metric_names(self, tenant: str) -> list[MetricInfo]:
        async with self._read_conn(await self._read_pool()) as conn:
            rows = await conn.fetch(
                "SELECT s.name, COUNT(*), m.type, m.unit, m.help FROM series s "
                "LEFT JOIN metric_metadata m ON m.tenant = s.tenant AND m.name = s.name "
                "WHERE s.tenant = $1 GROUP BY s.name, m.type, m.unit, m.help ORDER BY s.name",
                tenant,
            )
        return [MetricInfo(r[0], MetricType(r[2] or "unknown"), r[3] or "", r[4] or "", r[1]) for r in rows]

    async def metadata(self, tenant: str, name: str | None = None) -> list[MetricMetadata]:
        async with self._read_conn(await self._read_pool()) as conn:
            if name is None:
                rows = await conn.fetch(
                    "SELECT name, type, unit, help FROM metric_metadata WHERE tenant = $1 ORDER BY name", tenant
                )
            else:
                rows = await conn.fetch(
                    "SELECT name, type, unit, help FROM metric_metadata WHERE tenant = $1 AND name = $2",
                    tenant,
                    name,
                )
        return [MetricMetadata(r[0], MetricType(r[1]), r[2], r[3]) for r in rows]

    async def _find_series(self, tenant: str, matchers: Sequence[Matcher]) -> list[tuple[int, Labels]]:
        async with self._conn() as conn:
            return await self._matching_series(conn, tenant, matchers)

    async def _matching_series(self, conn: Conn, tenant: str, matchers: Sequence[Matcher]) -> list[tuple[int, Labels]]:
        name = equal_metric_name(matchers)
        if name is not None:
            rows = await conn.fetch("SELECT id, labels::text FROM series WHERE tenant = $1 AND name = $2", tenant, name)
        else:
            rows = await conn.fetch("SELECT id, labels::text FROM series WHERE tenant = $1", tenant)
        return filter_series(((r[0], r[1]) for r in rows), matchers, self._labels)


# Raw samples per series as two byte strings (big-endian int64 timestamps, float64 values), built
# by PostgreSQL: one row per series instead of one per sample, so the protocol and Python do
# per-series work only. The ids come through ARRAY(SELECT unnest(..)) so the planner walks the
# primary key in (series_id, ts) order instead of sorting; the aggregates take that order
# (checked, and sorted if ever not, in `_decode_raw`). The LIMIT bounds the rows read: a result
# of `limit + 1` rows means over the limit.
_RAW_BY_SERIES = (
    "SELECT series_id, string_agg(int8send(ts), ''::bytea), string_agg(float8send(value), ''::bytea), count(*) "
    "FROM (SELECT series_id, ts, value FROM samples WHERE series_id = ANY(ARRAY(SELECT unnest($1::bigint[]))) "
    "AND ts BETWEEN $2 AND $3 ORDER BY series_id, ts LIMIT $4) AS s GROUP BY series_id"
)
_CHUNKS_IN_RANGE = (
    "SELECT series_id, ts_data, value_data FROM chunks WHERE series_id = ANY($1::bigint[]) "
    "AND min_ts <= $3 AND max_ts >= $2 ORDER BY series_id, window_start"
)
_CHUNK_SAMPLES = (
    "SELECT COALESCE(SUM(count), 0) FROM chunks WHERE series_id = ANY($1::bigint[]) AND min_ts <= $3 AND max_ts >= $2"
)
_NO_LIMIT = 2**62
_PARALLEL_MIN_SERIES = 200  # split larger raw reads in two, read side by side on two connections


def _decode_raw(rows: list[asyncpg.Record]) -> dict[int, tuple[I64, F64]]:
    """Rows of `_RAW_BY_SERIES` to arrays: all series decoded at once, each a view of its part."""
    if not rows:
        return {}
    ts = np.frombuffer(b"".join(r[1] for r in rows), ">i8").astype(np.int64)
    values = np.frombuffer(b"".join(r[2] for r in rows), ">f8").astype(np.float64)
    ends = np.cumsum([r[3] for r in rows])
    starts = np.concatenate(([0], ends[:-1]))
    # a step back (or a repeat) inside a series, not at the start of the next one: sort that series
    back = np.setdiff1d(np.flatnonzero(ts[1:] <= ts[:-1]) + 1, starts)
    fix = set(np.searchsorted(ends, back, "right").tolist())
    out: dict[int, tuple[I64, F64]] = {}
    for i, (r, a, b) in enumerate(zip(rows, starts.tolist(), ends.tolist(), strict=True)):
        sts, svals = ts[a:b], values[a:b]
        if i in fix:
            order = np.argsort(sts, kind="stable")
            sts, svals = sts[order], svals[order]
        out[r[0]] = (sts, svals)
    return out


class PostgresQuerier(MergedQuerier):
    def __init__(self, storage: PostgresStorage, tenant: str, start_ms: int, end_ms: int) -> None:
        super().__init__(tenant, start_ms, end_ms, storage._headlog, storage.maintenance)
        self._s = storage
        self._chosen = False
        self._pool: asyncpg.Pool | None = None  # where this querier reads: one replica, or the primary

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[Conn]:
        """Every read of one querier goes to the same place, chosen at its first read."""
        if not self._chosen:
            self._pool = await self._s._read_pool()
            self._chosen = True
        async with self._s._read_conn(self._pool) as conn:
            yield conn

    async def _find(self, matchers: Sequence[Matcher]) -> list[tuple[int, Labels]]:
        async with self._reader() as conn:
            return await self._s._matching_series(conn, self.tenant, matchers)

    async def _load_stored(self, ids: list[int], limit: int | None = None) -> Loaded:
        """Raw rows and chunks are read side by side on separate connections (and a large raw read
        split in two), so PostgreSQL works on both cores. Each read stops at the limit: at most
        `limit` samples from each part are read before the query is refused."""
        cap = _NO_LIMIT if limit is None else limit
        parts = [ids] if len(ids) < _PARALLEL_MIN_SERIES else [ids[: len(ids) // 2], ids[len(ids) // 2 :]]
        chunk_read, *raw_reads = await asyncio.gather(
            self._chunk_blobs(ids, cap), *(self._raw(part, cap) for part in parts)
        )
        # gather of two kinds of result types them as their join; each is what its coroutine returns
        blobs, in_chunks = cast(tuple[dict[int, list[tuple[bytes, bytes]]], int], chunk_read)
        raw: dict[int, tuple[I64, F64]] = {}
        total = in_chunks
        for part, n in cast(list[tuple[dict[int, tuple[I64, F64]], int]], raw_reads):
            raw.update(part)
            total += n
        if total > cap:
            raise too_many_samples(limit)
        out: Loaded = {}
        for sid in raw.keys() | blobs.keys():
            out[sid] = chunks.assemble(blobs.get(sid, []), raw.get(sid), self.start_ms, self.end_ms)
        return out

    async def _raw(self, ids: list[int], cap: int) -> tuple[dict[int, tuple[I64, F64]], int]:
        async with self._reader() as conn:
            rows = await conn.fetch(_RAW_BY_SERIES, ids, self.start_ms, self.end_ms, cap + 1)
        n = sum(r[3] for r in rows)
        if n > cap:
            return {}, n
        return _decode_raw(rows), n

    async def _chunk_blobs(self, ids: list[int], cap: int) -> tuple[dict[int, list[tuple[bytes, bytes]]], int]:
        args = (ids, self.start_ms, self.end_ms)
        blobs: dict[int, list[tuple[bytes, bytes]]] = {}
        async with self._reader() as conn:
            n = int(await conn.fetchval(_CHUNK_SAMPLES, *args))
            if n == 0 or n > cap:
                return blobs, n
            for r in await conn.fetch(_CHUNKS_IN_RANGE, *args):
                blobs.setdefault(r[0], []).append((r[1], r[2]))
        return blobs, n

    async def _latest_stored(self, ids: list[int]) -> dict[int, tuple[int, float]]:
        async with self._reader() as conn:
            raw_rows = await conn.fetch(
                "SELECT u.id, l.ts, l.value FROM unnest($1::bigint[]) AS u(id) CROSS JOIN LATERAL "
                "(SELECT ts, value FROM samples WHERE series_id = u.id AND ts BETWEEN $2 AND $3 "
                "ORDER BY ts DESC LIMIT 1) AS l",
                ids,
                self.start_ms,
                self.end_ms,
            )
            chunk_rows = await conn.fetch(
                "SELECT DISTINCT ON (series_id) series_id, ts_data, value_data FROM chunks "
                "WHERE series_id = ANY($1::bigint[]) AND min_ts <= $3 AND max_ts >= $2 "
                "ORDER BY series_id, window_start DESC",
                ids,
                self.start_ms,
                self.end_ms,
            )
        candidates: dict[int, list[tuple[int, float]]] = {}
        look_further = []
        for r in chunk_rows:
            ts, vals = chunks.assemble([(r[1], r[2])], None, self.start_ms, self.end_ms)
            if len(ts):
                candidates.setdefault(r[0], []).append((int(ts[-1]), float(vals[-1])))
            else:  # the last chunk has nothing in range: look through all of them
                look_further.append(r[0])
        if look_further:
            for sid, (ts, vals) in (await self._load_stored(look_further)).items():
                if len(ts):
                    candidates.setdefault(sid, []).append((int(ts[-1]), float(vals[-1])))
        for r in raw_rows:
            candidates.setdefault(r[0], []).append((r[1], r[2]))
        return latest_of(candidates)


if TYPE_CHECKING:
    from rtpm.storage.base import Querier, Storage

    _s: type[Storage] = PostgresStorage
    _q: type[Querier] = PostgresQuerier
