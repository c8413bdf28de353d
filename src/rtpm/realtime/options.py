"""The live hub's limits (`HubOptions`, from `[realtime]` settings) and its counters (`HubStats`)."""

from __future__ import annotations

from dataclasses import dataclass

from rtpm.settings import RealtimeSettings


@dataclass(frozen=True, slots=True)
class HubOptions:
    batch_interval_seconds: float = 0.05
    queue_max_series: int = 1000
    queue_max_alerts: int = 100
    queue_max_control: int = 64
    lag_close_seconds: float = 10.0
    max_connections: int = 20_000
    max_connections_per_credential: int = 1000
    max_subscriptions_per_connection: int = 32
    match_cache_max_series: int = 200_000

    @classmethod
    def from_settings(cls, opts: RealtimeSettings) -> HubOptions:
        return cls(
            batch_interval_seconds=opts.batch_interval_seconds,
            queue_max_series=opts.queue_max_series,
            queue_max_alerts=opts.queue_max_alerts,
            lag_close_seconds=opts.lag_close_seconds,
            max_connections=opts.max_connections,
            max_connections_per_credential=opts.max_connections_per_credential,
            max_subscriptions_per_connection=opts.max_subscriptions_per_connection,
            match_cache_max_series=opts.match_cache_max_series,
        )


@dataclass
class HubStats:
    connections: int = 0
    subscriptions: int = 0
    messages_sent: int = 0
    samples_dropped: int = 0
    samples_coalesced: int = 0
    alerts_dropped: int = 0
    closed_lagging: int = 0
    refused: int = 0
    cached_series: int = 0
