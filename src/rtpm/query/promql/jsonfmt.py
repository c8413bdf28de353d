"""Render engine results as the `data` of Prometheus' query API, byte for byte: values as quoted
Go-formatted floats, timestamps as seconds with a millisecond fraction, matrices sorted by labels."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import orjson

from rtpm.model.histograms import Histogram
from rtpm.model.labels import Labels
from rtpm.query.promql.engine import Result
from rtpm.query.promql.histograms import point_json, split_row
from rtpm.query.promql.values import RangeVec, Scalar, String, Vector, format_float, format_ts


def _metric(labels: Labels) -> bytes:
    return orjson.dumps(dict(labels))


def _points(ts: Iterable[int], vals: Iterable[float]) -> bytes:
    return b",".join(f'[{format_ts(t)},"{format_float(v)}"]'.encode() for t, v in zip(ts, vals, strict=True))


def _matrix_rows(
    rows: list[tuple[Labels, list[int], list[float]]],
    limit: int | None,
    hists: dict[Labels, tuple[list[int], list[Histogram]]] | None = None,
) -> tuple[bytes, bool]:
    rows.sort(key=lambda r: r[0])
    truncated = limit is not None and limit > 0 and len(rows) > limit
    if truncated:
        rows = rows[:limit]
    if hists:
        parts = []
        for lb, ts, vs in rows:
            part = b'{"metric":' + _metric(lb)
            if ts:
                part += b',"values":[' + _points(ts, vs) + b"]"
            h = hists.get(lb)
            if h and h[0]:
                part += b',"histograms":[' + b",".join(point_json(t, x) for t, x in zip(*h, strict=True)) + b"]"
            parts.append(part + b"}")
        return b"[" + b",".join(parts) + b"]", truncated
    parts = [b'{"metric":' + _metric(lb) + b',"values":[' + _points(ts, vs) + b"]}" for lb, ts, vs in rows]
    return b"[" + b",".join(parts) + b"]", truncated


def render(result: Result, *, as_range: bool, limit: int | None = None) -> tuple[bytes, bool]:
    """The JSON `data` object and whether `limit` truncated the result."""
    v = result.value
    steps = result.steps
    if as_range:
        if isinstance(v, Scalar):
            v = Vector([()], v.values[None, :], np.ones((1, len(steps)), dtype=bool))
        assert isinstance(v, Vector)
        rows = []
        hists: dict[Labels, tuple[list[int], list[Histogram]]] = {}
        for i, lb in enumerate(v.labels):
            p = v.present[i]
            if p.any():
                if v.hist is not None:
                    fts, fvs, hts, hvs = split_row(v, i, steps)
                    rows.append((lb, fts, fvs))
                    hists[lb] = (hts, hvs)
                else:
                    rows.append((lb, steps[p].tolist(), v.values[i][p].tolist()))
        body, truncated = _matrix_rows(rows, limit, hists)
        return b'{"resultType":"matrix","result":' + body + b"}", truncated
    t = int(steps[0])
    if isinstance(v, Scalar):
        return (
            f'{{"resultType":"scalar","result":[{format_ts(t)},"{format_float(float(v.values[0]))}"]}}'.encode(),
            False,
        )
    if isinstance(v, String):
        return b'{"resultType":"string","result":[' + format_ts(t).encode() + b"," + orjson.dumps(
            v.value
        ) + b"]}", False
    if isinstance(v, RangeVec):
        rows = []
        raw_hists: dict[Labels, tuple[list[int], list[Histogram]]] = {}
        for i, lb in enumerate(v.labels):
            lo, hi = int(v.lo[i, 0]), int(v.hi[i, 0])
            if hi > lo:
                if v.hvals is not None:
                    hs = v.hvals[lo:hi]
                    ts_all = v.ts[lo:hi].tolist()
                    vals_all = v.vals[lo:hi].tolist()
                    rows.append(
                        (
                            lb,
                            [t for t, x in zip(ts_all, hs, strict=True) if x is None],
                            [f for f, x in zip(vals_all, hs, strict=True) if x is None],
                        )
                    )
                    raw_hists[lb] = (
                        [t for t, x in zip(ts_all, hs, strict=True) if x is not None],
                        [x for x in hs if x is not None],
                    )
                else:
                    rows.append((lb, v.ts[lo:hi].tolist(), v.vals[lo:hi].tolist()))
        body, truncated = _matrix_rows(rows, limit, raw_hists)
        return b'{"resultType":"matrix","result":' + body + b"}", truncated
    assert isinstance(v, Vector)
    order = v.order if v.order is not None else range(len(v.labels))
    ts = format_ts(t)
    parts = []
    for i in order:
        if v.present[i, 0] and v.hist is not None and v.hist[i, 0] is not None:
            parts.append(b'{"metric":' + _metric(v.labels[i]) + b',"histogram":' + point_json(t, v.hist[i, 0]) + b"}")
        elif v.present[i, 0]:
            parts.append(
                b'{"metric":'
                + _metric(v.labels[i])
                + f',"value":[{ts},"{format_float(float(v.values[i, 0]))}"]}}'.encode()
            )
    truncated = limit is not None and limit > 0 and len(parts) > limit
    if truncated:
        parts = parts[:limit]
    return b'{"resultType":"vector","result":[' + b",".join(parts) + b"]}", truncated
