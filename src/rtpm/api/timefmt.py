"""Times and durations at the HTTP edge: RFC3339 or unix seconds in, RFC3339 out."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from rtpm.errors import BadDataError
from rtpm.ingest.validate import parse_timestamp

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNIT_MS = (365 * 86400_000, 7 * 86400_000, 86400_000, 3600_000, 60_000, 1000, 1)


def to_rfc3339(ts_ms: int) -> str:
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def parse_time_param(raw: object, field: str) -> int:
    ts = parse_timestamp(raw)
    if ts is None:
        raise BadDataError(f"{field}: cannot parse {raw!r} as RFC3339 or unix seconds")
    return ts


def parse_duration_ms(raw: object, field: str) -> int:
    """Seconds as a number, or a Prometheus duration string (`90s`, `5m`, `1h30m`)."""
    if isinstance(raw, bool):
        raise BadDataError(f"{field}: expected seconds or a duration like 5m")
    if isinstance(raw, int | float):
        ms = int(round(raw * 1000))
    else:
        s = str(raw).strip()
        try:
            ms = int(round(float(s) * 1000))
        except ValueError:
            m = _DURATION_RE.match(s)
            if not s or m is None:
                raise BadDataError(f"{field}: cannot parse {raw!r} as seconds or a duration like 5m") from None
            ms = sum(int(g) * unit for g, unit in zip(m.groups(), _UNIT_MS, strict=True) if g)
    if ms <= 0:
        raise BadDataError(f"{field}: must be positive")
    return ms
