"""Times and durations: the one parser and the one RFC3339 formatter of the whole service.

Every route, the ingest decoders, the rule loader and the CLI go through these functions, so a
time one of them takes is taken by all, and no input (`1e308`, `nan`, year 10000) can overflow
into a 500. The parsers raise `ValueError` with the reason; there is no HTTP here: the api layer
(`rtpm.api.params.time_param`, `duration_param`) turns it into a 400 naming the parameter, the
rule loader into a problem naming the field.

Accepted, as Prometheus' HTTP API accepts them:
  timestamps  unix seconds as a number or a numeric string (`1700000000`, `1700000000.123`,
              `1.7e9`; the fraction rounded to ms), or RFC3339 / ISO 8601 (`2026-11-27T10:00:00Z`,
              `...T10:00:00.123456789+01:00`; no zone means UTC; below a millisecond truncated)
  durations   seconds as a number or a numeric string (`90`, `1.5`, `-5` for the callers that take
              a sign), or `[Ny][Nw][Nd][Nh][Nm][Ns][Nms]` in that order (`1h30m`, `250ms`, `0`);
              no `us`/`ns`, no fractions with a unit (`1.5h`), as Prometheus
All times are int epoch milliseconds, all durations int milliseconds.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

__all__ = [
    "DURATION_UNITS_MS",
    "MAX_TIME_MS",
    "MIN_TIME_MS",
    "RFC3339_MAX_MS",
    "RFC3339_MIN_MS",
    "format_duration",
    "parse_duration",
    "parse_timestamp",
    "to_rfc3339",
]

# Prometheus' own bounds (its minTime/maxTime are about +-2^62 ms); every route accepts these.
MIN_TIME_MS = -(2**62) // 1000 * 1000
MAX_TIME_MS = 2**62 // 1000 * 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# What RFC3339 can print (years 0001..9999): routes that answer RFC3339 take only these.
RFC3339_MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MS
RFC3339_MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // _MS

# Prometheus' duration units, largest first (PromQL's duration literals use the same table).
DURATION_UNITS_MS: dict[str, int] = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1000,
    "ms": 1,
}
_DURATION_RE = re.compile("".join(rf"(?:(\d+){unit})?" for unit in DURATION_UNITS_MS) + "$")
_MAX_DURATION_MS = 2**63 - 1


def _seconds_to_ms(seconds: float, lo: int, hi: int) -> int:
    if not math.isfinite(seconds):
        raise ValueError("not a finite number")
    ms = seconds * 1000  # a huge finite number of seconds overflows to infinity here
    if not math.isfinite(ms) or not lo <= ms <= hi:
        raise ValueError(_range_reason(lo, hi))
    return int(round(ms))


def _range_reason(lo: int, hi: int) -> str:
    if lo >= RFC3339_MIN_MS and hi <= RFC3339_MAX_MS:
        return f"outside the times accepted here ({to_rfc3339(lo)} to {to_rfc3339(hi)})"
    return f"outside the times accepted here ({lo / 1000:g} to {hi / 1000:g} unix seconds)"


def _number(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def parse_timestamp(raw: object, *, lo: int = MIN_TIME_MS, hi: int = MAX_TIME_MS) -> int:
    """Unix seconds or RFC3339 / ISO 8601 -> epoch ms, within [lo, hi].

    Raises ValueError (with the reason) for anything else: not a number or a string, a boolean,
    an empty string, NaN or an infinity, a time outside [lo, hi]."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("expected unix seconds or an RFC3339 time")
    if not isinstance(raw, str):
        return _seconds_to_ms(float(raw), lo, hi)
    s = raw.strip()
    if not s:
        raise ValueError("empty")
    seconds = _number(s)
    if seconds is not None:
        return _seconds_to_ms(seconds, lo, hi)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError("neither unix seconds nor an RFC3339 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        ms = (dt - _EPOCH) // _MS
    except OverflowError:
        raise ValueError(_range_reason(lo, hi)) from None
    if not lo <= ms <= hi:
        raise ValueError(_range_reason(lo, hi))
    return ms


def parse_duration(raw: object) -> int:
    """Seconds (a number or a numeric string; may be zero or negative: callers check the sign they
    need) or a Prometheus duration (`90s`, `5m`, `1h30m`, `250ms`) -> ms.

    Raises ValueError (with the reason) for anything else, NaN, infinities and durations beyond
    2^63 - 1 ms."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("expected seconds or a duration like 5m")
    seconds = float(raw) if not isinstance(raw, str) else _number(raw.strip())
    if seconds is not None:
        if not math.isfinite(seconds):
            raise ValueError("not a finite number")
        scaled = seconds * 1000
        if not math.isfinite(scaled) or abs(scaled) > _MAX_DURATION_MS:
            raise ValueError("too long")
        return int(round(scaled))
    s = str(raw).strip()
    m = _DURATION_RE.match(s)
    if m is None or not any(m.groups()):
        raise ValueError("neither seconds nor a duration like 1h30m")
    ms = sum(int(g) * unit for g, unit in zip(m.groups(), DURATION_UNITS_MS.values(), strict=True) if g)
    if ms > _MAX_DURATION_MS:
        raise ValueError("too long")
    return ms


def format_duration(seconds: float) -> str:
    """Prometheus' duration format: `0s`, `90s` -> `1m30s`, `3600` -> `1h`."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in DURATION_UNITS_MS.items():
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


_SECONDS: dict[int, str] = {}


def to_rfc3339(ts_ms: int) -> str:
    """Epoch ms -> `2026-11-27T10:00:00.000Z` (UTC, milliseconds; clamped to what RFC3339 can
    print, never an exception). The formatted second is cached: on the live path nearly every
    timestamp falls in one of a few recent seconds, and formatting a datetime is the costly part."""
    ts_ms = min(max(int(ts_ms), RFC3339_MIN_MS), RFC3339_MAX_MS)
    sec, ms = divmod(ts_ms, 1000)
    prefix = _SECONDS.get(sec)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        d = _EPOCH + timedelta(seconds=sec)
        prefix = _SECONDS[sec] = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}."
    return f"{prefix}{ms:03d}Z"
