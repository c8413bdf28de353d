"""AlertmanagerReceiver: POSTs alerts to Alertmanager's own API (`/api/v2/alerts`), as Prometheus
does: firing alerts (re-sent while they fire, so Alertmanager does not time them out at `endsAt`)
and resolved ones (with `endsAt` when they ended)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from rtpm import __version__
from rtpm.alerts.evaluator import Notification
from rtpm.model.alerts import AlertState
from rtpm.model.time import to_rfc3339
from rtpm.notify.receivers.base import DeliveryError, check_status, generator_url


def api_alerts(batch: Sequence[Notification], *, external_url: str) -> list[dict[str, Any]]:
    out = []
    for n in batch:
        a = n.alert
        resolved = a.state is AlertState.RESOLVED and a.resolved_at_ms is not None
        out.append(
            {
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": to_rfc3339(a.fired_at_ms or a.active_at_ms),
                "endsAt": to_rfc3339(a.resolved_at_ms if resolved and a.resolved_at_ms is not None else n.ends_at_ms),
                "generatorURL": generator_url(external_url, n.rule.expr),
            }
        )
    return out


class AlertmanagerReceiver:
    kind = "alertmanager"

    def __init__(
        self,
        name: str,
        url: str,
        client: httpx.AsyncClient,
        *,
        external_url: str = "",
        timeout_seconds: float = 10.0,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self._client = client
        self._external_url = external_url
        self._timeout = timeout_seconds

    def accepts(self, n: Notification) -> bool:
        receivers = n.rule.receivers
        return not receivers or "alertmanager" in receivers or self.name in receivers

    async def send(self, batch: Sequence[Notification]) -> None:
        body = orjson.dumps(api_alerts(batch, external_url=self._external_url))
        headers = {"Content-Type": "application/json", "User-Agent": f"RTPM/{__version__}"}
        try:
            response = await self._client.post(self.url, content=body, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=True) from exc
        check_status(response, self.name)
