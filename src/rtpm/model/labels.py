"""Labels, label matchers and Prometheus naming rules."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from rtpm.model.regex import Pattern, RegexError, compile_regex

METRIC_NAME = "__name__"
METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# A series' labels: (name, value) pairs sorted by name, `__name__` included. Hashable and cheap.
Labels = tuple[tuple[str, str], ...]


def make_labels(metric_name: str, labels: Mapping[str, str] | None = None) -> Labels:
    """Build canonical labels from a metric name and its other labels (empty values dropped)."""
    pairs = [(METRIC_NAME, metric_name)]
    if labels:
        pairs.extend((k, v) for k, v in labels.items() if k != METRIC_NAME and v != "")
    pairs.sort()
    return tuple(pairs)


def labels_from_pairs(pairs: Iterable[tuple[str, str]]) -> Labels:
    return tuple(sorted((k, v) for k, v in pairs if v != ""))


def metric_name_of(labels: Labels) -> str:
    for k, v in labels:
        if k == METRIC_NAME:
            return v
    return ""


def label_dict(labels: Labels, *, with_name: bool = True) -> dict[str, str]:
    if with_name:
        return dict(labels)
    return {k: v for k, v in labels if k != METRIC_NAME}


def get_label(labels: Labels, name: str) -> str:
    for k, v in labels:
        if k == name:
            return v
    return ""


def fingerprint(labels: Labels) -> int:
    """A stable signed 64-bit fingerprint of the sorted label set (same across processes and runs)."""
    h = hashlib.blake2b(digest_size=8)
    for k, v in labels:
        h.update(k.encode())
        h.update(b"\xff")
        h.update(v.encode())
        h.update(b"\xfe")
    return int.from_bytes(h.digest(), "big", signed=True)


def is_valid_metric_name(name: str) -> bool:
    return bool(METRIC_NAME_RE.match(name))


def is_valid_label_name(name: str) -> bool:
    return bool(LABEL_NAME_RE.match(name))


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """A label matcher with Prometheus semantics: a missing label matches as the empty string,
    and regular expressions are anchored at both ends."""

    name: str
    type: MatchType
    value: str
    _regex: Pattern | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.type in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                compiled = compile_regex(self.value)
            except RegexError as exc:
                raise ValueError(f"invalid regular expression {self.value!r}: {exc}") from None
            object.__setattr__(self, "_regex", compiled)

    @classmethod
    def equal(cls, name: str, value: str) -> Matcher:
        return cls(name, MatchType.EQUAL, value)

    def matches(self, value: str) -> bool:
        t = self.type
        if t is MatchType.EQUAL:
            return value == self.value
        if t is MatchType.NOT_EQUAL:
            return value != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(value) is not None
        return hit if t is MatchType.REGEX else not hit

    def matches_empty(self) -> bool:
        return self.matches("")

    def __str__(self) -> str:
        return f'{self.name}{self.type.value}"{self.value}"'


def matches_all(labels: Labels, matchers: Iterable[Matcher]) -> bool:
    d = dict(labels)
    return all(m.matches(d.get(m.name, "")) for m in matchers)


def equal_metric_name(matchers: Iterable[Matcher]) -> str | None:
    """The metric name fixed by an `__name__="x"` matcher, if any (lets storage narrow its lookup)."""
    for m in matchers:
        if m.name == METRIC_NAME and m.type is MatchType.EQUAL:
            return m.value
    return None
