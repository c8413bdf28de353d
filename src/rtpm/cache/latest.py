"""Latest-value cache: the newest committed sample of each series, fed by the write path's
commit hook. Bounded: the least recently updated series are evicted first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from rtpm.model.labels import Labels
from rtpm.model.samples import LatestSample, WriteBatch


class LatestValueCache:
    def __init__(self, max_series: int = 100_000) -> None:
        self._max = max_series
        self._entries: OrderedDict[tuple[str, Labels], tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def on_commit(self, batches: Sequence[WriteBatch]) -> None:
        if self._max == 0:
            return
        entries = self._entries
        for b in batches:
            newest: dict[int, tuple[int, float]] = {}
            for ref, ts, value in zip(b.refs, b.ts_ms, b.values, strict=True):
                cur = newest.get(ref)
                if cur is None or ts >= cur[0]:
                    newest[ref] = (ts, value)
            for ref, (ts, value) in newest.items():
                key = (b.tenant, b.series[ref])
                old = entries.get(key)
                if old is None or ts >= old[0]:
                    entries[key] = (ts, value)
                    entries.move_to_end(key)
        while len(entries) > self._max:
            entries.popitem(last=False)

    def get(self, tenant: str, labels: Labels) -> LatestSample | None:
        hit = self._entries.get((tenant, labels))
        return LatestSample(labels, hit[0], hit[1]) if hit else None
