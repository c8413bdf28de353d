"""The seed's JSON sample format: `{name, value, timestamp?, labels?, type?, unit?, help_text?}`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rtpm.errors import LimitExceeded, Problem, ValidationFailed
from rtpm.ingest.validate import Validator
from rtpm.model.labels import make_labels
from rtpm.model.samples import MetricMetadata, MetricType, WriteBatch
from rtpm.model.time import MAX_TIME_MS, parse_timestamp

_TYPES = {t.value for t in MetricType if t is not MetricType.UNKNOWN}
_KNOWN_FIELDS = frozenset({"name", "value", "timestamp", "labels", "type", "unit", "help_text"})


def decode_items(items: Sequence[Any], *, tenant: str, validator: Validator, now_ms: int) -> WriteBatch:
    """Validate every item and build one WriteBatch, or raise ValidationFailed listing every problem
    (index, field, reason). Nothing of a request with a bad item is written.

    The common item (known name and label set, numeric value and timestamp) takes a fast path:
    its canonical labels come from the validator's series cache, so names and labels already
    validated are not checked again. Everything else goes through `_check_item`."""
    limit = validator.limits.max_batch_items
    if len(items) > limit:
        raise LimitExceeded(f"batch has {len(items)} items, more than max_batch_items={limit}")
    problems: list[Problem] = []
    batch = WriteBatch(tenant)
    metadata: dict[str, MetricMetadata] = {}
    lo, hi = validator.window_ms()
    known = validator.series_cache
    add = batch.add
    for i, item in enumerate(items):
        if type(item) is dict and len(item) <= 4:
            name = item.get("name")
            value: Any = item.get("value")
            raw_ts = item.get("timestamp")
            raw_labels = item.get("labels")
            key = (name, *raw_labels.items()) if type(raw_labels) is dict else (name,) if raw_labels is None else None
            labels = known.get(key) if key is not None else None
            vt = type(value)
            if (
                labels is not None
                and (vt is float or vt is int)
                and len(item) == 2 + (raw_ts is not None) + (raw_labels is not None)
            ):
                if raw_ts is None:
                    ts_ms = now_ms
                elif type(raw_ts) is float or type(raw_ts) is int:
                    # NaN, infinities and 1e308 fail the range test (1e308 * 1000 would not round)
                    ts_ms = round(raw_ts * 1000) if -_MAX_TS_S <= raw_ts <= _MAX_TS_S else lo - 1
                else:
                    try:
                        ts_ms = parse_timestamp(raw_ts)
                    except ValueError:
                        ts_ms = lo - 1  # the slow path below names the problem
                if lo <= ts_ms <= hi and -_MAX_FINITE <= value <= _MAX_FINITE:
                    add(labels, ts_ms, float(value))
                    continue
        _check_item(item, i, validator, problems, batch, metadata, now_ms, lo, hi)
    if problems:
        raise ValidationFailed(problems)
    batch.metadata = list(metadata.values())
    return batch


_MAX_FINITE = 1.7976931348623157e308
_MAX_TS_S = MAX_TIME_MS / 1000
# The non-finite values as Prometheus writes them in JSON (strings), case-insensitive; a JSON body
# may also carry the bare tokens NaN, Infinity and -Infinity (see rtpm.api.deps.read_json).
_SPECIAL_VALUES = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}


def _check_item(
    item: Any,
    i: int,
    validator: Validator,
    problems: list[Problem],
    batch: WriteBatch,
    metadata: dict[str, MetricMetadata],
    now_ms: int,
    lo: int,
    hi: int,
) -> None:
    """The full check of one item: every problem is recorded; a valid item is added to `batch`."""
    if not isinstance(item, dict):
        problems.append(Problem("item", "must be an object", i))
        return
    before = len(problems)
    unknown = item.keys() - _KNOWN_FIELDS
    if unknown:
        problems.append(Problem(sorted(unknown)[0], "unknown field", i))
    name = item.get("name")
    validator.metric_name(name, problems, i)
    raw_value = item.get("value")
    value = 0.0
    if isinstance(raw_value, str) and raw_value.strip().lower() in _SPECIAL_VALUES:
        value = _SPECIAL_VALUES[raw_value.strip().lower()]
    elif isinstance(raw_value, bool) or not isinstance(raw_value, int | float):
        problems.append(Problem("value", 'required, must be a number (or "NaN", "+Inf", "-Inf")', i))
    else:
        value = float(raw_value)
    raw_ts = item.get("timestamp")
    if raw_ts is None:
        ts_ms = now_ms
    else:
        try:
            ts_ms = parse_timestamp(raw_ts)
        except ValueError as exc:
            problems.append(Problem("timestamp", f"must be RFC3339 or unix seconds ({exc})", i))
            ts_ms = 0
        else:
            if not lo <= ts_ms <= hi:
                validator.timestamp_ms(ts_ms, problems, i)
    raw_labels = item.get("labels")
    labels = validator.labels(raw_labels, problems, i)
    md_type = item.get("type")
    if md_type is not None and md_type not in _TYPES:
        problems.append(Problem("type", f"must be one of {', '.join(sorted(_TYPES))}", i))
    unit, help_text = item.get("unit"), item.get("help_text")
    for field, text in (("unit", unit), ("help_text", help_text)):
        if text is not None and not isinstance(text, str):
            problems.append(Problem(field, "must be a string", i))
    if isinstance(help_text, str) and len(help_text) > validator.limits.max_help_length:
        problems.append(Problem("help_text", f"longer than {validator.limits.max_help_length}", i))
    if len(problems) != before:
        return
    assert isinstance(name, str) and labels is not None
    canonical = validator.intern(make_labels(name, labels))
    validator.remember_series((name, *raw_labels.items()) if raw_labels else (name,), canonical)
    batch.add(canonical, ts_ms, value)
    if md_type is not None or unit or help_text:
        metadata[name] = MetricMetadata(
            name, MetricType(md_type) if md_type else MetricType.UNKNOWN, unit or "", help_text or ""
        )
