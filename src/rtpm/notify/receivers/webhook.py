"""WebhookReceiver: POSTs Alertmanager's webhook payload (version 4), optionally signed with
HMAC-SHA256 of the body in `X-RTPM-Signature-256: sha256=<hex>`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from rtpm import __version__
from rtpm.alerts.evaluator import Notification, NotificationKind
from rtpm.model.alerts import AlertState
from rtpm.model.time import to_rfc3339
from rtpm.notify.receivers.base import DeliveryError, check_status, generator_url

SIGNATURE_HEADER = "X-RTPM-Signature-256"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def v4_payload(receiver: str, batch: Sequence[Notification], *, external_url: str) -> dict[str, Any]:
    """Alertmanager's webhook message for one group: one rule, one kind of transition."""
    rule = batch[0].rule
    alerts: list[dict[str, Any]] = []
    for n in batch:
        a = n.alert
        resolved = a.state is AlertState.RESOLVED
        alerts.append(
            {
                "status": "resolved" if resolved else "firing",
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": to_rfc3339(a.fired_at_ms or a.active_at_ms),
                "endsAt": to_rfc3339(a.resolved_at_ms if resolved and a.resolved_at_ms is not None else n.ends_at_ms),
                "generatorURL": generator_url(external_url, rule.expr),
                "fingerprint": a.fingerprint,
            }
        )
    status = "firing" if any(x["status"] == "firing" for x in alerts) else "resolved"
    group_labels = {"alertname": rule.name}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{rule.name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
    }


class WebhookReceiver:
    kind = "webhook"

    def __init__(
        self, name: str, url: str, client: httpx.AsyncClient, *, secret: str | None = None, external_url: str = ""
    ) -> None:
        self.name = name
        self.url = url
        self._client = client
        self._secret = secret
        self._external_url = external_url

    def accepts(self, n: Notification) -> bool:
        if n.kind is NotificationKind.RESEND:
            return False
        return not n.rule.receivers or self.name in n.rule.receivers

    async def send(self, batch: Sequence[Notification]) -> None:
        body = orjson.dumps(v4_payload(self.name, batch, external_url=self._external_url))
        headers = {"Content-Type": "application/json", "User-Agent": f"RTPM/{__version__}"}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {self.name}: {type(exc).__name__}: {exc}", retryable=True) from exc
        check_status(response, f"webhook {self.name}")
