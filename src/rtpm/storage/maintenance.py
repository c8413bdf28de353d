"""The contract between background jobs (compaction, rollups, retention) and storage.

The jobs in `rtpm.jobs` hold the algorithms; a backend supplies these primitives. Every primitive
is idempotent: running a job twice, or in two processes at once, gives the same data.

`SqlMaintenance` writes the primitives that are the same SQL on both backends once, over the
backend's `Executor`; `postgres_maintenance.py` and `sqlite_maintenance.py` add what is the sample
path's and differs (compaction of a group, the head's cut, bulk rollup writes, retention, deletes,
status)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rtpm.model.labels import Labels, Matcher
from rtpm.model.rollups import RollupRows
from rtpm.storage.chunks import F64, I64
from rtpm.storage.head import Head, HeadLog
from rtpm.storage.sql import Executor

LATE_ROLLUP = "rollup"  # late_writes.bucket is the hour start


def rollups_kept_from(resolution_ms: int) -> str:
    """The watermark below which retention has deleted (or is deleting) rollups of a resolution."""
    return f"rollups_kept_from_{resolution_ms}"


LATE_COMPACT = "compact"  # late_writes.bucket is the chunk window start


@dataclass
class TsdbStatus:
    series_count: int
    raw_samples: int  # samples not in chunks: raw rows, and the head engine's head
    chunk_samples: int
    chunks: int
    rollup_rows: dict[str, int]
    bytes_by_table: dict[str, int]
    top_metrics: list[tuple[str, int]] = field(default_factory=list)
    wal_records: int = 0  # head engine: WAL records not yet wholly cut into chunks


class MaintenanceStore(Protocol):
    async def get_watermark(self, name: str) -> int | None: ...

    async def set_watermark(self, name: str, value: int) -> None:
        """Raise a watermark (never lowers it)."""
        ...

    async def try_lease(self, name: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
        """Take or renew the lease `name` for `holder`; False while another holder's lease lives."""
        ...

    async def late_writes(self, kind: str, limit: int) -> list[tuple[int, int, int]]:
        """(series_id, bucket, seq) marks of samples written late, oldest buckets first. `seq` grows
        with every late write to the same mark, so clearing a mark that changed meanwhile keeps it."""
        ...

    async def clear_late_writes(self, kind: str, marks: list[tuple[int, int, int]]) -> None: ...

    async def has_late_writes(self, kind: str, ids: list[int], start_ms: int, end_ms: int) -> bool:
        """Whether any of `ids` has a mark of `kind` whose bucket may overlap [start_ms, end_ms)
        (rollup marks are hours, compaction marks windows: both start at most a day earlier)."""
        ...

    async def compact_window(self, start_ms: int, end_ms: int, series_ids: list[int] | None) -> tuple[int, int]:
        """Move raw samples in [start_ms, end_ms) (of `series_ids`, or all) into the chunk of that
        window, merged with what the chunk held (raw rows win). Returns (chunks written, samples moved)."""
        ...

    async def series_with_raw(self, start_ms: int, end_ms: int) -> list[int]:
        """Ids of the series with samples not in chunks (raw rows, or the head) in [start_ms, end_ms)."""
        ...

    async def cut_head(self, cutoff_ms: int) -> tuple[int, int]:
        """Head engine: encode the head's samples older than `cutoff_ms` (a window edge) into
        chunks, make that the cut and delete the WAL records wholly older, in one transaction.
        Returns (chunks written, samples moved); (0, 0) on the rows engine."""
        ...

    async def series_with_rollups(self, resolution_ms: int, start_ms: int, end_ms: int) -> list[int]: ...

    async def load_ids(self, ids: list[int], start_ms: int, end_ms: int) -> dict[int, tuple[I64, F64]]:
        """Samples of series ids in [start_ms, end_ms] from chunks and raw rows."""
        ...

    async def replace_rollups(self, resolution_ms: int, start_ms: int, end_ms: int, rows: dict[int, RollupRows]) -> int:
        """For each series id given, make its rollups in [start_ms, end_ms) exactly `rows`."""
        ...

    async def load_rollups(
        self, resolution_ms: int, ids: list[int], start_ms: int, end_ms: int
    ) -> dict[int, RollupRows]: ...

    async def find_series(self, tenant: str, matchers: list[Matcher]) -> list[tuple[int, Labels]]: ...

    async def delete_raw_before(self, ts_ms: int) -> int:
        """Drop raw samples and chunks older than ts_ms (whole partitions where the backend has them)."""
        ...

    async def delete_rollups_before(self, resolution_ms: int, ts_ms: int) -> int: ...

    async def delete_samples(self, ids: list[int], start_ms: int, end_ms: int) -> int:
        """Remove the samples of series `ids` in [start_ms, end_ms] (the admin API's delete_series):
        raw rows, and chunks (one partly in range is rewritten without them). Rollup rows inside
        the range go at once; those straddling an edge are redone by the rollup job (a late mark
        at each edge). Returns the samples removed. On the head engine, samples still in the head
        are deleted by a tombstone record in the WAL, in the same transaction."""
        ...

    async def reclaim_space(self) -> None: ...

    async def status(self, tenant: str | None, top: int = 10) -> TsdbStatus: ...


class _Loads(Protocol):
    """What load_ids needs of a backend's querier (storage/_querier.py's MergedQuerier)."""

    async def _load(self, ids: list[int], limit: int | None = None) -> dict[int, tuple[I64, F64]]: ...


class SqlBackend(Protocol):
    """What SqlMaintenance uses of its storage backend (each backend's maintenance module names
    what it uses besides, in a Protocol deriving from this one)."""

    @property
    def _headlog(self) -> HeadLog | None: ...

    @property
    def _chunk_window_ms(self) -> int: ...

    @property
    def _sql(self) -> Executor: ...

    async def _find_series(self, tenant: str, matchers: Sequence[Matcher]) -> list[tuple[int, Labels]]: ...

    def querier(self, tenant: str, start_ms: int, end_ms: int) -> _Loads: ...


ROLLUP_COLUMNS = "bucket, count, sum, min, max, first_ts, first_value, last_ts, last_value, increase"
_DAY_MS = 86_400_000


def cut_plan(headlog: HeadLog | None, window_ms: int, cutoff_ms: int) -> tuple[Head, int] | None:
    """What a cut of the head works on: the head and the cutoff moved down to a window edge (None
    for the rows engine, which has no head)."""
    if headlog is None:
        return None
    return headlog.head, cutoff_ms - cutoff_ms % window_ms


class SqlMaintenance:
    """The primitives written once over the executor (a base of each backend's MaintenanceStore)."""

    series_per_tx = 200  # series compacted in one transaction (the backend's own sizing)

    def __init__(self, backend: SqlBackend) -> None:
        self._sql = backend._sql
        self._find = backend._find_series
        self._headlog = backend._headlog
        self._querier = backend.querier

    async def _all_series_ids(self) -> list[int]:
        return [int(r[0]) for r in await self._sql.fetch("SELECT id FROM series ORDER BY id")]

    async def compact_window(self, start_ms: int, end_ms: int, series_ids: list[int] | None) -> tuple[int, int]:
        """Compaction in transactions of `series_per_tx` series, each the backend's `_compact_group`."""
        ids = series_ids if series_ids is not None else await self._all_series_ids()
        written = moved = 0
        for i in range(0, len(ids), self.series_per_tx):
            w, m = await self._compact_group(ids[i : i + self.series_per_tx], start_ms, end_ms)
            written += w
            moved += m
        return written, moved

    async def _compact_group(self, ids: list[int], start_ms: int, end_ms: int) -> tuple[int, int]:
        """Move the raw samples in [start_ms, end_ms) of `ids` into their chunks, in one
        transaction; returns (chunks written, samples moved)."""
        raise NotImplementedError

    async def load_ids(self, ids: list[int], start_ms: int, end_ms: int) -> dict[int, tuple[I64, F64]]:
        """Samples of series ids in [start_ms, end_ms] from chunks and raw rows (and the head)."""
        return await self._querier("", start_ms, end_ms)._load(ids)

    async def replace_rollups(self, resolution_ms: int, start_ms: int, end_ms: int, rows: dict[int, RollupRows]) -> int:
        """For each series id given, make its rollups in [start_ms, end_ms) exactly `rows`, in
        transactions of `series_per_tx` series, each the backend's `_replace_rollup_group`."""
        items = list(rows.items())
        total = 0
        for i in range(0, len(items), self.series_per_tx):
            total += await self._replace_rollup_group(
                resolution_ms, start_ms, end_ms, items[i : i + self.series_per_tx]
            )
        return total

    async def _replace_rollup_group(
        self, resolution_ms: int, start_ms: int, end_ms: int, group: list[tuple[int, RollupRows]]
    ) -> int:
        raise NotImplementedError

    async def get_watermark(self, name: str) -> int | None:
        value = await self._sql.fetchval("SELECT value FROM maintenance_state WHERE name = $1", name)
        return None if value is None else int(value)

    async def set_watermark(self, name: str, value: int) -> None:
        """Raise a watermark (never lowers it)."""
        await self._sql.execute(
            "INSERT INTO maintenance_state (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = "
            "CASE WHEN excluded.value > maintenance_state.value THEN excluded.value ELSE maintenance_state.value END",
            name,
            value,
        )

    async def try_lease(self, name: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
        """Take or renew the lease `name` for `holder`; False while another holder's lease lives."""
        got = await self._sql.fetchval(
            "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE "
            "SET holder = excluded.holder, expires_ms = excluded.expires_ms "
            "WHERE leases.holder = excluded.holder OR leases.expires_ms < $4 RETURNING holder",
            name,
            holder,
            now_ms + ttl_ms,
            now_ms,
        )
        return bool(got == holder)

    async def late_writes(self, kind: str, limit: int) -> list[tuple[int, int, int]]:
        rows = await self._sql.fetch(
            "SELECT series_id, bucket, seq FROM late_writes WHERE kind = $1 ORDER BY bucket, series_id LIMIT $2",
            kind,
            limit,
        )
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def clear_late_writes(self, kind: str, marks: list[tuple[int, int, int]]) -> None:
        if not marks:
            return
        async with self._sql.transaction() as tx:
            await tx.executemany(
                "DELETE FROM late_writes WHERE kind = $1 AND series_id = $2 AND bucket = $3 AND seq = $4",
                [(kind, sid, b, seq) for sid, b, seq in marks],
            )

    async def has_late_writes(self, kind: str, ids: list[int], start_ms: int, end_ms: int) -> bool:
        d = self._sql.dialect
        found = await self._sql.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM late_writes WHERE kind = $1 AND {d.in_ids('series_id', '$2')} "
            "AND bucket > $3 AND bucket < $4)",
            kind,
            d.ids(ids),
            start_ms - _DAY_MS,
            end_ms,
        )
        return bool(found)

    async def series_with_raw(self, start_ms: int, end_ms: int) -> list[int]:
        """Ids of the series with samples not in chunks (raw rows, or the head) in [start_ms, end_ms)."""
        rows = await self._sql.fetch(
            "SELECT s.id FROM series s WHERE EXISTS "
            "(SELECT 1 FROM samples WHERE series_id = s.id AND ts >= $1 AND ts < $2) ORDER BY s.id",
            start_ms,
            end_ms,
        )
        found = [int(r[0]) for r in rows]
        if self._headlog is None:
            return found
        await self._headlog.catch_up()
        return sorted(set(found).union(self._headlog.head.series_in(start_ms, end_ms)))

    async def series_with_rollups(self, resolution_ms: int, start_ms: int, end_ms: int) -> list[int]:
        rows = await self._sql.fetch(
            "SELECT s.id FROM series s WHERE EXISTS (SELECT 1 FROM rollups WHERE resolution_ms = $1 "
            "AND series_id = s.id AND bucket >= $2 AND bucket < $3) ORDER BY s.id",
            resolution_ms,
            start_ms,
            end_ms,
        )
        return [int(r[0]) for r in rows]

    async def load_rollups(
        self, resolution_ms: int, ids: list[int], start_ms: int, end_ms: int
    ) -> dict[int, RollupRows]:
        d = self._sql.dialect
        rows = await self._sql.fetch(
            f"SELECT series_id, {ROLLUP_COLUMNS} FROM rollups WHERE resolution_ms = $1 "
            f"AND {d.in_ids('series_id', '$2')} AND bucket >= $3 AND bucket < $4 ORDER BY series_id, bucket",
            resolution_ms,
            d.ids(ids),
            start_ms,
            end_ms,
        )
        grouped: dict[int, list[tuple[Any, ...]]] = {}
        for r in rows:
            grouped.setdefault(r[0], []).append(tuple(r)[1:])
        return {sid: RollupRows.from_rows(g) for sid, g in grouped.items()}

    async def find_series(self, tenant: str, matchers: list[Matcher]) -> list[tuple[int, Labels]]:
        return await self._find(tenant, matchers)

    async def delete_rollups_before(self, resolution_ms: int, ts_ms: int) -> int:
        return await self._sql.execute(
            "DELETE FROM rollups WHERE resolution_ms = $1 AND bucket < $2", resolution_ms, ts_ms
        )

    async def status(self, tenant: str | None, top: int = 10) -> TsdbStatus:
        where, args = ("WHERE tenant = $1", [tenant]) if tenant is not None else ("", [])
        in_tenant = f"WHERE series_id IN (SELECT id FROM series {where})" if tenant is not None else ""
        sql = self._sql
        series = await sql.fetchval(f"SELECT COUNT(*) FROM series {where}", *args)
        top_rows = await sql.fetch(
            f"SELECT name, COUNT(*) FROM series {where} GROUP BY name ORDER BY 2 DESC, 1 LIMIT ${len(args) + 1}",
            *args,
            top,
        )
        raw = int(await sql.fetchval(f"SELECT COUNT(*) FROM samples {in_tenant}", *args))
        chunk_row = await sql.fetchrow(f"SELECT COALESCE(SUM(count), 0), COUNT(*) FROM chunks {in_tenant}", *args)
        assert chunk_row is not None  # an aggregate without GROUP BY: always one row
        rollup_rows = await sql.fetch(f"SELECT resolution_ms, COUNT(*) FROM rollups {in_tenant} GROUP BY 1", *args)
        sizes = await self._table_sizes()
        if self._headlog is not None:
            ids = (
                None
                if tenant is None
                else [int(r[0]) for r in await sql.fetch(f"SELECT id FROM series {where}", *args)]
            )
            raw += self._headlog.head.count(ids)
        wal_records = await sql.fetchval("SELECT COUNT(*) FROM wal_records")
        return TsdbStatus(
            int(series),
            raw,
            int(chunk_row[0]),
            int(chunk_row[1]),
            {str(r[0]): int(r[1]) for r in rollup_rows},
            sizes,
            [(str(r[0]), int(r[1])) for r in top_rows],
            int(wal_records),
        )

    async def _table_sizes(self) -> dict[str, int]:
        """Bytes on disk by table (the backend's own catalogue)."""
        raise NotImplementedError
