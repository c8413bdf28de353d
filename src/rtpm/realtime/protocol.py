"""The live-update wire protocol: client messages parsed and validated, server messages encoded.

Client -> server (JSON text frames):
    {"type": "subscribe", "data": {"subscription": "metrics" | "alerts", "id"?: str,
                                   "metrics"?: [names], "labels"?: {name: value},
                                   "matchers"?: [{"name", "type": "=|!=|=~|!~", "value"} | 'job=~"api.*"'],
                                   "max_rate"?: number}}
    {"type": "unsubscribe", "data": {"id": str} | {"subscription": "metrics" | "alerts"} | {}}
    {"type": "subscribe", "metrics"?: [names], "labels"?: {...}, ...}  (the original RTPM API's
        locustfile: the subscription's fields beside `type`, a metrics subscription by default)
    {"type": "ping"}
Server -> client: connection, subscribed, unsubscribed, metric, alert, lagged, error, pong; each
carries `type` and `timestamp` (RFC3339, milliseconds, UTC). Updates are batched: every batch
interval a connection gets one `metric` message per series with new samples (every sample of that
series committed since the last batch, plus `committed_at`, and `payload`: the newest of them as the
original RTPM API's clients read it, `{name, value, timestamp, labels}`), and all the messages of one
batch go out together. A `metric` message is the same bytes for every connection it goes to (`Frame`).

Everything invalid raises BadDataError (or LimitExceeded) with a message naming the field; the
endpoint turns it into an `error` message and keeps the connection open.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from rtpm.errors import BadDataError, LimitExceeded
from rtpm.model.labels import METRIC_NAME, Matcher, MatchType, is_valid_label_name, is_valid_metric_name
from rtpm.model.time import to_rfc3339

Kind = Literal["metrics", "alerts"]
KINDS: tuple[Kind, ...] = ("metrics", "alerts")

_MATCHER_RE = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*$')
_SUBSCRIBE_KEYS = frozenset({"subscription", "id", "metrics", "metric_names", "labels", "matchers", "max_rate"})
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ProtocolLimits:
    max_matchers: int = 16
    max_metric_names: int = 100
    max_message_bytes: int = 65_536


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """What one subscription wants. `metric_names` None means every metric name."""

    kind: Kind
    id: str | None = None
    metric_names: frozenset[str] | None = None
    matchers: tuple[Matcher, ...] = ()
    max_rate: float | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subscription": self.kind}
        if self.metric_names is not None:
            out["metrics"] = sorted(self.metric_names)
        if self.matchers:
            out["matchers"] = [{"name": m.name, "type": m.type.value, "value": m.value} for m in self.matchers]
        if self.max_rate is not None:
            out["max_rate"] = self.max_rate
        return out


@dataclass(frozen=True, slots=True)
class Subscribe:
    spec: SubscriptionSpec


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Drop the subscription `id`, or every subscription of `kind`, or (both None) all of them."""

    id: str | None = None
    kind: Kind | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    data: Any = field(default=None)


ClientMessage = Subscribe | Unsubscribe | Ping


def parse_client_message(text: str | bytes, limits: ProtocolLimits) -> ClientMessage:
    if len(text) > limits.max_message_bytes:
        raise LimitExceeded(f"message larger than {limits.max_message_bytes} bytes")
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadDataError(f"message is not valid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise BadDataError("message must be a JSON object with a 'type'")
    kind = msg.get("type")
    data = msg.get("data")
    if kind == "ping":
        return Ping(data)
    if data is not None and not isinstance(data, dict):
        raise BadDataError("data: expected an object")
    if kind == "subscribe":
        if data is None:
            # The original RTPM API's locustfile: {"type": "subscribe", "metrics": [...], "labels": {...}}
            data = {k: v for k, v in msg.items() if k not in ("type", "timestamp")}
            if not data:
                raise BadDataError('data: required, e.g. {"subscription": "metrics"}')
            data.setdefault("subscription", "metrics")
        return Subscribe(_parse_spec(data, limits))
    if kind == "unsubscribe":
        return _parse_unsubscribe(data or {})
    raise BadDataError(f"type: unknown message type {kind!r}; expected subscribe, unsubscribe or ping")


def _parse_kind(raw: Any, where: str) -> Kind:
    if raw not in KINDS:
        raise BadDataError(f"{where}: expected 'metrics' or 'alerts', got {raw!r}")
    return raw


def _parse_id(raw: Any) -> str:
    if not isinstance(raw, str) or not _ID_RE.match(raw):
        raise BadDataError("data.id: 1-64 characters of letters, digits and _ . : -")
    return raw


def _parse_spec(data: dict[str, Any], limits: ProtocolLimits) -> SubscriptionSpec:
    unknown = sorted(set(data) - _SUBSCRIBE_KEYS)
    if unknown:
        raise BadDataError(f"data: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_SUBSCRIBE_KEYS))}")
    kind = _parse_kind(data.get("subscription"), "data.subscription")
    sub_id = _parse_id(data["id"]) if data.get("id") is not None else None

    names: set[str] | None = None
    raw_names = data.get("metrics", data.get("metric_names"))
    if raw_names is not None:
        if kind == "alerts":
            raise BadDataError("data.metrics: alert subscriptions filter with matchers on alert labels")
        if isinstance(raw_names, str):
            raw_names = [raw_names]
        if not isinstance(raw_names, list) or not raw_names:
            raise BadDataError("data.metrics: expected a non-empty list of metric names")
        if len(raw_names) > limits.max_metric_names:
            raise LimitExceeded(f"data.metrics: at most {limits.max_metric_names} metric names per subscription")
        for n in raw_names:
            if not isinstance(n, str) or not is_valid_metric_name(n):
                raise BadDataError(f"data.metrics: invalid metric name {n!r}")
        names = set(raw_names)

    matchers: list[Matcher] = []
    labels = data.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            raise BadDataError("data.labels: expected an object of label name to value")
        for k, v in labels.items():
            matchers.append(_make_matcher(k, "=", v, f"data.labels.{k}"))
    raw_matchers = data.get("matchers")
    if raw_matchers is not None:
        if not isinstance(raw_matchers, list):
            raise BadDataError("data.matchers: expected a list")
        for i, m in enumerate(raw_matchers):
            matchers.append(_parse_matcher(m, f"data.matchers[{i}]"))
    if len(matchers) > limits.max_matchers:
        raise LimitExceeded(f"data.matchers: at most {limits.max_matchers} matchers per subscription")

    # An equality matcher on __name__ narrows the names like `metrics` does (and is indexed the same way).
    rest: list[Matcher] = []
    for m in matchers:
        if kind == "metrics" and m.name == METRIC_NAME and m.type is MatchType.EQUAL:
            names = {m.value} if names is None else names & {m.value}
        else:
            rest.append(m)
    if names is not None and not names:
        raise BadDataError("data: the metric names and the __name__ matcher exclude each other")

    max_rate = data.get("max_rate")
    if max_rate is not None:
        if isinstance(max_rate, bool) or not isinstance(max_rate, int | float) or not math.isfinite(max_rate):
            raise BadDataError("data.max_rate: expected a positive number of messages per second per series")
        if max_rate <= 0:
            raise BadDataError("data.max_rate: must be > 0")
        max_rate = float(max_rate)
    return SubscriptionSpec(
        kind=kind,
        id=sub_id,
        metric_names=frozenset(names) if names is not None else None,
        matchers=tuple(rest),
        max_rate=max_rate,
    )


def _parse_matcher(raw: Any, where: str) -> Matcher:
    if isinstance(raw, str):
        m = _MATCHER_RE.match(raw)
        if m is None:
            raise BadDataError(f'{where}: expected name, operator and quoted value, like job=~"api.*"')
        try:
            value = orjson.loads(m.group(3))
        except orjson.JSONDecodeError:
            raise BadDataError(f"{where}: bad escape in the quoted value") from None
        return _make_matcher(m.group(1), m.group(2), value, where)
    if isinstance(raw, dict):
        unknown = set(raw) - {"name", "type", "op", "value"}
        if unknown:
            raise BadDataError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        return _make_matcher(raw.get("name"), raw.get("type", raw.get("op", "=")), raw.get("value"), where)
    raise BadDataError(f'{where}: expected an object or a string like job="api"')


def _make_matcher(name: Any, op: Any, value: Any, where: str) -> Matcher:
    if not isinstance(name, str) or not is_valid_label_name(name):
        raise BadDataError(f"{where}: invalid label name {name!r}")
    try:
        mtype = MatchType(op)
    except ValueError:
        raise BadDataError(f"{where}: unknown match type {op!r}; expected =, !=, =~ or !~") from None
    if not isinstance(value, str):
        raise BadDataError(f"{where}: the value must be a string")
    try:
        return Matcher(name, mtype, value)
    except ValueError as exc:
        raise BadDataError(f"{where}: {exc}") from None


def _parse_unsubscribe(data: dict[str, Any]) -> Unsubscribe:
    unknown = set(data) - {"id", "subscription"}
    if unknown:
        raise BadDataError(f"data: unknown field(s) {', '.join(sorted(unknown))}; expected id or subscription")
    sub_id = _parse_id(data["id"]) if data.get("id") is not None else None
    kind = _parse_kind(data["subscription"], "data.subscription") if data.get("subscription") is not None else None
    return Unsubscribe(sub_id, kind)


# --- server -> client ---


class Frame:
    """One server message, encoded once and shared by every connection it goes to.

    `data` is the JSON text (UTF-8). `wire` is a cache slot for the transport's encoding of it (a
    WebSocket text frame, filled by the first connection that writes it), so a message that goes to
    ten thousand connections is serialised and framed once, then written as the same bytes.
    """

    __slots__ = ("data", "wire")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.wire: bytes | None = None

    @property
    def text(self) -> str:
        return self.data.decode()


def json_value(value: float) -> float | str:
    """Sample values as JSON numbers; NaN and infinities (not JSON) as Prometheus' strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def encode_frame(message: dict[str, Any], now_ms: int) -> Frame:
    message["timestamp"] = to_rfc3339(now_ms)
    return Frame(orjson.dumps(message))


def encode(message: dict[str, Any], now_ms: int) -> str:
    message["timestamp"] = to_rfc3339(now_ms)
    return orjson.dumps(message).decode()


def error_message(code: str, message: str, now_ms: int, **extra: Any) -> str:
    return encode({"type": "error", "code": code, "message": message, **extra}, now_ms)
