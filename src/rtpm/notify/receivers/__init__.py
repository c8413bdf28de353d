"""Receivers: where notifications go. Each one is a `Receiver`; `make_receivers()` builds them
from settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from rtpm.alerts.evaluator import Notification

if TYPE_CHECKING:
    import httpx

    from rtpm.settings import AlertingSettings


class DeliveryError(Exception):
    """A send that failed. `retryable`: a 5xx, 429, timeout or connection error."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Receiver(Protocol):
    name: str  # configured name, unique
    kind: str  # bounded metric label: webhook | alertmanager

    def accepts(self, n: Notification) -> bool: ...

    async def send(self, batch: Sequence[Notification]) -> None:
        """Deliver one batch (one rule, one kind). Raises DeliveryError."""
        ...


def generator_url(external_url: str, expr: str) -> str:
    return f"{external_url.rstrip('/')}/graph?g0.expr={quote(expr, safe='')}&g0.tab=1"


def check_status(response: httpx.Response, what: str) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    retryable = code >= 500 or code == 429 or code == 408
    raise DeliveryError(f"{what} answered {code}: {response.text[:200]}", retryable=retryable)


def make_receivers(settings: AlertingSettings, client: httpx.AsyncClient, *, external_url: str) -> list[Receiver]:
    from rtpm.notify.receivers.alertmanager import AlertmanagerReceiver
    from rtpm.notify.receivers.webhook import WebhookReceiver

    out: list[Receiver] = []
    for name, hook in sorted(settings.webhooks.items()):
        secret = hook.secret.get_secret_value() if hook.secret is not None else None
        out.append(WebhookReceiver(name, hook.url, client, secret=secret, external_url=external_url))
    for i, url in enumerate(settings.alertmanager_urls):
        out.append(
            AlertmanagerReceiver(
                f"alertmanager-{i}",
                url,
                client,
                external_url=external_url,
                timeout_seconds=settings.notify_timeout_seconds,
            )
        )
    return out
