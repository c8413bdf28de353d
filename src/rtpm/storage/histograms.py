"""Native histogram samples and exemplars: the backend-neutral part of their storage.

Histogram samples are kept apart from the float samples, one row per series per flush holding
that flush's samples of the series in a compact binary encoding (`encode`/`decode`: a fixed
header per sample, spans as int32 pairs, counts as float64, the whole row zlib-compressed).
Reading a range merges the rows that overlap it, the row written last winning on an equal
timestamp (a retried batch never doubles a sample).

Exemplars are kept per series, at most EXEMPLARS_PER_SERIES (the newest), identical
(series, timestamp, labels) once.

`HistogramStore` (one per backend: sqlite_histograms.py, postgres_histograms.py) is what the query
engine and the API use; the backends' write transactions call `write_sqlite` / `write_postgres` of
their store with the batch's resolved series ids.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from rtpm.model.histograms import Exemplar, Histogram
from rtpm.model.labels import Labels, Matcher
from rtpm.model.samples import WriteBatch

EXEMPLARS_PER_SERIES = 100

_HEAD = struct.Struct("<qbBddddIIIII")


@dataclass(slots=True)
class HistogramSeries:
    """One series' histogram samples in a range, sorted by timestamp."""

    labels: Labels
    ts_ms: list[int]
    values: list[Histogram]


@dataclass(slots=True)
class SeriesExemplars:
    labels: Labels
    exemplars: list[Exemplar]


class HistogramStore(Protocol):
    async def select(
        self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher], *, max_samples: int | None = None
    ) -> list[HistogramSeries]:
        """Histogram samples in [start_ms, end_ms] of the series matching every matcher."""
        ...

    async def exemplars(
        self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher]
    ) -> list[SeriesExemplars]:
        """Exemplars in [start_ms, end_ms] of the matching series, oldest first."""
        ...

    async def series(self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher]) -> list[Labels]:
        """Label sets of the matching series with histogram samples in [start_ms, end_ms]."""
        ...


def encode(samples: Sequence[tuple[int, Histogram]]) -> bytes:
    parts: list[bytes] = []
    for ts, h in samples:
        flags = (1 if h.is_int else 0) | (h.reset_hint << 1)
        parts.append(
            _HEAD.pack(
                ts,
                h.schema,
                flags,
                h.zero_threshold,
                h.zero_count,
                h.count,
                h.sum,
                len(h.positive_spans),
                len(h.negative_spans),
                len(h.positive),
                len(h.negative),
                len(h.custom_values),
            )
        )
        spans = [x for span in h.positive_spans + h.negative_spans for x in span]
        if spans:
            parts.append(struct.pack(f"<{len(spans)}i", *spans))
        floats = h.positive + h.negative + h.custom_values
        if floats:
            parts.append(struct.pack(f"<{len(floats)}d", *floats))
    return zlib.compress(b"".join(parts), 1)


def decode(data: bytes) -> list[tuple[int, Histogram]]:
    raw = zlib.decompress(data)
    out: list[tuple[int, Histogram]] = []
    pos = 0
    n = len(raw)
    while pos < n:
        ts, schema, flags, zt, zc, count, total, nps, nns, npos, nneg, ncv = _HEAD.unpack_from(raw, pos)
        pos += _HEAD.size
        nspan = 2 * (nps + nns)
        spans = struct.unpack_from(f"<{nspan}i", raw, pos) if nspan else ()
        pos += 4 * nspan
        nf = npos + nneg + ncv
        floats = struct.unpack_from(f"<{nf}d", raw, pos) if nf else ()
        pos += 8 * nf
        pairs = tuple(zip(spans[0::2], spans[1::2], strict=True))
        out.append(
            (
                ts,
                Histogram(
                    schema,
                    zt,
                    zc,
                    count,
                    total,
                    pairs[:nps],
                    floats[:npos],
                    pairs[nps:],
                    floats[npos : npos + nneg],
                    floats[npos + nneg :],
                    flags >> 1,
                    bool(flags & 1),
                ),
            )
        )
    return out


def rows_to_write(
    batches: Sequence[WriteBatch], per_batch_ids: list[list[int]]
) -> list[tuple[int, int, int, int, bytes]]:
    """(series_id, min_ts, max_ts, count, data) per series of the batches' histogram samples,
    each series' samples sorted by time, the last written kept for a repeated timestamp."""
    by_series: dict[int, dict[int, Histogram]] = {}
    for b, ids in zip(batches, per_batch_ids, strict=True):
        for ref, ts, h in zip(b.h_refs, b.h_ts_ms, b.h_values, strict=True):
            by_series.setdefault(ids[ref], {})[ts] = h
    rows = []
    for sid, samples in by_series.items():
        items = sorted(samples.items())
        rows.append((sid, items[0][0], items[-1][0], len(items), encode(items)))
    return rows


def exemplars_to_write(
    batches: Sequence[WriteBatch], per_batch_ids: list[list[int]]
) -> list[tuple[int, int, float, str]]:
    """(series_id, ts, value, labels JSON) of the batches' exemplars, each distinct once."""
    out: dict[tuple[int, int, str], float] = {}
    for b, ids in zip(batches, per_batch_ids, strict=True):
        for ref, e in zip(b.ex_refs, b.exemplars, strict=True):
            out[(ids[ref], e.ts_ms, encode_exemplar_labels(e.labels))] = e.value
    return [(sid, ts, value, labels) for (sid, ts, labels), value in out.items()]


def encode_exemplar_labels(labels: tuple[tuple[str, str], ...]) -> str:
    return orjson.dumps(dict(labels)).decode()


def decode_exemplar_labels(raw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(orjson.loads(raw).items()))


def merge_rows(rows: Sequence[tuple[bytes]], start_ms: int, end_ms: int) -> tuple[list[int], list[Histogram]]:
    """The samples in [start_ms, end_ms] of a series' rows (in write order; later rows win)."""
    merged: dict[int, Histogram] = {}
    for (data,) in rows:
        for ts, h in decode(bytes(data)):
            if start_ms <= ts <= end_ms:
                merged[ts] = h
    items = sorted(merged.items())
    return [t for t, _ in items], [h for _, h in items]
