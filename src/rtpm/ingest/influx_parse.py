"""InfluxDB line protocol, parsed: one line of text -> a `Point` (measurement, tags, fields, timestamp).

    <measurement>[,<tag_key>=<tag_value>...] <field_key>=<field_value>[,...] [<timestamp>]

Escaping: a backslash escapes comma and space in a measurement; comma, equals sign and space in tag
keys, tag values and field keys; double quote and backslash in string field values. Any other
backslash is literal. Lines starting with `#` are comments; a quoted string may span lines.
Errors are `LineError`s with the 1-based column of the problem. Also the name sanitizing (line
protocol has no naming rules; Prometheus has). The decoder is `rtpm.ingest.influx`; the column-wise
fast path, which skips this parser for the common bodies, `rtpm.ingest.influx_columns`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "TS_RE",
    "LineError",
    "Point",
    "field_value",
    "lines",
    "parse_line",
    "parse_point",
    "plain_tags",
    "point_tags",
    "sanitize_label_name",
    "sanitize_metric_name",
]

_FLOAT_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INT_RE = re.compile(r"[-+]?\d+")
_UINT_RE = re.compile(r"\d+")
TS_RE = re.compile(r"-?\d+")
_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
_BAD_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_GOOD_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_GOOD_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class LineError(Exception):
    """A parse error at a 1-based column of the line being parsed."""

    def __init__(self, column: int, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


@dataclass(slots=True)
class Point:
    head: str  # the raw text before the first unescaped space: measurement and tags
    measurement: str
    tags: list[tuple[str, str]] | None  # None: not split yet (a plain head, see _plain_tags)
    fields: list[tuple[str, str, int]]  # key, raw value, column of the value
    timestamp: str | None
    timestamp_column: int


def sanitize_metric_name(name: str) -> str:
    if _GOOD_METRIC.fullmatch(name):
        return name
    out = _BAD_METRIC_CHARS.sub("_", name)
    return out if out and not out[0].isdigit() else "_" + out


def sanitize_label_name(name: str) -> str:
    if _GOOD_LABEL.fullmatch(name):
        return name
    out = _BAD_LABEL_CHARS.sub("_", name)
    return out if out and not out[0].isdigit() else "_" + out


def field_value(raw: str, column: int) -> float | None:
    """The sample value of a field; None for a string field (not stored)."""
    last = raw[-1:]
    if last == "i":
        if not _INT_RE.fullmatch(raw, 0, len(raw) - 1):
            raise LineError(column, f"invalid integer field value {raw!r}")
        n = int(raw[:-1])
        if not _INT64_MIN <= n <= _INT64_MAX:
            raise LineError(column, f"integer field value {raw!r} out of the int64 range")
        return float(n)
    if last == "u":
        if not _UINT_RE.fullmatch(raw, 0, len(raw) - 1):
            raise LineError(column, f"invalid unsigned field value {raw!r}")
        n = int(raw[:-1])
        if n > _UINT64_MAX:
            raise LineError(column, f"unsigned field value {raw!r} out of the uint64 range")
        return float(n)
    if raw.startswith('"'):
        return None
    if _FLOAT_RE.fullmatch(raw):
        value = float(raw)
        if value in (float("inf"), float("-inf")):
            raise LineError(column, f"float field value {raw!r} out of range")
        return value
    if raw in _TRUE:
        return 1.0
    if raw in _FALSE:
        return 0.0
    if not raw:
        raise LineError(column, "missing field value")
    raise LineError(column, f"invalid field value {raw!r} (float, 1i, 1u, true/false or a quoted string)")


def parse_line(line: str) -> Point:
    """Parse one line, tags included; raises LineError with the column of the problem."""
    point = parse_point(line)
    if point.tags is None:
        point.tags = point_tags(point, line)
    return point


def parse_point(line: str) -> Point:
    """Parse one line, leaving a plain head's tags unsplit (see `_tags`)."""
    if "\\" not in line and '"' not in line:
        point = _parse_plain(line)
        if point is not None:
            return point
    return _parse_escaped(line)


def point_tags(point: Point, line: str) -> list[tuple[str, str]]:
    if point.tags is not None:
        return point.tags
    tags: list[tuple[str, str]] = []
    for item in point.head.split(",")[1:]:
        kv = item.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            return _parse_escaped(line).tags or []  # raises LineError naming the column
        tags.append((kv[0], kv[1]))
    return tags


def _parse_plain(line: str) -> Point | None:
    """Fast path for lines without escapes or strings; None when the slow path must decide."""
    parts = line.split(" ")
    if len(parts) == 2:
        head, fields_text = parts
        ts: str | None = None
    elif len(parts) == 3:
        head, fields_text, ts = parts
    else:
        return None
    if not head or not fields_text or ts == "":
        return None
    measurement = head.split(",", 1)[0]
    if not measurement:
        return None
    fields: list[tuple[str, str, int]] = []
    col = len(head) + 2
    for item in fields_text.split(","):
        kv = item.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            return None
        fields.append((kv[0], kv[1], col + len(kv[0]) + 1))
        col += len(item) + 1
    return Point(head, measurement, None, fields, ts, len(head) + len(fields_text) + 3)


def _parse_escaped(line: str) -> Point:
    n = len(line)
    pos = 0

    def token(stops: str, escapable: str) -> str:
        nonlocal pos
        out: list[str] = []
        while pos < n:
            c = line[pos]
            if c == "\\" and pos + 1 < n and line[pos + 1] in escapable:
                out.append(line[pos + 1])
                pos += 2
                continue
            if c in stops:
                break
            out.append(c)
            pos += 1
        return "".join(out)

    measurement = token(", ", ", ")
    if not measurement:
        raise LineError(1, "missing measurement")
    tags: list[tuple[str, str]] = []
    while pos < n and line[pos] == ",":
        pos += 1
        start = pos
        key = token(",= ", ",= ")
        if not key:
            raise LineError(start + 1, "missing tag key")
        if pos >= n or line[pos] != "=":
            raise LineError(pos + 1, f"expected '=' after tag key {key!r}")
        pos += 1
        start = pos
        value = token(",= ", ",= ")
        if not value:
            raise LineError(start + 1, f"missing value of tag {key!r}")
        if pos < n and line[pos] == "=":
            raise LineError(pos + 1, f"unescaped '=' in value of tag {key!r}")
        tags.append((key, value))
    if pos >= n:
        raise LineError(pos + 1, "missing fields (a space, then at least one field=value)")
    if line[pos] != " ":
        raise LineError(pos + 1, f"unexpected {line[pos]!r} after measurement and tags")
    head = line[:pos]
    pos += 1
    fields: list[tuple[str, str, int]] = []
    while True:
        start = pos
        key = token(",= ", ",= ")
        if not key:
            raise LineError(start + 1, "missing field key")
        if pos >= n or line[pos] != "=":
            raise LineError(pos + 1, f"expected '=' after field key {key!r}")
        pos += 1
        vstart = pos
        if pos < n and line[pos] == '"':
            pos += 1
            while pos < n and line[pos] != '"':
                pos += 2 if line[pos] == "\\" and pos + 1 < n and line[pos + 1] in '"\\' else 1
            if pos >= n:
                raise LineError(vstart + 1, f"unterminated string value of field {key!r}")
            pos += 1
        else:
            while pos < n and line[pos] not in ", ":
                pos += 1
        raw = line[vstart:pos]
        if not raw:
            raise LineError(vstart + 1, f"missing value of field {key!r}")
        fields.append((key, raw, vstart + 1))
        if pos < n and line[pos] == ",":
            pos += 1
            continue
        break
    if pos < n and line[pos] != " ":
        raise LineError(pos + 1, f"unexpected {line[pos]!r} after the value of field {key!r}")
    ts: str | None = None
    ts_col = pos + 2
    if pos < n:
        # line[pos] is a space here
        pos += 1
        ts = line[pos:]
        if not ts:
            raise LineError(pos + 1, "missing timestamp after the space")
    return Point(head, measurement, tags, fields, ts, ts_col)


def lines(text: str) -> list[tuple[int, int, str]]:
    """(1-based line number, leading blanks removed, line) of each non-empty, non-comment line. A quoted string field value
    may hold newlines: a line whose string is unterminated is joined with the next ones."""
    raw = text.split("\n")
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(raw):
        number, line = i + 1, raw[i].rstrip("\r")
        i += 1
        if '"' in line:
            while _open_quote(line) and i < len(raw):
                line += "\n" + raw[i].rstrip("\r")
                i += 1
        left = line.lstrip(" \t")
        stripped = left.rstrip(" \t")
        if stripped.endswith("\\") and len(stripped) < len(left):
            stripped += " "  # an escaped trailing space
        if not stripped or stripped.startswith("#"):
            continue
        out.append((number, len(line) - len(left), stripped))
    return out


def _open_quote(line: str) -> bool:
    """Whether a string field value is still open at the end of the line."""
    space = _first_unescaped_space(line)
    if space < 0:
        return False
    inside = False
    pos = space + 1
    n = len(line)
    while pos < n:
        c = line[pos]
        if inside and c == "\\" and pos + 1 < n:
            pos += 2
            continue
        if c == '"':
            inside = not inside
        elif not inside and c == " ":
            return False
        pos += 1
    return inside


def _first_unescaped_space(line: str) -> int:
    pos = 0
    while pos < len(line):
        if line[pos] == "\\":
            pos += 2
            continue
        if line[pos] == " ":
            return pos
        pos += 1
    return -1


def plain_tags(head: str) -> tuple[str, list[tuple[str, str]]] | None:
    """Measurement and tags of a head without escapes; None when it is not a valid one."""
    measurement, *items = head.split(",")
    if not measurement:
        return None
    tags: list[tuple[str, str]] = []
    for item in items:
        kv = item.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            return None
        tags.append((kv[0], kv[1]))
    return measurement, tags
