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

from rtpm.errors import BadDataError

MAX_SAMPLES_PER_CHUNK = 120  # what Prometheus's head aims for; any count below 2**16 is valid

_U64 = (1 << 64) - 1
_DOUBLE = struct.Struct(">d")
_UINT64 = struct.Struct(">Q")

# (prefix, prefix bits, payload bits) of the delta-of-delta buckets, smallest first
_DOD_BUCKETS = ((0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20))


def float_bits(v: float) -> int:
    return int(_UINT64.unpack(_DOUBLE.pack(v))[0])


def bits_float(b: int) -> float:
    return float(_DOUBLE.unpack(_UINT64.pack(b))[0])


class _BitWriter:
    """Bits appended to a Python int, moved out to bytes every so often so shifts stay cheap."""

    __slots__ = ("acc", "nbits", "out")

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.nbits = 0

    def write(self, value: int, nbits: int) -> None:
        self.acc = (self.acc << nbits) | (value & ((1 << nbits) - 1))
        self.nbits += nbits
        if self.nbits >= 512:
            whole = self.nbits // 8 * 8
            keep = self.nbits - whole
            self.out += (self.acc >> keep).to_bytes(whole // 8, "big")
            self.acc &= (1 << keep) - 1
            self.nbits = keep

    def write_bytes(self, data: bytes) -> None:
        for byte in data:
            self.write(byte, 8)

    def finish(self) -> bytes:
        pad = -self.nbits % 8
        if self.nbits:
            self.out += (self.acc << pad).to_bytes((self.nbits + pad) // 8, "big")
        return bytes(self.out)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varint(n: int) -> bytes:
    """Go's binary.PutVarint: zig-zag, then an unsigned varint."""
    return _uvarint(((n << 1) ^ (n >> 63)) & _U64)


def _fits(x: int, nbits: int) -> bool:
    """Whether the delta-of-delta goes into a bucket of `nbits` (Prometheus's bitRange)."""
    return -((1 << (nbits - 1)) - 1) <= x <= 1 << (nbits - 1)


def encode_xor(ts_ms: Sequence[int], value_bits: Sequence[int]) -> bytes:
    """One XOR chunk of samples in increasing timestamp order; values given as their IEEE-754 bit
    patterns (`numpy_array.view(np.uint64).tolist()`), so NaN payloads survive."""
    n = len(ts_ms)
    if n != len(value_bits):
        raise ValueError("timestamps and values differ in length")
    if n >= 1 << 16:
        raise ValueError(f"an XOR chunk holds at most 65535 samples, got {n}")
    w = _BitWriter()
    if n == 0:
        return b"\x00\x00"
    t_prev = int(ts_ms[0])
    v_prev = int(value_bits[0])
    w.write_bytes(_varint(t_prev))
    w.write(v_prev, 64)
    delta_prev = 0
    leading, trailing = 0xFF, 0  # 0xff: no window yet
    for i in range(1, n):
        t = int(ts_ms[i])
        delta = t - t_prev
        if delta < 0:
            raise ValueError(f"timestamps must increase: {t} after {t_prev}")
        if i == 1:
            w.write_bytes(_uvarint(delta))
        else:
            dod = delta - delta_prev
            if dod == 0:
                w.write(0, 1)
            else:
                for prefix, prefix_bits, payload_bits in _DOD_BUCKETS:
                    if _fits(dod, payload_bits):
                        w.write(prefix, prefix_bits)
                        w.write(dod, payload_bits)
                        break
                else:
                    w.write(0b1111, 4)
                    w.write(dod, 64)
        v = int(value_bits[i])
        x = v ^ v_prev
        if x == 0:
            w.write(0, 1)
        else:
            new_leading = min(64 - x.bit_length(), 31)
            new_trailing = (x & -x).bit_length() - 1
            if leading != 0xFF and new_leading >= leading and new_trailing >= trailing:
                w.write(0b10, 2)
                w.write(x >> trailing, 64 - leading - trailing)
            else:
                leading, trailing = new_leading, new_trailing
                significant = 64 - leading - trailing
                w.write(0b11, 2)
                w.write(leading, 5)
                w.write(significant & 0x3F, 6)  # 64 does not fit in 6 bits: written as 0
                w.write(x >> trailing, significant)
        t_prev, v_prev, delta_prev = t, v, delta
    return n.to_bytes(2, "big") + w.finish()


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
