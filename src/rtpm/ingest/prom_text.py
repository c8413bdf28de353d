"""The Prometheus text exposition format (0.0.4), and OpenMetrics text, pushed as a whole scrape
(Pushgateway's use case: a cron job or script reporting its results) -> WriteBatch.

    # HELP http_requests_total Requests served.
    # TYPE http_requests_total counter
    http_requests_total{code="200",path="/"} 1027 1700000000000

Samples without a timestamp get the server's time. Timestamps are epoch milliseconds, or seconds
(a float) in OpenMetrics. `# TYPE`, `# HELP` and `# UNIT` become metric metadata. Label values
unescape `\\\\`, `\\"` and `\\n`. Names must already be valid Prometheus names (no sanitizing:
exposition producers follow the rules). Any line that does not parse fails the whole request with
BadDataError naming its line and column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from rtpm.errors import BadDataError
from rtpm.ingest.batching import INVALID_SERIES, MISSING, PARSE_ERROR, BatchBuilder, Refused
from rtpm.ingest.validate import Validator
from rtpm.model.samples import MetricType, WriteBatch

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*([,}])')
_LABELS_END = re.compile(r"[ \t]*}")
_FLOAT = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[Nn]a[Nn]|[Ii]nf(?:inity)?)")
_INT = re.compile(r"-?\d+")
_TYPES = {
    "counter": MetricType.COUNTER,
    "gauge": MetricType.GAUGE,
    "histogram": MetricType.HISTOGRAM,
    "gaugehistogram": MetricType.HISTOGRAM,
    "summary": MetricType.SUMMARY,
    "untyped": MetricType.UNKNOWN,
    "unknown": MetricType.UNKNOWN,
    "info": MetricType.GAUGE,
    "stateset": MetricType.GAUGE,
}
MAX_PARSE_ERRORS = 100


class _ParseError(Exception):
    def __init__(self, column: int, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


def _unescape_label(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _unescape_help(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\([\\n])", lambda m: "\n" if m.group(1) == "n" else "\\", text)


def parse_sample(line: str) -> tuple[str, tuple[tuple[str, str], ...], float, str | None, int]:
    """(name, label pairs as sent, value, raw timestamp or None, column of the timestamp)."""
    m = _NAME.match(line)
    if m is None:
        if line.startswith('{"') or line.startswith('"'):
            raise _ParseError(1, "quoted (UTF-8) metric names are not supported; use [a-zA-Z_:][a-zA-Z0-9_:]*")
        raise _ParseError(1, "expected a metric name")
    name = m.group()
    pos = m.end()
    pairs: list[tuple[str, str]] = []
    n = len(line)
    if pos < n and line[pos] == "{":
        pos += 1
        end = _LABELS_END.match(line, pos)
        if end is not None:
            pos = end.end()
        else:
            while True:
                lm = _LABEL.match(line, pos)
                if lm is None:
                    raise _ParseError(pos + 1, 'expected label="value" (value escapes: \\\\, \\", \\n)')
                pairs.append((lm.group(1), _unescape_label(lm.group(2))))
                pos = lm.end()
                if lm.group(3) == "}":
                    break
                end = _LABELS_END.match(line, pos)  # a trailing comma is allowed
                if end is not None:
                    pos = end.end()
                    break
    rest = line[pos:]
    if not rest or rest[0] not in " \t":
        raise _ParseError(pos + 1, "expected a space and then the sample value")
    parts = rest.split()
    if not parts:
        raise _ParseError(pos + 1, "missing sample value")
    value_col = pos + 1 + (len(rest) - len(rest.lstrip(" \t")))
    if not _FLOAT.fullmatch(parts[0]):
        raise _ParseError(value_col, f"invalid sample value {parts[0]!r}")
    value = float(parts[0])
    if len(parts) == 1:
        return name, tuple(pairs), value, None, 0
    if len(parts) > 2 and not parts[2].startswith("#"):  # OpenMetrics exemplars start with '#'
        raise _ParseError(value_col, "unexpected text after the timestamp")
    ts_col = line.find(parts[1], value_col - 1 + len(parts[0])) + 1
    return name, tuple(pairs), value, parts[1], ts_col


def decode_text(
    body: bytes,
    *,
    tenant: str,
    validator: Validator,
    now_ms: int,
    openmetrics: bool = False,
    extra_labels: Mapping[str, str] | None = None,
) -> WriteBatch:
    """Every sample, or BadDataError (nothing written) if any line or sample cannot be accepted."""
    return _decode(body, tenant, validator, now_ms, openmetrics, extra_labels, partial=False)[0]


def decode_text_partial(
    body: bytes,
    *,
    tenant: str,
    validator: Validator,
    now_ms: int,
    openmetrics: bool = False,
    extra_labels: Mapping[str, str] | None = None,
) -> tuple[WriteBatch, Refused]:
    """The samples of every acceptable line, and what was left out (lines that do not parse,
    invalid series, samples outside the accepted window). BadDataError when no line parses."""
    return _decode(body, tenant, validator, now_ms, openmetrics, extra_labels, partial=True)


def _decode(
    body: bytes,
    tenant: str,
    validator: Validator,
    now_ms: int,
    openmetrics: bool,
    extra_labels: Mapping[str, str] | None,
    *,
    partial: bool,
) -> tuple[WriteBatch, Refused]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = body.count(b"\n", 0, exc.start) + 1
        raise BadDataError(f"line {bad_line}: not valid UTF-8") from None
    b = BatchBuilder(tenant=tenant, validator=validator, where="line", extra_labels=extra_labels)
    errors: list[dict[str, object]] = []
    error_count = 0
    types: dict[str, MetricType] = {}
    helps: dict[str, str] = {}
    units: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        try:
            if line.startswith("#"):
                if _comment(line, types, helps, units, openmetrics):
                    break  # '# EOF'
                continue
            name, pairs, value, raw_ts, ts_col = parse_sample(line)
            if raw_ts is None:
                ts_ms = now_ms
            elif openmetrics:
                if not _FLOAT.fullmatch(raw_ts) or not math.isfinite(seconds := float(raw_ts)):
                    raise _ParseError(ts_col, f"invalid timestamp {raw_ts!r} (OpenMetrics: unix seconds)")
                ts_ms = round(seconds * 1000)
            else:
                if not _INT.fullmatch(raw_ts):
                    raise _ParseError(ts_col, f"invalid timestamp {raw_ts!r} (epoch milliseconds)")
                ts_ms = int(raw_ts)
        except _ParseError as exc:
            error_count += 1
            if len(errors) < MAX_PARSE_ERRORS:
                errors.append({"line": number, "column": exc.column, "reason": exc.reason, "text": line[:200]})
            if partial:
                b.problem(f"column {exc.column}", exc.reason, number)
                b.refuse(PARSE_ERROR, 1, number)
            continue
        if error_count and not partial:
            continue
        key = (name, pairs)
        labels = b.cache.get(key, MISSING)
        if labels is MISSING:
            d = dict(pairs)
            if len(d) != len(pairs):
                b.problem("labels", "duplicate label name", number)
                labels = b.cache[key] = None
            else:
                labels = b.cache[key] = b.make_series(name, {k: v for k, v in d.items() if v != ""}, number)
        if labels is not None:
            assert isinstance(labels, tuple)
            b.add(labels, ts_ms, value, number)
        else:
            b.refuse(INVALID_SERIES, 1, number)
    if error_count and (not partial or not len(b.batch)):
        first = errors[0]
        more = f" (and {error_count - 1} more lines with errors)" if error_count > 1 else ""
        raise BadDataError(
            f"line {first['line']}, column {first['column']}: {first['reason']}{more}; nothing was written",
            details=errors,
        )
    for name in types.keys() | helps.keys() | units.keys():
        b.metadata(name, types.get(name, MetricType.UNKNOWN), units.get(name, ""), helps.get(name, ""), None)
    return b.finish(partial=partial), b.refused()


def _comment(
    line: str, types: dict[str, MetricType], helps: dict[str, str], units: dict[str, str], openmetrics: bool
) -> bool:
    """Record a TYPE, HELP or UNIT line; True at '# EOF'. Other comments are ignored."""
    parts = line[1:].lstrip(" \t").split(None, 2)
    if not parts:
        return False
    keyword = parts[0]
    if keyword == "EOF" and len(parts) == 1:
        return openmetrics
    if keyword not in ("TYPE", "HELP", "UNIT"):
        return False
    if len(parts) < 2 or not _NAME.fullmatch(parts[1]):
        raise _ParseError(3 + len(keyword), f"# {keyword} needs a valid metric name")
    name = parts[1]
    arg = parts[2] if len(parts) > 2 else ""
    if keyword == "TYPE":
        t = _TYPES.get(arg.strip())
        if t is None:
            raise _ParseError(len(line) - len(arg) + 1, f"unknown metric type {arg!r}")
        types[name] = t
    elif keyword == "HELP":
        helps[name] = _unescape_help(arg)
    else:
        units[name] = arg.strip()
    return False
