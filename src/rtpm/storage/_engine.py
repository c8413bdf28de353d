"""Backend-neutral pieces of the head engine (RTPM_STORAGE_ENGINE=head): where the head starts,
how a flush is split between the WAL and the back-fill path, start-up checks and reports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import structlog

from rtpm.errors import ConfigError
from rtpm.model.labels import label_dict
from rtpm.model.samples import WriteBatch
from rtpm.storage import chunks
from rtpm.storage._series import FlatSamples
from rtpm.storage.chunks import F64, I64
from rtpm.storage.head import Head, HeadFull, HeadLog

log = structlog.get_logger("rtpm.storage")

# maintenance_state: the start of the lowest window not yet cut into chunks. Samples at or after
# it go to the WAL and the head; older ones (back-fill) take the raw-row path.
HEAD_CUT = "head_cut_until"
_NONE = np.empty(0, dtype=np.int64)


def head_start(now_ms: int, late_grace_ms: int, window_ms: int) -> int:
    """Where the head starts on a database that never had one: the window still open to on-time
    samples (older ones are back-fill from the first write on)."""
    at = now_ms - late_grace_ms
    return at - at % window_ms


def split_at(flat: FlatSamples, cut_ms: int | None) -> tuple[FlatSamples, FlatSamples]:
    """(samples at or after the cut: the WAL's; older ones: the raw rows')."""
    if cut_ms is None:
        return flat, FlatSamples(flat.series_ids[:0], flat.ts_ms[:0], flat.values[:0])
    hot = flat.ts_ms >= cut_ms
    if hot.all():
        return flat, FlatSamples(flat.series_ids[:0], flat.ts_ms[:0], flat.values[:0])
    late = ~hot
    return (
        FlatSamples(flat.series_ids[hot], flat.ts_ms[hot], flat.values[hot]),
        FlatSamples(flat.series_ids[late], flat.ts_ms[late], flat.values[late]),
    )


def refuse_past_limit(
    head: Head, batches: Sequence[WriteBatch], per_batch: list[list[int]], flat: FlatSamples, cut_ms: int | None
) -> FlatSamples:
    """`flat` without the samples of the new series past the head's maximum of active series
    (earlier requests of the flush first); each batch that brought one gets a HeadFull as its
    `refusal`, naming the limit: its other samples are written, and so are the other requests'.
    The usual case (room for every series) costs one comparison."""
    if head.active_series + len(flat) <= head.max_series:
        return flat
    cols = []
    for b, ids in zip(batches, per_batch, strict=True):
        sids = np.asarray(ids, dtype=np.int64)[np.asarray(b.refs, dtype=np.int64)] if b.ts_ms else _NONE
        cols.append(sids)
    hot = [
        s if cut_ms is None else s[np.asarray(b.ts_ms, dtype=np.int64) >= cut_ms]
        for s, b in zip(cols, batches, strict=True)
    ]
    refused = head.past_limit(hot)
    every = set().union(*refused)
    if not every:
        return flat
    gone_ids = np.fromiter(every, dtype=np.int64, count=len(every))
    for b, ids, sids in zip(batches, per_batch, cols, strict=True):
        gone = np.isin(sids, gone_ids)
        if not gone.any():
            continue
        mine = set(sids[gone].tolist())
        example = next(b.series[ref] for ref, sid in enumerate(ids) if sid in mine)
        b.refusal = HeadFull(
            f"{len(mine)} new series of this request refused ({int(gone.sum())} samples), e.g. "
            f"{label_dict(example)}: the head is at its maximum of {head.max_series} active series "
            "(RTPM_STORAGE_HEAD_MAX_SERIES); the request's other samples were stored",
            refused_samples=int(gone.sum()),
        )
        # the batch keeps what was written: the commit hooks (live updates, latest values) see that
        kept = np.flatnonzero(~gone)
        b.refs = np.asarray(b.refs, dtype=np.int64)[kept].tolist()
        b.ts_ms = np.asarray(b.ts_ms, dtype=np.int64)[kept].tolist()
        b.values = np.asarray(b.values, dtype=np.float64)[kept].tolist()
    keep = ~np.isin(flat.series_ids, gone_ids)
    return FlatSamples(flat.series_ids[keep], flat.ts_ms[keep], flat.values[keep])


def refuse_rows_over_wal(pending_records: int) -> None:
    """The rows engine does not read the WAL: refuse to start over records the head engine left."""
    if pending_records:
        raise ConfigError(
            f"the database holds {pending_records} WAL records of the head engine not yet cut into chunks; "
            "start with RTPM_STORAGE_ENGINE=head"
        )


def log_rebuild(headlog: HeadLog, records: int, seconds: float) -> None:
    head = headlog.head
    log.info(
        "head_rebuilt",
        wal_records=records,
        samples=head.samples,
        active_series=head.active_series,
        seconds=round(seconds, 3),
    )


# (series id, window start) -> the chunk's (ts_data, value_data) already stored there
StoredChunks = dict[tuple[int, int], tuple[bytes, bytes]]


def windows_of(sids: I64, ts: I64, window_ms: int) -> list[tuple[int, int, int, int]]:
    """(series id, window start, first index, end index) of every run of samples of one series in
    one window, in columns sorted by (series, ts)."""
    if not len(ts):
        return []
    win = ts - ts % window_ms
    edge = np.flatnonzero((sids[1:] != sids[:-1]) | (win[1:] != win[:-1])) + 1
    starts = np.concatenate(([0], edge))
    ends = np.concatenate((edge, [len(ts)]))
    return list(zip(sids[starts].tolist(), win[starts].tolist(), starts.tolist(), ends.tolist(), strict=True))


def encode_windows(
    sids: I64, ts: I64, values: F64, window_ms: int, stored: StoredChunks
) -> list[tuple[int, int, chunks.EncodedChunk]]:
    """The chunks of a cut: the head's samples per (series, window), merged over a chunk already
    stored in that window (the head's samples are newer and win on an equal ts)."""
    out = []
    for sid, start, a, e in windows_of(sids, ts, window_ms):
        part = (ts[a:e], values[a:e])
        old = stored.get((sid, start))
        if old is not None:
            part = chunks.merge(chunks.decode(*old), part)
        out.append((sid, start, chunks.encode(*part)))
    return out


async def open_or_close(open_: Callable[[], Awaitable[None]], close: Callable[[], Awaitable[None]]) -> None:
    """Run a backend's open; when it fails, close what it had opened (no pooled connection or
    thread left behind) and raise."""
    try:
        await open_()
    except BaseException:
        await close()
        raise
