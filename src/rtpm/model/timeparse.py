"""The one parser of timestamps and durations for the whole service, and its RFC3339 format.

Every route, the ingest decoders and the rule loader go through these functions, so a time that
one route takes is taken by all, and no input (`1e308`, `nan`, year 10000) can overflow into a
500: the parsers answer None and the caller turns that into a 4xx naming its field.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

# Prometheus' own bounds (its minTime/maxTime are about +-2^62 ms); every route accepts these.
MIN_TIME_MS = -(2**62) // 1000 * 1000
MAX_TIME_MS = 2**62 // 1000 * 1000
# What RFC3339 can print (years 0001..9999): routes that answer RFC3339 take only these.
RFC3339_MIN_MS = round(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1000)
RFC3339_MAX_MS = round(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp() * 1000)

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS = (("y", 365 * 86400_000), ("w", 7 * 86400_000), ("d", 86400_000), ("h", 3600_000), ("m", 60_000), ("s", 1000))
_UNIT_MS = tuple(ms for _, ms in _UNITS) + (1,)
_MAX_DURATION_MS = 2**63 - 1


def _seconds_to_ms(seconds: float, lo: int, hi: int) -> int | None:
    if not math.isfinite(seconds):
        return None
    ms = seconds * 1000  # a huge finite number of seconds overflows to infinity here
    if not math.isfinite(ms) or not lo <= ms <= hi:
        return None
    return int(round(ms))


def parse_timestamp(raw: object, *, lo: int = MIN_TIME_MS, hi: int = MAX_TIME_MS) -> int | None:
    """Unix seconds (a number or numeric string; the fraction rounded to ms) or RFC3339 / ISO 8601
    (no zone means UTC) -> epoch ms. None when unparseable, not finite or outside [lo, hi].
    Booleans are refused."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return _seconds_to_ms(float(raw), lo, hi)
    if not isinstance(raw, str):
        return None
    s = raw.strip()
    if not s:
        return None
    try:
        seconds = float(s)
    except ValueError:
        seconds = None
    if seconds is not None:
        return _seconds_to_ms(seconds, lo, hi)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        ms = round(dt.timestamp() * 1000)
    except (OverflowError, ValueError):
        return None
    return ms if lo <= ms <= hi else None


def parse_duration_ms(raw: object) -> int | None:
    """Seconds (a number or numeric string, possibly <= 0: callers check the sign they need) or a
    Prometheus duration (`90s`, `5m`, `1h30m`, `250ms`) -> ms. None when unparseable or too large."""
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int | float):
        seconds: float | None = float(raw)
        s = ""
    else:
        s = str(raw).strip()
        try:
            seconds = float(s)
        except ValueError:
            seconds = None
    if seconds is not None:
        if not math.isfinite(seconds) or not math.isfinite(seconds * 1000) or abs(seconds * 1000) > _MAX_DURATION_MS:
            return None
        return int(round(seconds * 1000))
    m = _DURATION_RE.match(s)
    if not s or m is None or not any(m.groups()):
        return None
    ms = sum(int(g) * unit for g, unit in zip(m.groups(), _UNIT_MS, strict=True) if g)
    return ms if ms <= _MAX_DURATION_MS else None


def format_duration(seconds: float) -> str:
    """Prometheus' duration format: `0s`, `90s` -> `1m30s`, `3600` -> `1h`."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in _UNITS:
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)


def to_rfc3339(ts_ms: int) -> str:
    """Epoch ms -> `2026-11-27T10:00:00.000Z` (clamped to what RFC3339 can print)."""
    ts_ms = min(max(int(ts_ms), RFC3339_MIN_MS), RFC3339_MAX_MS)
    sec, ms = divmod(ts_ms, 1000)
    d = datetime.fromtimestamp(sec, tz=UTC)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}.{ms:03d}Z"
