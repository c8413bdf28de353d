"""The contract between background jobs (compaction, rollups, retention) and storage.

The jobs in `rtpm.jobs` hold the algorithms; a backend supplies these primitives. Every primitive
is idempotent: running a job twice, or in two processes at once, gives the same data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from rtpm.model.labels import Labels, Matcher
from rtpm.model.rollups import RollupRows
from rtpm.storage.chunks import F64, I64

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
