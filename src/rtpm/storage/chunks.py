"""Compressed chunks: one series' samples in one time window, timestamps and values as columns
compressed with pcodec. Pure functions; the backends store the two blobs and read them back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pcodec
from pcodec import standalone

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_CONFIG = pcodec.ChunkConfig()
EMPTY_TS: I64 = np.empty(0, dtype=np.int64)
EMPTY_VALUES: F64 = np.empty(0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    min_ts: int
    max_ts: int
    count: int
    ts_data: bytes
    value_data: bytes


def encode(ts: I64, values: F64) -> EncodedChunk:
    """Compress sorted, distinct timestamps and their values (bit-exact: stale markers survive)."""
    return EncodedChunk(
        int(ts[0]),
        int(ts[-1]),
        len(ts),
        standalone.simple_compress(np.ascontiguousarray(ts, dtype=np.int64), _CONFIG),
        standalone.simple_compress(np.ascontiguousarray(values, dtype=np.float64), _CONFIG),
    )


def decode(ts_data: bytes, value_data: bytes) -> tuple[I64, F64]:
    ts = standalone.simple_decompress(ts_data)
    values = standalone.simple_decompress(value_data)
    if ts is None or values is None:
        return EMPTY_TS, EMPTY_VALUES
    return ts.astype(np.int64, copy=False), values.astype(np.float64, copy=False)


def merge(older: tuple[I64, F64], newer: tuple[I64, F64]) -> tuple[I64, F64]:
    """Union of two sorted sample sets; where both hold a timestamp, `newer` wins (last written)."""
    ots, ovals = older
    nts, nvals = newer
    if not len(ots):
        return nts, nvals
    if not len(nts):
        return ots, ovals
    if ots[-1] < nts[0]:  # the usual case: raw rows start after the chunks end
        return np.concatenate([ots, nts]), np.concatenate([ovals, nvals])
    keep = ~np.isin(ots, nts, assume_unique=True)
    ts = np.concatenate([ots[keep], nts])
    values = np.concatenate([ovals[keep], nvals])
    order = np.argsort(ts, kind="stable")
    return ts[order], values[order]


def assemble(
    chunks: list[tuple[bytes, bytes]], raw: tuple[I64, F64] | None, start_ms: int, end_ms: int
) -> tuple[I64, F64]:
    """One series' samples in [start_ms, end_ms] from its chunks (any order, disjoint windows) and
    its raw rows (sorted); raw rows are newer than chunks and win on equal timestamps."""
    parts_ts, parts_vals = [], []
    for ts_data, value_data in chunks:
        ts, vals = decode(ts_data, value_data)
        if not len(ts):
            continue
        if ts[0] < start_ms or ts[-1] > end_ms:  # only the chunks at the range's ends are cut
            lo = int(np.searchsorted(ts, start_ms, side="left"))
            hi = int(np.searchsorted(ts, end_ms, side="right"))
            ts, vals = ts[lo:hi], vals[lo:hi]
            if not len(ts):
                continue
        parts_ts.append(ts)
        parts_vals.append(vals)
    if parts_ts:
        in_order = all(a[-1] < b[0] for a, b in zip(parts_ts, parts_ts[1:], strict=False))
        cts = np.concatenate(parts_ts) if len(parts_ts) > 1 else parts_ts[0]
        cvals = np.concatenate(parts_vals) if len(parts_vals) > 1 else parts_vals[0]
        if not in_order:  # windows are disjoint, so only their order can be off
            order = np.argsort(cts, kind="stable")
            cts, cvals = cts[order], cvals[order]
        merged = (cts, cvals)
    else:
        merged = (EMPTY_TS, EMPTY_VALUES)
    if raw is not None:
        merged = merge(merged, raw)
    return merged
