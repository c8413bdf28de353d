"""Prometheus's XOR chunk encoding (Gorilla compression as its `chunkenc` defines it), the chunk
format of remote read's STREAMED_XOR_CHUNKS responses.

Layout of one chunk: a 2-byte big-endian sample count, then a bit stream (most significant bit
first, the last byte zero-padded):

- sample 0: timestamp as a signed (zig-zag) varint, value as its 64 raw bits;
- sample 1: timestamp delta as an unsigned varint, value XOR-encoded against sample 0;
- sample n >= 2: delta-of-delta of the timestamp in one of five buckets (`0`; `10` + 14 bits;
  `110` + 17 bits; `1110` + 20 bits; `1111` + 64 bits, two's complement), then the value
  XOR-encoded against the previous value.

The value XOR: `0` when equal; else `1`, then either `0` and the significant bits inside the
previous leading/trailing-zero window (when the new XOR fits in it), or `1`, 5 bits of leading
zeros (at most 31), 6 bits of significant-bit count (64 written as 0) and the significant bits.
The varints of samples 0 and 1 are written as whole bytes at the current bit position.

`encode_xor` and `decode_xor` are exact inverses, bit patterns of NaN (staleness markers) kept.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from rtpm.errors import BadDataError
from rtpm.ingest.remote_write import varint

MAX_SAMPLES_PER_CHUNK = 120  # what Prometheus's head aims for; any count below 2**16 is valid

_U64 = (1 << 64) - 1
_DOUBLE = struct.Struct(">d")
_UINT64 = struct.Struct(">Q")


def float_bits(v: float) -> int:
    return int(_UINT64.unpack(_DOUBLE.pack(v))[0])


def bits_float(b: int) -> float:
    return float(_DOUBLE.unpack(_UINT64.pack(b))[0])


def _varint(n: int) -> bytes:
    """Go's binary.PutVarint: zig-zag, then an unsigned varint."""
    return varint(((n << 1) ^ (n >> 63)) & _U64)


def _zeros(x: np.ndarray) -> tuple[list[int], list[int]]:
    """Leading zeros (capped at 31, as the format stores 5 bits) and trailing zeros of each XOR."""
    smear = x.copy()
    for shift in (1, 2, 4, 8, 16, 32):
        smear |= smear >> np.uint64(shift)
    leading = np.minimum(64 - np.bitwise_count(smear).astype(np.int64), 31)
    lowest = x & (~x + np.uint64(1))
    trailing = np.bitwise_count(lowest - np.uint64(1)).astype(np.int64)  # 64 for x == 0 (unused)
    return leading.tolist(), trailing.tolist()


def encode_xor(ts_ms: Sequence[int], value_bits: Sequence[int]) -> bytes:
    """One XOR chunk of samples in increasing timestamp order; values given as their IEEE-754 bit
    patterns (`numpy_array.view(np.uint64).tolist()`), so NaN payloads survive. The XORs and their
    zero counts are computed column-wise; the loop only decides and writes bits."""
    n = len(ts_ms)
    if n != len(value_bits):
        raise ValueError("timestamps and values differ in length")
    if n >= 1 << 16:
        raise ValueError(f"an XOR chunk holds at most 65535 samples, got {n}")
    if n == 0:
        return b"\x00\x00"
    ts = [int(t) for t in ts_ms]
    bits = np.array(value_bits, dtype=np.uint64)
    xors_np = bits[1:] ^ bits[:-1]
    xors = xors_np.tolist()
    leads, trails = _zeros(xors_np)
    out = bytearray()
    first = _varint(ts[0])
    acc = int.from_bytes(first, "big") << 64 | int(bits[0])
    nbits = 8 * len(first) + 64
    delta_prev = 0
    leading, trailing = 0xFF, 0  # 0xff: no window yet
    t_prev = ts[0]
    for i in range(1, n):
        t = ts[i]
        delta = t - t_prev
        if delta < 0:
            raise ValueError(f"timestamps must increase: {t} after {t_prev}")
        if i == 1:
            second = varint(delta)
            acc = acc << (8 * len(second)) | int.from_bytes(second, "big")
            nbits += 8 * len(second)
        else:
            dod = delta - delta_prev
            if dod == 0:
                acc <<= 1
                nbits += 1
            elif -8191 <= dod <= 8192:  # the buckets of 14, 17, 20 and 64 bits
                acc = acc << 16 | 0b10 << 14 | (dod & 0x3FFF)
                nbits += 16
            elif -65535 <= dod <= 65536:
                acc = acc << 20 | 0b110 << 17 | (dod & 0x1FFFF)
                nbits += 20
            elif -524287 <= dod <= 524288:
                acc = acc << 24 | 0b1110 << 20 | (dod & 0xFFFFF)
                nbits += 24
            else:
                acc = acc << 68 | 0b1111 << 64 | (dod & _U64)
                nbits += 68
        x = xors[i - 1]
        if x == 0:
            acc <<= 1
            nbits += 1
        else:
            lead, trail = leads[i - 1], trails[i - 1]
            if leading != 0xFF and lead >= leading and trail >= trailing:
                width = 64 - leading - trailing
                acc = acc << (2 + width) | 0b10 << width | x >> trailing
                nbits += 2 + width
            else:
                leading, trailing = lead, trail
                width = 64 - lead - trail
                # 11, 5 bits of leading zeros, 6 bits of width (64 written as 0), the bits
                acc = acc << (13 + width) | (0b11 << 11 | lead << 6 | (width & 0x3F)) << width | x >> trail
                nbits += 13 + width
        t_prev, delta_prev = t, delta
        if nbits >= 1024:  # move whole bytes out so the shifts stay short
            keep = nbits & 7
            out += (acc >> keep).to_bytes(nbits >> 3, "big")
            acc &= (1 << keep) - 1
            nbits = keep
    pad = -nbits % 8
    if nbits:
        out += (acc << pad).to_bytes((nbits + pad) // 8, "big")
    return n.to_bytes(2, "big") + bytes(out)


class _BitReader:
    __slots__ = ("acc", "pos", "total")

    def __init__(self, data: bytes) -> None:
        self.acc = int.from_bytes(data, "big")
        self.total = len(data) * 8
        self.pos = 0

    def read(self, nbits: int) -> int:
        if self.pos + nbits > self.total:
            raise BadDataError("XOR chunk ends before its last sample")
        self.pos += nbits
        return (self.acc >> (self.total - self.pos)) & ((1 << nbits) - 1)

    def uvarint(self) -> int:
        out = shift = 0
        for _ in range(10):
            byte = self.read(8)
            out |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return out
            shift += 7
        raise BadDataError("XOR chunk has a varint longer than 10 bytes")


def decode_xor(data: bytes) -> tuple[list[int], list[int]]:
    """The samples of one XOR chunk: (timestamps in ms, value bit patterns)."""
    if len(data) < 2:
        raise BadDataError("XOR chunk shorter than its 2-byte header")
    n = int.from_bytes(data[:2], "big")
    r = _BitReader(data[2:])
    ts: list[int] = []
    vs: list[int] = []
    if n == 0:
        return ts, vs
    z = r.uvarint()
    t = (z >> 1) ^ -(z & 1)
    v = r.read(64)
    ts.append(t)
    vs.append(v)
    delta = 0
    leading = trailing = 0
    for i in range(1, n):
        if i == 1:
            delta = r.uvarint()
        else:
            prefix = 0
            for _ in range(4):
                bit = r.read(1)
                prefix = prefix << 1 | bit
                if not bit:
                    break
            if prefix == 0b1111:
                dod = r.read(64)
                dod = dod - (1 << 64) if dod >> 63 else dod
            elif prefix:
                nbits = {0b10: 14, 0b110: 17, 0b1110: 20}[prefix]
                dod = r.read(nbits)
                if dod > 1 << (nbits - 1):
                    dod -= 1 << nbits
            else:
                dod = 0
            delta += dod
        t += delta
        if r.read(1):
            if r.read(1):
                leading = r.read(5)
                significant = r.read(6) or 64
                trailing = 64 - leading - significant
            v ^= r.read(64 - leading - trailing) << trailing
        ts.append(t)
        vs.append(v)
    return ts, vs
