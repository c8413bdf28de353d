"""BatchBuilder: the part every push protocol shares once it has decoded a request.

A decoder hands it series (metric name + labels) and samples. Each distinct series is validated
once per request (the decoder keeps `cache`, keyed however is cheapest for its wire format), every
timestamp is checked against the accepted window, and problems are collected so that a client
learns everything wrong at once. `finish()` returns the WriteBatch, or raises BadDataError listing
the problems: nothing of a request with an invalid sample is written.

Partial acceptance (`finish(partial=True)`, used by remote write, OTLP, Influx line protocol and the
text format): the batch holds every acceptable sample and nothing else, and `refused()` says what
was left out, counted in samples per bounded reason (`REFUSAL_REASONS`). Samples are only ever
added for series that passed validation, so the batch is the same either way; only the JSON
batch keeps its all-or-nothing contract.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rtpm.errors import BadDataError, PayloadTooLarge, Problem
from rtpm.ingest.validate import Validator
from rtpm.model.histograms import Exemplar, Histogram
from rtpm.model.labels import Labels, make_labels
from rtpm.model.samples import STALE_NAN, MetricMetadata, MetricType, WriteBatch

MISSING: Final = object()
MAX_LISTED_PROBLEMS = 100

# Why samples of an accepted request were left out (the `reason` label of
# rtpm_ingest_samples_rejected): a bounded set.
INVALID_SERIES = "invalid_series"  # metric name or labels that can never be stored
TOO_OLD = "too_old"  # older than limits.max_past_seconds
TOO_NEW = "too_new"  # further ahead than limits.max_future_seconds
NATIVE_HISTOGRAM = "native_histogram"  # a native histogram that does not decode or is inconsistent
PARSE_ERROR = "parse_error"  # a line (Influx, text format) that does not parse: counted per line
UNSUPPORTED = "unsupported"  # OTLP data RTPM does not map (delta temporality, ...)
REFUSAL_REASONS = (INVALID_SERIES, TOO_OLD, TOO_NEW, NATIVE_HISTOGRAM, PARSE_ERROR, UNSUPPORTED)


@dataclass(slots=True)
class Refused:
    """What a partially accepted request left out: samples per reason, and the first problems."""

    where: str
    samples: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    items: int = 0  # distinct items (series, lines, data points) with a refused sample

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    def __bool__(self) -> bool:
        return bool(self.problem_count or self.samples)

    def message(self) -> str:
        """The first problem, and how many more there were."""
        if not self.problems:
            return ", ".join(f"{n} samples refused: {r}" for r, n in self.samples.items())
        first = self.problems[0]
        where = f"{self.where} {first.index}: " if first.index is not None else ""
        more = self.problem_count - 1
        return f"{where}{first.field}: {first.reason}" + (f" (and {more} more problems)" if more else "")


class BatchBuilder:
    """Collects one request's samples. `where` names an index in messages ("series", "line"...)."""

    def __init__(
        self,
        *,
        tenant: str,
        validator: Validator,
        where: str = "item",
        extra_labels: Mapping[str, str] | None = None,
    ) -> None:
        self.batch = WriteBatch(tenant)
        self.validator = validator
        self.where = where
        self.extra_labels = dict(extra_labels or {})
        self.cache: dict[Hashable, Labels | None] = {}
        self.problems: list[Problem] = []
        self.problem_count = 0
        self.lo_ms, self.hi_ms = validator.window_ms()
        self.max_samples = validator.limits.max_batch_items
        self._metadata: dict[str, MetricMetadata] = {}
        self._refused: dict[str, int] = {}
        self._refused_items: set[int] = set()

    def refuse(self, reason: str, samples: int, index: int | None) -> None:
        """Count `samples` left out for `reason` (one of REFUSAL_REASONS); the problem that says
        why is recorded separately, once, with `problem()`."""
        if samples:
            self._refused[reason] = self._refused.get(reason, 0) + samples
            if index is not None:
                self._refused_items.add(index)

    def refused(self) -> Refused:
        return Refused(
            self.where, dict(self._refused), list(self.problems), self.problem_count, len(self._refused_items)
        )

    def problem(self, field: str, reason: str, index: int | None) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(Problem(field, reason, index))

    def _collect(self, found: list[Problem]) -> None:
        for p in found:
            self.problem(p.field, p.reason, p.index)

    def make_series(self, name: str, labels: Mapping[str, str], index: int | None) -> Labels | None:
        """Validate a metric name and its labels (without `__name__`); canonical Labels or None."""
        found: list[Problem] = []
        v = self.validator
        ok = v.metric_name(name, found, index, "__name__")
        if self.extra_labels:
            labels = {**labels, **self.extra_labels}
        checked = v.labels(labels, found, index, "labels")
        if found:
            self._collect(found)
        if not ok or checked is None:
            return None
        return make_labels(name, checked)

    def add(self, labels: Labels, ts_ms: int, value: float, index: int | None) -> None:
        if self.lo_ms <= ts_ms <= self.hi_ms:
            self.batch.add(labels, ts_ms, value)
            return
        found: list[Problem] = []
        self.validator.timestamp_ms(ts_ms, found, index, "timestamp")
        self._collect(found)
        self.refuse(TOO_OLD if ts_ms < self.lo_ms else TOO_NEW, 1, index)

    def add_histogram(self, labels: Labels, ts_ms: int, value: Histogram, index: int | None) -> None:
        """A native histogram sample; one whose sum is a stale marker is stored as the float stale
        marker that ends the series (as Prometheus's TSDB treats it)."""
        if value.is_stale():
            self.add(labels, ts_ms, STALE_NAN, index)
            return
        if self.lo_ms <= ts_ms <= self.hi_ms:
            self.batch.add_histogram(labels, ts_ms, value)
            return
        found: list[Problem] = []
        self.validator.timestamp_ms(ts_ms, found, index, "histograms.timestamp")
        self._collect(found)
        self.refuse(TOO_OLD if ts_ms < self.lo_ms else TOO_NEW, 1, index)

    def add_exemplar(self, labels: Labels, exemplar: Exemplar) -> None:
        """An exemplar of an accepted series (exemplars outside the window are dropped silently:
        they are not samples)."""
        if self.lo_ms <= exemplar.ts_ms <= self.hi_ms:
            self.batch.add_exemplar(labels, exemplar)

    def extend(self, labels: Labels, ts_ms: Sequence[int], values: Sequence[float], index: int | None) -> None:
        """Add many samples of one series (the columns are appended in one go)."""
        lo, hi = self.lo_ms, self.hi_ms
        if ts_ms and not all(lo <= t <= hi for t in ts_ms):
            for t, value in zip(ts_ms, values, strict=True):
                self.add(labels, t, value, index)
            return
        self.batch.extend(labels, ts_ms, values)

    def metadata(self, name: str, type_: MetricType, unit: str, help_text: str, index: int | None) -> None:
        found: list[Problem] = []
        if not self.validator.metric_name(name, found, index, "metadata.metric_family_name"):
            self._collect(found)
            return
        limit = self.validator.limits.max_help_length
        if len(help_text) > limit:
            self.problem("metadata.help", f"longer than {limit} characters (max_help_length)", index)
            return
        old = self._metadata.get(name)
        if old is not None and type_ is MetricType.UNKNOWN:
            type_ = old.type
        self._metadata[name] = MetricMetadata(name, type_, unit, help_text)

    def finish(self, *, partial: bool = False) -> WriteBatch:
        """The batch; unless `partial`, BadDataError when anything was wrong (see `refused()`)."""
        if self.problem_count and not partial:
            raise self.error()
        n = len(self.batch)
        if n > self.max_samples:
            raise PayloadTooLarge(
                f"request has {n} samples, more than max_batch_items={self.max_samples}; send smaller batches"
            )
        self.batch.metadata = list(self._metadata.values())
        return self.batch

    def error(self) -> BadDataError:
        listed = self.problems
        first = listed[0]
        where = f"{self.where} {first.index}: " if first.index is not None else ""
        more = self.problem_count - 1
        message = f"{where}{first.field}: {first.reason}" + (f" (and {more} more problems)" if more else "")
        details: list[dict[str, Any]] = []
        for p in listed:
            d: dict[str, Any] = {"field": p.field, "reason": p.reason}
            if p.index is not None:
                d[self.where] = p.index
            details.append(d)
        if self.problem_count > len(listed):
            details.append({"field": "", "reason": f"{self.problem_count - len(listed)} more problems not listed"})
        return BadDataError(message, details=details)
