"""Native histogram samples and exemplars: the backend-neutral part of their storage.

Histogram samples are kept apart from the float samples, one row per series per flush holding
that flush's samples of the series in a compact binary encoding (`encode`/`decode`: a fixed
header per sample, spans as int32 pairs, counts as float64, the whole row zlib-compressed).
Reading a range merges the rows that overlap it, the row written last winning on an equal
timestamp (a retried batch never doubles a sample).

Exemplars are kept per series, at most EXEMPLARS_PER_SERIES (the newest), identical
(series, timestamp, labels) once.

`HistogramStore`, over either backend's `Executor`, is what the query engine and the API use; the
backends' write transactions run the statements of its `writes()` for the batches' resolved
series ids.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from rtpm.model.histograms import Exemplar, Histogram
from rtpm.model.labels import Labels, Matcher
from rtpm.model.samples import WriteBatch
from rtpm.storage._querier import too_many_samples
from rtpm.storage.sql import Executor, FindSeries, Row

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


def _bits(value: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", value))[0])


def _from_bits(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<q", bits))[0])


# The exemplar value's column and its encoding: SQLite keeps no NaN in a REAL column (it reads
# back NULL), so its exemplars keep the value's bits.
_EXEMPLAR_VALUE: dict[str, tuple[str, Callable[[float], Any], Callable[[Any], float]]] = {
    "postgres": ("value", float, float),
    "sqlite": ("value_bits", _bits, _from_bits),
}


class HistogramStore:
    def __init__(self, sql: Executor, find_series: FindSeries) -> None:
        self._sql = sql
        self._find = find_series
        d = sql.dialect
        col, self._to_db, self._from_db = _EXEMPLAR_VALUE[d.name]
        in_ids = d.in_ids("series_id", "$1")
        self._insert_samples = d.sql(
            "INSERT INTO histogram_samples (series_id, min_ts, max_ts, count, data) VALUES ($1, $2, $3, $4, $5)"
        )
        self._insert_exemplars = d.sql(
            f"INSERT INTO exemplars (series_id, ts, {col}, labels) VALUES ($1, $2, $3, $4) "
            f"ON CONFLICT (series_id, ts, labels) DO UPDATE SET {col} = excluded.{col}"
        )
        # each series keeps its newest EXEMPLARS_PER_SERIES
        self._trim_exemplars = d.sql(
            f"DELETE FROM exemplars WHERE {in_ids} AND (series_id, ts, labels) IN (SELECT series_id, ts, labels "
            "FROM (SELECT series_id, ts, labels, row_number() OVER (PARTITION BY series_id ORDER BY ts DESC) AS n "
            f"FROM exemplars WHERE {in_ids}) AS ranked WHERE ranked.n > $2)"
        )
        self._select_samples = f"SELECT series_id, data FROM histogram_samples WHERE {in_ids} AND max_ts >= $2 AND min_ts <= $3 ORDER BY id"
        self._select_series = (
            f"SELECT DISTINCT series_id FROM histogram_samples WHERE {in_ids} AND max_ts >= $2 AND min_ts <= $3"
        )
        self._select_exemplars = (
            f"SELECT series_id, ts, {col}, labels FROM exemplars WHERE {in_ids} AND ts BETWEEN $2 AND $3 ORDER BY ts"
        )

    def writes(
        self, batches: Sequence[WriteBatch], per_batch_ids: list[list[int]]
    ) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """The statements (in the executor's dialect) and their rows, each for one `executemany`,
        that write the batches' histogram samples and exemplars. The backend runs them inside its
        write transaction, on its own connection."""
        out: list[tuple[str, list[tuple[Any, ...]]]] = []
        if any(b.h_ts_ms for b in batches):
            out.append((self._insert_samples, list(rows_to_write(batches, per_batch_ids))))
        if any(b.exemplars for b in batches):
            rows = exemplars_to_write(batches, per_batch_ids)
            out.append((self._insert_exemplars, [(sid, ts, self._to_db(v), lb) for sid, ts, v, lb in rows]))
            ids = self._sql.dialect.ids(sorted({r[0] for r in rows}))
            out.append((self._trim_exemplars, [(ids, EXEMPLARS_PER_SERIES)]))
        return out

    async def _matching(
        self, sql: str, tenant: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int, *, samples: bool
    ) -> tuple[list[tuple[int, Labels]], list[Row]]:
        """The matching series and the rows of `sql` for them ($1 their ids, $2 and $3 the range);
        nothing when none match, or (`samples`) when no histogram sample is stored at all: the
        usual case without native histograms, answered without a series lookup."""
        if samples and await self._sql.fetchval("SELECT 1 FROM histogram_samples LIMIT 1") is None:
            return [], []
        found = await self._find(tenant, matchers)
        if not found:
            return [], []
        return found, await self._sql.fetch(sql, self._sql.dialect.ids(sid for sid, _ in found), start_ms, end_ms)

    async def select(
        self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher], *, max_samples: int | None = None
    ) -> list[HistogramSeries]:
        """Histogram samples in [start_ms, end_ms] of the series matching every matcher."""
        found, rows = await self._matching(self._select_samples, tenant, matchers, start_ms, end_ms, samples=True)
        per: dict[int, list[tuple[bytes]]] = {}
        for r in rows:
            per.setdefault(r[0], []).append((r[1],))
        out = []
        total = 0
        for sid, labels in found:
            got = per.get(sid)
            if not got:
                continue
            ts, values = merge_rows(got, start_ms, end_ms)
            total += len(ts)
            if max_samples is not None and total > max_samples:
                raise too_many_samples(max_samples)
            if ts:
                out.append(HistogramSeries(labels, ts, values))
        return out

    async def exemplars(
        self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher]
    ) -> list[SeriesExemplars]:
        """Exemplars in [start_ms, end_ms] of the matching series, oldest first."""
        found, rows = await self._matching(self._select_exemplars, tenant, matchers, start_ms, end_ms, samples=False)
        per: dict[int, list[Exemplar]] = {}
        for r in rows:
            per.setdefault(r[0], []).append(Exemplar(decode_exemplar_labels(r[3]), self._from_db(r[2]), r[1]))
        return [SeriesExemplars(labels, per[sid]) for sid, labels in found if sid in per]

    async def series(self, tenant: str, start_ms: int, end_ms: int, matchers: Sequence[Matcher]) -> list[Labels]:
        """Label sets of the matching series with histogram samples in [start_ms, end_ms]."""
        found, rows = await self._matching(self._select_series, tenant, matchers, start_ms, end_ms, samples=True)
        have = {r[0] for r in rows}
        return [labels for sid, labels in found if sid in have]
