"""Fixtures for the push protocols: an in-process app with small limits, and a way to read back
what was stored (through the storage Protocol, on the app's own event loop)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.ingest import remote_write
from rtpm.model.labels import Labels, Matcher, MatchType
from rtpm.model.samples import MetricMetadata
from rtpm.settings import LimitsSettings, Settings
from tests._auth import grant

LIMITS = LimitsSettings(
    max_labels_per_series=8,
    max_label_value_length=64,
    max_batch_items=1000,
    max_body_bytes=64 * 1024,
    max_past_seconds=3600,
    max_future_seconds=60,
)


@dataclass
class Pusher:
    """A TestClient plus read-back helpers."""

    client: TestClient

    @property
    def services(self) -> Any:
        return self.client.app.state.services  # type: ignore[attr-defined]

    def stored(self, name_regex: str = ".+") -> dict[Labels, list[tuple[int, float]]]:
        """Every stored sample of metrics whose name matches, by series."""
        now_ms = int(time.time() * 1000)
        querier = self.services.storage.querier(self.services.settings.default_tenant, 0, now_ms + 3_600_000)
        matcher = Matcher("__name__", MatchType.REGEX, name_regex)
        assert self.client.portal is not None
        found = self.client.portal.call(querier.select, [matcher])
        return {s.labels: list(zip(s.ts_ms.tolist(), s.values.tolist(), strict=True)) for s in found}

    def refused(self, protocol: str, reason: str) -> float:
        """rtpm_ingest_samples_rejected_total{protocol, reason} of this app."""
        got = self.services.metrics.registry.get_sample_value(
            "rtpm_ingest_samples_rejected_total", {"protocol": protocol, "reason": reason}
        )
        return got or 0.0

    def metadata(self) -> dict[str, MetricMetadata]:
        assert self.client.portal is not None
        found = self.client.portal.call(self.services.storage.metadata, self.services.settings.default_tenant)
        return {m.name: m for m in found}


@pytest.fixture
def pusher_factory(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., Pusher]]:
    clients: list[TestClient] = []

    def make(**limit_overrides: Any) -> Pusher:
        limits = LIMITS.model_copy(update=limit_overrides)
        client = TestClient(create_app(settings_factory(limits=limits)), raise_server_exceptions=False)
        client.__enter__()
        grant(client)
        clients.append(client)
        return Pusher(client)

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def pusher(pusher_factory: Callable[..., Pusher]) -> Pusher:
    return pusher_factory()


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(params=["native", "pure"])
def rw_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test over both remote write 1.0 decoder paths (the module flag every decoder made
    without `native=` follows); the native one is skipped where the C extension was not built."""
    if request.param == "native" and remote_write.native_module() is None:
        pytest.skip("rtpm.ingest._rwdecode was not built (no C compiler)")
    monkeypatch.setattr(remote_write, "NATIVE", request.param == "native")
    return str(request.param)
