"""Write-ahead log records: all samples of one group commit as three compressed columns.

A record is one row of the `wal_records` table (migration 0006), in the same database as the
series, chunks and everything else: PostgreSQL stays the one source of truth and replicas of
`rtpm serve` stay stateless; the embedded SQLite file needs nothing new. The payload holds the
flush's series refs (the series table's ids, committed in or before the record's transaction),
timestamps and values, sorted by (series, ts) with one value per key, each column compressed
with pcodec (the codec of the chunks), so a record costs a few bytes per sample, not a row.

A tombstone is a record too (its own magic): the deletion of the samples of some series in a
time range, applied in id order like the rest, so that a restart or another process tailing the
log does not bring deleted samples back, and a sample written after the deletion stays."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pcodec
from pcodec import standalone

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_MAGIC = b"RW1"
_HEADER = struct.Struct("<3sIII")  # magic, sample count, byte lengths of the series and ts columns
_TOMB_MAGIC = b"RT1"
_TOMB_HEADER = struct.Struct("<3sIqq")  # magic, series count, first and last ms of the range (inclusive)
_CONFIG = pcodec.ChunkConfig()


class CorruptRecord(ValueError):
    """A payload that is not a WAL record of this format."""


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record: its id (commit order) and columns sorted by (series, ts)."""

    id: int
    series_ids: I64
    ts_ms: I64
    values: F64

    def __len__(self) -> int:
        return len(self.ts_ms)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The deletion of the samples of `series_ids` with start_ms <= ts <= end_ms."""

    id: int
    series_ids: I64
    start_ms: int
    end_ms: int


Entry = Record | Tombstone


def encode_tombstone(series_ids: I64, start_ms: int, end_ms: int) -> bytes:
    ids = standalone.simple_compress(np.ascontiguousarray(series_ids, dtype=np.int64), _CONFIG)
    return _TOMB_HEADER.pack(_TOMB_MAGIC, len(series_ids), start_ms, end_ms) + ids


def encode(series_ids: I64, ts_ms: I64, values: F64) -> bytes:
    """Compress a non-empty flush (columns sorted by (series, ts), keys distinct). Bit-exact:
    NaN payloads such as staleness markers survive."""
    n = len(ts_ms)
    if n == 0:
        raise ValueError("a WAL record holds at least one sample")
    sids = standalone.simple_compress(np.ascontiguousarray(series_ids, dtype=np.int64), _CONFIG)
    ts = standalone.simple_compress(np.ascontiguousarray(ts_ms, dtype=np.int64), _CONFIG)
    vals = standalone.simple_compress(np.ascontiguousarray(values, dtype=np.float64), _CONFIG)
    return _HEADER.pack(_MAGIC, n, len(sids), len(ts)) + sids + ts + vals


def decode(record_id: int, payload: bytes) -> Entry:
    if payload[:3] == _TOMB_MAGIC and len(payload) >= _TOMB_HEADER.size:
        _, n, start_ms, end_ms = _TOMB_HEADER.unpack_from(payload)
        ids = standalone.simple_decompress(bytes(payload[_TOMB_HEADER.size :])) if n else np.empty(0, np.int64)
        if ids is None or len(ids) != n:
            raise CorruptRecord(f"WAL record {record_id}: a tombstone without its {n} series")
        return Tombstone(record_id, ids.astype(np.int64, copy=False), start_ms, end_ms)
    if len(payload) < _HEADER.size:
        raise CorruptRecord(f"WAL record {record_id}: {len(payload)} bytes, shorter than its header")
    magic, n, ls, lt = _HEADER.unpack_from(payload)
    if magic != _MAGIC:
        raise CorruptRecord(f"WAL record {record_id}: unknown format {magic!r}")
    body = memoryview(payload)[_HEADER.size :]
    parts = (bytes(body[:ls]), bytes(body[ls : ls + lt]), bytes(body[ls + lt :]))
    cols = [standalone.simple_decompress(p) for p in parts]
    if any(c is None or len(c) != n for c in cols):
        raise CorruptRecord(f"WAL record {record_id}: columns do not hold {n} samples")
    sids, ts, vals = cols
    assert sids is not None and ts is not None and vals is not None
    return Record(
        record_id,
        sids.astype(np.int64, copy=False),
        ts.astype(np.int64, copy=False),
        vals.astype(np.float64, copy=False),
    )
