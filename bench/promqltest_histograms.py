"""Native histogram points for bench/promqltest.py: promqltest's `{{...}}` notation parsed into
RTPM's Histogram model, its expanding forms (`{{a}}+{{b}}xN`, `{{a}}xN`), remote-write encoding of
a series' histogram points, and the comparison of an expected histogram with Prometheus's JSON.

The notation (promql/promqltest/README.md in prometheus/prometheus): `schema:N sum:F count:F
z_bucket:F z_bucket_w:F buckets:[F ...] offset:N n_buckets:[F ...] n_offset:N custom_values:[F ...]
counter_reset_hint:unknown|reset|not_reset|gauge`, every key optional. The counter reset hint is
not part of Prometheus's JSON, so it is not compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from rtpm.ingest.proto.histograms import encode_histogram
from rtpm.model.histograms import RESET_GAUGE, RESET_NO, RESET_UNKNOWN, RESET_YES, Histogram, combine
from rtpm.query.promql.histograms import histogram_json

_HINTS = {"unknown": RESET_UNKNOWN, "reset": RESET_YES, "not_reset": RESET_NO, "gauge": RESET_GAUGE}
_ITEM = re.compile(r"(\w+):(\[[^\]]*\]|\S+)")


def parse(text: str, number: Callable[[str], float]) -> Histogram:
    """A histogram from the text between `{{` and `}}`."""
    fields: dict[str, Any] = {}
    for key, raw in _ITEM.findall(text):
        if raw.startswith("["):
            fields[key] = [number(x) for x in raw[1:-1].split()]
        elif key == "counter_reset_hint":
            if raw not in _HINTS:
                raise ValueError(f"unknown counter_reset_hint {raw!r}")
            fields[key] = _HINTS[raw]
        else:
            fields[key] = number(raw)
    known = {"schema", "sum", "count", "z_bucket", "z_bucket_w", "buckets", "offset", "n_buckets", "n_offset"}
    unknown = set(fields) - known - {"custom_values", "counter_reset_hint"}
    if unknown:
        raise ValueError(f"unknown histogram fields {sorted(unknown)}")
    pos = tuple(float(x) for x in fields.get("buckets", []))
    neg = tuple(float(x) for x in fields.get("n_buckets", []))
    return Histogram(
        schema=int(fields.get("schema", 0)),
        zero_threshold=float(fields.get("z_bucket_w", 0.0)),
        zero_count=float(fields.get("z_bucket", 0.0)),
        count=float(fields.get("count", 0.0)),
        sum=float(fields.get("sum", 0.0)),
        positive_spans=((int(fields.get("offset", 0)), len(pos)),) if pos else (),
        positive=pos,
        negative_spans=((int(fields.get("n_offset", 0)), len(neg)),) if neg else (),
        negative=neg,
        custom_values=tuple(float(x) for x in fields.get("custom_values", [])),
        reset_hint=int(fields.get("counter_reset_hint", RESET_UNKNOWN)),
    )


def expand(start: Histogram, op: str, step: Histogram | None, times: int) -> list[Histogram]:
    """`start` then `start (op) k*step` for k = 1..times (`start` repeated without a step)."""
    out = [start]
    cur = start
    for _ in range(times):
        if step is not None:
            cur, _ = combine(cur, step, -1.0 if op == "-" else 1.0)
            cur = Histogram(
                cur.schema,
                cur.zero_threshold,
                cur.zero_count,
                cur.count,
                cur.sum,
                cur.positive_spans,
                cur.positive,
                cur.negative_spans,
                cur.negative,
                cur.custom_values,
                start.reset_hint,
            )
        out.append(cur)
    return out


def field(tag: int, body: bytes) -> bytes:
    out = bytearray([tag])
    n = len(body)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + body


def histogram_fields(points: list[tuple[int, Histogram]]) -> bytes:
    """The `histograms` fields (4) of a TimeSeries holding these (timestamp ms, histogram) points."""
    return b"".join(field(0x22, encode_histogram(h, t)) for t, h in points)


def _close(a: float, b: float, eps: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    if math.isinf(a) or math.isinf(b):
        return False
    return abs(a - b) <= eps * max(abs(a), abs(b)) or abs(a - b) < 1e-300


def mismatch(expected: Histogram, got: dict[str, Any], number: Callable[[str], float], eps: float) -> str | None:
    """None when Prometheus's JSON `got` shows the expected histogram, else what differs."""
    import orjson

    want = orjson.loads(histogram_json(expected))
    for key in ("count", "sum"):
        if not _close(number(got.get(key, "0")), number(want[key]), eps):
            return f"{key} {got.get(key)} != {want[key]}"
    wb, gb = want.get("buckets", []), got.get("buckets", [])
    if len(wb) != len(gb):
        return f"{len(gb)} buckets != {len(wb)}: {gb[:4]} vs {wb[:4]}"
    for w, g in zip(wb, gb, strict=True):
        if w[0] != g[0] or not all(
            _close(number(str(x)), number(str(y)), eps) for x, y in zip(w[1:], g[1:], strict=True)
        ):
            return f"bucket {g} != {w}"
    return None
