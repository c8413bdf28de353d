"""Shared helpers for the live-update tests: bounded waits, a fake socket, a WebSocket reader."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch


async def eventually(cond: Callable[[], bool], *, within_seconds: float = 10.0, what: str = "condition") -> None:
    """Wait until `cond()` holds, failing after `within_seconds` (a bound, not an expectation)."""
    deadline = time.monotonic() + within_seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


class FakeSocket:
    """Stands in for the WebSocket: records frames; `gate` cleared makes every send block."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, frame: str) -> None:
        await self.gate.wait()
        self.frames.append(json.loads(frame))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]


def batch(tenant: str, *samples: tuple[str, dict[str, str], int, float]) -> WriteBatch:
    b = WriteBatch(tenant)
    for name, labels, ts, value in samples:
        b.add(make_labels(name, labels), ts, value)
    return b


async def recv_json(ws: Any, *, within_seconds: float = 10.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), within_seconds)
    return json.loads(raw)  # type: ignore[no-any-return]


async def recv_until(
    ws: Any, pred: Callable[[dict[str, Any]], bool], *, within_seconds: float = 15.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read messages until one satisfies `pred`; returns it and everything read before it."""
    before: list[dict[str, Any]] = []
    deadline = time.monotonic() + within_seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching message within {within_seconds}s; got {before[-5:]}")
        msg = await recv_json(ws, within_seconds=left)
        if pred(msg):
            return msg, before
        before.append(msg)


async def subscribe(ws: Any, data: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "subscribe", "data": data}))
    reply, _ = await recv_until(ws, lambda m: m["type"] in ("subscribed", "error"))
    assert reply["type"] == "subscribed", reply
    return reply


def series_values(messages: list[dict[str, Any]]) -> set[tuple[tuple[tuple[str, str], ...], float]]:
    out = set()
    for m in messages:
        if m["type"] == "metric":
            key = tuple(sorted(m["series"].items()))
            for s in m["samples"]:
                out.add((key, s["value"]))
    return out


Poll = Callable[[], Awaitable[None]]
