"""Remote read's wire pieces: the XOR chunk encoding (a vector worked out by hand from the format,
and round trips of random series with every delta-of-delta bucket and NaN payloads), the framing
with CRC-32C, the column-wise SAMPLES encoding (read back by the protobuf runtime), request
parsing and response negotiation."""

from __future__ import annotations

import math

import crc32c
import numpy as np
import pytest

from rtpm.errors import BadDataError
from rtpm.ingest.proto import ReadRequest, ReadResponse
from rtpm.model.labels import MatchType
from rtpm.model.samples import STALE_NAN, Series
from rtpm.query import remote_read as rr
from rtpm.query.xor_chunk import decode_xor, encode_xor, float_bits


def test_xor_chunk_of_three_samples_is_the_documented_layout() -> None:
    got = encode_xor([1000, 2000, 3000], [float_bits(1.0), float_bits(1.0), float_bits(2.0)])
    expected = bytes.fromhex(
        "0003"  # 3 samples
        "d00f"  # zig-zag varint of 1000 (2000)
        "3ff0000000000000"  # 1.0
        "e807"  # uvarint of the first delta (1000)
        # then bits: 0 (same value), 0 (dod 0), 11 (new window), 00001 (1 leading zero),
        # 001011 (11 significant bits), 11111111111 (1.0 XOR 2.0 >> 52), padded with zeros
        "3097ffc0"
    )
    assert got == expected
    assert decode_xor(got) == ([1000, 2000, 3000], [float_bits(1.0), float_bits(1.0), float_bits(2.0)])


def test_empty_and_single_sample_chunks() -> None:
    assert encode_xor([], []) == b"\x00\x00"
    assert decode_xor(b"\x00\x00") == ([], [])
    one = encode_xor([-5], [float_bits(-0.0)])
    assert one[:2] == b"\x00\x01" and decode_xor(one) == ([-5], [float_bits(-0.0)])


def test_xor_round_trips_random_series() -> None:
    rng = np.random.default_rng(11)
    steps = [0, 1, 15_000, 8191, -8190, 8193, 65_536, -65_535, 524_288, 600_000, 2**40]
    for _ in range(400):
        n = int(rng.integers(1, 121))
        deltas = [1]
        for _ in range(n - 1):
            deltas.append(max(0, deltas[-1] + int(rng.choice(steps))))
        ts = np.cumsum(np.array(deltas, dtype=np.int64)) + int(rng.integers(-(2**41), 2**41))
        pool = [0.0, -0.0, 1.0, 1.5, math.inf, -math.inf, math.nan, STALE_NAN, 5e-324, 1e300]
        values = np.where(rng.random(n) < 0.5, rng.choice(pool, n), np.cumsum(rng.random(n) * 10))
        bits = values.view(np.uint64).tolist()
        if rng.random() < 0.3:
            bits[-1] = 0x7FF0000000000002  # Prometheus's staleness marker
        got_ts, got_bits = decode_xor(encode_xor(ts.tolist(), bits))
        assert got_ts == ts.tolist()
        assert got_bits == bits


def test_xor_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="increase"):
        encode_xor([2, 1], [0, 0])
    with pytest.raises(BadDataError):
        decode_xor(encode_xor([1, 2, 3], [1, 2, 3])[:-2])


def test_frames_carry_a_castagnoli_checksum() -> None:
    msg = b"hello remote read" * 20
    f = rr.frame(msg)
    assert f[:2] == bytes([len(msg) & 0x7F | 0x80, len(msg) >> 7])  # uvarint length
    assert f[2:6] == crc32c.crc32c(msg).to_bytes(4, "big")
    assert crc32c.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert rr.read_frames(f + rr.frame(b"x")) == [msg, b"x"]
    corrupted = f[:10] + bytes([f[10] ^ 1]) + f[11:]
    with pytest.raises(BadDataError, match="checksum"):
        rr.read_frames(corrupted)


def test_samples_response_is_read_back_by_protobuf() -> None:
    labels = (("__name__", "up"), ("job", "a"))
    ts = np.array([-(2**62), -1, 0, 1, 127, 128, 2**35, 1_700_000_000_123], dtype=np.int64)
    values = np.array([0.0, -1.5, math.nan, math.inf, 2.0, 3.0, 1e-300, STALE_NAN])
    data = rr.encode_read_response([[Series(labels, ts, values)], []])
    resp = ReadResponse.FromString(data)
    assert len(resp.results) == 2 and len(resp.results[1].timeseries) == 0
    (series,) = resp.results[0].timeseries
    assert [(lb.name, lb.value) for lb in series.labels] == list(labels)
    assert [s.timestamp for s in series.samples] == ts.tolist()
    got = np.array([s.value for s in series.samples])
    assert got.view(np.uint64).tolist() == values.view(np.uint64).tolist()


def _request(*queries: tuple[int, int, list[tuple[int, str, str]]], accepted: list[int] | None = None) -> bytes:
    req = ReadRequest()
    for start, end, matchers in queries:
        q = req.queries.add(start_timestamp_ms=start, end_timestamp_ms=end)
        for kind, name, value in matchers:
            q.matchers.add(type=kind, name=name, value=value)
        q.hints.step_ms = 15_000  # ignored
    req.accepted_response_types.extend(accepted or [])
    return bytes(req.SerializeToString())


def test_requests_parse_into_matchers_and_a_response_type() -> None:
    queries, kind = rr.parse_read_request(_request((1, 2, [(0, "__name__", "up"), (2, "job", "a|b"), (3, "x", "")])))
    assert kind is rr.ResponseType.SAMPLES
    assert [(m.name, m.type, m.value) for m in queries[0].matchers] == [
        ("__name__", MatchType.EQUAL, "up"),
        ("job", MatchType.REGEX, "a|b"),
        ("x", MatchType.NOT_REGEX, ""),
    ]
    assert queries[0].matchers[1].matches("b") and not queries[0].matchers[1].matches("ab")  # anchored
    _, kind = rr.parse_read_request(_request((1, 2, [(0, "a", "b")]), accepted=[1, 0]))
    assert kind is rr.ResponseType.STREAMED_XOR_CHUNKS
    _, kind = rr.parse_read_request(_request((1, 2, [(0, "a", "b")]), accepted=[7, 0]))
    assert kind is rr.ResponseType.SAMPLES


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_request((1, 2, [(2, "job", "(")])), r"queries\[0\]\.matchers\[0\]: invalid regular expression"),
        (_request((1, 2, [(0, "a", "b")]), (1, 2, [(1, "job", "x")])), r"queries\[1\]: needs at least one matcher"),
        (_request((1, 2, [(0, "", "b")])), r"queries\[0\]\.matchers\[0\]: empty label name"),
        (_request((1, 2, [(0, "a", "b")]), accepted=[5]), "none of the accepted response types"),
        (b"\xff\xff\xff", "not a valid remote read ReadRequest"),
    ],
)
def test_bad_requests_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(BadDataError, match=message):
        rr.parse_read_request(body)


def test_stream_splits_a_long_series_over_frames() -> None:
    from rtpm.ingest.proto import ChunkedReadResponse

    ts = np.arange(0, 1000 * 15_000, 15_000, dtype=np.int64)
    values = np.sin(np.arange(1000.0))
    series = [Series((("__name__", "a"),), ts, values), Series((("__name__", "b"),), ts[:5], values[:5])]
    frames = list(rr.stream_frames([series], max_frame_bytes=2000))
    messages = [ChunkedReadResponse.FromString(m) for m in rr.read_frames(b"".join(frames))]
    assert len(messages) > 3  # 9 chunks of ~1 KB for `a` cannot share one 2 KB frame
    got: dict[str, tuple[list[int], list[int]]] = {}
    for m in messages:
        (cs,) = m.chunked_series
        name = cs.labels[0].value
        for chunk in cs.chunks:
            assert chunk.type == 1  # XOR
            t, v = decode_xor(chunk.data)
            assert (chunk.min_time_ms, chunk.max_time_ms) == (t[0], t[-1])
            got.setdefault(name, ([], []))[0].extend(t)
            got[name][1].extend(v)
    assert [cs.labels[0].value for m in messages for cs in m.chunked_series] == ["a"] * (len(messages) - 1) + ["b"]
    assert got["a"] == (ts.tolist(), values.view(np.uint64).tolist())
    assert got["b"] == (ts[:5].tolist(), values[:5].view(np.uint64).tolist())
