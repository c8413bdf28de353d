"""What every receiver shares: the `Receiver` protocol, `DeliveryError` and the helpers for payloads
and answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from rtpm.alerts.evaluator import Notification

if TYPE_CHECKING:
    import httpx


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
