"""Query-string parameters shared by several routes: times, durations and label filters.

Times and durations are parsed by `rtpm.model.time`; here its ValueError becomes the 400
(`bad_data`) that names the parameter, in Prometheus' words:
`invalid parameter "time": cannot parse "1e308" to a valid timestamp (out of range ...)`.
"""

from __future__ import annotations

import orjson

from rtpm.errors import BadDataError
from rtpm.model.time import MAX_TIME_MS, MIN_TIME_MS, RFC3339_MAX_MS, RFC3339_MIN_MS, parse_duration, parse_timestamp


def time_param(raw: object, name: str, default: int | None = None, *, rfc3339: bool = False) -> int:
    """A time parameter -> epoch ms; `default` when absent (None or ""), a 400 when absent without
    a default. `rfc3339=True` for the routes that answer the time as RFC3339: only years 0001 to
    9999 (Prometheus' routes take its whole range, about +-146 million years)."""
    if raw is None or raw == "":
        if default is None:
            raise BadDataError(f'invalid parameter "{name}": cannot parse "" to a valid timestamp')
        return default
    lo, hi = (RFC3339_MIN_MS, RFC3339_MAX_MS) if rfc3339 else (MIN_TIME_MS, MAX_TIME_MS)
    try:
        return parse_timestamp(raw, lo=lo, hi=hi)
    except ValueError as exc:
        raise BadDataError(f'invalid parameter "{name}": cannot parse "{raw}" to a valid timestamp ({exc})') from None


def duration_param(raw: object, name: str, default: int | None = None, *, positive: bool = False) -> int:
    """A duration parameter (seconds or `1h30m`) -> ms; `default` when absent, a 400 when absent
    without a default. `positive=True` refuses zero and negative durations here (Prometheus'
    query_range checks its step's sign itself, in its own words)."""
    if raw is None or raw == "":
        if default is None:
            raise BadDataError(f'invalid parameter "{name}": cannot parse "" to a valid duration')
        return default
    try:
        ms = parse_duration(raw)
    except ValueError as exc:
        raise BadDataError(f'invalid parameter "{name}": cannot parse "{raw}" to a valid duration ({exc})') from None
    if positive and ms <= 0:
        raise BadDataError(f'invalid parameter "{name}": must be positive, got "{raw}"')
    return ms


def parse_labels_param(raw: str | None) -> dict[str, str]:
    """Label filters as `{"k": "v"}` (JSON) or `k=v,k2=v2`."""
    if not raw:
        return {}
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadDataError(f"labels: not valid JSON: {exc}") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise BadDataError("labels: expected a JSON object of string values")
        return value
    out = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise BadDataError(f"labels: expected k=v pairs separated by commas, got {part!r}")
        out[key.strip()] = value.strip()
    return out
