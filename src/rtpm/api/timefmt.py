"""Times and durations at the HTTP edge: the field-naming 400s over rtpm.model.timeparse."""

from __future__ import annotations

from rtpm.errors import BadDataError
from rtpm.model.timeparse import RFC3339_MAX_MS, RFC3339_MIN_MS, parse_timestamp, to_rfc3339
from rtpm.model.timeparse import parse_duration_ms as _duration_ms

__all__ = ["parse_duration_ms", "parse_time_param", "to_rfc3339"]


def parse_time_param(raw: object, field: str) -> int:
    """RFC3339 or unix seconds (years 0001..9999, as these routes answer RFC3339) -> epoch ms."""
    ts = parse_timestamp(raw, lo=RFC3339_MIN_MS, hi=RFC3339_MAX_MS)
    if ts is None:
        raise BadDataError(f"{field}: cannot parse {raw!r} as RFC3339 or unix seconds (years 0001 to 9999)")
    return ts


def parse_duration_ms(raw: object, field: str) -> int:
    """Seconds as a number, or a Prometheus duration string (`90s`, `5m`, `1h30m`); positive."""
    ms = _duration_ms(raw)
    if ms is None:
        raise BadDataError(f"{field}: cannot parse {raw!r} as seconds or a duration like 5m")
    if ms <= 0:
        raise BadDataError(f"{field}: must be positive")
    return ms
