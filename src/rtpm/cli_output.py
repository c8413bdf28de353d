"""`rtpm query --output table|json|csv`: query answers as rows of (series, timestamp, value).

Both answer shapes are read: Prometheus' `data` (`resultType` vector, matrix, scalar or string) and
the seed's metric query (`series` of `labels` and `data_points`). A series is printed in PromQL's
notation (`cpu_usage{host="web-1"}`), a time as RFC3339 UTC, a value as Prometheus writes it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from rtpm.model.time import parse_timestamp, to_rfc3339

HEADER = ("series", "timestamp", "value")
FORMATS = ("table", "json", "csv")


def series_name(labels: Mapping[str, Any]) -> str:
    name = str(labels.get("__name__", ""))
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


def _time(raw: Any) -> str:
    try:
        return to_rfc3339(parse_timestamp(raw))
    except ValueError:
        return str(raw)


def _value(raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw)) if abs(raw) < 1e15 else repr(raw)
    return str(raw)


def rows(answer: Any) -> list[tuple[str, str, str]]:
    """The rows of a query answer; an answer of another shape has none (the caller prints JSON)."""
    out: list[tuple[str, str, str]] = []
    if not isinstance(answer, Mapping):
        return out
    kind = answer.get("resultType")
    result = answer.get("result")
    if kind == "vector":
        for s in result or []:
            out.append((series_name(s.get("metric", {})), _time(s["value"][0]), _value(s["value"][1])))
    elif kind == "matrix":
        for s in result or []:
            name = series_name(s.get("metric", {}))
            out.extend((name, _time(t), _value(v)) for t, v in s.get("values", []))
    elif kind in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
        out.append(("", _time(result[0]), _value(result[1])))
    elif isinstance(answer.get("series"), list):
        metric = answer.get("metric_name") or ""
        for s in answer["series"]:
            labels = {"__name__": metric, **(s.get("labels") or {})}
            name = series_name(labels)
            out.extend((name, _time(p.get("timestamp")), _value(p.get("value"))) for p in s.get("data_points", []))
    return out


def is_tabular(answer: Any) -> bool:
    return isinstance(answer, Mapping) and (
        answer.get("resultType") in ("vector", "matrix", "scalar", "string") or isinstance(answer.get("series"), list)
    )


def table(data: Iterable[tuple[str, ...]]) -> str:
    lines = [HEADER, *data]
    widths = [max(len(r[i]) for r in lines) for i in range(len(HEADER))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines)
    return text + "\n"


def to_csv(data: Iterable[tuple[str, ...]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(data)
    return buf.getvalue()


def render(answer: Any, fmt: str) -> str:
    """`answer` in `fmt`; table and csv fall back to JSON for an answer that is not a query's."""
    if fmt == "json" or not is_tabular(answer):
        return json.dumps(answer, indent=2, ensure_ascii=False) + "\n"
    data = rows(answer)
    return table(data) if fmt == "table" else to_csv(data)
