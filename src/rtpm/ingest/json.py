"""The seed's JSON sample format: `{name, value, timestamp?, labels?, type?, unit?, help_text?}`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rtpm.errors import LimitExceeded, Problem, ValidationFailed
from rtpm.ingest.validate import Validator, parse_timestamp
from rtpm.model.labels import make_labels
from rtpm.model.samples import MetricMetadata, MetricType, WriteBatch

_TYPES = {t.value for t in MetricType if t is not MetricType.UNKNOWN}
_KNOWN_FIELDS = frozenset({"name", "value", "timestamp", "labels", "type", "unit", "help_text"})


def decode_items(items: Sequence[Any], *, tenant: str, validator: Validator, now_ms: int) -> WriteBatch:
    """Validate every item and build one WriteBatch, or raise ValidationFailed listing every problem
    (index, field, reason). Nothing of a request with a bad item is written."""
    limit = validator.limits.max_batch_items
    if len(items) > limit:
        raise LimitExceeded(f"batch has {len(items)} items, more than max_batch_items={limit}")
    problems: list[Problem] = []
    batch = WriteBatch(tenant)
    metadata: dict[str, MetricMetadata] = {}
    lo, hi = validator.window_ms()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(Problem("item", "must be an object", i))
            continue
        before = len(problems)
        unknown = item.keys() - _KNOWN_FIELDS
        if unknown:
            problems.append(Problem(sorted(unknown)[0], "unknown field", i))
        name = item.get("name")
        validator.metric_name(name, problems, i)
        value = item.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(Problem("value", "required, must be a number", i))
        else:
            value = float(value)
            validator.finite(value, problems, i)
        raw_ts = item.get("timestamp")
        if raw_ts is None:
            ts_ms = now_ms
        else:
            parsed = parse_timestamp(raw_ts)
            if parsed is None:
                problems.append(Problem("timestamp", "must be RFC3339 or unix seconds", i))
                ts_ms = 0
            else:
                ts_ms = parsed
                if not lo <= ts_ms <= hi:
                    validator.timestamp_ms(ts_ms, problems, i)
        labels = validator.labels(item.get("labels"), problems, i)
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
            continue
        assert isinstance(name, str) and labels is not None
        batch.add(make_labels(name, labels), ts_ms, value)  # type: ignore[arg-type]
        if md_type is not None or unit or help_text:
            metadata[name] = MetricMetadata(
                name, MetricType(md_type) if md_type else MetricType.UNKNOWN, unit or "", help_text or ""
            )
    if problems:
        raise ValidationFailed(problems)
    batch.metadata = list(metadata.values())
    return batch
