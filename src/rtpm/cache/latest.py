"""Latest-value cache: the newest committed sample of each series, fed by the write path's
commit hook. Bounded: the least recently updated series are evicted first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rtpm.model.labels import Labels
from rtpm.model.samples import LatestSample, WriteBatch


class LatestValueCache:
    """Bounded: when full, the whole cache is dropped and refills from the next commits (cheaper on
    the write path than keeping an LRU order per sample)."""

    def __init__(self, max_series: int = 100_000) -> None:
        self._max = max_series
        # tenant -> labels -> [ts_ms, value], updated in place (one dict lookup per series of a batch)
        self._by_tenant: dict[str, dict[Labels, list[Any]]] = {}
        # tenant -> id(labels) -> (labels, its [ts_ms, value]) for the Labels object each series was
        # first committed with: decoders hand out one object per label set (Validator.intern), so
        # a series is usually found by identity without hashing its label tuple. Holding the
        # object keeps its id from being reused while the entry lives.
        self._by_object: dict[str, dict[int, tuple[Labels, list[Any]]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def on_commit(self, batches: Sequence[WriteBatch]) -> None:
        if self._max == 0:
            return
        for b in batches:
            entries = self._by_tenant.setdefault(b.tenant, {})
            objects = self._by_object.setdefault(b.tenant, {})
            before = len(entries)
            series = b.series
            get, oget = entries.get, objects.get
            slots = [
                hit[1] if (hit := oget(id(labels))) is not None and hit[0] is labels else get(labels)
                for labels in series
            ]
            for ref, ts, value in zip(b.refs, b.ts_ms, b.values, strict=True):
                slot = slots[ref]
                if slot is None:
                    labels = series[ref]
                    slots[ref] = slot = entries[labels] = [ts, value]
                    objects[id(labels)] = (labels, slot)
                elif ts >= slot[0]:
                    slot[0] = ts
                    slot[1] = value
            self._size += len(entries) - before
        if self._size > self._max:
            self._by_tenant.clear()
            self._by_object.clear()
            self._size = 0

    def get(self, tenant: str, labels: Labels) -> LatestSample | None:
        hit = self._by_tenant.get(tenant, {}).get(labels)
        return LatestSample(labels, hit[0], hit[1]) if hit else None
