"""Alerting rules and alerts: pure data, no I/O.

An `AlertRule` is a PromQL expression plus `for`, `keep_firing_for`, labels, annotations and
severity (the seed's threshold form is kept beside the expression it compiled to). An `Alert` is one
label set of one rule, from the evaluation that first returned it until it is resolved.
Times are int epoch milliseconds (`*_ms`), durations float seconds (`*_seconds`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    WARNING = "warning"
    HIGH = "high"
    ERROR = "error"
    CRITICAL = "critical"


ACTIVE_STATES = (AlertState.PENDING, AlertState.FIRING)


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """The seed's threshold form; compiles to PromQL (see `rtpm.alerts.rules.compile_threshold`)."""

    metric_name: str
    condition: str  # one of > >= < <= == !=
    threshold: float
    labels: dict[str, str] = field(default_factory=dict)
    aggregation: str | None = None
    window_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class AlertRule:
    tenant: str
    name: str
    expr: str
    id: int | None = None
    group: str = "default"
    for_seconds: float = 0.0
    keep_firing_for_seconds: float = 0.0
    evaluation_interval_seconds: float = 60.0
    query_offset_seconds: float = 0.0
    severity: Severity = Severity.WARNING
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    receivers: list[str] = field(default_factory=list)
    threshold: ThresholdSpec | None = None
    created_ms: int = 0
    updated_ms: int = 0
    # Filled in by the evaluator (and kept in storage so every process sees them).
    last_eval_ms: int | None = None
    last_eval_seconds: float | None = None
    last_error: str | None = None

    def with_(self, **changes: Any) -> AlertRule:
        return replace(self, **changes)

    def spec(self) -> dict[str, Any]:
        """What storage keeps of the rule besides its id, tenant, name and timestamps."""
        out = asdict(self)
        for k in (
            "id",
            "tenant",
            "name",
            "created_ms",
            "updated_ms",
            "last_eval_ms",
            "last_eval_seconds",
            "last_error",
        ):
            out.pop(k)
        out["severity"] = self.severity.value
        return out

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], **fields: Any) -> AlertRule:
        data = dict(spec)
        data.update(fields)
        th = data.get("threshold")
        if isinstance(th, Mapping):
            data["threshold"] = ThresholdSpec(**th)
        data["severity"] = Severity(data.get("severity", "warning"))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class Alert:
    """One label set of one rule. `state` is pending or firing while active, then resolved."""

    tenant: str
    rule_id: int
    rule_name: str
    fingerprint: str  # 16 hex digits, Alertmanager's LabelSet fingerprint of `labels`
    labels: dict[str, str]
    annotations: dict[str, str]
    state: AlertState
    value: float
    active_at_ms: int
    severity: Severity = Severity.WARNING
    id: int | None = None
    fired_at_ms: int | None = None
    resolved_at_ms: int | None = None
    resolved_by: str | None = None
    keep_firing_since_ms: int | None = None
    last_sent_ms: int | None = None
    updated_ms: int = 0

    def with_(self, **changes: Any) -> Alert:
        return replace(self, **changes)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's (Prometheus common model) LabelSet fingerprint: FNV-1a 64 over the sorted
    names and values, each followed by the 0xff separator, printed as 16 hex digits."""
    h = 0xCBF29CE484222325
    prime = 0x100000001B3
    mask = 0xFFFFFFFFFFFFFFFF
    for name in sorted(labels):
        for part in (name.encode(), labels[name].encode()):
            for byte in part:
                h = ((h ^ byte) * prime) & mask
            h = ((h ^ 0xFF) * prime) & mask
    return f"{h:016x}"


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
