"""The head: recent samples of every active series, in memory, in each process.

It holds every sample at or after the cut (`floor_ms`, the start of the lowest window not yet
encoded into chunks) that a WAL record committed: the process's own flushes and, by tailing the
`wal_records` table, those of every other process on the same database. Records are applied in
id order, which is commit order (the backends commit records under one lock), so a later record
wins on an identical (series, ts), as a later write does everywhere else in storage.

The samples are kept as sorted column blocks, not per series: a flush appends one block
(vectorized, no per-series Python work on the write path), and blocks are merged in tiers (a
block is merged into the one before it once that is at most `_TIER` times larger), so there are
O(log n) blocks and a read searches each block for the series it wants. A block holds (series
id, ts, value) sorted by (series, ts) with distinct keys: 24 bytes per sample.

Thread-safe: SQLite applies records on its writer thread, reads run on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rtpm.errors import PartialWrite
from rtpm.storage._series import order_by_series_ts
from rtpm.storage.chunks import F64, I64
from rtpm.storage.wal import Entry, Record, Tombstone

_TIER = 4
_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)

# (cut watermark, up to `limit` records after the given id, in id order)
WalFetch = Callable[[int, int], Awaitable[tuple[int | None, list[Entry]]]]
_FETCH_RECORDS = 500


class HeadFull(PartialWrite):
    """New series of a request refused: the head holds the configured maximum of active series.
    The request's other samples are stored (a partial write: a 4xx, not to be retried as is)."""

    code = "head_full"


@dataclass(slots=True)
class _Block:
    sids: I64
    ts: I64
    values: F64

    def __len__(self) -> int:
        return len(self.ts)


def _dedup_last(sids: I64, ts: I64, values: F64) -> _Block:
    """Sort by (series, ts), stably, and keep the last of every (series, ts): parts concatenated
    oldest first, so the newest value wins."""
    order = order_by_series_ts(sids, ts)
    sids, ts, values = sids[order], ts[order], values[order]
    if len(ts) > 1:
        last = np.ones(len(ts), dtype=bool)
        last[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
        if not last.all():
            sids, ts, values = sids[last], ts[last], values[last]
    return _Block(sids, ts, values)


def _merge(older: _Block, newer: _Block) -> _Block:
    return _dedup_last(
        np.concatenate([older.sids, newer.sids]),
        np.concatenate([older.ts, newer.ts]),
        np.concatenate([older.values, newer.values]),
    )


def _ranges(lo: I64, hi: I64) -> I64:
    """Concatenation of arange(lo[i], hi[i]) for every i (empty ranges skipped)."""
    lens = hi - lo
    keep = lens > 0
    if not keep.any():
        return _EMPTY_I
    lo, lens = lo[keep], lens[keep]
    starts = np.repeat(lo - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    return starts + np.arange(int(lens.sum()), dtype=np.int64)


class Head:
    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.floor_ms: int | None = None  # samples below are in chunks (or raw rows): not head's
        self.last_id = 0  # the last WAL record applied
        self._blocks: list[_Block] = []
        self._active: set[int] = set()
        self._lock = threading.Lock()  # short: swapping the block list, taking a copy of it
        self._apply_lock = threading.Lock()  # long: one applier at a time (merging blocks takes a while)

    # -- state ---------------------------------------------------------------------------------

    @property
    def active_series(self) -> int:
        return len(self._active)

    @property
    def samples(self) -> int:
        return sum(len(b) for b in self._blocks)

    def past_limit(self, per_batch: Sequence[I64]) -> list[set[int]]:
        """For each batch of a flush (the series ids of its head samples), the new series it may
        not bring: those past the maximum of active series, admitted in order of first appearance
        (an earlier request first). All empty in the usual case, found without a look-up."""
        out: list[set[int]] = [set() for _ in per_batch]
        active = self._active
        if len(active) + sum(len(s) for s in per_batch) <= self.max_series:
            return out
        room = self.max_series - len(active)
        admitted: set[int] = set()
        for refused, sids in zip(out, per_batch, strict=True):
            uniq, first = np.unique(sids, return_index=True)
            for sid in uniq[np.argsort(first)].tolist():  # in the order the request gives them
                if sid in active or sid in admitted:
                    continue
                if room > 0:
                    admitted.add(sid)
                    room -= 1
                else:
                    refused.add(sid)
        return out

    # -- applying records ----------------------------------------------------------------------

    def apply(self, record: Entry, *, contiguous: bool) -> bool:
        """Apply one record (samples, or a tombstone). With `contiguous`, only if it is the very
        next id (a process's own record: an id in between may be another process's, not applied
        yet); False means the caller must catch up from the log instead. Records at or below
        `last_id` are skipped. Readers never wait for the merging of blocks: the new list is
        swapped in when ready."""
        with self._apply_lock:
            if record.id <= self.last_id:
                return True
            if contiguous and record.id != self.last_id + 1:
                return False
            if isinstance(record, Tombstone):
                blocks, active = self._deleted(record)
            else:
                blocks, active = self._appended(record)
            with self._lock:
                self._blocks, self._active = blocks, active
                self.last_id = record.id
            return True

    def apply_many(self, records: list[Entry]) -> None:
        """Apply records read from the log, in id order: each run of sample records between
        tombstones as one block (at start-up the whole WAL is sorted once instead of merged record
        by record), a tombstone where it falls."""
        with self._apply_lock:
            fresh = [r for r in records if r.id > self.last_id]
        run: list[Record] = []
        for r in fresh:
            if isinstance(r, Tombstone):
                self._apply_run(run)
                run = []
                self.apply(r, contiguous=False)
            else:
                run.append(r)
        self._apply_run(run)

    def _apply_run(self, run: list[Record]) -> None:
        if len(run) <= 1:
            for r in run:
                self.apply(r, contiguous=False)
            return
        merged = _dedup_last(  # oldest first: the stable sort keeps the last written of every key
            np.concatenate([r.series_ids for r in run]),
            np.concatenate([r.ts_ms for r in run]),
            np.concatenate([r.values for r in run]),
        )
        self.apply(Record(run[-1].id, merged.sids, merged.ts, merged.values), contiguous=False)

    def set_floor(self, floor_ms: int | None) -> None:
        """Drop the samples below a new cut (they are in chunks now)."""
        if floor_ms is None:
            return
        with self._apply_lock:
            if self.floor_ms is not None and floor_ms <= self.floor_ms:
                return
            blocks = []
            for b in self._blocks:
                keep = b.ts >= floor_ms
                if keep.all():
                    blocks.append(b)
                elif keep.any():
                    blocks.append(_Block(b.sids[keep], b.ts[keep], b.values[keep]))
            active = set(np.unique(np.concatenate([b.sids for b in blocks])).tolist()) if blocks else set()
            with self._lock:
                self.floor_ms = floor_ms
                self._blocks, self._active = blocks, active

    def _appended(self, record: Record) -> tuple[list[_Block], set[int]]:
        """The block list and active series with `record` added (the current ones untouched)."""
        sids, ts, values = record.series_ids, record.ts_ms, record.values
        if self.floor_ms is not None:
            keep = ts >= self.floor_ms
            if not keep.all():
                sids, ts, values = sids[keep], ts[keep], values[keep]
        blocks = list(self._blocks)
        if not len(ts):
            return blocks, self._active
        active = self._active
        active.update(np.unique(sids).tolist())  # in place: set operations hold the GIL, readers see old or new
        blocks.append(_Block(sids, ts, values))
        while len(blocks) > 1 and len(blocks[-2]) <= _TIER * len(blocks[-1]):
            newer = blocks.pop()
            blocks[-1] = _merge(blocks[-1], newer)
        return blocks, active

    def _deleted(self, tomb: Tombstone) -> tuple[list[_Block], set[int]]:
        """The block list and active series without the samples `tomb` deletes."""
        ids = np.unique(tomb.series_ids)
        blocks = []
        for b in self._blocks:
            gone = np.isin(b.sids, ids) & (b.ts >= tomb.start_ms) & (b.ts <= tomb.end_ms)
            blocks.append(_Block(b.sids[~gone], b.ts[~gone], b.values[~gone]) if gone.any() else b)
        blocks = [b for b in blocks if len(b)]
        active = set(np.unique(np.concatenate([b.sids for b in blocks])).tolist()) if blocks else set()
        return blocks, active

    # -- reading -------------------------------------------------------------------------------

    def read(self, series_ids: Sequence[int], start_ms: int, end_ms: int) -> dict[int, tuple[I64, F64]]:
        """Copies of the head's samples of `series_ids` in [start_ms, end_ms], per series."""
        with self._lock:
            blocks = list(self._blocks)
        if not blocks or not series_ids:
            return {}
        want = np.unique(np.asarray(series_ids, dtype=np.int64))
        parts_s, parts_t, parts_v = [], [], []
        for b in blocks:
            idx = _ranges(np.searchsorted(b.sids, want, "left"), np.searchsorted(b.sids, want, "right"))
            if not len(idx):
                continue
            ts = b.ts[idx]
            inside = (ts >= start_ms) & (ts <= end_ms)
            if not inside.any():
                continue
            idx = idx[inside]
            parts_s.append(b.sids[idx])
            parts_t.append(ts[inside])
            parts_v.append(b.values[idx])
        if not parts_s:
            return {}
        if len(parts_s) == 1:
            merged = _Block(parts_s[0], parts_t[0], parts_v[0])  # one block: sorted and distinct already
        else:
            merged = _dedup_last(np.concatenate(parts_s), np.concatenate(parts_t), np.concatenate(parts_v))
        uniq, starts = np.unique(merged.sids, return_index=True)
        ends = np.append(starts[1:], len(merged.sids))
        return {
            sid: (merged.ts[a:e].copy(), merged.values[a:e].copy())
            for sid, a, e in zip(uniq.tolist(), starts.tolist(), ends.tolist(), strict=True)
        }

    def series_in(self, start_ms: int, end_ms: int) -> list[int]:
        """Ids of the series with head samples in [start_ms, end_ms)."""
        with self._lock:
            blocks = list(self._blocks)
        parts = [b.sids[(b.ts >= start_ms) & (b.ts < end_ms)] for b in blocks]
        parts = [p for p in parts if len(p)]
        return np.unique(np.concatenate(parts)).tolist() if parts else []

    def count(self, series_ids: Sequence[int] | None = None) -> int:
        """Samples in the head (of `series_ids`, or all); a key in several blocks counts once
        per block until they merge, so this is an upper bound, exact once merged."""
        with self._lock:
            blocks = list(self._blocks)
        if series_ids is None:
            return sum(len(b) for b in blocks)
        want = np.asarray(sorted(series_ids), dtype=np.int64)
        return sum(
            int((np.searchsorted(b.sids, want, "right") - np.searchsorted(b.sids, want, "left")).sum()) for b in blocks
        )

    def below(self, cutoff_ms: int) -> tuple[I64, I64, F64]:
        """Every head sample older than `cutoff_ms`, sorted by (series, ts), distinct keys."""
        with self._lock:
            blocks = list(self._blocks)
        parts = [(b.sids[m], b.ts[m], b.values[m]) for b in blocks if (m := b.ts < cutoff_ms).any()]
        if not parts:
            return _EMPTY_I, _EMPTY_I, _EMPTY_F
        if len(parts) == 1:
            return parts[0]
        b = _dedup_last(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )
        return b.sids, b.ts, b.values


class HeadLog:
    """A Head kept current from the log: the process's own records as they commit, then the
    others' by catching up (before every read, and every `poll_seconds` in the background)."""

    def __init__(self, head: Head, fetch: WalFetch, poll_seconds: float) -> None:
        self.head = head
        self._fetch = fetch
        self._poll_seconds = poll_seconds
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.rebuild_seconds: float | None = None

    async def rebuild(self) -> float:
        """Apply every record not yet in chunks (at start); returns the seconds it took."""
        started = time.perf_counter()
        await self.catch_up()
        self.rebuild_seconds = time.perf_counter() - started
        return self.rebuild_seconds

    async def catch_up(self) -> None:
        async with self._lock:
            while True:
                cut, records = await self._fetch(self.head.last_id, _FETCH_RECORDS)
                await asyncio.to_thread(self._apply_all, cut, records)
                if len(records) < _FETCH_RECORDS:
                    return

    def _apply_all(self, cut: int | None, records: list[Entry]) -> None:
        self.head.set_floor(cut)  # same snapshot as the records: chunks hold what is dropped
        self.head.apply_many(records)

    async def after_commit(self, record: Entry) -> None:
        """Apply the process's own record, off the event loop (a merge of large blocks takes a while)."""
        if not await asyncio.to_thread(self.head.apply, record, contiguous=True):
            await self.catch_up()

    def start(self) -> None:
        if self._task is None and self._poll_seconds > 0:
            self._task = asyncio.create_task(self._poll(), name="rtpm-wal-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        from rtpm.errors import RtpmError

        while True:
            await asyncio.sleep(self._poll_seconds)
            with contextlib.suppress(RtpmError):  # storage away: the next poll (or read) retries
                await self.catch_up()
