"""InfluxDB line protocol (what Telegraf and Influx clients send) -> WriteBatch.

    <measurement>[,<tag_key>=<tag_value>...] <field_key>=<field_value>[,...] [<timestamp>]

Mapping (VictoriaMetrics' convention, COMPAT.md section 4): each numeric field becomes the series
`{measurement}_{field}` with the tags as labels; float, integer (`1i`), unsigned (`1u`) and boolean
fields (1 or 0) are stored, string fields are skipped. Names are made Prometheus-compatible
(invalid characters become `_`), since line protocol has no naming rules of its own. Timestamps are
integers in `precision` units (nanoseconds by default); a line without one gets the server's time.

Escaping: a backslash escapes comma and space in a measurement; comma, equals sign and space in tag
keys, tag values and field keys; double quote and backslash in string field values. Any other
backslash is literal. Lines starting with `#` are comments.

A line that cannot be parsed makes the whole request fail with BadDataError naming its line and
column; nothing of that request is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import cast

from rtpm.errors import BadDataError
from rtpm.ingest.batching import INVALID_SERIES, MISSING, PARSE_ERROR, BatchBuilder, Refused
from rtpm.ingest.validate import Validator
from rtpm.model.labels import Labels
from rtpm.model.samples import WriteBatch

# precision -> (multiplier, divisor) turning a timestamp into epoch milliseconds.
PRECISIONS: dict[str, tuple[int, int]] = {
    "ns": (1, 1_000_000),
    "n": (1, 1_000_000),
    "us": (1, 1_000),
    "u": (1, 1_000),
    "µ": (1, 1_000),
    "µs": (1, 1_000),
    "ms": (1, 1),
    "s": (1_000, 1),
    "m": (60_000, 1),
    "h": (3_600_000, 1),
}

_FLOAT_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INT_RE = re.compile(r"[-+]?\d+")
_UINT_RE = re.compile(r"\d+")
_TS_RE = re.compile(r"-?\d+")
_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
_BAD_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_GOOD_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_GOOD_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
# Characters that send a body to the general parser: escapes, strings, comments, CR and tabs.
_UNUSUAL = ("\\", '"', "#", "\r", "\t")


def _plain_lines(text: str) -> list[str] | None:
    """The lines of a body the column-wise decoders can take (none of `_UNUSUAL`, no empty body),
    or None."""
    for c in _UNUSUAL:
        if c in text:
            return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines or None


# A column of plain floats (one a line) has nothing but these; float() of such text is exactly _FLOAT_RE.
_NOT_FLOAT_CHAR = re.compile(r"[^0-9.eE+\-\n]")
_INF, _NINF = float("inf"), float("-inf")
MAX_PARSE_ERRORS = 100


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
    point = _parse(line)
    if point.tags is None:
        point.tags = _tags(point, line)
    return point


def _parse(line: str) -> Point:
    """Parse one line, leaving a plain head's tags unsplit (see `_tags`)."""
    if "\\" not in line and '"' not in line:
        point = _parse_plain(line)
        if point is not None:
            return point
    return _parse_escaped(line)


def _tags(point: Point, line: str) -> list[tuple[str, str]]:
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


def _lines(text: str) -> list[tuple[int, int, str]]:
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


def _plain_tags(head: str) -> tuple[str, list[tuple[str, str]]] | None:
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


def _values(raws: list[str]) -> list[float] | None:
    """Sample values of a column of raw field values without strings; None if any is invalid."""
    joined = "\n".join(raws)
    if _NOT_FLOAT_CHAR.search(joined) is None:
        values = list(map(float, raws))
        if _INF in values or _NINF in values:
            return None
        return values
    if "," in joined or "=" in joined:
        return None
    try:
        return [field_value(raw, 0) for raw in raws]  # type: ignore[misc]
    except LineError:
        return None


def _timestamps(
    stamps: list[str] | None, n: int, now_ms: int, mul: int, div: int, lo: int, hi: int
) -> list[int] | None:
    """Epoch ms of a column of raw timestamps (None: the server's time); None if any is invalid or
    outside the accepted window. Each distinct timestamp is converted once."""
    if stamps is None:
        return [now_ms] * n if lo <= now_ms <= hi else None
    ms_of: dict[str, int] = {}
    for stamp in dict.fromkeys(stamps):
        if not _TS_RE.fullmatch(stamp):
            return None
        ms = int(stamp) * mul // div
        if not lo <= ms <= hi:
            return None
        ms_of[stamp] = ms
    return list(map(ms_of.__getitem__, stamps))


class InfluxDecoder:
    """Decodes line protocol; remembers (up to `cache_size`) the validated Labels of each
    (db, measurement and tags as sent, field) seen, so a known series costs a dictionary lookup."""

    def __init__(self, validator: Validator, *, cache_size: int = 100_000) -> None:
        self.validator = validator
        self.cache_size = cache_size
        self._known: dict[tuple[str, str, str], Labels] = {}
        # db -> "measurement,tags field" (a line up to its field's '=') -> Labels, for `_decode_single`
        self._single: dict[str, dict[str, Labels]] = {}
        self._single_size = 0

    def decode(
        self,
        body: bytes,
        *,
        tenant: str,
        now_ms: int,
        precision: str = "ns",
        db: str | None = None,
        extra_labels: Mapping[str, str] | None = None,
    ) -> WriteBatch:
        """`db` becomes a `db` label unless the line has a `db` tag; `extra_labels` override tags.
        BadDataError (nothing written) when any line or sample cannot be accepted."""
        return self._decode(body, tenant, now_ms, precision, db, extra_labels, partial=False)[0]

    def decode_partial(
        self,
        body: bytes,
        *,
        tenant: str,
        now_ms: int,
        precision: str = "ns",
        db: str | None = None,
        extra_labels: Mapping[str, str] | None = None,
    ) -> tuple[WriteBatch, Refused]:
        """InfluxDB's partial write: the samples of every acceptable line, and what was left out
        (lines that do not parse, invalid series, samples outside the accepted window). Still
        BadDataError when nothing at all could be accepted."""
        return self._decode(body, tenant, now_ms, precision, db, extra_labels, partial=True)

    def _decode(
        self,
        body: bytes,
        tenant: str,
        now_ms: int,
        precision: str,
        db: str | None,
        extra_labels: Mapping[str, str] | None,
        *,
        partial: bool,
    ) -> tuple[WriteBatch, Refused]:
        scale = PRECISIONS.get(precision)
        if scale is None:
            raise BadDataError(f"precision: unknown {precision!r}; one of ns, us, ms, s, m, h")
        mul, div = scale
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = body.count(b"\n", 0, exc.start) + 1
            raise BadDataError(f"line {line}: not valid UTF-8") from None
        fast = self._decode_single(text, tenant, now_ms, mul, div, db, extra_labels)
        if fast is None:
            fast = self._decode_plain(text, tenant, now_ms, mul, div, db, extra_labels)
        if fast is not None:
            return fast, Refused("line")
        b = BatchBuilder(tenant=tenant, validator=self.validator, where="line", extra_labels=extra_labels)
        known = self._known if not extra_labels else {}
        fresh: dict[tuple[str, str, str], Labels] = {}
        db_key = db or ""
        errors: list[dict[str, object]] = []
        error_count = 0
        add = b.add
        for number, offset, line in _lines(text):
            try:
                point = _parse(line)
                if point.timestamp is None:
                    ts_ms = now_ms
                else:
                    if not _TS_RE.fullmatch(point.timestamp):
                        raise LineError(point.timestamp_column, f"invalid timestamp {point.timestamp!r}")
                    ts_ms = int(point.timestamp) * mul // div
                resolved: list[tuple[Labels | None, float]] = []
                for key, raw, col in point.fields:
                    value = field_value(raw, col)
                    if value is None:
                        continue  # string fields are not stored
                    cache_key = (db_key, point.head, key)
                    labels = known.get(cache_key)
                    if labels is None:
                        labels = self._series(b, point, line, key, db, number)
                        if labels is not None:
                            fresh[cache_key] = labels
                    resolved.append((labels, value))
            except LineError as exc:
                error_count += 1
                if len(errors) < MAX_PARSE_ERRORS:
                    errors.append(
                        {"line": number, "column": exc.column + offset, "reason": exc.reason, "text": line[:200]}
                    )
                if partial:
                    b.problem(f"column {exc.column + offset}", exc.reason, number)
                    b.refuse(PARSE_ERROR, 1, number)
                continue
            if error_count and not partial:
                continue  # the request fails anyway: only look for more parse errors
            for labels, value in resolved:
                if labels is not None:
                    add(labels, ts_ms, value, number)
                else:
                    b.refuse(INVALID_SERIES, 1, number)
        if error_count and (not partial or not len(b.batch)):
            first = errors[0]
            more = f" (and {error_count - 1} more lines with errors)" if error_count > 1 else ""
            raise BadDataError(
                f"line {first['line']}, column {first['column']}: {first['reason']}{more}; nothing was written",
                details=errors,
            )
        batch = b.finish(partial=partial)
        if fresh and not extra_labels:
            self._remember(fresh)
        return batch, b.refused()

    def _remember(self, fresh: dict[tuple[str, str, str], Labels]) -> None:
        if len(self._known) + len(fresh) > self.cache_size:
            self._known.clear()
        if len(fresh) <= self.cache_size:
            self._known.update(fresh)

    def _decode_single(
        self,
        text: str,
        tenant: str,
        now_ms: int,
        mul: int,
        div: int,
        db: str | None,
        extra_labels: Mapping[str, str] | None,
    ) -> WriteBatch | None:
        """The most common body, fastest: like `_decode_plain`, but every line has ONE field, so
        a line is `key=value timestamp` where key (measurement, tags and field name) names the
        series; known keys map straight to Labels. None: let `_decode_plain` or the parser decide."""
        lines = _plain_lines(text)
        if lines is None:
            return None
        n = len(lines)
        keys, eqs, rests = zip(*map(str.rpartition, lines, repeat("=")), strict=True)
        if "" in eqs:
            return None
        spaces = list(map(str.count, rests, repeat(" ")))
        if spaces.count(1) == n:
            cells = " ".join(rests).split(" ")
            raws, stamps = cells[0::2], cells[1::2]
        elif spaces.count(0) == n:
            cells, raws, stamps = list(rests), list(rests), None
        else:
            return None
        if "" in cells:
            return None
        b = BatchBuilder(tenant=tenant, validator=self.validator, where="line", extra_labels=extra_labels)
        values = _values(raws)
        if values is None:
            return None
        ts_col = _timestamps(stamps, n, now_ms, mul, div, b.lo_ms, b.hi_ms)
        if ts_col is None:
            return None
        db_key = db or ""
        known = self._single.get(db_key, {}) if not extra_labels else {}
        found_col = list(map(known.get, keys))
        fresh: dict[str, Labels] = {}
        if None in found_col:
            for key in dict.fromkeys(k for k, found in zip(keys, found_col, strict=True) if found is None):
                head, space, field = key.partition(" ")
                if not space or not field or " " in field or "," in field or "=" in field:
                    return None  # several fields on a line, or not a line at all
                tags = _plain_tags(head)
                if tags is None:
                    return None
                made = self._labels(b, tags[0], tags[1], field, db, None)
                if made is None:
                    return None
                fresh[key] = made
            labels_col = [found or fresh[k] for k, found in zip(keys, found_col, strict=True)]
        else:
            labels_col = cast(list[Labels], found_col)  # no None in it
        b.batch.append_columns(labels_col, ts_col, values)
        done = b.finish()
        if fresh and not extra_labels:
            if self._single_size + len(fresh) > self.cache_size:
                self._single.clear()
                self._single_size = 0
            if len(fresh) <= self.cache_size:
                self._single.setdefault(db_key, {}).update(fresh)
                self._single_size += len(fresh)
        return done

    def _decode_plain(
        self,
        text: str,
        tenant: str,
        now_ms: int,
        mul: int,
        div: int,
        db: str | None,
        extra_labels: Mapping[str, str] | None,
    ) -> WriteBatch | None:
        """The common body, decoded column by column: every line `head fields timestamp` (or every
        line without a timestamp), no escapes, strings, comments, blank lines or extra blanks.
        Returns None for anything else and for any problem at all: `decode`'s line-by-line parser
        then decides, and reports errors exactly. The batch is the one that parser would build."""
        lines = _plain_lines(text)
        if lines is None:
            return None
        n = len(lines)
        spaces = list(map(str.count, lines, repeat(" ")))
        if spaces.count(2) == n:
            flat = " ".join(lines).split(" ")
            heads, fields, stamps = flat[0::3], flat[1::3], flat[2::3]
        elif spaces.count(1) == n:
            flat = " ".join(lines).split(" ")
            heads, fields, stamps = flat[0::2], flat[1::2], None
        else:
            return None
        if "" in flat:
            return None
        joined = "\n".join(fields)
        if "," not in joined and list(map(str.count, fields, repeat("="))).count(1) == n:
            kv = joined.replace("\n", "=").split("=")
            keys, raws = kv[0::2], kv[1::2]
            if "" in kv:
                return None
        else:  # several fields on a line: one row per field
            row_heads: list[str] = []
            row_stamps: list[str] = []
            keys, raws = [], []
            for i, text_fields in enumerate(fields):
                for item in text_fields.split(","):
                    k, _, v = item.partition("=")
                    if not k or not v or "=" in v:
                        return None
                    keys.append(k)
                    raws.append(v)
                    row_heads.append(heads[i])
                    if stamps is not None:
                        row_stamps.append(stamps[i])
            heads = row_heads
            if stamps is not None:
                stamps = row_stamps
        b = BatchBuilder(tenant=tenant, validator=self.validator, where="line", extra_labels=extra_labels)
        values = _values(raws)
        if values is None:
            return None
        ts_col = _timestamps(stamps, len(raws), now_ms, mul, div, b.lo_ms, b.hi_ms)
        if ts_col is None:
            return None
        # Series: each distinct (db, head, field) resolved once, from the cache when seen before.
        known = self._known if not extra_labels else {}
        fresh: dict[tuple[str, str, str], Labels] = {}
        batch = b.batch
        ref_of: dict[tuple[str, str, str], int] = {}
        row_keys = list(zip(repeat(db or ""), heads, keys, strict=False))
        for key in dict.fromkeys(row_keys):
            labels = known.get(key)
            if labels is None:
                tags = _plain_tags(key[1])
                if tags is None:
                    return None
                made = self._labels(b, tags[0], tags[1], key[2], db, None)
                if made is None:
                    return None
                labels = fresh[key] = made
            ref_of[key] = batch.ref(labels)
        batch.append_refs(list(map(ref_of.__getitem__, row_keys)), ts_col, values)
        done = b.finish()
        if fresh and not extra_labels:
            self._remember(fresh)
        return done

    @classmethod
    def _series(
        cls, b: BatchBuilder, point: Point, line: str, field: str, db: str | None, number: int
    ) -> Labels | None:
        """Labels of one field of a line not seen before (validated; None if invalid)."""
        return cls._labels(b, point.measurement, _tags(point, line), field, db, number)

    @staticmethod
    def _labels(
        b: BatchBuilder, measurement: str, tags: list[tuple[str, str]], field: str, db: str | None, number: int | None
    ) -> Labels | None:
        key = (measurement, field, tuple(tags))
        found = b.cache.get(key, MISSING)
        if found is not MISSING:
            return found  # type: ignore[return-value]
        labels: dict[str, str] = {"db": db} if db else {}
        for k, v in tags:
            labels[sanitize_label_name(k)] = v
        name = sanitize_metric_name(f"{measurement}_{field}")
        made = b.make_series(name, labels, number)
        if made is not None:
            made = b.validator.intern(made)
        b.cache[key] = made
        return made


def decode_lines(
    body: bytes,
    *,
    tenant: str,
    validator: Validator,
    now_ms: int,
    precision: str = "ns",
    db: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> WriteBatch:
    """One-off decode (nothing remembered between calls)."""
    return InfluxDecoder(validator).decode(
        body, tenant=tenant, now_ms=now_ms, precision=precision, db=db, extra_labels=extra_labels
    )


__all__ = ["PRECISIONS", "InfluxDecoder", "LineError", "Point", "decode_lines", "field_value", "parse_line"]
