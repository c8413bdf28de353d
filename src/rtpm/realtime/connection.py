"""One live client as the hub sees it: its subscriptions and its bounded queues.

A connection holds, until the next tick, the newest `Update` of each series it is sent (a newer one
replaces the waiting one: coalescing), the alert events and the direct replies. When its writer is
backed up (earlier messages not yet taken by the network), at most `queue_max_series` series wait
and newer ones are dropped, and the client gets a `lagged` message with the counts once it catches
up; one that stays behind for `lag_close_seconds` is closed with 1013. Nothing here awaits a client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from rtpm.model.labels import METRIC_NAME, Labels
from rtpm.model.time import to_rfc3339
from rtpm.realtime.options import HubOptions, HubStats
from rtpm.realtime.protocol import Frame, Kind, SubscriptionSpec, encode_frame, json_value
from rtpm.realtime.writers import CloseFn, FrameWriter, SendFn, TaskWriter

log = structlog.get_logger("rtpm.realtime.hub")

CLOSE_TRY_AGAIN_LATER = 1013


class Owner(Protocol):
    """What a connection needs of its hub: the limits, the counters, and a way to be flushed on the
    next tick, forgotten or closed."""

    opts: HubOptions
    stats: HubStats
    dirty: set[LiveConnection]  # the connections to flush on the next tick

    def disconnect(self, conn: LiveConnection) -> None: ...

    def close_connection(self, conn: LiveConnection, code: int, reason: str) -> None: ...


class Update:
    """New samples of one series within one tick; shared by every connection that wants them."""

    __slots__ = ("labels", "samples", "committed_ms", "_frame")

    def __init__(self, labels: Labels, samples: list[tuple[int, float]], committed_ms: int) -> None:
        self.labels = labels
        self.samples = samples
        self.committed_ms = committed_ms
        self._frame: Frame | None = None

    def frame(self, now_ms: int) -> Frame:
        if self._frame is None:
            series = dict(self.labels)
            samples = [{"timestamp": to_rfc3339(ts), "value": json_value(v)} for ts, v in self.samples]
            newest_ts, newest_value = max(self.samples, key=lambda p: p[0])
            labels = {k: v for k, v in series.items() if k != METRIC_NAME}
            self._frame = encode_frame(
                {
                    "type": "metric",
                    "series": series,
                    "samples": samples,
                    "committed_at": to_rfc3339(self.committed_ms),
                    # the original RTPM API's message body: one metric, as its clients read it
                    "payload": {
                        "name": series.get(METRIC_NAME, ""),
                        "value": json_value(newest_value),
                        "timestamp": to_rfc3339(newest_ts),
                        "labels": labels,
                    },
                },
                now_ms,
            )
        return self._frame


@dataclass(eq=False, slots=True)
class Subscription:
    id: str
    conn: LiveConnection
    spec: SubscriptionSpec
    min_interval: float  # seconds between messages per series; 0: every tick

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.spec.matchers)


class LiveConnection:
    """One client as the hub sees it: its subscriptions, its bounded queues and its writer."""

    def __init__(self, hub: Owner, conn_id: str, *, tenant: str, credential: str, send: SendFn, close: CloseFn) -> None:
        self.hub = hub
        self.id = conn_id
        self.tenant = tenant
        self.credential = credential
        self._close = close
        self.subs: dict[str, Subscription] = {}
        self.pending: dict[Labels, Update] = {}
        self.rate_interval: dict[Labels, float] = {}
        self.last_sent: dict[Labels, float] = {}
        self.alerts: list[Frame] = []  # lists, not deques: a deque costs ~600 bytes even when empty
        self.control: list[Frame] = []
        self.dropped = 0
        self.coalesced = 0
        self.alerts_dropped = 0
        self.behind_since: float | None = None
        self.closed = False
        self._next_sub = 0
        self._task_writer: TaskWriter | None = TaskWriter(send, self._send_failed, name=f"rtpm-live-send-{conn_id}")
        self.writer: FrameWriter = self._task_writer

    def new_subscription_id(self) -> str:
        """`s1`, `s2`, ...: the next id no subscription of this connection has."""
        self._next_sub += 1
        sub_id = f"s{self._next_sub}"
        while sub_id in self.subs:
            self._next_sub += 1
            sub_id = f"s{self._next_sub}"
        return sub_id

    async def send_close(self, code: int, reason: str) -> None:
        """Stop the sender, then send the close frame (the hub has forgotten the connection)."""
        await self.stop_sender()
        await self._close(code, reason)

    def __repr__(self) -> str:
        return f"LiveConnection({self.id!r}, tenant={self.tenant!r})"

    def use_writer(self, writer: FrameWriter) -> None:
        """Write through `writer` from now on (before anything was written: the API layer's direct
        socket writer, once the handshake has been accepted)."""
        self.writer = writer
        self._task_writer = None

    @property
    def sending(self) -> bool:
        """The client has not taken everything written to it yet."""
        return self.writer.backed_up()

    def _send_failed(self, exc: BaseException) -> None:
        log.debug("live_send_failed", conn_id=self.id, error=repr(exc))
        self.hub.disconnect(self)

    # --- fed by the hub ---

    def offer(self, labels: Labels, update: Update, interval: float) -> None:
        hub = self.hub
        waiting = self.pending.get(labels)
        if waiting is not None:
            # Still waiting since an earlier tick: behind, or held back by max_rate. Keep the newest.
            if not interval:
                self.coalesced += len(waiting.samples)
                hub.stats.samples_coalesced += len(waiting.samples)
            self.pending[labels] = update
            return
        waiting_series = len(self.pending)
        bound = hub.opts.queue_max_series
        # The bound is on backlog: a client still taking earlier messages keeps at most `bound` series;
        # one that keeps up may take a whole tick's worth (up to ten times that) in one go.
        if waiting_series >= bound and (waiting_series >= bound * 10 or self.writer.backed_up()):
            self.dropped += len(update.samples)
            hub.stats.samples_dropped += len(update.samples)
            return
        self.pending[labels] = update
        if interval:
            self.rate_interval[labels] = interval
        hub.dirty.add(self)

    def offer_alert(self, frame: Frame) -> None:
        if len(self.alerts) >= self.hub.opts.queue_max_alerts:
            del self.alerts[0]
            self.alerts_dropped += 1
            self.hub.stats.alerts_dropped += 1
        self.alerts.append(frame)
        self.hub.dirty.add(self)

    def reply(self, frame: Frame | str) -> None:
        """A direct answer (greeting, subscribed, error, pong): sent at once, ahead of updates."""
        if self.closed:
            return
        if isinstance(frame, str):
            frame = Frame(frame.encode())
        if not self.control and not self.writer.backed_up():
            self.writer.write((frame,))
            self.hub.stats.messages_sent += 1
            return
        if len(self.control) >= self.hub.opts.queue_max_control:
            self.hub.close_connection(self, CLOSE_TRY_AGAIN_LATER, "client does not read its replies")
            return
        self.control.append(frame)
        self.hub.dirty.add(self)

    # --- run by the ticker ---

    def flush(self, now: float, now_ms: int) -> None:
        hub = self.hub
        if self.writer.backed_up():
            if self.behind_since is None:
                self.behind_since = now
            elif now - self.behind_since >= hub.opts.lag_close_seconds:
                hub.close_connection(self, CLOSE_TRY_AGAIN_LATER, "client too slow: stayed behind its updates")
                return
            hub.dirty.add(self)
            return
        self.behind_since = None
        out: list[Frame] = []
        if self.control:
            out.extend(self.control)
            self.control.clear()
        if self.dropped or self.coalesced or self.alerts_dropped:
            lagged: dict[str, Any] = {"type": "lagged", "dropped": self.dropped, "coalesced": self.coalesced}
            if self.alerts_dropped:
                lagged["alerts_dropped"] = self.alerts_dropped
            out.append(encode_frame(lagged, now_ms))
            self.dropped = self.coalesced = self.alerts_dropped = 0
        held: dict[Labels, Update] | None = None
        if self.rate_interval:
            last_sent = self.last_sent
            for labels, update in self.pending.items():
                interval = self.rate_interval.get(labels)
                if interval:
                    if now - last_sent.get(labels, -1e18) < interval:
                        if held is None:
                            held = {}
                        held[labels] = update
                        continue
                    last_sent[labels] = now
                out.append(update.frame(now_ms))
            if len(last_sent) > hub.opts.queue_max_series * 10:
                last_sent.clear()
        else:
            for update in self.pending.values():
                out.append(update.frame(now_ms))
        if self.alerts:
            out.extend(self.alerts)
            self.alerts.clear()
        if held:
            self.pending = held
            hub.dirty.add(self)
        else:
            self.pending = {}
            self.rate_interval.clear()
        if out:
            writer = self.writer
            writer.write(out)
            hub.stats.messages_sent += len(out)
            if writer.backed_up():
                hub.dirty.add(self)  # look again next tick: not taken by then means behind

    async def stop_sender(self) -> None:
        if self._task_writer is not None:
            await self._task_writer.stop()

    def subscription_ids(self, kind: Kind | None = None) -> list[str]:
        return [sid for sid, s in self.subs.items() if kind is None or s.spec.kind == kind]
