"""Bounded decompression: every encoding stops at the limit instead of inflating a bomb."""

from __future__ import annotations

import gzip
import zlib

import cramjam
import pytest

from rtpm.errors import BadDataError, PayloadTooLarge, UnsupportedMediaType
from rtpm.ingest.compression import decompress, snappy_declared_length

DATA = b"line protocol or protobuf " * 100


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (None, DATA),
        ("identity", DATA),
        ("gzip", gzip.compress(DATA, mtime=0)),
        ("GZIP", gzip.compress(DATA, mtime=0)),
        ("deflate", zlib.compress(DATA)),
        ("snappy", bytes(cramjam.snappy.compress_raw(DATA))),
    ],
)
def test_round_trip(encoding: str | None, body: bytes) -> None:
    assert decompress(body, encoding, max_bytes=len(DATA)) == DATA


def test_gzip_members_are_concatenated() -> None:
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", max_bytes=10) == b"abcd"


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(b"\x00" * 50_000_000, mtime=0)),
        ("deflate", zlib.compress(b"\x00" * 50_000_000)),
        ("snappy", bytes(cramjam.snappy.compress_raw(b"\x00" * 5_000_000))),
        (None, b"x" * 1001),
    ],
)
def test_output_over_the_limit_is_refused(encoding: str | None, body: bytes) -> None:
    with pytest.raises(PayloadTooLarge):
        decompress(body, encoding, max_bytes=1000)


def test_gzip_bomb_split_across_members_is_refused() -> None:
    member = gzip.compress(b"\x00" * 600)
    with pytest.raises(PayloadTooLarge):
        decompress(member + member, "gzip", max_bytes=1000)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(DATA, mtime=0)[:-12]),
        ("gzip", b"not gzip at all"),
        ("deflate", b"\x00\x01\x02"),
        ("snappy", b""),
        ("snappy", b"\x05abc"),
        ("snappy", bytes(cramjam.snappy.compress(DATA))),
    ],
)
def test_corrupt_bodies_are_bad_data(encoding: str, body: bytes) -> None:
    with pytest.raises(BadDataError) as info:
        decompress(body, encoding, max_bytes=10_000)
    assert not isinstance(info.value, PayloadTooLarge)


def test_unknown_encoding() -> None:
    with pytest.raises(UnsupportedMediaType):
        decompress(b"x", "br", max_bytes=10)


def test_snappy_declared_length() -> None:
    assert snappy_declared_length(bytes(cramjam.snappy.compress_raw(b"x" * 300))) == 300
    with pytest.raises(BadDataError):
        snappy_declared_length(b"\xff\xff\xff\xff\xff\xff")
