"""The storage contract. Everything above `storage/` talks to these Protocols only.

Writes come in as `WriteBatch`es; `Storage.write()` commits all of the batches it is given in one
transaction (group commit) or none of them. An identical (series, timestamp) keeps one sample, the
last written. Reads go through a `Querier` scoped to one tenant and one closed time range
`[start_ms, end_ms]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rtpm.model.labels import Labels, Matcher
from rtpm.model.rollups import RollupRead
from rtpm.model.samples import LatestSample, MetricInfo, MetricMetadata, Series, SeriesStats, WriteBatch
from rtpm.storage.alert_store import AlertStore
from rtpm.storage.auth_base import AuthStore
from rtpm.storage.dashboards import DashboardStore
from rtpm.storage.histograms import HistogramStore
from rtpm.storage.maintenance import MaintenanceStore


class Querier(Protocol):
    """Reads of one tenant within `[start_ms, end_ms]`, fixed when the querier was made."""

    tenant: str
    start_ms: int
    end_ms: int

    async def select(self, matchers: Sequence[Matcher], *, max_samples: int | None = None) -> list[Series]:
        """Series matching every matcher, with their samples in range, sorted by timestamp.
        Series with no samples in range are left out. Raises TooManySamples past `max_samples`."""
        ...

    async def series(self, matchers: Sequence[Matcher]) -> list[Labels]:
        """Label sets of the series matching the matchers that have samples in range."""
        ...

    async def label_names(self, matchers: Sequence[Matcher] = ()) -> list[str]: ...

    async def label_values(self, name: str, matchers: Sequence[Matcher] = ()) -> list[str]: ...

    async def latest(self, matchers: Sequence[Matcher]) -> list[LatestSample]:
        """The last sample in range of each matching series."""
        ...

    async def stats(self, matchers: Sequence[Matcher]) -> list[SeriesStats]:
        """count, sum, min, max, first and last timestamp per matching series in range."""
        ...

    async def rollups(self, matchers: Sequence[Matcher], resolution_ms: int) -> RollupRead | None:
        """A read hint for the query engine: the rollups at `resolution_ms` (`start_ms` on its grid)
        of the buckets wholly in range that are complete, i.e. rolled up with no late sample
        waiting to be rolled up again; those buckets end at `complete_until`. None when the
        backend keeps no rollups, retention has deleted rollups in range, or some bucket in range
        has late samples not rolled up yet."""
        ...


class Storage(Protocol):
    """One backend (PostgreSQL or SQLite) with every store it carries. Both backends are checked
    against this Protocol by mypy (the `if TYPE_CHECKING:` assignments at the end of postgres.py
    and sqlite.py), so code above `storage/` never asks which backend it has.

    Lifecycle: `open()` once, `close()` once. The stores' methods and `migrate()` connect on first
    use, so a one-shot command (`rtpm migrate`, `rtpm users ...`, `rtpm jobs check`) may call
    `migrate()` or a store without `open()`, which also starts the sample engine."""

    backend: str

    @property
    def alerts(self) -> AlertStore:
        """Rules, alert state and history, evaluator leadership and heartbeats (alert_store.py)."""
        ...

    @property
    def auth(self) -> AuthStore:
        """Users, API keys and refresh tokens (auth_base.py)."""
        ...

    @property
    def dashboards(self) -> DashboardStore:
        """Saved dashboards of the web UI (dashboards.py)."""
        ...

    @property
    def maintenance(self) -> MaintenanceStore:
        """What the background jobs read and write: rollups, chunks, retention, job leases (maintenance.py)."""
        ...

    @property
    def histograms(self) -> HistogramStore:
        """Native histogram samples and exemplars (histograms.py)."""
        ...

    async def open(self) -> None:
        """Connect, apply pending migrations and start the sample engine (partitions made ahead,
        the head rebuilt from the WAL). The one way to make a storage ready for the write path."""
        ...

    async def migrate(self) -> list[int]:
        """Apply pending schema migrations (connecting first when needed); returns the versions applied."""
        ...

    async def write(self, batches: Sequence[WriteBatch]) -> int:
        """Commit all samples and metadata of `batches` in one transaction; returns samples written."""
        ...

    def querier(self, tenant: str, start_ms: int, end_ms: int) -> Querier: ...

    async def metric_names(self, tenant: str) -> list[MetricInfo]: ...

    async def metadata(self, tenant: str, name: str | None = None) -> list[MetricMetadata]: ...

    async def ping(self) -> None:
        """Raise StorageUnavailable unless the backend answers."""
        ...

    async def close(self) -> None: ...
