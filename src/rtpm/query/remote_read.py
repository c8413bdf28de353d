"""Prometheus remote read (COMPAT.md section 3.3): a `ReadRequest` of queries (time range plus
label matchers; hints are ignored), answered from storage in one of two response types:

- SAMPLES: one `ReadResponse` (snappy-compressed by the HTTP layer) with the raw samples of every
  matching series per query, encoded here column-wise rather than message by message;
- STREAMED_XOR_CHUNKS: a stream of frames, each a `ChunkedReadResponse` holding (part of) one series
  as XOR chunks (`rtpm.query.xor_chunk`), framed as Prometheus's ChunkedWriter does: an unsigned
  varint of the message length, the big-endian CRC-32 (Castagnoli) of the message, the message.
  Series come sorted by labels; a series is split over several frames past `max_frame_bytes`.

The response type is the first one of `accepted_response_types` that RTPM implements (both are),
SAMPLES when the list is empty. Samples include staleness markers, as Prometheus's own read does.
Every query of one request shares one sample budget (`limits.max_query_samples`); past it the
request fails with LimitExceeded, nothing is sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum

import crc32c
import numpy as np
from google.protobuf.message import DecodeError

from rtpm.errors import BadDataError, LimitExceeded, TooManySamples
from rtpm.ingest.proto import ChunkedReadResponse, ReadRequest
from rtpm.ingest.remote_write import varint
from rtpm.model.labels import Labels, Matcher, MatchType
from rtpm.model.samples import Series
from rtpm.query.xor_chunk import MAX_SAMPLES_PER_CHUNK, encode_xor
from rtpm.storage.base import Storage

SAMPLES_CONTENT_TYPE = "application/x-protobuf"
STREAMED_CONTENT_TYPE = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
MAX_FRAME_BYTES = 1024 * 1024  # Prometheus's --storage.remote.read-max-bytes-in-frame default
XOR_ENCODING = 1  # prompb Chunk.Encoding.XOR

_MATCH_TYPES = {0: MatchType.EQUAL, 1: MatchType.NOT_EQUAL, 2: MatchType.REGEX, 3: MatchType.NOT_REGEX}


class ResponseType(IntEnum):
    SAMPLES = 0
    STREAMED_XOR_CHUNKS = 1


@dataclass(frozen=True, slots=True)
class ReadQuery:
    start_ms: int
    end_ms: int
    matchers: tuple[Matcher, ...]


def parse_read_request(data: bytes) -> tuple[list[ReadQuery], ResponseType]:
    """The queries of an (uncompressed) ReadRequest and the response type to answer with.
    BadDataError names the query and matcher at fault."""
    try:
        req = ReadRequest.FromString(data)
    except DecodeError as exc:
        raise BadDataError(f"body is not a valid remote read ReadRequest protobuf: {exc}") from None
    queries: list[ReadQuery] = []
    for i, q in enumerate(req.queries):
        matchers: list[Matcher] = []
        for j, m in enumerate(q.matchers):
            where = f"queries[{i}].matchers[{j}]"
            kind = _MATCH_TYPES.get(int(m.type))
            if kind is None:
                raise BadDataError(f"{where}: unknown matcher type {int(m.type)}")
            if not m.name:
                raise BadDataError(f"{where}: empty label name")
            try:
                matchers.append(Matcher(m.name, kind, m.value))
            except ValueError as exc:
                raise BadDataError(f"{where}: {exc}") from None
        if all(m.matches_empty() for m in matchers):
            raise BadDataError(f"queries[{i}]: needs at least one matcher that does not match the empty string")
        queries.append(ReadQuery(int(q.start_timestamp_ms), int(q.end_timestamp_ms), tuple(matchers)))
    return queries, negotiate([int(t) for t in req.accepted_response_types])


def negotiate(accepted: Sequence[int]) -> ResponseType:
    """The first accepted response type RTPM implements; SAMPLES when none is listed."""
    if not accepted:
        return ResponseType.SAMPLES
    for t in accepted:
        if t in (ResponseType.SAMPLES, ResponseType.STREAMED_XOR_CHUNKS):
            return ResponseType(t)
    raise BadDataError(
        f"none of the accepted response types {list(accepted)} is supported; "
        "supported: 0 (SAMPLES), 1 (STREAMED_XOR_CHUNKS)"
    )


async def read(storage: Storage, tenant: str, queries: Sequence[ReadQuery], *, max_samples: int) -> list[list[Series]]:
    """The matching series of each query, sorted by labels, within one sample budget."""
    left = max_samples
    out: list[list[Series]] = []
    for i, q in enumerate(queries):
        if q.end_ms < q.start_ms:
            out.append([])
            continue
        querier = storage.querier(tenant, q.start_ms, q.end_ms)
        try:
            found = await querier.select(q.matchers, max_samples=left)
        except TooManySamples:
            raise _over_budget(max_samples, i) from None
        left -= sum(len(s.ts_ms) for s in found)
        if left < 0:
            raise _over_budget(max_samples, i)
        out.append(sorted(found, key=lambda s: s.labels))
    return out


def _over_budget(limit: int, index: int) -> LimitExceeded:
    return LimitExceeded(
        f"remote read: exceeded sample limit ({limit}, limits.max_query_samples) at queries[{index}]; "
        "narrow the time range or the matchers"
    )


# ---- SAMPLES --------------------------------------------------------------------------------


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + varint(len(payload)) + payload


def _labels_fields(labels: Labels) -> bytes:
    """The Label fields (1) of a TimeSeries or ChunkedSeries."""
    return b"".join(_field(0x0A, _field(0x0A, k.encode()) + _field(0x12, v.encode())) for k, v in labels)


_VARINT_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)  # the 10 groups of 7 bits of a uint64


def samples_fields(ts_ms: np.ndarray, values: np.ndarray) -> bytes:
    """The Sample fields (2) of a TimeSeries, all at once: per sample `0x12 len 0x09 <double LE>
    0x10 <varint ts>`. Each sample is laid out in a fixed-width row; the rows' used bytes are
    then taken in order."""
    n = len(ts_ms)
    if n == 0:
        return b""
    u = np.ascontiguousarray(ts_ms, dtype=np.int64).view(np.uint64)
    groups = ((u[:, None] >> _VARINT_SHIFTS[None, :]) & np.uint64(0x7F)).astype(np.uint8)  # (n, 10)
    nbytes = 1 + ((u[:, None] >> _VARINT_SHIFTS[None, 1:]) != 0).sum(axis=1)  # varint length, 1..10
    cont = np.arange(10)[None, :] < (nbytes - 1)[:, None]
    groups |= cont.astype(np.uint8) << 7
    rows = np.empty((n, 22), dtype=np.uint8)
    rows[:, 0] = 0x12
    rows[:, 1] = 10 + nbytes  # 0x09 + 8 bytes + 0x10 + varint
    rows[:, 2] = 0x09
    rows[:, 3:11] = np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
    rows[:, 11] = 0x10
    rows[:, 12:22] = groups
    used = np.arange(22)[None, :] < (12 + nbytes)[:, None]
    return rows[used].tobytes()


def encode_read_response(results: Sequence[Sequence[Series]]) -> bytes:
    """The ReadResponse protobuf (uncompressed) of each query's series."""
    out = bytearray()
    for series_list in results:
        result = bytearray()
        for s in series_list:
            result += _field(0x0A, _labels_fields(s.labels) + samples_fields(s.ts_ms, s.values))
        out += _field(0x0A, bytes(result))
    return bytes(out)


# ---- STREAMED_XOR_CHUNKS --------------------------------------------------------------------


def frame(message: bytes) -> bytes:
    """One frame of the stream: uvarint length, big-endian CRC-32C of the message, the message."""
    return varint(len(message)) + crc32c.crc32c(message).to_bytes(4, "big") + message


def read_frames(data: bytes) -> list[bytes]:
    """The messages of a stream of frames, checksums verified (the inverse of `frame`)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = shift = 0
        while True:
            if pos >= len(data):
                raise BadDataError("stream ends inside a frame length")
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if pos + 4 + size > len(data):
            raise BadDataError("stream ends inside a frame")
        crc = int.from_bytes(data[pos : pos + 4], "big")
        message = data[pos + 4 : pos + 4 + size]
        if crc32c.crc32c(message) != crc:
            raise BadDataError("frame checksum mismatch")
        out.append(message)
        pos += 4 + size
    return out


def _chunks(s: Series) -> Iterator[tuple[int, int, bytes]]:
    """(min_ts, max_ts, XOR chunk) of a series, MAX_SAMPLES_PER_CHUNK samples each."""
    ts = s.ts_ms.tolist()
    bits = np.ascontiguousarray(s.values, dtype=np.float64).view(np.uint64).tolist()
    for lo in range(0, len(ts), MAX_SAMPLES_PER_CHUNK):
        hi = min(lo + MAX_SAMPLES_PER_CHUNK, len(ts))
        yield ts[lo], ts[hi - 1], encode_xor(ts[lo:hi], bits[lo:hi])


def stream_frames(results: Sequence[Sequence[Series]], *, max_frame_bytes: int = MAX_FRAME_BYTES) -> Iterator[bytes]:
    """The frames of a STREAMED_XOR_CHUNKS answer: one series per frame, its chunks split over
    several frames once a frame's chunks pass `max_frame_bytes` (less the labels)."""
    for index, series_list in enumerate(results):
        for s in series_list:
            label_bytes = len(_labels_fields(s.labels))
            pending: list[tuple[int, int, bytes]] = []
            left = max_frame_bytes - label_bytes
            chunks = _chunks(s)
            chunk = next(chunks, None)
            while chunk is not None:
                pending.append(chunk)
                left -= len(chunk[2]) + 16  # the data plus the Chunk message's other fields, roughly
                chunk = next(chunks, None)
                if left > 0 and chunk is not None:
                    continue
                yield frame(_chunked_response(index, s.labels, pending))
                pending = []
                left = max_frame_bytes - label_bytes


def _chunked_response(index: int, labels: Labels, chunks: list[tuple[int, int, bytes]]) -> bytes:
    msg = ChunkedReadResponse(query_index=index)
    series = msg.chunked_series.add()
    for k, v in labels:
        series.labels.add(name=k, value=v)
    for lo, hi, data in chunks:
        series.chunks.add(min_time_ms=lo, max_time_ms=hi, type=XOR_ENCODING, data=data)
    return bytes(msg.SerializeToString())
