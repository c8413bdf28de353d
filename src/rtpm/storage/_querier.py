"""The read side shared by both backends. A backend supplies three primitives over series ids
(find, load, latest); everything a Querier answers is built from them here, so raw rows and
compressed chunks are merged the same way on every backend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rtpm.errors import TooManySamples
from rtpm.model.labels import Labels, Matcher
from rtpm.model.rollups import RollupRead
from rtpm.model.samples import LatestSample, Series, SeriesStats
from rtpm.storage import chunks
from rtpm.storage.chunks import F64, I64
from rtpm.storage.head import HeadLog
from rtpm.storage.maintenance import LATE_ROLLUP, MaintenanceStore, rollups_kept_from

Loaded = dict[int, tuple[I64, F64]]


def too_many_samples(limit: int | None) -> TooManySamples:
    """What a backend's `_load` raises when the samples in range pass its `limit`."""
    return TooManySamples(f"query would load more than {limit} samples (max_query_samples)")


class MergedQuerier:
    """Base of SqliteQuerier and PostgresQuerier: reads of one tenant within [start_ms, end_ms]."""

    def __init__(
        self,
        tenant: str,
        start_ms: int,
        end_ms: int,
        head: HeadLog | None = None,
        maintenance: MaintenanceStore | None = None,
    ) -> None:
        self.tenant = tenant
        self.start_ms = start_ms
        self.end_ms = end_ms
        self._head = head
        self._maintenance = maintenance  # where the rollups are (None: no rollup reads)

    # -- primitives, one implementation per backend ---------------------------------------------

    async def _find(self, matchers: Sequence[Matcher]) -> list[tuple[int, Labels]]:
        raise NotImplementedError

    async def _load_stored(self, ids: list[int], limit: int | None = None) -> Loaded:
        """Samples in range per series id in the database: chunks and raw rows merged (raw wins on
        equal ts). With `limit`, raises TooManySamples instead of reading more than that many
        samples (whole chunks counted), without a separate counting pass."""
        raise NotImplementedError

    async def _latest_stored(self, ids: list[int]) -> dict[int, tuple[int, float]]:
        raise NotImplementedError

    # -- the head merged over what is stored -----------------------------------------------------
    #
    # Order matters: catch up with the log, take the head's samples, then read the database. A cut
    # that commits in between only makes the database hold what the head held already (equal
    # samples); the head drops a window only after seeing the cut that put it into chunks.
    # The head is newer than anything stored at its timestamps, so it wins on an equal ts.

    async def _load(self, ids: list[int], limit: int | None = None) -> Loaded:
        if self._head is None:
            return await self._load_stored(ids, limit)
        await self._head.catch_up()
        hot = self._head.head.read(ids, self.start_ms, self.end_ms)
        in_head = sum(len(ts) for ts, _ in hot.values())
        if limit is not None and in_head > limit:
            raise too_many_samples(limit)
        try:
            stored = await self._load_stored(ids, None if limit is None else limit - in_head)
        except TooManySamples:
            raise too_many_samples(limit) from None
        for sid, samples in hot.items():
            old = stored.get(sid)
            stored[sid] = samples if old is None else chunks.merge(old, samples)
        return stored

    async def _latest(self, ids: list[int]) -> dict[int, tuple[int, float]]:
        if self._head is None:
            return await self._latest_stored(ids)
        await self._head.catch_up()
        hot = self._head.head.read(ids, self.start_ms, self.end_ms)
        out = await self._latest_stored(ids)
        for sid, (ts, values) in hot.items():
            old = out.get(sid)
            if old is None or int(ts[-1]) >= old[0]:
                out[sid] = (int(ts[-1]), float(values[-1]))
        return out

    # -- the Querier API ------------------------------------------------------------------------

    async def select(self, matchers: Sequence[Matcher], *, max_samples: int | None = None) -> list[Series]:
        found = await self._find(matchers)
        if not found:
            return []
        data = await self._load([sid for sid, _ in found], max_samples)
        out = []
        for sid, labels in found:
            hit = data.get(sid)
            if hit is not None and len(hit[0]):
                out.append(Series(labels, hit[0], hit[1]))
        return out

    async def series(self, matchers: Sequence[Matcher]) -> list[Labels]:
        found = await self._find(matchers)
        if not found:
            return []
        latest = await self._latest([sid for sid, _ in found])
        return [labels for sid, labels in found if sid in latest]

    async def label_names(self, matchers: Sequence[Matcher] = ()) -> list[str]:
        return sorted({k for labels in await self.series(matchers) for k, _ in labels})

    async def label_values(self, name: str, matchers: Sequence[Matcher] = ()) -> list[str]:
        return sorted({v for labels in await self.series(matchers) for k, v in labels if k == name})

    async def latest(self, matchers: Sequence[Matcher]) -> list[LatestSample]:
        found = await self._find(matchers)
        if not found:
            return []
        latest = await self._latest([sid for sid, _ in found])
        return [LatestSample(labels, *latest[sid]) for sid, labels in found if sid in latest]

    async def stats(self, matchers: Sequence[Matcher]) -> list[SeriesStats]:
        found = await self._find(matchers)
        if not found:
            return []
        data = await self._load([sid for sid, _ in found])
        out = []
        for sid, labels in found:
            hit = data.get(sid)
            if hit is None:
                continue
            ts, values = hit
            keep = ~np.isnan(values)  # NaN (and staleness markers) are not values
            if not keep.any():
                continue
            ts, values = ts[keep], values[keep]
            out.append(
                SeriesStats(
                    labels,
                    int(len(values)),
                    float(values.sum()),
                    float(values.min()),
                    float(values.max()),
                    int(ts[0]),
                    int(ts[-1]),
                )
            )
        return out

    async def rollups(self, matchers: Sequence[Matcher], resolution_ms: int) -> RollupRead | None:
        store = self._maintenance
        if store is None:
            return None
        rolled = await store.get_watermark("rolled_up_until")
        if rolled is None:
            return None
        lo = self.start_ms
        kept_from = await store.get_watermark(rollups_kept_from(resolution_ms))
        if kept_from is not None and lo < kept_from:
            return None  # retention deleted rollups in range (raw samples may be kept longer)
        until = min(rolled, self.end_ms + 1)
        until -= until % resolution_ms  # coarser buckets are complete up to a bucket edge
        if until <= lo:
            return RollupRead(lo, [])
        found = await self._find(matchers)
        ids = [sid for sid, _ in found]
        if not ids:
            return RollupRead(until, [])
        if await store.has_late_writes(LATE_ROLLUP, ids, lo, until):
            return None
        loaded = await store.load_rollups(resolution_ms, ids, lo, until)
        return RollupRead(until, [(labels, loaded[sid]) for sid, labels in found if sid in loaded and len(loaded[sid])])


def latest_of(candidates: dict[int, list[tuple[int, float]]]) -> dict[int, tuple[int, float]]:
    """Per series, the candidate with the greatest timestamp (raw rows listed last win ties)."""
    out: dict[int, tuple[int, float]] = {}
    for sid, options in candidates.items():
        best = None
        for ts, value in options:
            if best is None or ts >= best[0]:
                best = (ts, value)
        if best is not None:
            out[sid] = best
    return out
