"""Samples, series and write batches. Timestamps are int epoch milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from rtpm.model.histograms import Exemplar, Histogram
from rtpm.model.labels import Labels
from rtpm.model.stale import STALE_NAN as STALE_NAN  # re-exported: the staleness marker's older home
from rtpm.model.stale import STALE_NAN_BITS as STALE_NAN_BITS
from rtpm.model.stale import is_stale_nan as is_stale_nan


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MetricMetadata:
    name: str
    type: MetricType = MetricType.UNKNOWN
    unit: str = ""
    help: str = ""


@dataclass(slots=True)
class WriteBatch:
    """Samples of one tenant, columnar: `series` holds each distinct label set once and
    `refs[i]` points sample i at its series.

    Decoders fill it through its methods only: `add` (one sample), `extend` (many samples of one
    series), `append_columns` (parallel columns, a label set per sample), or `ref` (a series' index,
    added when new) followed by `append_refs` or appends to `refs`/`ts_ms`/`values` (the per-sample
    loops that must not pay a call per sample). The label-set index is private to these methods;
    the native remote write decoder (ingest/_rwdecode.c) appends to `series` without it, and the
    index catches up at the first label set it does not hold."""

    tenant: str
    series: list[Labels] = field(default_factory=list)
    refs: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    metadata: list[MetricMetadata] = field(default_factory=list)
    _index: dict[Labels, int] = field(default_factory=dict, repr=False)
    # Native histogram samples and exemplars, columnar like the float samples (refs into `series`).
    h_refs: list[int] = field(default_factory=list)
    h_ts_ms: list[int] = field(default_factory=list)
    h_values: list[Histogram] = field(default_factory=list)
    ex_refs: list[int] = field(default_factory=list)
    exemplars: list[Exemplar] = field(default_factory=list)
    # Set by storage when it wrote the batch but for some of its samples (the head engine's limit of
    # active series): the write buffer answers the request with it.
    refusal: Exception | None = field(default=None, repr=False, compare=False)

    @property
    def series_index(self) -> dict[Labels, int]:
        """The label set -> ref index, for the native remote write decoder, which adds to `series`
        and to this dict in step (Python decoders use `ref`)."""
        return self._index

    def ref(self, labels: Labels) -> int:
        ref = self._index.get(labels)
        if ref is None:
            ref = self._new_ref(labels)
        return ref

    def _new_ref(self, labels: Labels) -> int:
        """The ref of a label set the index does not hold (new, or appended without the index)."""
        index, series = self._index, self.series
        if len(index) != len(series):
            self._catch_up()
            found = index.get(labels)
            if found is not None:
                return found
        ref = index[labels] = len(series)
        series.append(labels)
        return ref

    def _catch_up(self) -> None:
        for i, labels in enumerate(self.series):
            self._index.setdefault(labels, i)

    def add_histogram(self, labels: Labels, ts_ms: int, value: Histogram) -> None:
        self.h_refs.append(self.ref(labels))
        self.h_ts_ms.append(ts_ms)
        self.h_values.append(value)

    def add_exemplar(self, labels: Labels, exemplar: Exemplar) -> None:
        self.ex_refs.append(self.ref(labels))
        self.exemplars.append(exemplar)

    def add(self, labels: Labels, ts_ms: int, value: float) -> None:
        ref = self._index.get(labels)
        if ref is None:
            ref = self._new_ref(labels)
        self.refs.append(ref)
        self.ts_ms.append(ts_ms)
        self.values.append(value)

    def extend(self, labels: Labels, ts_ms: Sequence[int], values: Sequence[float]) -> None:
        """Many samples of one series (the columns appended in one go)."""
        if len(ts_ms) != len(values):
            raise ValueError("extend: ts_ms and values differ in length")
        ref = self.ref(labels)
        self.refs.extend([ref] * len(ts_ms))
        self.ts_ms.extend(ts_ms)
        self.values.extend(values)

    def append_refs(self, refs: Sequence[int], ts_ms: Sequence[int], values: Sequence[float]) -> None:
        """Samples as three parallel columns, each pointing at a series by its `ref()`."""
        if not len(refs) == len(ts_ms) == len(values):
            raise ValueError("append_refs: refs, ts_ms and values differ in length")
        self.refs.extend(refs)
        self.ts_ms.extend(ts_ms)
        self.values.extend(values)

    def append_columns(self, labels: Sequence[Labels], ts_ms: Sequence[int], values: Sequence[float]) -> None:
        """Samples as three parallel columns: sample i is (labels[i], ts_ms[i], values[i]).

        The series are indexed once per distinct label set; into an empty batch where every label
        set is distinct (one line, one series: the usual shape of a scrape or an Influx body), the
        columns are taken as they are."""
        n = len(labels)
        if not n == len(ts_ms) == len(values):
            raise ValueError("append_columns: labels, ts_ms and values differ in length")
        if not self.series:
            ref_of = dict(zip(labels, range(n), strict=True))
            if len(ref_of) == n:
                self.series.extend(labels)
                self._index = ref_of
                self.refs.extend(range(n))
            else:
                ref_of = dict(zip(ref_of, range(len(ref_of)), strict=True))
                self.series.extend(ref_of)
                self._index = ref_of
                self.refs.extend(map(ref_of.__getitem__, labels))
        else:
            index, series = self._index, self.series
            if len(index) != len(series):
                self._catch_up()
            for ls in dict.fromkeys(labels):
                if ls not in index:
                    index[ls] = len(series)
                    series.append(ls)
            self.refs.extend(map(index.__getitem__, labels))
        self.ts_ms.extend(ts_ms)
        self.values.extend(values)

    def __len__(self) -> int:
        """Samples: floats and histograms (exemplars are not samples)."""
        return len(self.ts_ms) + len(self.h_ts_ms)


@dataclass(slots=True)
class Series:
    """One series' samples in a time range, sorted by timestamp."""

    labels: Labels
    ts_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LatestSample:
    labels: Labels
    ts_ms: int
    value: float


@dataclass(frozen=True, slots=True)
class SeriesStats:
    labels: Labels
    count: int
    sum: float
    min: float
    max: float
    first_ts_ms: int
    last_ts_ms: int


@dataclass(frozen=True, slots=True)
class MetricInfo:
    name: str
    type: MetricType
    unit: str
    help: str
    series_count: int
