"""Validation shared by every ingest protocol: names, labels, timestamps and values, against the
limits in settings. Problems are collected, never raised one at a time, so a client learns
everything wrong with its request at once."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from rtpm.errors import Problem
from rtpm.model.labels import LABEL_NAME_RE, METRIC_NAME_RE, Labels
from rtpm.settings import LimitsSettings

__all__ = ["Validator"]

Clock = Callable[[], float]

# Prometheus' type-and-unit labels (its `type-and-unit-labels` feature): reserved names that
# senders may put on a series. They are stored as ordinary labels, part of the series' identity,
# exactly as Prometheus stores them with the feature on; every other `__` name stays refused.
TYPE_AND_UNIT_LABELS = frozenset({"__type__", "__unit__"})


class Validator:
    """Checks one sample's parts; every check returns the problems it found (empty when fine)."""

    def __init__(self, limits: LimitsSettings, clock: Clock = time.time) -> None:
        self.limits = limits
        self._clock = clock
        self._good_names: set[str] = set()
        self._good_label_names: set[str] = set()
        # (name, *label items as sent) -> canonical Labels, for label sets already validated.
        self.series_cache: dict[tuple[Any, ...], Labels] = {}
        self._series_cache_max = 200_000
        # Labels -> the one Labels object every decoder hands out for that label set, so that the
        # write path's dicts keyed by Labels (series ids, latest values) find it by identity
        # instead of comparing equal tuples pair by pair. Bounded like the series cache.
        self._interned: dict[Labels, Labels] = {}

    def intern(self, labels: Labels) -> Labels:
        """The shared object equal to `labels` (`labels` itself the first time it is seen)."""
        found = self._interned.get(labels)
        if found is None:
            if len(self._interned) >= self._series_cache_max:
                self._interned.clear()
            self._interned[labels] = found = labels
        return found

    def remember_series(self, key: tuple[Any, ...], labels: Labels) -> None:
        if len(self.series_cache) >= self._series_cache_max:
            self.series_cache.clear()
        self.series_cache[key] = labels

    def window_ms(self) -> tuple[int, int]:
        now = self._clock()
        return (
            int((now - self.limits.max_past_seconds) * 1000),
            int((now + self.limits.max_future_seconds) * 1000),
        )

    def metric_name(self, name: object, problems: list[Problem], index: int | None, field: str = "name") -> bool:
        if type(name) is str and name in self._good_names:
            return True
        if not isinstance(name, str) or not name:
            problems.append(Problem(field, "must be a non-empty string", index))
            return False
        if len(name) > self.limits.max_metric_name_length:
            problems.append(Problem(field, f"longer than {self.limits.max_metric_name_length} characters", index))
            return False
        if not METRIC_NAME_RE.match(name):
            problems.append(Problem(field, f"{name!r} is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", index))
            return False
        if len(self._good_names) < 100_000:
            self._good_names.add(name)
        return True

    def labels(
        self, labels: object, problems: list[Problem], index: int | None, field: str = "labels"
    ) -> dict[str, str] | None:
        if labels is None:
            return {}
        if not isinstance(labels, Mapping):
            problems.append(Problem(field, "must be an object of label name to string value", index))
            return None
        lim = self.limits
        ok = True
        if len(labels) > lim.max_labels_per_series:
            problems.append(Problem(field, f"{len(labels)} labels, more than {lim.max_labels_per_series}", index))
            ok = False
        for k, v in labels.items():
            if k not in self._good_label_names:
                if (
                    not isinstance(k, str)
                    or not LABEL_NAME_RE.match(k)
                    or (k.startswith("__") and k not in TYPE_AND_UNIT_LABELS)
                ):
                    problems.append(
                        Problem(
                            f"{field}.{k}",
                            "not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, no __ prefix but __type__ and __unit__)",
                            index,
                        )
                    )
                    ok = False
                    continue
                if len(k) > lim.max_label_name_length:
                    problems.append(Problem(f"{field}.{k}", f"name longer than {lim.max_label_name_length}", index))
                    ok = False
                    continue
                if len(self._good_label_names) < 100_000:
                    self._good_label_names.add(k)
            if not isinstance(v, str):
                problems.append(Problem(f"{field}.{k}", "label value must be a string", index))
                ok = False
            elif len(v) > lim.max_label_value_length:
                problems.append(
                    Problem(f"{field}.{k}", f"value longer than {lim.max_label_value_length} characters", index)
                )
                ok = False
        return dict(labels) if ok else None

    def timestamp_ms(self, ts_ms: int, problems: list[Problem], index: int | None, field: str = "timestamp") -> bool:
        lo, hi = self.window_ms()
        if ts_ms < lo:
            problems.append(
                Problem(field, f"too far in the past (older than {self.limits.max_past_seconds:g} s)", index)
            )
            return False
        if ts_ms > hi:
            problems.append(
                Problem(
                    field,
                    f"too far in the future (more than {self.limits.max_future_seconds:g} s ahead)",
                    index,
                )
            )
            return False
        return True

    def finite(self, value: float, problems: list[Problem], index: int | None, field: str = "value") -> bool:
        if not math.isfinite(value):
            problems.append(Problem(field, "must be a finite number", index))
            return False
        return True
