"""WriteBuffer: bounded group commit.

Requests hand their WriteBatch to `submit()`, which waits until the batch is committed. One flusher
task takes everything pending, writes it in one storage transaction, then wakes every waiting
request (with the error, if the write failed). The buffer holds at most `max_pending_samples`
samples; past that `submit()` raises OverloadedError at once, so memory stays bounded and the
sender can retry. After each commit the committed batches go to every `on_commit` hook.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from rtpm.errors import OverloadedError, RtpmError, StorageUnavailable
from rtpm.metrics import BufferMetrics
from rtpm.model.samples import WriteBatch
from rtpm.settings import WriteBufferSettings
from rtpm.storage.base import Storage

CommitHook = Callable[[Sequence[WriteBatch]], Awaitable[None] | None]

log = structlog.get_logger("rtpm.ingest.buffer")


@dataclass(slots=True)
class _Pending:
    batch: WriteBatch
    done: asyncio.Future[int]


@dataclass
class BufferStats:
    pending_samples: int
    flushes: int
    samples_written: int
    last_flush_seconds: float
    last_error: str | None


class WriteBuffer:
    def __init__(self, storage: Storage, opts: WriteBufferSettings, metrics: BufferMetrics | None = None) -> None:
        self._storage = storage
        self._opts = opts
        self._metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._pending_samples = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._hooks: list[CommitHook] = []
        self.flushes = 0
        self.samples_written = 0
        self.last_flush_seconds = 0.0
        self.last_error: str | None = None

    def on_commit(self, hook: CommitHook) -> None:
        self._hooks.append(hook)

    @property
    def pending_samples(self) -> int:
        return self._pending_samples

    def stats(self) -> BufferStats:
        return BufferStats(
            self._pending_samples,
            self.flushes,
            self.samples_written,
            self.last_flush_seconds,
            self.last_error,
        )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rtpm-write-buffer")

    async def submit(self, batch: WriteBatch) -> int:
        """Queue `batch` and wait until it is committed. Returns the samples written."""
        n = len(batch)
        if n == 0 and not batch.metadata:
            return 0
        if self._closing:
            raise OverloadedError("the server is shutting down; retry on another instance", retry_after_seconds=1)
        if self._pending_samples + n > self._opts.max_pending_samples and self._pending_samples > 0:
            raise OverloadedError(
                f"write buffer full ({self._pending_samples} samples waiting for commit, limit "
                f"{self._opts.max_pending_samples}); retry later",
                retry_after_seconds=self._opts.retry_after_seconds,
            )
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(batch, fut))
        self._pending_samples += n
        self._wakeup.set()
        # The flusher resolves the future; a cancelled request still has its samples committed.
        return await asyncio.shield(fut)

    async def close(self) -> None:
        """Stop taking writes, flush everything pending, stop the flusher."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                if self._opts.flush_interval_seconds and not self._closing:
                    await asyncio.sleep(self._opts.flush_interval_seconds)
                continue
            taken = self._take()
            await self._flush(taken)

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        count = 0
        while self._queue and (not taken or count + len(self._queue[0].batch) <= self._opts.max_flush_samples):
            p = self._queue.popleft()
            taken.append(p)
            count += len(p.batch)
        return taken

    async def _flush(self, taken: list[_Pending]) -> None:
        batches = [p.batch for p in taken]
        n = sum(len(b) for b in batches)
        started = time.perf_counter()
        try:
            written = await self._storage.write(batches)
        except RtpmError as exc:
            self.last_error = str(exc)
            log.warning("flush_failed", samples=n, error=str(exc))
            for p in taken:
                if not p.done.done():
                    p.done.set_exception(exc)
            self._pending_samples -= n
            if self._metrics is not None:
                self._metrics.flush_failed(self._pending_samples)
            return
        except Exception as exc:  # process edge: every waiter must hear about it
            log.exception("flush_crashed", samples=n)
            err = StorageUnavailable(f"write failed: {exc}")
            for p in taken:
                if not p.done.done():
                    p.done.set_exception(err)
            self._pending_samples -= n
            if self._metrics is not None:
                self._metrics.flush_failed(self._pending_samples)
            return
        self.last_flush_seconds = time.perf_counter() - started
        self.last_error = None
        self.flushes += 1
        self.samples_written += written
        self._pending_samples -= n
        if self._metrics is not None:
            self._metrics.flushed(self.last_flush_seconds, written, self._pending_samples)
        for p in taken:
            if not p.done.done():
                if p.batch.refusal is not None:  # written but for some samples, refused with a reason
                    p.done.set_exception(p.batch.refusal)
                else:
                    p.done.set_result(len(p.batch))
        for hook in self._hooks:
            try:
                result = hook(batches)
                if result is not None:
                    await result
            except Exception:  # a hook must never break the write path
                log.exception("commit_hook_failed", hook=getattr(hook, "__qualname__", repr(hook)))
