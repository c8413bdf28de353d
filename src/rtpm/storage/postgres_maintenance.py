"""PostgresMaintenance: the background jobs' primitives on PostgreSQL (see storage/maintenance.py).

Compaction moves rows with `DELETE ... RETURNING` inside one transaction per group of series, so
the rows compacted are exactly the rows deleted, even while new samples arrive. Retention drops
whole daily partitions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from rtpm.model.rollups import RollupRows
from rtpm.storage import chunks
from rtpm.storage.maintenance import LATE_ROLLUP, ROLLUP_COLUMNS, SqlBackend, SqlMaintenance, cut_plan

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from rtpm.storage.postgres_sql import Conn


class _Backend(SqlBackend, Protocol):
    """What PostgresMaintenance uses of its PostgresStorage, named here so that this module (which
    postgres.py imports) does not import postgres.py back."""

    def _conn(self) -> AbstractAsyncContextManager[Conn]: ...

    def _forget_partition(self, name: str) -> None: ...


WAL_LOCK = 0x5254504F  # advisory lock: held by a WAL record's transaction until commit, and by the cut
_SERIES_PER_TX = 500
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_PARTITIONS = (
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
    "WHERE p.relname = 'samples' AND n.nspname = current_schema()"
)


class PostgresMaintenance(SqlMaintenance):
    series_per_tx = _SERIES_PER_TX

    def __init__(self, storage: _Backend) -> None:
        super().__init__(storage)
        self._s = storage

    async def _compact_group(self, ids: list[int], start_ms: int, end_ms: int) -> tuple[int, int]:
        async with self._s._conn() as conn, conn.transaction():
            raw_rows = await conn.fetch(
                "WITH d AS (DELETE FROM samples WHERE series_id = ANY($1::bigint[]) AND ts >= $2 AND ts < $3 "
                "RETURNING series_id, ts, value) "
                "SELECT series_id, array_agg(ts ORDER BY ts), array_agg(value ORDER BY ts) FROM d GROUP BY series_id",
                ids,
                start_ms,
                end_ms,
            )
            if not raw_rows:
                return 0, 0
            old_rows = await conn.fetch(
                "SELECT series_id, ts_data, value_data FROM chunks WHERE series_id = ANY($1::bigint[]) "
                "AND window_start = $2",
                [r[0] for r in raw_rows],
                start_ms,
            )
            old = {r[0]: [(r[1], r[2])] for r in old_rows}
            records = []
            moved = 0
            for sid, ts_list, val_list in raw_rows:
                raw = (np.array(ts_list, dtype=np.int64), np.array(val_list, dtype=np.float64))
                ts, values = chunks.assemble(old.get(sid, []), raw, start_ms, end_ms - 1)
                enc = chunks.encode(ts, values)
                records.append((sid, start_ms, enc.min_ts, enc.max_ts, enc.count, enc.ts_data, enc.value_data))
                moved += len(ts_list)
            await conn.executemany(
                "INSERT INTO chunks VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (series_id, window_start) "
                "DO UPDATE SET min_ts = EXCLUDED.min_ts, max_ts = EXCLUDED.max_ts, count = EXCLUDED.count, "
                "ts_data = EXCLUDED.ts_data, value_data = EXCLUDED.value_data",
                records,
            )
        return len(records), moved

    async def cut_head(self, cutoff_ms: int) -> tuple[int, int]:
        """Encode the head's samples below `cutoff_ms` into chunks, raise the cut to it and delete
        the WAL records wholly below it, in one transaction under the WAL lock (no WAL record
        commits meanwhile, so the head, caught up inside it, holds every sample committed below)."""
        from rtpm.storage import _faults, wal
        from rtpm.storage._engine import HEAD_CUT, encode_windows, windows_of

        window = self._s._chunk_window_ms
        plan = cut_plan(self._s._headlog, window, cutoff_ms)
        if plan is None:
            return 0, 0
        head, cutoff_ms = plan
        async with self._s._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", WAL_LOCK)
            cut = await conn.fetchval("SELECT value FROM maintenance_state WHERE name = $1", HEAD_CUT)
            if cut is None or cutoff_ms <= cut:
                return 0, 0
            for r in await conn.fetch("SELECT id, payload FROM wal_records WHERE id > $1 ORDER BY id", head.last_id):
                head.apply(wal.decode(r[0], r[1]), contiguous=False)
            sids, ts, values = head.below(cutoff_ms)
            keys = sorted({(sid, w) for sid, w, _, _ in windows_of(sids, ts, window)})
            stored = {
                (r[0], r[1]): (r[2], r[3])
                for r in await conn.fetch(
                    "SELECT c.series_id, c.window_start, c.ts_data, c.value_data FROM chunks c "
                    "JOIN unnest($1::bigint[], $2::bigint[]) AS u(s, w) ON c.series_id = u.s AND c.window_start = u.w",
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                )
            }
            encoded = encode_windows(sids, ts, values, window, stored)
            if encoded:
                await conn.execute(
                    "INSERT INTO chunks (series_id, window_start, min_ts, max_ts, count, ts_data, value_data) "
                    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::int[], "
                    "$6::bytea[], $7::bytea[]) ON CONFLICT (series_id, window_start) DO UPDATE "
                    "SET min_ts = EXCLUDED.min_ts, max_ts = EXCLUDED.max_ts, count = EXCLUDED.count, "
                    "ts_data = EXCLUDED.ts_data, value_data = EXCLUDED.value_data",
                    [e[0] for e in encoded],
                    [e[1] for e in encoded],
                    [e[2].min_ts for e in encoded],
                    [e[2].max_ts for e in encoded],
                    [e[2].count for e in encoded],
                    [e[2].ts_data for e in encoded],
                    [e[2].value_data for e in encoded],
                )
            _faults.reached("cut:after_chunks")
            await conn.execute("UPDATE maintenance_state SET value = $1 WHERE name = $2", cutoff_ms, HEAD_CUT)
            if _faults.armed("cut:mid_truncate"):
                await conn.execute(
                    "DELETE FROM wal_records WHERE id IN (SELECT id FROM wal_records WHERE max_ts < $1 ORDER BY id "
                    "LIMIT (SELECT COUNT(*) / 2 FROM wal_records WHERE max_ts < $1))",
                    cutoff_ms,
                )
                _faults.reached("cut:mid_truncate")
            await conn.execute("DELETE FROM wal_records WHERE max_ts < $1", cutoff_ms)
        head.set_floor(cutoff_ms)
        return len(encoded), len(ts)

    async def _replace_rollup_group(
        self, resolution_ms: int, start_ms: int, end_ms: int, group: list[tuple[int, RollupRows]]
    ) -> int:
        records = [(resolution_ms, sid, *row) for sid, rr in group for row in rr.rows()]
        async with self._s._conn() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM rollups WHERE resolution_ms = $1 AND series_id = ANY($2::bigint[]) "
                "AND bucket >= $3 AND bucket < $4",
                resolution_ms,
                [sid for sid, _ in group],
                start_ms,
                end_ms,
            )
            await conn.copy_records_to_table(
                "rollups", records=records, columns=["resolution_ms", "series_id", *ROLLUP_COLUMNS.split(", ")]
            )
        return len(records)

    async def delete_raw_before(self, ts_ms: int) -> int:
        dropped = 0
        async with self._s._conn() as conn:
            for name, bound in await conn.fetch(_PARTITIONS):
                upper = int(bound.rsplit("TO (", 1)[1].split(")", 1)[0].strip("'"))
                if upper <= ts_ms:
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")
                    self._s._forget_partition(name)
                    dropped += 1
            await conn.execute("DELETE FROM chunks WHERE max_ts < $1", ts_ms)
            await conn.execute("DELETE FROM histogram_samples WHERE max_ts < $1", ts_ms)
            await conn.execute("DELETE FROM exemplars WHERE ts < $1", ts_ms)
        return dropped

    async def delete_samples(self, ids: list[int], start_ms: int, end_ms: int) -> int:
        """On the head engine the samples still in the head are deleted by a tombstone in the WAL
        (so a restart or another process does not bring them back), committed under the WAL lock
        in the same transaction as the deletion from chunks and raw rows."""
        from rtpm.storage import wal
        from rtpm.storage._engine import HEAD_CUT

        headlog = self._s._headlog
        removed = 0
        for i in range(0, len(ids), _SERIES_PER_TX):
            group = ids[i : i + _SERIES_PER_TX]
            tomb = None
            async with self._s._conn() as conn, conn.transaction():
                if headlog is not None:
                    # under the lock no record or cut commits: the head, caught up here, holds
                    # every sample of the range committed at or after the cut
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", WAL_LOCK)
                    head = headlog.head
                    head.set_floor(await conn.fetchval("SELECT value FROM maintenance_state WHERE name = $1", HEAD_CUT))
                    for r in await conn.fetch(
                        "SELECT id, payload FROM wal_records WHERE id > $1 ORDER BY id", head.last_id
                    ):
                        head.apply(wal.decode(r[0], r[1]), contiguous=False)
                    in_head = head.read(group, start_ms, end_ms)
                    if in_head:
                        sids = np.asarray(sorted(in_head), dtype=np.int64)
                        rid = await conn.fetchval(
                            "INSERT INTO wal_records (min_ts, max_ts, count, payload) VALUES ($1, $2, 0, $3) "
                            "RETURNING id",
                            start_ms,
                            end_ms,
                            wal.encode_tombstone(sids, start_ms, end_ms),
                        )
                        tomb = wal.Tombstone(rid, sids, start_ms, end_ms)
                        removed += sum(len(ts) for ts, _ in in_head.values())
                status = await conn.execute(
                    "DELETE FROM samples WHERE series_id = ANY($1::bigint[]) AND ts BETWEEN $2 AND $3",
                    group,
                    start_ms,
                    end_ms,
                )
                removed += int(status.split()[-1])
                hit = await conn.fetch(
                    "SELECT series_id, window_start, min_ts, max_ts, count, ts_data, value_data FROM chunks "
                    "WHERE series_id = ANY($1::bigint[]) AND min_ts <= $3 AND max_ts >= $2",
                    group,
                    start_ms,
                    end_ms,
                )
                whole, rewritten = [], []
                for sid, window, lo, hi, count, ts_data, value_data in hit:
                    if start_ms <= lo and hi <= end_ms:
                        whole.append((sid, window))
                        removed += count
                        continue
                    ts, values = chunks.decode(ts_data, value_data)
                    keep = (ts < start_ms) | (ts > end_ms)  # not empty: the chunk reaches past the range
                    enc = chunks.encode(ts[keep], values[keep])
                    rewritten.append((enc.min_ts, enc.max_ts, enc.count, enc.ts_data, enc.value_data, sid, window))
                    removed += len(ts) - enc.count
                await conn.executemany("DELETE FROM chunks WHERE series_id = $1 AND window_start = $2", whole)
                await conn.executemany(
                    "UPDATE chunks SET min_ts = $1, max_ts = $2, count = $3, ts_data = $4, value_data = $5 "
                    "WHERE series_id = $6 AND window_start = $7",
                    rewritten,
                )
                for edge in (start_ms, end_ms):
                    day = edge - edge % _DAY_MS
                    await conn.execute(
                        "INSERT INTO late_writes (kind, series_id, bucket) SELECT DISTINCT $1::text, series_id, "
                        "$3::bigint FROM rollups WHERE series_id = ANY($2::bigint[]) AND bucket >= $4 AND bucket < $5 "
                        "ON CONFLICT (kind, series_id, bucket) DO UPDATE SET seq = late_writes.seq + 1",
                        LATE_ROLLUP,
                        group,
                        edge - edge % _HOUR_MS,
                        day,
                        day + _DAY_MS,
                    )
                await conn.execute(
                    "DELETE FROM rollups WHERE series_id = ANY($1::bigint[]) AND bucket >= $2 "
                    "AND bucket + resolution_ms - 1 <= $3",
                    group,
                    start_ms,
                    end_ms,
                )
            if tomb is not None and headlog is not None:
                await headlog.after_commit(tomb)
        return removed

    async def reclaim_space(self) -> None:
        """Give back the space of partitions that compaction emptied (TRUNCATE, under a lock that
        keeps a late insert from slipping in between the check and the truncate), then vacuum.
        Compaction deletes raw rows all day long: without a vacuum their dead index entries make
        every read of the day's partition walk the deleted rows too (autovacuum gets there as well,
        this does not wait for it)."""
        async with self._s._conn() as conn:
            for name, _ in await conn.fetch(_PARTITIONS):
                async with conn.transaction():
                    await conn.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
                    if await conn.fetchval(f"SELECT NOT EXISTS (SELECT 1 FROM {name})"):
                        await conn.execute(f"TRUNCATE {name}")
            for table in ("chunks", "rollups", "late_writes"):
                await conn.execute(f"VACUUM {table}")
            await conn.execute("VACUUM (ANALYZE) samples")

    async def _table_sizes(self) -> dict[str, int]:
        async with self._s._conn() as conn:
            sizes = {}
            for table in ("series", "chunks", "rollups", "metric_metadata", "late_writes"):
                sizes[table] = int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table))
            samples_size = 0
            for name, _ in await conn.fetch(_PARTITIONS):
                samples_size += await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", name)
            sizes["samples"] = int(samples_size)
            sizes["wal_records"] = int(await conn.fetchval("SELECT pg_total_relation_size('wal_records'::regclass)"))
        return sizes


if TYPE_CHECKING:
    from rtpm.storage.maintenance import MaintenanceStore

    def _conforms(m: PostgresMaintenance) -> MaintenanceStore:
        return m
