"""Request body decompression with a bound on the decompressed size (no decompression bombs).

`decompress(body, encoding, max_bytes=...)` understands `identity` (or no encoding), `gzip`
(several members allowed), `deflate` (zlib) and `snappy` (the block format remote write uses; the
framed format is refused). Output larger than `max_bytes` raises PayloadTooLarge before it is
produced in full: gzip inflates at most `max_bytes + 1` bytes, and snappy's declared length is
checked before anything is inflated.
"""

from __future__ import annotations

import zlib

import cramjam

from rtpm.errors import BadDataError, PayloadTooLarge, UnsupportedMediaType

_SNAPPY_FRAMED_MAGIC = b"\xff\x06\x00\x00sNaPpY"


def decompress(body: bytes, encoding: str | None, *, max_bytes: int) -> bytes:
    enc = (encoding or "identity").strip().lower()
    if enc in ("identity", ""):
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body of {len(body)} bytes is larger than {max_bytes} (max_body_bytes)")
        return body
    if enc in ("gzip", "x-gzip"):
        return _inflate(body, wbits=16 + zlib.MAX_WBITS, max_bytes=max_bytes, name="gzip")
    if enc == "deflate":
        return _inflate(body, wbits=zlib.MAX_WBITS, max_bytes=max_bytes, name="deflate")
    if enc == "snappy":
        return snappy_block(body, max_bytes=max_bytes)
    raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}; use gzip, deflate, snappy or none")


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {max_bytes} bytes once decompressed (max_body_bytes)")


def _inflate(body: bytes, *, wbits: int, max_bytes: int, name: str) -> bytes:
    out: list[bytes] = []
    size = 0
    data = body
    try:
        while data:
            d = zlib.decompressobj(wbits)
            chunk = d.decompress(data, max_bytes + 1 - size)
            size += len(chunk)
            out.append(chunk)
            if size > max_bytes or d.unconsumed_tail:
                raise _too_large(max_bytes)
            if not d.eof:
                raise BadDataError(f"{name} body is truncated")
            data = d.unused_data
            # Trailing zero padding after the last gzip member is tolerated, as gzip(1) does.
            if data and not data.strip(b"\x00"):
                break
    except zlib.error as exc:
        raise BadDataError(f"body is not valid {name}: {exc}") from None
    return b"".join(out)


def snappy_declared_length(body: bytes) -> int:
    """The uncompressed length a snappy block declares in its leading varint."""
    result = 0
    shift = 0
    for i, byte in enumerate(body[:10]):
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
        if i == 4:
            break
    raise BadDataError("body is not valid snappy: bad length header")


def snappy_block(body: bytes, *, max_bytes: int) -> bytes:
    if body.startswith(_SNAPPY_FRAMED_MAGIC):
        raise BadDataError("body uses the snappy framed format; remote write needs the block format")
    if not body:
        raise BadDataError("request body is empty; expected a snappy-compressed protobuf message")
    if snappy_declared_length(body) > max_bytes:
        raise _too_large(max_bytes)
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadDataError(f"body is not valid snappy: {exc}") from None
