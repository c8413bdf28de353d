"""Receivers: where notifications go. Each one is a `Receiver`; `make_receivers()` builds them
from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtpm.notify.receivers.alertmanager import AlertmanagerReceiver
from rtpm.notify.receivers.base import DeliveryError, Receiver
from rtpm.notify.receivers.webhook import WebhookReceiver

if TYPE_CHECKING:
    import httpx

    from rtpm.settings import AlertingSettings

__all__ = ["DeliveryError", "Receiver", "make_receivers"]


def make_receivers(settings: AlertingSettings, client: httpx.AsyncClient, *, external_url: str) -> list[Receiver]:
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
