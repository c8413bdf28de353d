"""OpenTelemetry -> Prometheus naming: metric names with their unit and type suffixes, label names,
attribute values as label values, and the metadata's unit.

As Prometheus's OTLP translation does by default (strategy UnderscoreEscapingWithSuffixes; the
README's "OpenTelemetry naming" lists it): `http.server.duration` in `ms` -> `http_server_duration_milliseconds`,
`By/s` -> `bytes_per_second`, `_total` on monotonic sums, `_ratio` on gauges of unit `1`;
attribute keys with invalid characters -> `_`, a leading digit or `_` gets `key`/`key_`. No
I/O and no wire format here: the decoder (`rtpm.ingest.otlp`) calls these.
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

import orjson

from rtpm.model.samples import MetricType

__all__ = [
    "PER_UNITS",
    "UNITS",
    "any_value",
    "attributes",
    "format_float",
    "label_name",
    "metadata_unit",
    "metric_name",
    "unit_parts",
]

UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


_SPLIT = re.compile(r"[^a-zA-Z0-9:]+")
_BAD_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_BAD_METRIC_CHAR = re.compile(r"[^a-zA-Z0-9:]")
_UNDERSCORES = re.compile(r"__+")


def unit_parts(unit: str) -> tuple[str, str]:
    """The Prometheus spellings of a UCUM unit's main and per parts (`By/s` -> `bytes`,
    `per_second`), each cleaned (invalid characters -> `_`, runs collapsed, one leading `_`
    dropped). A part with an annotation (`{packet}`) contributes nothing; `1` maps to nothing."""
    main_otel, sep, per_otel = unit.partition("/")
    main_otel, per_otel = main_otel.strip(), per_otel.strip()
    main = per = ""
    if main_otel and "{" not in main_otel and "}" not in main_otel:
        main = UNITS.get(main_otel, main_otel)
    if sep and per_otel and "{" not in per_otel and "}" not in per_otel:
        per = PER_UNITS.get(per_otel, per_otel)
        per = "per_" + per if per else ""
    return _clean_unit(main), _clean_unit(per)


def _clean_unit(unit: str) -> str:
    out = _UNDERSCORES.sub("_", _BAD_METRIC_CHAR.sub("_", unit))
    return out[1:] if out.startswith("_") else out


def metric_name(name: str, unit: str, kind: MetricType) -> str:
    """The Prometheus name of an OTLP metric, as Prometheus's OTLP translation (strategy
    UnderscoreEscapingWithSuffixes) builds it: the name split into tokens at every character
    outside [a-zA-Z0-9:]; the unit's main part appended unless already a token, then its per
    part (`per_second`); counters (monotonic sums) end in `_total` and gauges of unit `1` in
    `_ratio` (each token moved to the end if present); a leading digit gets a `_`. Empty when
    nothing is left (such a metric is refused)."""
    tokens = [t for t in _SPLIT.split(name) if t]
    main, per = unit_parts(unit)
    if main in tokens:
        main = ""
    if per == "per_":
        per = ""
    else:
        per = per.removesuffix("_")
        if per in tokens:
            per = ""
    if per:
        main = main.removesuffix("_")
    tokens += [t for t in (main, per) if t]
    if kind is MetricType.COUNTER:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if kind is MetricType.GAUGE and unit == "1":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    out = "_".join(tokens)
    return "_" + out if out[:1].isdigit() else out


@functools.lru_cache(maxsize=8192)
def label_name(key: str) -> str:
    out = _BAD_LABEL.sub("_", key)
    if not out:
        return "_"
    if out[0].isdigit():
        return "key_" + out
    if out[0] == "_":
        return "key" + out
    return out


def format_float(v: float) -> str:
    """Like Go's strconv.FormatFloat(v, 'g', -1, 64) for the values seen in `le` and `quantile`."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    s = repr(v)
    return s[:-2] if s.endswith(".0") else s


def any_value(v: Any) -> str:
    if v.HasField("string_value"):
        return str(v.string_value)
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return str(v.string_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return format_float(v.double_value)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind == "array_value":
        return orjson.dumps([any_value(x) for x in v.array_value.values]).decode()
    if kind == "kvlist_value":
        return orjson.dumps({kv.key: any_value(kv.value) for kv in v.kvlist_value.values}).decode()
    return ""


def attributes(kvs: Any) -> dict[str, str]:
    """OTLP attributes -> label pairs (names sanitized, colliding values joined with ';')."""
    out: dict[str, str] = {}
    for kv in kvs:
        name = label_name(kv.key)
        value = any_value(kv.value)
        if value == "":
            continue
        out[name] = f"{out[name]};{value}" if name in out else value
    return out


def metadata_unit(unit: str) -> str:
    """The unit of the metric's metadata, as Prometheus's OTLP translation writes it
    (`By/s` -> `bytes_per_second`, `1/s` -> `per_second`, `1` -> nothing)."""
    main, per = unit_parts(unit)
    out = f"{main}_{per}" if main and per else main or per
    return out.removeprefix("_").removesuffix("_")
