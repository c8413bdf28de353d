"""A small synchronous Python client for RTPM's HTTP API (httpx).

    from rtpm.client import RtpmClient

    with RtpmClient("http://127.0.0.1:8000", token="rtpm_...") as rtpm:
        rtpm.push("cpu_usage", 42.5, labels={"host": "web-1"})
        rtpm.query("avg by (host) (cpu_usage)")

Credentials: `token` is an API key or a JWT access token (sent as `Authorization: Bearer`), or
call `login(username, password)` once. Requests refused with 429 or 503 (and connection errors)
are retried with exponential backoff, honouring `Retry-After`. Pushes without a timestamp get the
client's clock, so a retried push can never store a sample twice (RTPM keeps one sample per
series and timestamp).

Errors: `RtpmClientError` (status, code, message) for any error answer after the retries.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from rtpm import __version__

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_Time = str | float | int


class RtpmClientError(Exception):
    """An error answer from RTPM (or no answer at all: status 0)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def _error_from(response: httpx.Response) -> RtpmClientError:
    try:
        body = response.json()
    except ValueError:
        return RtpmClientError(response.status_code, "http_error", response.text[:500] or response.reason_phrase)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):  # RTPM's envelope
        err = body["error"]
        return RtpmClientError(response.status_code, str(err.get("code")), str(err.get("message")), err.get("details"))
    if isinstance(body, dict) and isinstance(body.get("code"), str):  # an unknown route: flat, with "path"
        return RtpmClientError(response.status_code, body["code"], str(body.get("message")), body.get("details"))
    if isinstance(body, dict) and body.get("status") == "error":  # Prometheus' envelope
        return RtpmClientError(response.status_code, str(body.get("errorType")), str(body.get("error")))
    return RtpmClientError(response.status_code, "http_error", str(body)[:500])


def _retry_after_seconds(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class RtpmClient:
    """One connection pool to one RTPM server. Use as a context manager, or call close()."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout_seconds: float = 30.0,
        retries: int = 4,
        backoff_seconds: float = 0.25,
        max_backoff_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout_seconds,
            transport=transport,
            headers={"User-Agent": f"rtpm-client/{__version__}"},
        )
        if token:
            self.set_token(token)

    # ---- plumbing -------------------------------------------------------------------------------

    def __enter__(self) -> RtpmClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def set_token(self, token: str) -> None:
        self._http.headers["Authorization"] = f"Bearer {token}"

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        hinted = _retry_after_seconds(response) if response is not None else None
        if hinted is not None:
            return min(hinted, self.max_backoff_seconds)
        delay = self.backoff_seconds * (2**attempt)
        return float(min(delay * (0.5 + random.random() / 2), self.max_backoff_seconds))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying 429/502/503/504 and connection errors; raise RtpmClientError on an error answer."""
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise RtpmClientError(0, "unreachable", f"{self.url}{path}: {exc}") from exc
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
                    break
            self._sleep(self._backoff(attempt, response))
            attempt += 1
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _prometheus(self, path: str, params: Mapping[str, Any]) -> Any:
        body = self._json("POST", path, data={k: str(v) for k, v in params.items() if v is not None})
        return body["data"]

    # ---- auth -------------------------------------------------------------------------------------

    def login(self, username: str, password: str) -> str:
        """Log in as a user; later requests carry the access token. Returns it."""
        body = self._json("POST", "/api/v1/auth/login", json={"username": username, "password": password})
        token = str(body["access_token"])
        self.set_token(token)
        return token

    # ---- writes -----------------------------------------------------------------------------------

    def push(
        self,
        name: str,
        value: float,
        *,
        labels: Mapping[str, str] | None = None,
        timestamp: _Time | None = None,
        type: str | None = None,  # noqa: A002 - the API's field name
        unit: str | None = None,
        help_text: str | None = None,
    ) -> Any:
        """Store one sample (answered once committed)."""
        item = self._item(name, value, labels, timestamp, type, unit, help_text)
        return self._json("POST", "/api/v1/metrics/ingest", json=item)

    def push_batch(self, items: Iterable[Mapping[str, Any]]) -> Any:
        """Store many samples in one request: all or none. Items are the API's
        `{"name", "value", "labels", "timestamp", "type", "unit", "help_text"}`."""
        now = self._clock()
        metrics = [dict(i) if i.get("timestamp") is not None else {**i, "timestamp": now} for i in items]
        return self._json("POST", "/api/v1/metrics/batch", json={"metrics": metrics})

    def _item(
        self,
        name: str,
        value: float,
        labels: Mapping[str, str] | None,
        timestamp: _Time | None,
        type_: str | None,
        unit: str | None,
        help_text: str | None,
    ) -> dict[str, Any]:
        item: dict[str, Any] = {"name": name, "value": value, "timestamp": timestamp or self._clock()}
        if labels:
            item["labels"] = dict(labels)
        for key, v in (("type", type_), ("unit", unit), ("help_text", help_text)):
            if v is not None:
                item[key] = v
        return item

    # ---- reads ------------------------------------------------------------------------------------

    def query(self, promql: str, *, time: _Time | None = None) -> Any:
        """PromQL instant query; returns Prometheus' `data` (`resultType`, `result`)."""
        return self._prometheus("/api/v1/query", {"query": promql, "time": time})

    def query_range(self, promql: str, *, start: _Time, end: _Time, step: str | float) -> Any:
        """PromQL range query; returns Prometheus' `data`."""
        return self._prometheus("/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step})

    def query_metric(
        self,
        metric_name: str,
        *,
        start_time: _Time,
        end_time: _Time,
        step: str | float | None = None,
        aggregation: str | None = None,
        labels: Mapping[str, str] | None = None,
        group_by: list[str] | None = None,
    ) -> Any:
        """The seed's query: one metric over a range, bucketed by `step` and aggregated (the object
        form: the range, step and aggregation with the `series`)."""
        body: dict[str, Any] = {"metric_name": metric_name, "start_time": start_time, "end_time": end_time}
        for key, v in (("step", step), ("aggregation", aggregation), ("labels", labels), ("group_by", group_by)):
            if v:
                body[key] = v
        return self._json("POST", "/api/v1/metrics/query", params={"format": "object"}, json=body)

    def latest(self, name: str, **labels: str) -> Any:
        return self._json("GET", f"/api/v1/metrics/latest/{name}", params=labels)

    def names(self) -> Any:
        return self._json("GET", "/api/v1/metrics/names")

    def stats(self, name: str, *, start_time: _Time | None = None, end_time: _Time | None = None) -> Any:
        params = {k: str(v) for k, v in (("start_time", start_time), ("end_time", end_time)) if v is not None}
        return self._json("GET", f"/api/v1/metrics/stats/{name}", params=params)

    # ---- alerts -----------------------------------------------------------------------------------

    def alert_rules(self) -> Any:
        return self._json("GET", "/api/v1/alerts/rules")

    def create_alert_rule(self, rule: Mapping[str, Any]) -> Any:
        """A rule: `name` plus `expr` (PromQL) or the threshold form (`metric_name`, `condition`,
        `threshold`, `aggregation`, `window`), with `for`, `severity`, `labels`, `annotations`."""
        return self._json("POST", "/api/v1/alerts/rules", json=dict(rule))

    def active_alerts(self) -> Any:
        return self._json("GET", "/api/v1/alerts/active")

    def alert_history(self, **filters: str | int) -> Any:
        return self._json("GET", "/api/v1/alerts/history", params={k: str(v) for k, v in filters.items()})

    def resolve_alert(self, alert_id: int) -> Any:
        return self._json("POST", f"/api/v1/alerts/resolve/{alert_id}")

    # ---- operations -------------------------------------------------------------------------------

    def health(self, kind: str = "detailed") -> Any:
        """`/health/detailed` (or `ready`, `live`, `system`); a 503 answer is returned, not raised."""
        response = self._http.get(f"/health/{kind}")
        return response.json()
