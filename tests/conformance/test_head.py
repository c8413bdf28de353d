"""The head engine on both backends: head only, chunks only, head and chunks across a window
edge, out-of-order and identical timestamps, back-fill older than the head, a restart between
write and read, two processes on one database, and the limit of active series."""

from __future__ import annotations

import asyncio
import gc
import math
import re
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from rtpm.errors import LimitExceeded
from rtpm.model.labels import Matcher, make_labels
from rtpm.model.samples import STALE_NAN, WriteBatch
from rtpm.settings import Settings
from rtpm.storage.base import Storage

W = 7_200_000  # the chunk window (default)
T0 = (int(time.time() * 1000) // W + 2) * W  # a window edge ahead of the head's start
NAME = Matcher.equal("__name__", "cpu")


@pytest.fixture
def head_settings(backend_settings: Settings) -> Settings:
    return backend_settings.model_copy(update={"storage_engine": "head", "storage_wal_poll_seconds": 0})


@pytest.fixture
def open_storage(head_settings: Settings) -> Callable[..., object]:
    from rtpm.app.storage import make_storage

    opened: list[Storage] = []

    async def make(**overrides: object) -> Storage:
        s = make_storage(head_settings.model_copy(update=overrides))
        await s.open()
        opened.append(s)
        return s

    make.opened = opened  # type: ignore[attr-defined]
    return make


@pytest.fixture
async def head(open_storage: Callable[..., object]) -> AsyncIterator[Storage]:
    s = await open_storage()  # type: ignore[misc]
    yield s
    for o in open_storage.opened:  # type: ignore[attr-defined]
        await o.close()


def batch(*samples: tuple[str, int, float]) -> WriteBatch:
    b = WriteBatch("t")
    for host, ts, value in samples:
        b.add(make_labels("cpu", {"host": host}), ts, value)
    return b


async def read(storage: Storage, start: int = T0 - 2 * W, end: int = T0 + 3 * W) -> dict[str, list[tuple[int, int]]]:
    """host -> [(ts, value bits)] (bits: NaN and staleness markers compare exactly)."""
    found = await storage.querier("t", start, end).select([NAME])
    return {
        dict(s.labels)["host"]: list(zip(s.ts_ms.tolist(), s.values.view(np.uint64).tolist(), strict=True))
        for s in found
    }


def bits(v: float) -> int:
    return int(np.float64(v).view(np.uint64))


async def cut(storage: Storage, cutoff: int) -> tuple[int, int]:
    return await storage.maintenance.cut_head(cutoff)  # type: ignore[attr-defined,no-any-return]


async def status(storage: Storage):  # type: ignore[no-untyped-def]
    return await storage.maintenance.status("t")


async def test_head_only_one_wal_record_per_flush(head: Storage) -> None:
    await head.write([batch(("a", T0, 1.0), ("b", T0, 2.0)), batch(("a", T0 + 10_000, 3.0))])
    await head.write([batch(("a", T0 + 20_000, STALE_NAN))])
    got = await read(head)
    assert got == {
        "a": [(T0, bits(1.0)), (T0 + 10_000, bits(3.0)), (T0 + 20_000, bits(STALE_NAN))],
        "b": [(T0, bits(2.0))],
    }
    st = await status(head)
    assert (st.wal_records, st.raw_samples, st.chunk_samples) == (2, 4, 0)


async def test_chunks_only_after_the_cut(head: Storage) -> None:
    await head.write([batch(*[("a", T0 + i * 15_000, float(i)) for i in range(40)], ("b", T0 + 5, math.inf))])
    before = await read(head)
    chunks, moved = await cut(head, T0 + W)
    assert (chunks, moved) == (2, 41)
    assert await read(head) == before
    st = await status(head)
    assert (st.wal_records, st.raw_samples, st.chunk_samples, st.chunks) == (0, 0, 41, 2)
    assert await cut(head, T0 + W) == (0, 0)  # again: nothing to do


async def test_head_and_chunks_across_a_window_edge(head: Storage) -> None:
    samples = [("a", T0 + W - 60_000 + i * 10_000, float(i)) for i in range(12)]  # 6 before the edge, 6 after
    await head.write([batch(*samples)])
    chunks, moved = await cut(head, T0 + W)
    assert (chunks, moved) == (1, 6)
    st = await status(head)
    assert (st.raw_samples, st.chunk_samples, st.wal_records) == (6, 6, 1)  # the record straddles the edge: kept
    assert await read(head) == {"a": [(ts, bits(v)) for _, ts, v in samples]}
    q = head.querier("t", T0 + W - 30_000, T0 + W + 30_000)
    [s] = await q.select([NAME])
    assert s.ts_ms.tolist() == [T0 + W - 30_000 + i * 10_000 for i in range(7)]
    [latest] = await q.latest([NAME])
    assert (latest.ts_ms, latest.value) == (T0 + W + 30_000, 9.0)
    [stats] = await q.stats([NAME])
    assert (stats.count, stats.sum, stats.first_ts_ms) == (7, sum(range(3, 10)), T0 + W - 30_000)


async def test_out_of_order_and_identical_timestamps_in_the_head(head: Storage) -> None:
    await head.write([batch(("a", T0 + 30_000, 3.0), ("a", T0 + 10_000, 1.0))])
    await head.write([batch(("a", T0 + 20_000, 2.0), ("a", T0 + 10_000, 10.0))])  # older and a rewrite
    await head.write([batch(("a", T0 + 30_000, 30.0)), batch(("a", T0 + 30_000, 31.0))])  # last of one flush wins
    want = {"a": [(T0 + 10_000, bits(10.0)), (T0 + 20_000, bits(2.0)), (T0 + 30_000, bits(31.0))]}
    assert await read(head) == want
    await cut(head, T0 + W)
    assert await read(head) == want


async def test_back_fill_older_than_the_head_takes_the_row_path(head: Storage) -> None:
    await head.write([batch(("a", T0 + 10_000, 1.0), ("a", T0 + 20_000, 2.0))])
    await cut(head, T0 + W)
    # older than the head now: a new sample and a rewrite of a chunked one (the last written wins)
    await head.write([batch(("a", T0 + 15_000, 1.5), ("a", T0 + 20_000, 20.0), ("a", T0 + W + 5, 9.0))])
    assert await read(head) == {
        "a": [(T0 + 10_000, bits(1.0)), (T0 + 15_000, bits(1.5)), (T0 + 20_000, bits(20.0)), (T0 + W + 5, bits(9.0))]
    }
    st = await status(head)
    assert (st.chunk_samples, st.wal_records) == (2, 1)  # 2 back-fill rows + 1 head sample are not in chunks
    assert st.raw_samples == 3
    assert await head.maintenance.late_writes("compact", 10)


async def test_restart_between_write_and_read(head: Storage, open_storage: Callable[..., object]) -> None:
    await head.write([batch(*[("a", T0 + W - 20_000 + i * 10_000, float(i)) for i in range(4)])])
    await cut(head, T0 + W)  # half of the record is in chunks now
    await head.write([batch(("a", T0 + W - 10_000, 100.0), ("b", T0 + W + 1, 7.0))])  # back-fill + head
    before = await read(head)
    await head.close()
    again: Storage = await open_storage()  # type: ignore[misc]
    assert await read(again) == before
    assert before["a"][1] == (T0 + W - 10_000, bits(100.0))
    st = await status(again)
    assert st.raw_samples == 4  # a's 2 head samples, b's, the back-fill row


async def test_the_rows_engine_refuses_to_start_over_wal_records(head: Storage, head_settings: Settings) -> None:
    from rtpm.app.storage import make_storage
    from rtpm.errors import ConfigError

    await head.write([batch(("a", T0, 1.0))])
    rows = make_storage(head_settings.model_copy(update={"storage_engine": "rows"}))
    with pytest.raises(ConfigError, match="1 WAL records.*RTPM_STORAGE_ENGINE=head"):
        await rows.open()
    # A failed open leaves nothing open: a pooled connection left behind would warn (ResourceWarning,
    # an error in this suite) when collected here.
    del rows
    gc.collect()


async def test_a_second_process_reads_what_the_first_wrote(head: Storage, open_storage: Callable[..., object]) -> None:
    other: Storage = await open_storage()  # type: ignore[misc]
    await head.write([batch(("a", T0, 1.0))])
    assert await read(other) == {"a": [(T0, bits(1.0))]}  # the read caught up with the WAL first
    await other.write([batch(("a", T0, 2.0), ("b", T0 + W + 1, 3.0))])  # the other's rewrite is newer
    await head.write([batch(("b", T0 + W + 2, 4.0))])
    want = {"a": [(T0, bits(2.0))], "b": [(T0 + W + 1, bits(3.0)), (T0 + W + 2, bits(4.0))]}
    assert await read(head) == want
    assert await read(other) == want
    await cut(head, T0 + W)  # cut by one process: the other drops what is now in chunks
    assert await read(other) == want
    assert other._headlog.head.count() == 2  # type: ignore[attr-defined]


async def test_a_second_process_tails_the_wal_without_reading(
    head: Storage, open_storage: Callable[..., object]
) -> None:
    other: Storage = await open_storage(storage_wal_poll_seconds=0.05)  # type: ignore[misc]
    await head.write([batch(("a", T0, 1.0))])
    await head.write([batch(("a", T0 + 1, 2.0))])
    last = head._headlog.head.last_id  # type: ignore[attr-defined]
    for _ in range(1500):  # polled, up to 30 s: no read of `other` makes it catch up
        if other._headlog.head.last_id >= last:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.02)
    assert other._headlog.head.count() == 2  # type: ignore[attr-defined]


async def ids_of(storage: Storage) -> dict[str, int]:
    found = await storage.maintenance.find_series("t", [NAME])  # type: ignore[attr-defined]
    return {dict(labels)["host"]: sid for sid, labels in found}


async def test_samples_deleted_from_the_head_stay_deleted(head: Storage, open_storage: Callable[..., object]) -> None:
    """delete_samples in the head writes a tombstone to the WAL: another process applies it, a
    restart does not bring the samples back, a sample written after the deletion stays, and
    the cut encodes the head without them."""
    other: Storage = await open_storage()  # type: ignore[misc]
    await head.write([batch(*[(h, T0 + i * 1000, float(i)) for h in ("a", "b") for i in range(6)])])
    assert sorted(await read(other)) == ["a", "b"]  # the other process has them in its head
    ids = await ids_of(head)
    assert await head.maintenance.delete_samples([ids["a"]], T0 + 1000, T0 + 3000) == 3  # type: ignore[attr-defined]
    await head.write([batch(("a", T0 + 2000, 20.0))])  # after the deletion: kept
    want = {
        "a": [(T0, bits(0.0)), (T0 + 2000, bits(20.0)), (T0 + 4000, bits(4.0)), (T0 + 5000, bits(5.0))],
        "b": [(T0 + i * 1000, bits(float(i))) for i in range(6)],
    }
    assert await read(head) == want
    assert await read(other) == want  # applied from the WAL, in order
    await head.close()
    again: Storage = await open_storage()  # type: ignore[misc]
    assert await read(again) == want  # rebuilt from the WAL: the tombstone applied where it falls

    await cut(again, T0 + W)  # into chunks without the deleted samples; the tombstone goes too
    assert await read(again) == want
    assert (await status(again)).wal_records == 0
    # a range over chunks and head at once: both go, in one transaction
    await again.write([batch(("a", T0 + W + 1000, 7.0), ("a", T0 + W + 2000, 8.0))])
    assert await again.maintenance.delete_samples([ids["a"]], T0 + 3000, T0 + W + 1000) == 3  # type: ignore[attr-defined]
    want["a"] = [(T0, bits(0.0)), (T0 + 2000, bits(20.0)), (T0 + W + 2000, bits(8.0))]
    assert await read(again) == want
    assert await read(other) == want
    await again.close()
    last: Storage = await open_storage()  # type: ignore[misc]
    assert await read(last) == want


LIMIT = r"at its maximum of 3 active series \(RTPM_STORAGE_HEAD_MAX_SERIES\)"


async def test_new_series_past_the_head_limit_are_refused(open_storage: Callable[..., object]) -> None:
    small: Storage = await open_storage(storage_head_max_series=3)  # type: ignore[misc]
    try:
        await small.write([first := batch(("a", T0, 1.0), ("b", T0, 1.0), ("c", T0, 1.0))])
        assert first.refusal is None
        # a request with a new series past the limit: that series refused, naming the limit; the
        # request's samples of series in the head are stored
        await small.write([over := batch(("d", T0, 1.0), ("a", T0 + 1, 2.0))])
        assert isinstance(over.refusal, LimitExceeded)
        assert re.search(LIMIT, str(over.refusal)), over.refusal
        assert "1 new series of this request refused (1 samples)" in str(over.refusal)
        assert "'host': 'd'" in str(over.refusal)
        assert sorted(await read(small)) == ["a", "b", "c"]
        assert (await read(small))["a"] == [(T0, bits(1.0)), (T0 + 1, bits(2.0))]
        await cut(small, T0 + W)  # the head is empty again: room for new series
        await small.write([again := batch(("d", T0 + W, 1.0))])
        assert again.refusal is None
        assert sorted(await read(small)) == ["a", "b", "c", "d"]
    finally:
        await small.close()


async def test_the_limit_refuses_per_request_not_the_whole_flush(open_storage: Callable[..., object]) -> None:
    """One flush (group commit) of three requests: the one whose new series do not fit is refused
    those series alone; the others (series in the head, a new series that fits and came first)
    are stored in full."""
    small: Storage = await open_storage(storage_head_max_series=3)  # type: ignore[misc]
    try:
        await small.write([batch(("a", T0, 1.0))])
        fits = batch(("b", T0, 1.0))  # the first new series of the flush: room for it
        over = batch(("c", T0, 1.0), ("x", T0, 1.0), ("y", T0, 1.0), ("a", T0 + 2, 2.0))  # c fits, x and y do not
        other = batch(("a", T0 + 1, 3.0), ("b", T0 + 1, 3.0))  # another client's: series in the head
        assert await small.write([fits, over, other]) == 5  # all but x and y
        assert fits.refusal is None and other.refusal is None
        assert isinstance(over.refusal, LimitExceeded)
        assert "2 new series of this request refused (2 samples)" in str(over.refusal)
        got = await read(small)
        assert sorted(got) == ["a", "b", "c"]
        assert got["a"] == [(T0, bits(1.0)), (T0 + 1, bits(3.0)), (T0 + 2, bits(2.0))]
        # and a restart (the head rebuilt from the WAL) agrees: nothing of x and y was logged
        await small.close()
        again: Storage = await open_storage(storage_head_max_series=3)  # type: ignore[misc]
        try:
            assert await read(again) == got
        finally:
            await again.close()
    finally:
        await small.close()


async def test_the_write_buffer_answers_each_request_of_a_flush(open_storage: Callable[..., object]) -> None:
    """Through the write buffer: requests submitted together share one flush; the one past the
    limit fails with the limit (a 4xx), the others are acknowledged."""
    from rtpm.ingest.buffer import WriteBuffer
    from rtpm.settings import WriteBufferSettings

    small: Storage = await open_storage(storage_head_max_series=2)  # type: ignore[misc]
    buf = WriteBuffer(small, WriteBufferSettings(flush_interval_seconds=0.05))
    seen: list[tuple[str, int]] = []  # what the commit hooks (live updates, latest values) are given
    buf.on_commit(
        lambda bs: seen.extend((dict(b.series[r])["host"], t) for b in bs for r, t in zip(b.refs, b.ts_ms, strict=True))
    )
    await buf.start()
    try:
        await buf.submit(batch(("a", T0, 1.0)))
        flushes = buf.flushes
        results = await asyncio.gather(
            buf.submit(batch(("b", T0, 1.0))),
            buf.submit(batch(("c", T0, 1.0), ("a", T0 + 1, 2.0))),
            buf.submit(batch(("a", T0 + 2, 3.0))),
            return_exceptions=True,
        )
        assert buf.flushes == flushes + 1, "the three requests did not share one flush"
        assert results[0] == 1 and results[2] == 1
        assert isinstance(results[1], LimitExceeded)
        assert "maximum of 2 active series (RTPM_STORAGE_HEAD_MAX_SERIES)" in str(results[1])
        assert buf.last_error is None  # the flush itself succeeded
        got = await read(small)
        assert sorted(got) == ["a", "b"]
        assert [t for t, _ in got["a"]] == [T0, T0 + 1, T0 + 2]
        assert sorted(seen) == [("a", T0), ("a", T0 + 1), ("a", T0 + 2), ("b", T0)]  # not c: never stored
    finally:
        await buf.close()
        await small.close()


@pytest.mark.parametrize("big_ids", [False, True], ids=["one-key-sort", "lexsort"])
def test_head_blocks_keep_the_last_written_of_every_key(big_ids: bool) -> None:
    """The head alone, against a dict: many records with repeated keys, merged in tiers."""
    from rtpm.storage.head import Head
    from rtpm.storage.wal import Record

    rng = np.random.default_rng(5)
    head = Head(max_series=10**6)
    model: dict[tuple[int, int], float] = {}
    records = []
    offset = 2**60 if big_ids else 0  # ids too large to share an int64 with the timestamps
    for rid in range(1, 120):
        n = int(rng.integers(1, 400))
        sids = rng.integers(0, 50, n) + offset
        ts = T0 + rng.integers(0, 5000, n) * 1000
        values = rng.normal(size=n)
        order = np.lexsort((ts, sids))
        sids, ts, values = sids[order], ts[order], values[order]
        keep = np.ones(n, dtype=bool)
        keep[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
        sids, ts, values = sids[keep], ts[keep], values[keep]
        records.append(Record(rid, sids, ts, values))
        assert head.apply(records[-1], contiguous=True)
        model.update(zip(zip(sids.tolist(), ts.tolist(), strict=True), values.tolist(), strict=True))
    assert not head.apply(Record(200, sids, ts, values), contiguous=True)  # an id skipped: catch up instead
    got = head.read(list(range(offset, offset + 50)), T0, T0 + 10**7)
    flat = {(sid, t): v for sid, (tss, vs) in got.items() for t, v in zip(tss.tolist(), vs.tolist(), strict=True)}
    assert flat == model
    rebuilt = Head(max_series=10**6)  # as at start-up: all records at once
    rebuilt.apply_many(records)
    again = rebuilt.read(list(range(offset, offset + 50)), T0, T0 + 10**7)
    assert {sid: (t.tolist(), v.tolist()) for sid, (t, v) in again.items()} == {
        sid: (t.tolist(), v.tolist()) for sid, (t, v) in got.items()
    }
    cutoff = T0 + 2_500_000
    bs, bt, bv = head.below(cutoff)
    assert dict(zip(zip(bs.tolist(), bt.tolist(), strict=True), bv.tolist(), strict=True)) == {
        k: v for k, v in model.items() if k[1] < cutoff
    }
    head.set_floor(cutoff)
    left = head.read(list(range(offset, offset + 50)), T0, T0 + 10**7)
    assert {(sid, t) for sid, (tss, _) in left.items() for t in tss.tolist()} == {k for k in model if k[1] >= cutoff}
