"""Latest-value cache: the newest committed sample of each series, fed by the write path's
commit hook. Bounded: the least recently updated series are evicted first."""

from __future__ import annotations

from collections.abc import Sequence

from rtpm.model.labels import Labels
from rtpm.model.samples import LatestSample, WriteBatch


class LatestValueCache:
    """Bounded: when full, the whole cache is dropped and refills from the next commits (cheaper on
    the write path than keeping an LRU order per sample)."""

    def __init__(self, max_series: int = 100_000) -> None:
        self._max = max_series
        self._by_tenant: dict[str, dict[Labels, tuple[int, float]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def on_commit(self, batches: Sequence[WriteBatch]) -> None:
        if self._max == 0:
            return
        for b in batches:
            entries = self._by_tenant.setdefault(b.tenant, {})
            before = len(entries)
            series = b.series
            get = entries.get
            for ref, ts, value in zip(b.refs, b.ts_ms, b.values, strict=True):
                labels = series[ref]
                old = get(labels)
                if old is None or ts >= old[0]:
                    entries[labels] = (ts, value)
            self._size += len(entries) - before
        if self._size > self._max:
            self._by_tenant.clear()
            self._size = 0

    def get(self, tenant: str, labels: Labels) -> LatestSample | None:
        hit = self._by_tenant.get(tenant, {}).get(labels)
        return LatestSample(labels, hit[0], hit[1]) if hit else None
