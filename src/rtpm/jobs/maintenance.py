"""Compaction, rollups and retention: idempotent, safe to run twice or in two processes at once.

Time is passed in (`now_ms`), never read here. A sample counts as "late" when it is older than
`late_grace` at the moment it is written; storage marks the rollup hour and chunk window of every
late sample. Everything else is handled by watermarks: the jobs only touch windows and buckets
that ended more than `grace + safety` ago, so no sample that was on time can still arrive there."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from rtpm.model.rollups import RESOLUTIONS_MS, RollupRows, coarsen, compute
from rtpm.settings import MaintenanceSettings
from rtpm.storage.maintenance import LATE_COMPACT, LATE_ROLLUP, MaintenanceStore, rollups_kept_from

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_LATE_BATCH = 20_000
_MAX_COMPACT_WINDOWS = 12
_MAX_ROLLUP_SPAN_MS = 6 * HOUR_MS


@dataclass
class JobResult:
    job: str
    items: int = 0  # windows, buckets or partitions handled
    samples: int = 0
    details: dict[str, int] = field(default_factory=dict)


def _floor(value: int, width: int) -> int:
    return value - value % width


async def _start_of(store: MaintenanceStore, name: str, opts: MaintenanceSettings, width: int) -> int:
    """A job's watermark; on the first run, just before the earliest sample that was not late."""
    wm = await store.get_watermark(name)
    if wm is not None:
        return wm
    created = await store.get_watermark("created_ms") or 0
    return _floor(created - int(opts.late_grace_seconds * 1000), width)


async def compact(store: MaintenanceStore, *, now_ms: int, opts: MaintenanceSettings) -> JobResult:
    """Move raw samples of closed windows into compressed chunks."""
    window = opts.chunk_window_seconds * 1000
    age = int(max(opts.compaction_age_seconds, opts.late_grace_seconds) * 1000)
    cutoff = _floor(now_ms - age - int(opts.safety_seconds * 1000), window)  # windows ending <= cutoff
    # Never compact past the rollups: they read the samples of their span as raw rows.
    rolled = await store.get_watermark("rolled_up_until")
    if rolled is not None:
        cutoff = min(cutoff, _floor(rolled, window))
    result = JobResult("compaction")
    # Head engine: the head's windows are cut into chunks as soon as no on-time sample can still
    # arrive there; never past the rollups, which read those samples from the head.
    head_cutoff = _floor(now_ms - int((opts.late_grace_seconds + opts.safety_seconds) * 1000), window)
    if rolled is not None:
        head_cutoff = min(head_cutoff, _floor(rolled, window))
    head_chunks, head_samples = await store.cut_head(head_cutoff)
    if head_chunks:
        result.items += 1
        result.samples += head_samples
        result.details["head_chunks"] = head_chunks
    wm = await _start_of(store, "compacted_until", opts, window)
    await store.set_watermark("compacted_until", wm)
    while wm + window <= cutoff and result.items < _MAX_COMPACT_WINDOWS:
        chunks_written, moved = await store.compact_window(wm, wm + window, None)
        result.items += 1
        result.samples += moved
        result.details["chunks"] = result.details.get("chunks", 0) + chunks_written
        wm += window
        await store.set_watermark("compacted_until", wm)
    # Late samples in windows compacted already (or about to be): compact just those series again.
    marks = [m for m in await store.late_writes(LATE_COMPACT, _LATE_BATCH) if m[1] + window <= min(wm, cutoff)]
    by_window: dict[int, list[int]] = defaultdict(list)
    for sid, start, _ in marks:
        by_window[start].append(sid)
    for start, sids in sorted(by_window.items()):
        chunks_written, moved = await store.compact_window(start, start + window, sids)
        result.samples += moved
        result.details["late_chunks"] = result.details.get("late_chunks", 0) + chunks_written
    await store.clear_late_writes(LATE_COMPACT, marks)
    return result


async def _coarsen_span(
    store: MaintenanceStore, ids: list[int] | None, start_ms: int, end_ms: int, closed_until: int
) -> int:
    """Rebuild the 5m, 1h and 1d rollups of the closed buckets that overlap [start_ms, end_ms) from
    the 1m rollups. `ids` None: every series with 1m rollups there."""
    fine = RESOLUTIONS_MS[0]
    written = 0
    for width in RESOLUTIONS_MS[1:]:
        lo = _floor(start_ms, width)
        hi = min(_floor(end_ms + width - 1, width), _floor(closed_until, width))
        if hi <= lo:
            continue
        sids = ids if ids is not None else await store.series_with_rollups(fine, lo, hi)
        if not sids:
            continue
        loaded = await store.load_rollups(fine, sids, lo, hi)
        rows = {sid: coarsen(loaded[sid], width) if sid in loaded else RollupRows.from_rows([]) for sid in sids}
        written += await store.replace_rollups(width, lo, hi, rows)
    return written


async def rollup(store: MaintenanceStore, *, now_ms: int, opts: MaintenanceSettings) -> JobResult:
    """Roll up closed 1m buckets from samples, and 5m/1h/1d buckets from 1m rollups; then roll up
    again every hour that received late samples."""
    fine = RESOLUTIONS_MS[0]
    closed = _floor(now_ms - int((opts.late_grace_seconds + opts.safety_seconds) * 1000), fine)
    result = JobResult("rollup")
    wm = await _start_of(store, "rolled_up_until", opts, fine)
    await store.set_watermark("rolled_up_until", wm)  # the first run records where rollups start
    while wm < closed:
        end = min(closed, wm + _MAX_ROLLUP_SPAN_MS)
        ids = await store.series_with_raw(wm, end)
        loaded = await store.load_ids(ids, wm, end - 1)
        rows = {sid: compute(ts, vals, fine) for sid, (ts, vals) in loaded.items()}
        result.items += await store.replace_rollups(fine, wm, end, rows)
        result.samples += sum(len(ts) for ts, _ in loaded.values())
        result.items += await _coarsen_span(store, None, wm, end, end)
        wm = end
        await store.set_watermark("rolled_up_until", wm)
    # Late samples: roll up again, per day, every series that got one (all of that day's buckets,
    # so each day's coarser rollups are rebuilt once, not once per late hour).
    marks = [m for m in await store.late_writes(LATE_ROLLUP, _LATE_BATCH) if m[1] < wm]
    by_day: dict[int, set[int]] = defaultdict(set)
    for sid, hour, _ in marks:
        by_day[_floor(hour, DAY_MS)].add(sid)
    for day, sid_set in sorted(by_day.items()):
        sids = sorted(sid_set)
        end = min(day + DAY_MS, wm)
        loaded = await store.load_ids(sids, day, end - 1)
        rows = {sid: compute(*loaded[sid], fine) if sid in loaded else RollupRows.from_rows([]) for sid in sids}
        result.items += await store.replace_rollups(fine, day, end, rows)
        result.samples += sum(len(ts) for ts, _ in loaded.values())
        result.items += await _coarsen_span(store, sids, day, end, wm)
    await store.clear_late_writes(LATE_ROLLUP, marks)
    result.details["late_marks"] = len(marks)
    return result


async def enforce_retention(store: MaintenanceStore, *, now_ms: int, opts: MaintenanceSettings) -> JobResult:
    """Drop what is older than each resolution's retention, then give the space back."""
    result = JobResult("retention")
    horizon = now_ms - int(opts.retention_raw_days * DAY_MS)
    result.details["raw"] = await store.delete_raw_before(horizon)
    for width, days in zip(
        RESOLUTIONS_MS,
        (opts.retention_1m_days, opts.retention_5m_days, opts.retention_1h_days, opts.retention_1d_days),
        strict=True,
    ):
        cut = now_ms - int(days * DAY_MS)
        # first the watermark: from here on queries read no rollups before it (Querier.rollups)
        await store.set_watermark(rollups_kept_from(width), cut)
        result.details[str(width)] = await store.delete_rollups_before(width, cut)
    result.items = sum(result.details.values())
    await store.reclaim_space()
    return result
