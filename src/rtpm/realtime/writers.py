"""How one live connection's frames reach its client: the `FrameWriter` contract and `TaskWriter`.

The API layer gives each connection a writer straight onto its socket (the shared frames are
written as the same bytes to every connection, one write per connection per tick; no task per
connection); a plain async `send(text)` is wrapped in `TaskWriter` (one task per connection
awaiting each send). A writer never blocks the hub: `backed_up` tells it to hold back instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from rtpm.realtime.protocol import Frame

SendFn = Callable[[str], Awaitable[None]]
CloseFn = Callable[[int, str], Awaitable[None]]


class FrameWriter(Protocol):
    """Where one connection's messages go. `write` never blocks and keeps the order; `backed_up`
    says the client has not taken what was written before (the hub then holds back, coalesces,
    drops and eventually closes)."""

    def write(self, frames: Sequence[Frame]) -> None: ...

    def backed_up(self) -> bool: ...


class TaskWriter:
    """A FrameWriter over an async `send(text)`: one task awaits each send in order; backed up
    while a send is in progress or frames wait. On a failed send it calls `on_error`. Its queue,
    event and task are made on the first write (most connections never write through one)."""

    __slots__ = ("_send", "_on_error", "_queue", "_wake", "_task", "sending", "name")

    def __init__(self, send: SendFn, on_error: Callable[[BaseException], None], name: str = "rtpm-live-send") -> None:
        self._send = send
        self._on_error = on_error
        self._queue: deque[Frame] | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.sending = False
        self.name = name

    def write(self, frames: Sequence[Frame]) -> None:
        if self._queue is None or self._wake is None:
            self._queue, self._wake = deque(), asyncio.Event()
        self._queue.extend(frames)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue, self._wake), name=self.name)
        self._wake.set()

    def backed_up(self) -> bool:
        return self.sending or bool(self._queue)

    async def _run(self, queue: deque[Frame], wake: asyncio.Event) -> None:
        send = self._send
        try:
            while True:
                await wake.wait()
                wake.clear()
                self.sending = True
                while queue:
                    await send(queue.popleft().text)
                self.sending = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket went away under us (a process edge for this connection)
            self._on_error(exc)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if self._queue is not None:
            self._queue.clear()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
