"""The bodies the original RTPM API's clients POST to `/api/v1/metrics`, as the seed's JSON items.

The original accepted any JSON there. Its clients send four shapes, each turned into items of the
seed's format (`{name, value, timestamp?, labels?, type?, unit?, help_text?}`, see `ingest.json`):

* one MetricPoint: an object with `name` (or `metric_name`) and `value`;
* a list of MetricPoints;
* `{"metrics": [MetricPoint, ...]}` (the locustfile's; `metric_name` is an alias of `name`);
* an agent object (the k6 script's and the pytest suite's `{"agentId": "agent-001", "timestamp":
  ..., "cpu": 45.5, "requestRate": 150.2, ...}`): every numeric field becomes one sample of the
  metric `agent_<field in snake_case>` (`cpu` -> `agent_cpu`, `requestRate` ->
  `agent_request_rate`), every string field but `timestamp` a label of those samples (`agentId`
  -> `agent_id`), `timestamp` their time. Fields of other types (true/false, null, lists,
  objects) carry no sample; they are named in the answer's `ignored_fields`.

`{}` holds no sample and is accepted as such (processed_count 0), as the original did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rtpm.errors import Problem, ValidationFailed

AGENT_METRIC_PREFIX = "agent_"
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(slots=True)
class OriginalBody:
    items: list[Any]
    shape: str  # "point", "list", "metrics" or "agent"
    ignored_fields: list[str] = field(default_factory=list)


def snake_case(name: str) -> str:
    """`requestRate` -> `request_rate`, `agentId` -> `agent_id`; other characters become `_`."""
    return _NOT_NAME.sub("_", _CAMEL.sub(r"_\1", name)).lower()


def _point(item: Any, where: str, problems: list[Problem], index: int | None) -> Any:
    """A MetricPoint with `metric_name` taken as `name`."""
    if not isinstance(item, dict) or "metric_name" not in item:
        return item
    out = dict(item)
    alias = out.pop("metric_name")
    if "name" in out and out["name"] != alias:
        problems.append(Problem(f"{where}metric_name", "disagrees with name; send one of them", index))
    out.setdefault("name", alias)
    return out


def _is_point(body: dict[str, Any]) -> bool:
    return "name" in body or "metric_name" in body


def _agent_items(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    labels: dict[str, str] = {}
    values: list[tuple[str, float]] = []
    ignored: list[str] = []
    timestamp = body.get("timestamp")
    for key, value in body.items():
        if key == "timestamp":
            continue
        if isinstance(value, bool) or value is None or isinstance(value, list | dict):
            ignored.append(key)
        elif isinstance(value, int | float):
            values.append((AGENT_METRIC_PREFIX + snake_case(key), value))
        elif isinstance(value, str):
            labels[snake_case(key)] = value
        else:  # pragma: no cover - JSON has no other types
            ignored.append(key)
    items = []
    for name, value in values:
        item: dict[str, Any] = {"name": name, "value": value}
        if timestamp is not None:
            item["timestamp"] = timestamp
        if labels:
            item["labels"] = labels
        items.append(item)
    return items, ignored


def original_items(body: Any) -> OriginalBody:
    """The seed's items for any of the original's shapes; ValidationFailed naming what is wrong."""
    problems: list[Problem] = []
    if isinstance(body, list):
        out = OriginalBody([_point(x, "", problems, i) for i, x in enumerate(body)], "list")
    elif not isinstance(body, dict):
        raise ValidationFailed(
            [Problem("body", "expected a JSON object (a metric, {'metrics': [...]} or an agent's metrics) or a list")]
        )
    elif "metrics" in body and not _is_point(body):
        metrics = body["metrics"]
        if not isinstance(metrics, list):
            raise ValidationFailed([Problem("metrics", "expected a list of metrics")])
        extra = sorted(set(body) - {"metrics"})
        if extra:
            problems.append(Problem(extra[0], "unknown field beside metrics"))
        out = OriginalBody([_point(x, "", problems, i) for i, x in enumerate(metrics)], "metrics")
    elif _is_point(body):
        out = OriginalBody([_point(body, "", problems, None)], "point")
    else:
        items, ignored = _agent_items(body)
        if body and not items:
            raise ValidationFailed(
                [Problem("body", "an agent's metrics object needs at least one numeric field (or send name and value)")]
            )
        out = OriginalBody(items, "agent", ignored)
    if problems:
        raise ValidationFailed(problems)
    return out
