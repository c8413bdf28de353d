"""SqliteMaintenance: the background jobs' primitives on SQLite (see storage/maintenance.py).

Work is cut into short transactions of at most `_SERIES_PER_TX` series, so compaction and
retention never hold SQLite's single write lock long enough to stall ingestion."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from rtpm.model.rollups import RollupRows
from rtpm.storage import chunks
from rtpm.storage._engine import windows_of as _windows
from rtpm.storage.maintenance import LATE_ROLLUP, ROLLUP_COLUMNS, SqlBackend, SqlMaintenance, cut_plan
from rtpm.storage.sqlite_rows import cut_until, sample_value

if TYPE_CHECKING:
    from rtpm.storage.head import Head
    from rtpm.storage.wal import Tombstone

T = TypeVar("T")


class _Backend(SqlBackend, Protocol):
    """What SqliteMaintenance uses of its SqliteStorage, named here so that this module (which
    sqlite.py imports) does not import sqlite.py back."""

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_SERIES_PER_TX = 200


def _tx(conn: sqlite3.Connection) -> _Transaction:
    return _Transaction(conn)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _all_series_ids(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM series ORDER BY id")]


class SqliteMaintenance(SqlMaintenance):
    series_per_tx = _SERIES_PER_TX

    def __init__(self, storage: _Backend) -> None:
        super().__init__(storage)
        self._s = storage

    @staticmethod
    def _compact_in(conn: sqlite3.Connection, ids: list[int], start_ms: int, end_ms: int) -> tuple[int, int]:
        written = moved = 0
        with _tx(conn):
            for sid in ids:
                rows = conn.execute(
                    "SELECT ts, value, nan_bits FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                    (sid, start_ms, end_ms),
                ).fetchall()
                if not rows:
                    continue
                raw = (
                    np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                    np.fromiter((sample_value(r[1], r[2]) for r in rows), dtype=np.float64, count=len(rows)),
                )
                old = conn.execute(
                    "SELECT ts_data, value_data FROM chunks WHERE series_id = ? AND window_start = ?", (sid, start_ms)
                ).fetchall()
                ts, values = chunks.assemble(old, raw, start_ms, end_ms - 1)
                enc = chunks.encode(ts, values)
                conn.execute(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series_id, window_start) DO UPDATE "
                    "SET min_ts = excluded.min_ts, max_ts = excluded.max_ts, count = excluded.count, "
                    "ts_data = excluded.ts_data, value_data = excluded.value_data",
                    (sid, start_ms, enc.min_ts, enc.max_ts, enc.count, enc.ts_data, enc.value_data),
                )
                conn.execute("DELETE FROM samples WHERE series_id = ? AND ts >= ? AND ts < ?", (sid, start_ms, end_ms))
                written += 1
                moved += len(rows)
        return written, moved

    async def _compact_group(self, ids: list[int], start_ms: int, end_ms: int) -> tuple[int, int]:
        return await self._s._write(lambda conn: self._compact_in(conn, ids, start_ms, end_ms))

    async def cut_head(self, cutoff_ms: int) -> tuple[int, int]:
        """Encode the head's samples below `cutoff_ms` into chunks, raise the cut to it and delete
        the WAL records wholly below it, in one transaction (BEGIN IMMEDIATE: no write commits
        meanwhile, so the head, caught up inside it, holds every sample committed below)."""
        from rtpm.storage import _faults, wal
        from rtpm.storage._engine import HEAD_CUT, encode_windows

        window = self._s._chunk_window_ms
        plan = cut_plan(self._s._headlog, window, cutoff_ms)
        if plan is None:
            return 0, 0
        head, cutoff_ms = plan

        def run(conn: sqlite3.Connection) -> tuple[int, int] | None:
            with _tx(conn):
                cut = cut_until(conn)
                if cut is None or cutoff_ms <= cut:
                    return None
                for rid, payload in conn.execute(
                    "SELECT id, payload FROM wal_records WHERE id > ? ORDER BY id", (head.last_id,)
                ).fetchall():
                    head.apply(wal.decode(rid, payload), contiguous=False)
                sids, ts, values = head.below(cutoff_ms)
                stored = {}
                for sid, start in {(s, w) for s, w, _, _ in _windows(sids, ts, window)}:
                    row = conn.execute(
                        "SELECT ts_data, value_data FROM chunks WHERE series_id = ? AND window_start = ?", (sid, start)
                    ).fetchone()
                    if row is not None:
                        stored[(sid, start)] = (row[0], row[1])
                encoded = encode_windows(sids, ts, values, window, stored)
                conn.executemany(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series_id, window_start) DO UPDATE "
                    "SET min_ts = excluded.min_ts, max_ts = excluded.max_ts, count = excluded.count, "
                    "ts_data = excluded.ts_data, value_data = excluded.value_data",
                    [(sid, w, c.min_ts, c.max_ts, c.count, c.ts_data, c.value_data) for sid, w, c in encoded],
                )
                _faults.reached("cut:after_chunks")
                conn.execute("UPDATE maintenance_state SET value = ? WHERE name = ?", (cutoff_ms, HEAD_CUT))
                if _faults.armed("cut:mid_truncate"):
                    conn.execute(
                        "DELETE FROM wal_records WHERE id IN (SELECT id FROM wal_records WHERE max_ts < ?1 "
                        "ORDER BY id LIMIT (SELECT COUNT(*) / 2 FROM wal_records WHERE max_ts < ?1))",
                        (cutoff_ms,),
                    )
                    _faults.reached("cut:mid_truncate")
                conn.execute("DELETE FROM wal_records WHERE max_ts < ?", (cutoff_ms,))
            return len(encoded), len(ts)

        done = await self._s._write(run)
        if done is None:
            return 0, 0
        head.set_floor(cutoff_ms)
        return done

    async def _replace_rollup_group(
        self, resolution_ms: int, start_ms: int, end_ms: int, group: list[tuple[int, RollupRows]]
    ) -> int:
        def run(conn: sqlite3.Connection) -> int:
            n = 0
            with _tx(conn):
                for sid, rr in group:
                    conn.execute(
                        "DELETE FROM rollups WHERE resolution_ms = ? AND series_id = ? AND bucket >= ? AND bucket < ?",
                        (resolution_ms, sid, start_ms, end_ms),
                    )
                    conn.executemany(
                        f"INSERT INTO rollups (resolution_ms, series_id, {ROLLUP_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(resolution_ms, sid, *row) for row in rr.rows()],
                    )
                    n += len(rr)
            return n

        return await self._s._write(run)

    async def delete_raw_before(self, ts_ms: int) -> int:
        ids = await self._s._read(_all_series_ids)
        deleted = 0
        for i in range(0, len(ids), _SERIES_PER_TX):
            group = ids[i : i + _SERIES_PER_TX]

            def run(conn: sqlite3.Connection, group: list[int] = group) -> int:
                n = 0
                with _tx(conn):
                    for sid in group:
                        n += conn.execute("DELETE FROM samples WHERE series_id = ? AND ts < ?", (sid, ts_ms)).rowcount
                        n += conn.execute(
                            "DELETE FROM chunks WHERE series_id = ? AND max_ts < ?", (sid, ts_ms)
                        ).rowcount
                        n += conn.execute(
                            "DELETE FROM histogram_samples WHERE series_id = ? AND max_ts < ?", (sid, ts_ms)
                        ).rowcount
                        conn.execute("DELETE FROM exemplars WHERE series_id = ? AND ts < ?", (sid, ts_ms))
                return n

            deleted += await self._s._write(run)
        return deleted

    async def delete_samples(self, ids: list[int], start_ms: int, end_ms: int) -> int:
        """On the head engine the samples still in the head are deleted by a tombstone in the WAL
        (so a restart or another process does not bring them back), committed in the same
        transaction as the deletion from chunks and raw rows."""
        headlog = self._s._headlog
        head = headlog.head if headlog is not None else None
        removed = 0
        for i in range(0, len(ids), _SERIES_PER_TX):
            group = ids[i : i + _SERIES_PER_TX]
            n, tomb = await self._s._write(
                partial(_delete_group, ids=group, start_ms=start_ms, end_ms=end_ms, head=head)
            )
            removed += n
            if tomb is not None and headlog is not None:
                await headlog.after_commit(tomb)
        return removed

    async def reclaim_space(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA incremental_vacuum")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await self._s._write(run)

    async def _table_sizes(self) -> dict[str, int]:
        rows = await self._sql.fetch("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
        return {str(r[0]): int(r[1]) for r in rows}


if TYPE_CHECKING:
    from rtpm.storage.maintenance import MaintenanceStore

    def _conforms(m: SqliteMaintenance) -> MaintenanceStore:
        return m


def _delete_group(
    conn: sqlite3.Connection, ids: list[int], start_ms: int, end_ms: int, head: Head | None
) -> tuple[int, Tombstone | None]:
    """delete_samples for some series, in one transaction; with the head engine's `head`, a
    tombstone for what the head holds of them (the tombstone, to apply once committed)."""
    from rtpm.storage import wal

    removed = 0
    tomb = None
    with _tx(conn):
        if head is not None:  # in the transaction (the one writer): the head, caught up, holds it all
            head.set_floor(cut_until(conn))
            for rid, payload in conn.execute(
                "SELECT id, payload FROM wal_records WHERE id > ? ORDER BY id", (head.last_id,)
            ).fetchall():
                head.apply(wal.decode(rid, payload), contiguous=False)
            in_head = head.read(ids, start_ms, end_ms)
            if in_head:
                sids = np.asarray(sorted(in_head), dtype=np.int64)
                cur = conn.execute(
                    "INSERT INTO wal_records (min_ts, max_ts, count, payload) VALUES (?, ?, 0, ?)",
                    (start_ms, end_ms, wal.encode_tombstone(sids, start_ms, end_ms)),
                )
                assert cur.lastrowid is not None
                tomb = wal.Tombstone(cur.lastrowid, sids, start_ms, end_ms)
                removed += sum(len(ts) for ts, _ in in_head.values())
        for sid in ids:
            removed += conn.execute(
                "DELETE FROM samples WHERE series_id = ? AND ts BETWEEN ? AND ?", (sid, start_ms, end_ms)
            ).rowcount
            hit = conn.execute(
                "SELECT window_start, min_ts, max_ts, count, ts_data, value_data FROM chunks "
                "WHERE series_id = ? AND min_ts <= ? AND max_ts >= ?",
                (sid, end_ms, start_ms),
            ).fetchall()
            for window, lo, hi, count, ts_data, value_data in hit:
                if start_ms <= lo and hi <= end_ms:
                    conn.execute("DELETE FROM chunks WHERE series_id = ? AND window_start = ?", (sid, window))
                    removed += count
                    continue
                ts, values = chunks.decode(ts_data, value_data)
                keep = (ts < start_ms) | (ts > end_ms)  # not empty: the chunk reaches past the range
                enc = chunks.encode(ts[keep], values[keep])
                conn.execute(
                    "UPDATE chunks SET min_ts = ?, max_ts = ?, count = ?, ts_data = ?, value_data = ? "
                    "WHERE series_id = ? AND window_start = ?",
                    (enc.min_ts, enc.max_ts, enc.count, enc.ts_data, enc.value_data, sid, window),
                )
                removed += len(ts) - enc.count
            for edge in (start_ms, end_ms):
                day = edge - edge % _DAY_MS
                conn.execute(
                    "INSERT INTO late_writes (kind, series_id, bucket) SELECT ?, ?, ? WHERE EXISTS "
                    "(SELECT 1 FROM rollups WHERE series_id = ? AND bucket >= ? AND bucket < ?) "
                    "ON CONFLICT (kind, series_id, bucket) DO UPDATE SET seq = seq + 1",
                    (LATE_ROLLUP, sid, edge - edge % _HOUR_MS, sid, day, day + _DAY_MS),
                )
            conn.execute(
                "DELETE FROM rollups WHERE series_id = ? AND bucket >= ? AND bucket + resolution_ms - 1 <= ?",
                (sid, start_ms, end_ms),
            )
    return removed, tomb
