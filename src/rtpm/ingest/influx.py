"""InfluxDB line protocol (what Telegraf and Influx clients send) -> WriteBatch.

    <measurement>[,<tag_key>=<tag_value>...] <field_key>=<field_value>[,...] [<timestamp>]

Mapping (VictoriaMetrics' convention, COMPAT.md section 4): each numeric field becomes the series
`{measurement}_{field}` with the tags as labels; float, integer (`1i`), unsigned (`1u`) and boolean
fields (1 or 0) are stored, string fields are skipped. Names are made Prometheus-compatible
(invalid characters become `_`), since line protocol has no naming rules of its own. Timestamps are
integers in `precision` units (nanoseconds by default); a line without one gets the server's time.

A line that cannot be parsed makes the whole request fail with BadDataError naming its line and
column; nothing of that request is stored (`decode_partial`: InfluxDB's partial write).

    influx.py          InfluxDecoder: the series caches, the naming, the line-by-line path
    influx_parse.py    the line protocol parser (escaping, string fields, LineError columns)
    influx_columns.py  the column-wise fast path for plain bodies (the usual Telegraf output)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rtpm.errors import BadDataError
from rtpm.ingest.batching import INVALID_SERIES, PARSE_ERROR, BatchBuilder, Refused
from rtpm.ingest.influx_columns import decode_plain, decode_single
from rtpm.ingest.influx_parse import (
    TS_RE,
    LineError,
    Point,
    field_value,
    lines,
    parse_line,
    parse_point,
    point_tags,
    sanitize_label_name,
    sanitize_metric_name,
)
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

MAX_PARSE_ERRORS = 100


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
            line_no = body.count(b"\n", 0, exc.start) + 1
            raise BadDataError(f"line {line_no}: not valid UTF-8") from None
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
        for number, offset, line in lines(text):
            try:
                point = parse_point(line)
                if point.timestamp is None:
                    ts_ms = now_ms
                else:
                    if not TS_RE.fullmatch(point.timestamp):
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

    def _builder(self, tenant: str, extra_labels: Mapping[str, str] | None) -> Callable[[], BatchBuilder]:
        def new_builder() -> BatchBuilder:
            return BatchBuilder(tenant=tenant, validator=self.validator, where="line", extra_labels=extra_labels)

        return new_builder

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
        """`influx_columns.decode_single` (one field a line) over this decoder's cache of line keys."""
        db_key = db or ""
        known = self._single.get(db_key, {}) if not extra_labels else {}
        done = decode_single(
            text, self._builder(tenant, extra_labels), known, self._labels, now_ms=now_ms, mul=mul, div=div, db=db
        )
        if done is None:
            return None
        batch, fresh = done
        if fresh and not extra_labels:
            if self._single_size + len(fresh) > self.cache_size:
                self._single.clear()
                self._single_size = 0
            if len(fresh) <= self.cache_size:
                self._single.setdefault(db_key, {}).update(fresh)
                self._single_size += len(fresh)
        return batch

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
        """`influx_columns.decode_plain` over this decoder's cache of (db, head, field) keys."""
        known = self._known if not extra_labels else {}
        done = decode_plain(
            text, self._builder(tenant, extra_labels), known, self._labels, now_ms=now_ms, mul=mul, div=div, db=db
        )
        if done is None:
            return None
        batch, fresh = done
        if fresh and not extra_labels:
            self._remember(fresh)
        return batch

    @classmethod
    def _series(
        cls, b: BatchBuilder, point: Point, line: str, field: str, db: str | None, number: int
    ) -> Labels | None:
        """Labels of one field of a line not seen before (validated; None if invalid)."""
        return cls._labels(b, point.measurement, point_tags(point, line), field, db, number)

    @staticmethod
    def _labels(
        b: BatchBuilder, measurement: str, tags: list[tuple[str, str]], field: str, db: str | None, number: int | None
    ) -> Labels | None:
        key = (measurement, field, tuple(tags))
        if key in b.cache:
            return b.cache[key]
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
