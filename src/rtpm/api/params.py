"""Query-string parameters shared by several routes."""

from __future__ import annotations

import orjson

from rtpm.errors import BadDataError


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
